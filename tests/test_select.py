"""Active selection: each strategy against a pool whose answer is known, the radius rule
against its definition, and ``lowshot select`` on real images, texts and arrays."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from lowshot.catalogue import get_method, names
from lowshot.cli import app
from lowshot.errors import ConfigError, DataError
from lowshot.pipeline.select import make_selector
from lowshot.pipeline.selection_curves import simulate
from lowshot.select._geometry import nearest_other, unit
from lowshot.select.probcover import purity_radius

runner = CliRunner()
COVERING = ["typiclust", "probcover", "kcenter", "hybrid"]


def blobs(sizes=(40, 30, 25, 20, 15), d=16, spread=0.05, seed=0):
    """Well-separated clusters of unequal sizes on orthogonal directions, and their ids."""
    rng = np.random.default_rng(seed)
    X, y = [], []
    for c, n in enumerate(sizes):
        centre = np.zeros(d)
        centre[c] = 1.0
        X.append(centre + rng.normal(0, spread, (n, d)))
        y += [c] * n
    return np.vstack(X).astype(np.float32), np.array(y)


def typicality(X):
    Z = unit(X)
    D = np.linalg.norm(Z[:, None] - Z[None], axis=2)
    np.fill_diagonal(D, np.inf)
    return 1 / np.sort(D, 1)[:, : min(20, len(X) // 2)].mean(1)


def test_the_select_family_lists_every_strategy_the_issue_names():
    assert set(names("select")) == {"random", "typiclust", "probcover", "kcenter", "margin",
                                    "entropy", "hybrid"}  # fmt: skip
    out = runner.invoke(app, ["select", "--help"], env={"COLUMNS": "300"}).output
    assert all(n in out for n in names("select"))  # the CLI's choices come from the registry


@pytest.mark.parametrize("name", COVERING)
def test_covering_strategies_pick_one_example_per_cluster(name):
    X, y = blobs()
    for seed in (0, 1):
        picks = make_selector(name).select(X, 5, seed=seed)
        assert sorted(y[picks.index].tolist()) == [0, 1, 2, 3, 4], (name, y[picks.index])


def test_typiclust_picks_the_densest_point_of_each_cluster_largest_first():
    X, y = blobs()
    picks = make_selector("typiclust").select(X, 5, seed=0)
    assert y[picks.index].tolist() == [0, 1, 2, 3, 4]  # larger clusters first
    for i in picks.index:  # the definition: 1 / mean distance to the k = min(20, n/2) nearest
        members = np.flatnonzero(y == y[i])
        assert i == members[np.argmax(typicality(X[members]))]


def test_labelled_clusters_are_treated_as_covered():
    X, y = blobs()
    labelled = X[[0, 40, 70]] + 0.001  # one example each of clusters 0, 1, 2 is labelled
    for name in COVERING:
        picks = make_selector(name).select(X, 2, labelled=labelled, seed=0)
        assert sorted(y[picks.index].tolist()) == [3, 4], name


def test_uncertainty_picks_the_examples_nearest_the_boundary():
    x = np.linspace(-3, 3, 61)[:, None].astype(np.float32)
    p1 = 1 / (1 + np.exp(-4 * x[:, 0]))
    proba = np.stack([1 - p1, p1], 1)
    for name in ("margin", "entropy"):
        picks = make_selector(name).select(x, 3, proba=proba, seed=0)
        assert sorted(picks.index.tolist()) == [29, 30, 31], name  # x = -0.1, 0, 0.1


def test_hybrid_takes_the_least_certain_of_the_typical_members():
    X, y = blobs(sizes=(40, 40))
    margin = np.random.default_rng(1).uniform(0.0, 0.9, len(X))
    proba = np.stack([(1 + margin) / 2, (1 - margin) / 2], 1)
    picks = make_selector("hybrid").select(X, 2, proba=proba, seed=0)
    for c in (0, 1):  # the definition, computed here: top half by typicality, then least margin
        members = np.flatnonzero(y == c)
        typical = members[np.argsort(-typicality(X[members]))[:20]]
        assert typical[np.argmin(margin[typical])] in picks.index.tolist()


def test_probcover_radius_is_the_largest_with_the_asked_purity():
    X, y = blobs(sizes=(50, 50, 50), spread=0.3)
    Z = unit(X)
    groups = y  # the purity definition, on known groups
    delta = purity_radius(Z, groups, 0.95)
    d_other = nearest_other(Z, groups)
    purity = lambda r: float((d_other > r).mean())  # noqa: E731
    assert purity(delta) >= 0.95
    assert purity(np.sort(d_other)[int(0.05 * len(Z))] * 1.0001) < 0.95


def test_probcover_keeps_covering_once_everything_is_covered():
    X, y = blobs(sizes=(10, 10))
    picks = make_selector("probcover", {"radius": 1.0}).select(X, 6, seed=0)  # a ball = a blob
    assert len(set(picks.index.tolist())) == 6 and sorted(y[picks.index[:2]]) == [0, 1]
    assert picks.score[:2].tolist() == [10, 10]  # each covers its blob
    assert all("farthest" in r for r in picks.reason[2:])


def test_large_pools_use_a_sample_not_an_n_by_n_matrix():
    X, y = blobs(sizes=(600, 500, 400), d=32)
    pc = make_selector("probcover", {"max_graph": 300}).select(X, 3, seed=0)
    tc = make_selector("typiclust", {"max_reference": 50}).select(X, 3, seed=0)
    assert sorted(y[pc.index].tolist()) == sorted(y[tc.index].tolist()) == [0, 1, 2]


def test_same_seed_same_picks_and_random_depends_on_it():
    X, _ = blobs()
    a = make_selector("random").select(X, 10, seed=1).index.tolist()
    assert a == make_selector("random").select(X, 10, seed=1).index.tolist()
    assert a != make_selector("random").select(X, 10, seed=2).index.tolist()


def test_budget_beyond_the_pool_and_a_model_less_warm_strategy_are_errors():
    X, _ = blobs(sizes=(5, 5))
    with pytest.raises(ConfigError, match="--budget 11"):
        make_selector("typiclust").select(X, 11)
    with pytest.raises(ConfigError, match="needs labelled examples first"):
        make_selector("margin").select(X, 2)
    with pytest.raises(ConfigError, match="typiclust has no hyper-parameter 'kk'"):
        make_selector("typiclust", {"kk": 3})
    with pytest.raises(ConfigError, match="--strategy: unknown method 'typclust'"):
        make_selector("typclust")
    assert get_method("typiclust").family == "select"


def test_simulation_reveals_labels_round_by_round():
    X, y = blobs(sizes=(30, 30, 30, 30), d=4)
    rounds = simulate(X, y, X, y, "typiclust", per_class=(1, 2), seed=0)
    assert [r.labels for r in rounds] == [4, 8]
    assert rounds[0].classes_seen == 4 and rounds[0].accuracy == 1.0
    warm = simulate(X, y, X, y, "margin", per_class=(1, 2), seed=0)
    assert [r.strategy for r in warm] == ["random", "margin"]


# ---- lowshot select on real data -------------------------------------------------------


@pytest.fixture(scope="module")
def image_pool(tmp_path_factory, data_root):
    """A file list of 24 webcam images (4 classes x 6), and a labelled list of 3 of them."""
    d = tmp_path_factory.mktemp("pool")
    root = data_root / "office31" / "webcam" / "images"
    files = [f for c in sorted(root.iterdir())[:4] for f in sorted(c.iterdir())[:6]]
    (d / "pool.txt").write_text("\n".join(str(f) for f in files) + "\n")
    (d / "labelled.txt").write_text("".join(f"{f} {f.parent.name}\n" for f in files[::8]))
    return d, files


def test_select_writes_a_list_to_label_and_a_csv(image_pool, cache_dir, tmp_path):
    d, files = image_pool
    out = tmp_path / "next.txt"
    r = runner.invoke(app, ["select", str(d / "pool.txt"), "--budget", "4", "--out", str(out),
                            "--json"])  # fmt: skip
    assert r.exit_code == 0, r.output
    res = json.loads(r.output[r.output.index("{") :])
    listed = out.read_text().split()
    assert len(listed) == 4 and all(f in map(str, files) for f in listed)
    assert len({f.split("/")[-2] for f in listed}) >= 3  # spread over the classes
    csv_lines = out.with_suffix(".csv").read_text().splitlines()
    assert csv_lines[0].startswith("rank,item,where,score,reason") and len(csv_lines) == 5
    assert res["n_pool"] == 24 and res["timings"]["select"] >= 0
    again = runner.invoke(app, ["select", str(d / "pool.txt"), "--budget", "4", "--out", str(out)])
    assert again.exit_code == 2 and "exists" in again.output  # never overwritten unasked


def test_warm_start_excludes_the_labelled_and_guesses_their_class(image_pool, cache_dir, tmp_path):
    d, files = image_pool
    out = tmp_path / "warm.txt"
    r = runner.invoke(app, ["select", str(d / "pool.txt"), "--budget", "5", "--labelled",
                            str(d / "labelled.txt"), "--strategy", "margin", "--out", str(out)])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "3 of 24 pool examples are already labelled" in " ".join(r.output.split())
    labelled = {line.split()[0] for line in (d / "labelled.txt").read_text().splitlines()}
    assert not labelled & set(out.read_text().split())
    header = out.with_suffix(".csv").read_text().splitlines()[0]
    assert header.endswith("model_guess")


def test_select_on_texts_and_arrays(tmp_path, cache_dir, data_root):
    from lowshot.data.text import load_text

    cr = load_text(data_root / "sentences" / "custrev.all")
    pool = tmp_path / "reviews.txt"
    pool.write_text("\n".join(cr.texts[:60] + cr.texts[:5]) + "\n")  # 5 repeats
    out = tmp_path / "texts.txt"
    r = runner.invoke(app, ["select", str(pool), "--budget", "3", "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    assert "5 repeated texts counted once" in " ".join(r.output.split())
    assert set(out.read_text().splitlines()) <= set(cr.texts[:60])
    X, _ = blobs()
    np.save(tmp_path / "feats.npy", X)
    out2 = tmp_path / "rows.txt"
    r = runner.invoke(app, ["select", str(tmp_path / "feats.npy"), "--budget", "5", "--strategy",
                            "kcenter", "--out", str(out2)])  # fmt: skip
    assert r.exit_code == 0, r.output
    rows = [int(v) for v in out2.read_text().split()]
    assert len(set(rows)) == 5 and max(rows) < len(X)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--budget", "0"], "--budget: must be at least 1"),
        (["--budget", "3", "--strategy", "entropy"], "needs labelled examples first"),
        (["--budget", "3", "-p", "purity=high", "--strategy", "probcover"], "expects a number"),
        (["--budget", "99"], "the pool holds only 24"),
        (["--budget", "2", "--out-csv"], "No such option"),
    ],
)
def test_bad_select_input_is_one_line(image_pool, cache_dir, tmp_path, args, message):
    d, _ = image_pool
    r = runner.invoke(app, ["select", str(d / "pool.txt"), "--out", str(tmp_path / "x.txt"), *args])
    assert r.exit_code == 2 and message in " ".join(r.output.split()), r.output
    assert "Traceback" not in r.output


def test_bad_pools_name_the_file_and_line(tmp_path, cache_dir, data_root):
    (tmp_path / "empty").mkdir()
    missing = tmp_path / "list.txt"
    img = next((data_root / "office31" / "webcam" / "images" / "mug").iterdir())
    missing.write_text(f"{img}\n{tmp_path / 'gone.jpg'}\n")
    for pool, message in [
        (tmp_path / "empty", "the pool is empty"),
        (missing, "list.txt:2: image"),
        (tmp_path / "nothing", "no such folder or file"),
    ]:
        r = runner.invoke(
            app, ["select", str(pool), "--budget", "1", "--out", str(tmp_path / "o.txt")]
        )
        assert r.exit_code == 2 and message in " ".join(r.output.split()), (pool, r.output)
    with pytest.raises(ConfigError, match="name the list file"):
        from lowshot.api import select_examples

        select_examples(str(missing), budget=1, out=tmp_path / "o.csv")
    with pytest.raises(DataError, match="holds text but the pool"):
        from lowshot.data.pool import load_pool
        from lowshot.data.text import TextSet
        from lowshot.pipeline.select import exclude_labelled

        exclude_labelled(
            load_pool(str(img.parent)), TextSet(["a", "b"], np.array([0, 1]), ["x", "y"])
        )


def test_selection_curves_on_real_digits(data_root):
    """USPS raw pixels (the array path): TypiClust's first labels beat random ones."""
    usps = f"{data_root / 'mnist-usps' / 'MNIST_vs_USPS.mat'}:Xt,Yt"
    r = runner.invoke(app, ["selection-curves", usps, "--strategies", "random,typiclust,margin",
                            "--per-class", "1,2", "--seeds", "0,1", "--json"])  # fmt: skip
    assert r.exit_code == 0, r.output
    res = json.loads(r.output[r.output.index("{") :])
    curve = {(c["strategy"], c["per_class"]): c for c in res["curves"]}
    assert curve[("typiclust", 1.0)]["gap_to_random"] > 0.05
    assert curve[("margin", 1.0)]["gap_to_random"] == 0.0  # its first round is random's
    assert {r["picked_by"] for r in res["records"] if r["strategy"] == "margin"} == {
        "random",
        "margin",
    }
    assert len(res["records"]) == 3 * 2 * 2
    bad = runner.invoke(app, ["selection-curves", usps, "--per-class", "2,1"])
    assert bad.exit_code == 2 and "increasing" in bad.output


