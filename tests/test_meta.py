"""Meta-learners on real Omniglot characters and Office-31 features: every method trains,
saves and reloads; their definitions (ProtoNet distances, MatchingNet attention, MAML's
second-order gradient, Reptile's outer step, the GNN's transduction) hold; episodes run
across domains, on text and on arrays; bad input is named."""

from __future__ import annotations

import copy
import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import make_subset
from PIL import Image, ImageOps
from typer.testing import CliRunner

from lowshot.catalogue import list_methods
from lowshot.cli import app
from lowshot.data.load import load_images
from lowshot.errors import ConfigError, DataError, RunError
from lowshot.fewshot import EpisodeSampler, drop_classes, evaluate_episodes
from lowshot.fewshot.encoders import Conv4, ResNet12
from lowshot.fewshot.learners import (
    GNN,
    MAML,
    MatchingNet,
    ProtoNet,
    RelationNet,
    Reptile,
    is_learner,
)
from lowshot.fewshot.meta import (
    LearnerClassifier,
    build_learner,
    embed_data,
    load_learner,
    load_pixels,
    meta_train,
    random_affine,
)

runner = CliRunner()


def _rows(r) -> list[dict]:
    """The JSON rows a `--json` command printed (progress bars may precede them)."""
    return json.loads(r.output[r.output.index("[\n") :])


# every registered meta-learner goes through the same checks
METHODS = [m.name for f in ("meta", "relation") for m in list_methods(f) if is_learner(m.name)]
SLOW_TO_LEARN = {"relationnet", "gnn", "maml", "fomaml", "reptile"}
# quality checks that train to a learning gain: the default suite keeps protonet's; every
# learner's contract (train, save, reload, embed) runs by default below
LEARNING_CURVES = {"anil", "matchingnet"}


@pytest.fixture(scope="module")
def omni(data_root):
    train = load_images("omniglot:images_background_small1")
    test = drop_classes(load_images("omniglot:images_background_small2"), "Greek,Latin")
    keep = np.flatnonzero(test.labels < 40)  # 40 unseen characters keep the tests quick
    return train, test.subset(keep)


@pytest.mark.parametrize("method", METHODS)
def test_every_learner_trains_saves_and_reloads(method, omni, tmp_path):
    train, test = omni
    info = meta_train(
        train, method=method, ways=5, shots=1, queries=3, episodes_per_epoch=4, epochs=1,
        rotations=False, out=tmp_path / "run",
    )  # fmt: skip
    meta = json.loads((tmp_path / "run" / "model.json").read_text())
    assert meta["method"] == method and len(meta["history"]) == 1
    assert np.isfinite(meta["history"][0]["train_loss"])
    learner, meta = load_learner(tmp_path / "run")
    mem = info["learner"].eval()
    Z = embed_data(learner, test, meta)
    assert np.allclose(Z, embed_data(mem, test, meta), atol=1e-5)
    kw = {"ways": 5, "shots": 1, "queries": 3, "episodes": 5}
    a = evaluate_episodes(Z, test.labels, LearnerClassifier(learner), **kw)
    b = evaluate_episodes(Z, test.labels, LearnerClassifier(mem), **kw)
    assert a["accuracy"] == pytest.approx(b["accuracy"])


@pytest.mark.parametrize(
    "method",
    [
        pytest.param(m, marks=pytest.mark.slow) if m in SLOW_TO_LEARN | LEARNING_CURVES else m
        for m in METHODS
    ],  # fmt: skip
)
def test_meta_training_beats_the_untrained_learner_on_unseen_alphabets(method, omni):
    train, test = omni
    info = meta_train(
        train, method=method, ways=5, shots=1, queries=5, episodes_per_epoch=150, epochs=1,
        rotations=False,
    )  # fmt: skip
    meta = {"encoder": "conv4", "image_size": 28, "channels": 1, "invert": True}
    kw = {"ways": 5, "shots": 1, "queries": 5, "episodes": 150}
    trained = info["learner"].eval()
    torch.manual_seed(0)
    fresh = build_learner(method, "conv4", load_pixels(test.subset([0, 1])), 5, {}).eval()
    acc = evaluate_episodes(
        embed_data(trained, test, meta), test.labels, LearnerClassifier(trained), **kw
    )["accuracy"]
    base = evaluate_episodes(
        embed_data(fresh, test, meta), test.labels, LearnerClassifier(fresh), **kw
    )["accuracy"]
    assert acc > base + 0.05, (acc, base)