def test_simulation_opens_with_random_until_two_classes_are_labelled():
    X, y = blobs(sizes=(60, 4), d=2)  # one rare class: a first random pair is likely all class 0
    for seed in range(4):
        rounds = simulate(X, y, X, y, "margin", per_class=(1, 2, 3), seed=seed)
        assert [r.labels for r in rounds] == [2, 4, 6]
        firsts = [r.strategy for r in rounds]
        assert firsts[0] == "random" and set(firsts) <= {"random", "margin"}


def test_a_pool_of_identical_rows_still_gives_distinct_picks():
    X = np.ones((6, 3), np.float32)
    for name in COVERING + ["random"]:
        picks = make_selector(name).select(X, 6, seed=0)
        assert sorted(picks.index.tolist()) == list(range(6)), name


def test_pool_tables_texts_numbers_and_labels_aside(tmp_path):
    from lowshot.data.pool import load_pool

    (tmp_path / "t.csv").write_text("id,text\n1,good phone\n2,\n3,bad screen\n4,good phone\n")
    texts = load_pool(tmp_path / "t.csv")
    assert texts.modality == "text" and texts.items == ["good phone", "bad screen"]
    assert texts.where == ["line 2", "line 4"]  # the CSV's own line numbers
    (tmp_path / "t.jsonl").write_text('{"text": "one"}\n\n{"text": "two", "label": "x"}\n')
    assert load_pool(tmp_path / "t.jsonl").items == ["one", "two"]
    (tmp_path / "f.csv").write_text("a,b,c\n1,2,3\n4,5,6\n")
    nums = load_pool(tmp_path / "f.csv")  # no label column: every column is a feature
    assert nums.modality == "features" and nums.X.shape == (2, 3) and nums.labels is None
    (tmp_path / "l.csv").write_text("a,b,label\n1,2,x\n4,5,y\n")
    lab = load_pool(tmp_path / "l.csv")  # a label column is set aside, never a feature
    assert lab.X.shape == (2, 2) and lab.classes == ["x", "y"]
    (tmp_path / "bad.csv").write_text("a,b\n1,oops\n")
    with pytest.raises(DataError, match="bad.csv:2: a value is not a number"):
        load_pool(tmp_path / "bad.csv")
    np.save(tmp_path / "nan.npy", np.array([[1.0, 2.0], [np.nan, 1.0]]))
    with pytest.raises(DataError, match="row 2 holds NaN"):
        load_pool(tmp_path / "nan.npy")