def test_the_registry_holds_every_method_of_the_issue():
    want = {"protonet", "matchingnet", "relationnet", "gnn", "maml", "fomaml", "anil", "reptile"}
    assert want <= set(METHODS)
    free = {m.name for f in ("meta", "relation") for m in list_methods(f)} - set(METHODS)
    assert free == {"simpleshot", "label-propagation"}
    assert all(m.summary for f in ("meta", "relation") for m in list_methods(f))


def test_protonet_logits_are_negative_squared_distances_to_class_means():
    torch.manual_seed(0)
    zs, zq = torch.randn(6, 4), torch.randn(3, 4)
    ys = torch.tensor([0, 0, 1, 1, 2, 2])
    lg = ProtoNet(torch.nn.Identity()).logits(zs, ys, zq)
    for c in range(3):
        mean = zs[ys == c].mean(0)
        assert torch.allclose(lg[:, c], -((zq - mean) ** 2).sum(1), atol=1e-5)


def test_matchingnet_is_cosine_nearest_neighbour_at_high_temperature():
    torch.manual_seed(1)
    zs, zq = torch.randn(10, 8), torch.randn(20, 8)
    ys = torch.arange(5).repeat(2)
    m = MatchingNet(torch.nn.Identity(), dim=8, temperature=1e4)
    nn_label = ys[(F.normalize(zq, dim=1) @ F.normalize(zs, dim=1).T).argmax(1)]
    assert torch.equal(m.logits(zs, ys, zq).argmax(1), nn_label)
    # the attention sums to one: exp(logits) is a distribution over classes
    soft = MatchingNet(torch.nn.Identity(), dim=8, temperature=1.0)
    assert torch.allclose(soft.logits(zs, ys, zq).exp().sum(1), torch.ones(20), atol=1e-4)
    fce = MatchingNet(torch.nn.Identity(), dim=8, fce=True)
    assert fce.logits(zs, ys, zq).shape == (20, 5)


def test_relationnet_scores_pairs_in_the_unit_interval():
    torch.manual_seed(0)
    enc = Conv4(1, maps=True)
    rn = RelationNet(enc, feat_shape=(64, 7, 7))
    x = torch.rand(10, 1, 28, 28)
    z = rn.embed(x)
    assert z.shape == (10, 64 * 7 * 7)
    ys = torch.tensor([0, 1, 2, 0, 1, 2])
    s = rn.logits(z[:6], ys, z[6:])
    assert s.shape == (4, 3) and bool(((s > 0) & (s < 1)).all())
    yq = torch.tensor([0, 1, 2, 0])
    want = float(((s - F.one_hot(yq, 3)) ** 2).mean().detach())
    assert float(rn.loss(s, yq).detach()) == pytest.approx(want)


def test_gnn_is_transductive_and_bound_to_its_ways():
    torch.manual_seed(0)
    g = GNN(torch.nn.Identity(), ways=3, dim=6).eval()
    zs, ys = torch.randn(6, 6), torch.tensor([0, 0, 1, 1, 2, 2])
    zq = torch.randn(4, 6)
    a = g.logits(zs, ys, zq)
    zq2 = zq.clone()
    zq2[3] += 5  # another query moves: the others' scores move too (one graph)
    assert not torch.allclose(a[:3], g.logits(zs, ys, zq2)[:3])
    with pytest.raises(ConfigError, match="--ways 3"):
        g.predict(torch.randn(4, 6), torch.arange(4), zq)


def _toy_task(ways: int = 3, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    xs, xq = (
        torch.rand(ways * 2, 1, 28, 28, generator=g),
        torch.rand(ways * 3, 1, 28, 28, generator=g),
    )
    return xs, torch.arange(ways).repeat(2), xq, torch.arange(ways).repeat(3)


def _grads(m: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in m.parameters()])


def test_maml_second_order_gradient_and_first_order_approximation():
    torch.manual_seed(0)
    xs, ys, xq, yq = (t.double() if t.is_floating_point() else t for t in _toy_task())
    net = MAML(
        Conv4(1, hidden=8, track_stats=False), ways=3, dim=8, inner_steps=2, inner_lr=0.3
    ).double()
    fo = copy.deepcopy(net)
    fo.first_order = True
    net.train(), fo.train()
    net.episode_loss(xs, ys, xq, yq)[0].backward()
    fo.episode_loss(xs, ys, xq, yq)[0].backward()
    g2, g1 = _grads(net), _grads(fo)
    # first order = the query loss's gradient at the adapted weights
    probe = copy.deepcopy(fo)
    probe.zero_grad()
    with torch.no_grad():
        for _ in range(2):
            p = copy.deepcopy(probe)
            with torch.enable_grad():
                F.cross_entropy(p(xs), ys).backward()
            for a, b in zip(probe.parameters(), p.parameters(), strict=True):
                a -= 0.3 * b.grad
    F.cross_entropy(probe(xq), yq).backward()
    assert torch.allclose(g1, _grads(probe), atol=1e-8)
    # second order = the true derivative of the post-adaptation query loss (finite differences)
    v = torch.randn_like(g2)
    v /= v.norm()

    def post_loss(shift: float) -> float:
        m = copy.deepcopy(net)
        with torch.no_grad():
            i = 0
            for p in m.parameters():
                p += shift * v[i : i + p.numel()].view_as(p)
                i += p.numel()
        return float(m.episode_loss(xs, ys, xq, yq)[0].detach())

    eps = 1e-6
    fd = (post_loss(eps) - post_loss(-eps)) / (2 * eps)
    assert float(g2 @ v) == pytest.approx(fd, rel=1e-4)
    assert abs(float(g1 @ v) - fd) > 1e-3 * abs(fd)  # dropping second order changes it


def test_anil_adapts_the_head_on_features_normalised_per_episode():
    torch.manual_seed(0)
    xs, ys, xq, _ = _toy_task()
    net = build_learner("anil", "conv4", xs, 3, {"inner_lr": 0.2, "test_steps": 4}).eval()
    assert not any("running" in k for k in net.state_dict())  # batch statistics only
    got = net.predict(xs.flatten(1), ys, xq.flatten(1))
    # by hand: the encoder on the whole episode, then 4 SGD steps on a copy of the head
    z = net.encoder(torch.cat([xs, xq])).flatten(1).detach()
    head = copy.deepcopy(net.head)
    for _ in range(4):
        head.zero_grad()
        F.cross_entropy(head(z[: len(xs)]), ys).backward()
        with torch.no_grad():
            for p in head.parameters():
                p -= 0.2 * p.grad
    assert torch.allclose(got, head(z[len(xs) :]).detach(), atol=1e-5)
    # one episode is normalised as a whole: other queries change a query's score
    xq2 = xq.clone()
    xq2[1:] = torch.rand_like(xq2[1:])
    assert not torch.allclose(got[0], net.predict(xs.flatten(1), ys, xq2.flatten(1))[0])
    assert all(p.grad is None for p in net.encoder.parameters())  # test time: head only


def test_reptile_moves_the_initialisation_towards_the_adapted_weights():
    torch.manual_seed(0)
    xs, ys, xq, yq = _toy_task()
    net = Reptile(Conv4(1, hidden=8, track_stats=False), ways=3, dim=8, inner_steps=3).train()
    theta = [p.detach().clone() for p in net.parameters()]
    phi = list(net._adapted(torch.cat([xs, xq]), torch.cat([ys, yq]), 3).parameters())
    opt = net.optimizer(0.5, 10)["optimizer"]
    opt.zero_grad()
    net.episode_loss(xs, ys, xq, yq)[0].backward()
    opt.step()
    for t, f, new in zip(theta, phi, net.parameters(), strict=True):
        assert torch.allclose(new, t + 0.5 * (f - t), atol=1e-6)


def test_resnet12_and_encoder_choice(omni):
    r = ResNet12(1, widths=(8, 16, 16, 32))
    assert r(torch.rand(2, 1, 28, 28)).shape == (2, 32)
    with pytest.raises(ConfigError, match="RelationNet needs --encoder conv4"):
        build_learner("relationnet", "resnet12", torch.rand(2, 1, 28, 28), 5, {})
    train, _ = omni
    info = meta_train(
        train, method="protonet", encoder="resnet12", ways=3, shots=1, queries=2,
        episodes_per_epoch=2, epochs=1, rotations=False,
    )  # fmt: skip
    assert np.isfinite(info["history"][0]["train_loss"])


def test_meta_train_resumes_where_it_stopped(omni, tmp_path):
    train, _ = omni
    kw = dict(method="protonet", ways=5, shots=1, queries=3, episodes_per_epoch=5, rotations=False)
    whole = meta_train(train, epochs=2, out=tmp_path / "a", **kw)
    meta_train(train, epochs=1, out=tmp_path / "b", **kw)  # "interrupted" after one epoch
    ck = torch.load(tmp_path / "b" / "checkpoints" / "last.ckpt", weights_only=False)
    resumed = meta_train(train, epochs=2, out=tmp_path / "b", resume=True, **kw)
    # the reported training time counts the interrupted epoch too, not only the resume
    assert ck["lowshot_train_seconds"] > 0
    assert resumed["train_seconds"] >= round(ck["lowshot_train_seconds"], 1)
    for (k, a), b in zip(
        whole["learner"].state_dict().items(), resumed["learner"].state_dict().values(), strict=True
    ):
        assert torch.allclose(a.float(), b.float(), atol=1e-6), k
    hist = json.loads((tmp_path / "b" / "model.json").read_text())["history"]
    assert [h["epoch"] for h in hist] == [1, 2]
    with open(tmp_path / "b" / "logs" / "metrics.csv", newline="") as fh:  # the whole log
        logged = {int(r["epoch"]) for r in csv.DictReader(fh) if r.get("epoch")}
    assert logged == {0, 1}  # Lightning counts epochs from 0


def test_cross_domain_episodes_amazon_to_webcam(tmp_path, cache_dir):
    amazon = make_subset(tmp_path / "a", "amazon", 6, 6)
    webcam = make_subset(tmp_path / "w", "webcam", 6, 6)
    qpool = np.repeat(np.arange(6), 4)  # the query pool is smaller: its own indices
    s = EpisodeSampler(np.repeat(np.arange(6), 6), 5, 5, 4, query_labels=qpool)
    ep = s.episode(0)
    assert len(ep.support) == 25 and len(ep.query) == 20 and ep.query.max() < 24
    assert all(qpool[i] == ep.classes[y] for i, y in zip(ep.query, ep.query_labels, strict=True))
    r = runner.invoke(
        app,
        ["fewshot", "eval", "--data", str(amazon), "--query-data", str(webcam), "--ways", "5",
         "--shots", "1,5", "--queries", "6", "--episodes", "100", "--json"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    rows = _rows(r)
    assert all(row["cross_domain"] for row in rows)
    assert rows[0]["accuracy"] > 0.6 and rows[1]["accuracy"] > 0.6
    other = make_subset(tmp_path / "o", "webcam", 8, 6)  # two classes amazon lacks here
    bad = runner.invoke(
        app, ["fewshot", "eval", "--data", str(amazon), "--query-data", str(other), "--shots", "1"]
    )
    assert bad.exit_code != 0 and "classes missing" in bad.output


def test_episodes_on_arrays_and_meta_training_an_mlp_on_them(tmp_path):
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    np.savez(tmp_path / "base.npz", X=X[y < 6] / 16, y=y[y < 6])
    np.savez(tmp_path / "novel.npz", X=X[y >= 5] / 16, y=y[y >= 5])
    r = runner.invoke(
        app,
        ["fewshot", "eval", "--data", str(tmp_path / "novel.npz"), "--shots", "5",
         "--episodes", "200", "--json"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert _rows(r)[0]["accuracy"] > 0.85
    r = runner.invoke(
        app,
        ["meta-train", "--data", str(tmp_path / "base.npz"), "--encoder", "mlp", "--method",
         "protonet", "--ways", "5", "--shots", "5", "--queries", "5", "--episodes", "30",
         "--epochs", "2", "--out", str(tmp_path / "run")],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    r = runner.invoke(
        app,
        ["fewshot", "eval", "--data", str(tmp_path / "novel.npz"), "--run", str(tmp_path / "run"),
         "--shots", "5", "--episodes", "200", "--json"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert _rows(r)[0]["accuracy"] > 0.8


def test_episodes_on_text(tmp_path, data_root, cache_dir):
    from lowshot.data.text import load_text

    cr = load_text("sentences:CR")
    rows = ["text,label"]
    for c in (0, 1):
        for t in np.asarray(cr.texts, dtype=object)[cr.labels == c][:30]:
            rows.append('"' + str(t).replace('"', "'") + f'",{cr.classes[c]}')
    (tmp_path / "cr.csv").write_text("\n".join(rows) + "\n")
    r = runner.invoke(
        app,
        ["fewshot", "eval", "--data", str(tmp_path / "cr.csv"), "--ways", "2", "--shots", "5",
         "--queries", "10", "--episodes", "200", "--json"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert _rows(r)[0]["accuracy"] > 0.6


def test_meta_learning_bad_input(omni, tmp_path):
    train, _ = omni
    with pytest.raises(ConfigError, match="does not meta-train"):
        meta_train(train, method="simpleshot", epochs=1)
    with pytest.raises(ConfigError, match="inner_steps"):
        meta_train(train, method="maml", params={"inner_step": 3}, epochs=1)
    with pytest.raises(ConfigError, match="--backbone"):
        meta_train(train, method="protonet", encoder="mlp", epochs=1)
    few = train.subset(np.flatnonzero(train.labels < 3))
    with pytest.raises(DataError, match="5-way"):
        meta_train(few, method="protonet", ways=5, epochs=1, rotations=False)
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "meta.json").write_text('{"format": "lowshot-meta/1"}')
    with pytest.raises(RunError, match="meta-train again"):
        load_learner(tmp_path / "old")
    with pytest.raises(RunError, match="no model.json"):
        load_learner(tmp_path)


@pytest.fixture(scope="module")
def protonet_run(omni, tmp_path_factory):
    """A 5-way one-shot ProtoNet run folder, 100 episodes of small1."""
    run = tmp_path_factory.mktemp("protonet") / "run"
    meta_train(
        omni[0], method="protonet", ways=5, shots=1, queries=5, episodes_per_epoch=100,
        epochs=1, out=run,
    )  # fmt: skip
    return run


def test_fewshot_predict_on_a_users_folders_matches_the_benchmarks_episodes(omni, protonet_run, tmp_path):
    """The user's path (support and query folders, `fewshot predict --run`) and the
    benchmark's (embed the pool once, classify seeded episodes) give the same predictions
    on the same within-alphabet episode."""
    train, test = omni
    learner, meta = load_learner(protonet_run)
    Z, clf = embed_data(learner, test, meta), LearnerClassifier(learner)
    groups = [c.split("/")[0] for c in test.classes]
    ep = EpisodeSampler(test.labels, 5, 1, 5, seed=3, groups=groups).episode(0)
    assert len({groups[c] for c in ep.classes}) == 1  # five characters of one alphabet
    want = clf.predict(Z[ep.support], ep.support_labels, Z[ep.query]).argmax(1)
    names = [test.classes[c].replace("/", "-") for c in ep.classes]  # episode label -> folder
    # laid out as a user would, one folder per character: the files themselves, and their
    # negatives (white strokes on black, as some copies of Omniglot's one-shot runs are saved)
    for negative in (False, True):
        sup, qry = tmp_path / f"support{negative}", tmp_path / f"query{negative}"
        for rows, root in ((ep.support, sup), (ep.query, qry)):
            for r in rows:
                d = root / test.classes[test.labels[r]].replace("/", "-")
                d.mkdir(parents=True, exist_ok=True)
                if negative:
                    ImageOps.invert(Image.open(test.files[r]).convert("L")).save(
                        d / test.files[r].name
                    )
                else:
                    (d / test.files[r].name).symlink_to(test.files[r].resolve())
        r = runner.invoke(
            app,
            ["fewshot", "predict", "--support", str(sup), "--query", str(qry), "--run",
             str(protonet_run), "--out", str(tmp_path / "p.json")],
        )  # fmt: skip
        assert r.exit_code == 0, r.output
        out = json.loads((tmp_path / "p.json").read_text())
        assert out["method"] == "protonet" and len(out["predictions"]) == 25
        by_name = {Path(f).name: c for f, c in out["predictions"].items()}
        for row, label in zip(ep.query, want, strict=True):
            assert by_name[test.files[row].name] == names[label], negative
        assert out["accuracy"] == pytest.approx(float((want == ep.query_labels).mean()))
    assert out["accuracy"] > 0.4  # 5 characters of one unseen alphabet: chance is 0.2


def test_test_time_augmentation_averages_the_image_and_its_distortions(omni, protonet_run, tmp_path):
    """`--tta N`: an embedding is the mean over the image and N seeded random affine
    distortions of it (the training ones); refused where there are no pixels to distort."""
    _, test = omni
    run = protonet_run
    learner, meta = load_learner(run)
    few = test.subset(np.arange(6))
    x = load_pixels(few, meta["image_size"], meta["channels"], meta["invert"])
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        views = [learner.embed(x), learner.embed(random_affine(x, g)), learner.embed(random_affine(x, g))]
    got = embed_data(learner, few, meta, views=2, seed=7)
    assert np.allclose(got, (sum(views) / 3).numpy(), atol=1e-5)
    assert not np.allclose(got, embed_data(learner, few, meta), atol=1e-3)
    with pytest.raises(ConfigError, match="--tta -1"):
        embed_data(learner, few, meta, views=-1)
    maml = build_learner("maml", "conv4", x, 5, {})  # embeds the pixels themselves
    with pytest.raises(ConfigError, match="maml adapts its whole network"):
        embed_data(maml, few, meta | {"method": "maml"}, views=8)
    # the CLI: eval and predict take it with a meta-train run, and refuse it without one
    small = tmp_path / "small"  # five unseen characters, as class folders
    for i in np.flatnonzero(np.isin(test.labels, np.unique(test.labels)[:5])):
        d = small / test.classes[test.labels[i]].replace("/", "-")
        d.mkdir(parents=True, exist_ok=True)
        (d / test.files[i].name).symlink_to(test.files[i].resolve())
    r = runner.invoke(app, ["fewshot", "eval", "--data", str(small), "--run", str(run),
                            "--tta", "2", "--ways", "5", "--shots", "1", "--episodes", "20",
                            "--json"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert _rows(r)[0]["tta_views"] == 2
    for cmd in (["fewshot", "predict", "--support", str(tmp_path), "--query", str(tmp_path)],
                ["fewshot", "eval", "--data", str(small)]):  # fmt: skip
        r = runner.invoke(app, [*cmd, "--tta", "8"])
        assert r.exit_code != 0 and "--tta" in r.output and "meta-train" in r.output
        assert "Traceback" not in r.output


def test_pixels_of_either_polarity_come_out_the_same(omni, tmp_path):
    _, test = omni
    neg = tmp_path / "neg.png"
    ImageOps.invert(Image.open(test.files[0]).convert("L")).save(neg)
    both = dataclasses.replace(test.subset([0, 0]), files=[test.files[0], neg])
    x = load_pixels(both)  # invert="auto": a dark background either way
    assert torch.allclose(x[0], x[1], atol=1e-6) and float(x[0, 0, 0, 0]) == 0.0
    assert float(x[0].mean()) < 0.5  # strokes are the minority: bright on black
    y = load_pixels(both, invert="no")
    assert torch.allclose(y[0], 1 - y[1]) and float(y[0, 0, 0, 0]) == 1.0
