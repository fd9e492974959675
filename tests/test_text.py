"""Text: loaders (SentEval lines, Latin-1, CSV/TSV/JSONL), the offline MiniLM encoder and
its embedding cache, and `lowshot fit` / `predict` / `evaluate` on real review sentences."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from typer.testing import CliRunner

from lowshot.cli import app
from lowshot.data.text import is_text_data, load_text
from lowshot.errors import ConfigError, DataError

runner = CliRunner()


def test_sentence_sets_and_latin1(data_root, caplog):
    with caplog.at_level(logging.WARNING, logger="lowshot"):
        mr = load_text(data_root / "sentences" / "rt-polarity.all")
    assert "Latin-1" in caplog.text and mr.classes == ["0", "1"]
    assert len(mr) + len(mr.skipped) == 10662 and len(mr.skipped) < 20
    sst = load_text("sentences:SST-1:test")
    assert len(sst) == 2210 and sst.classes == ["0", "1", "2", "3", "4"]
    cr = load_text("sentences:CR")  # holds a label line without text: skipped, not fatal
    assert len(cr) < 3775 and len(cr.skipped) >= 1


def test_tables_columns_and_bad_rows(tmp_path):
    (tmp_path / "a.csv").write_text('review,stars\n"great, really",5\n,3\nawful,1\n')
    t = load_text(tmp_path / "a.csv", text_column="review", label_column="stars")
    assert t.texts == ["great, really", "awful"] and t.classes == ["1", "5"]
    with pytest.raises(DataError, match="--text-column"):
        load_text(tmp_path / "a.csv")
    (tmp_path / "b.jsonl").write_text(
        '{"text": "ok", "label": "pos"}\n\n{"text": "no", "label": "neg"}\n'
    )
    assert load_text(tmp_path / "b.jsonl").classes == ["neg", "pos"]
    (tmp_path / "c.tsv").write_text("text\tlabel\nfine\tx\n")
    assert load_text(tmp_path / "c.tsv").texts == ["fine"]


def test_text_files_are_told_apart_from_image_lists(tmp_path, data_root):
    (tmp_path / "imgs.txt").write_text("a/b.jpg 0\nc/d.png 1\n")
    (tmp_path / "txt.txt").write_text("1 a fine day\n0 a bad one\n")
    assert not is_text_data(tmp_path / "imgs.txt") and is_text_data(tmp_path / "txt.txt")
    assert is_text_data("sentences:MR") and not is_text_data(data_root / "office31")


def test_fit_predict_evaluate_on_text(cr_small, cache_dir, tmp_path, monkeypatch):
    run = tmp_path / "run"
    r = runner.invoke(
        app,
        ["fit", str(cr_small / "train.csv"), "--test", str(cr_small / "test.csv"), "--shots",
         "16", "--out", str(run)],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    m = json.loads((run / "metrics.json").read_text())
    assert m["backbone"] == "minilm" and m["n_train"] == 32 and m["accuracy"] > 0.6
    assert m["baseline"] == "classic" and "TF-IDF" in m["baseline_model"]
    assert m["transfer_gain"] == pytest.approx(m["accuracy"] - m["baseline_accuracy"])
    # embeddings come from the cache now: encoding again would be a bug
    from lowshot.backbones.text import TextEncoder

    def boom(*a, **k):
        raise AssertionError("re-encoded cached texts")

    monkeypatch.setattr(TextEncoder, "encode", boom)
    from lowshot.api import evaluate, predict

    ev = evaluate(run, cr_small / "test.csv", progress=False)
    assert ev["accuracy"] == pytest.approx(m["accuracy"])
    monkeypatch.undo()
    preds = predict(run, ["this is the best phone i have ever owned"], progress=False)
    assert preds[0]["class"] in ("0", "1") and 0.5 <= preds[0]["probability"] <= 1


def test_text_bad_input(tmp_path, cache_dir):
    from lowshot.api import fit

    (tmp_path / "one.txt").write_text("1 good\n1 fine\n1 nice\n")
    with pytest.raises(DataError, match="single label"):
        fit(tmp_path / "one.txt", baseline=False, progress=False)
    (tmp_path / "two.txt").write_text("1 good\n0 bad\n1 nice\n0 awful\n")
    with pytest.raises(ConfigError, match="image networks only.*linear-probe"):
        fit(tmp_path / "two.txt", strategy="partial", progress=False)
    with pytest.raises(ConfigError, match="image backbone"):
        fit(tmp_path / "two.txt", backbone="lite1", progress=False)


def test_long_texts_are_truncated_and_said_once(caplog, cache_dir):
    from lowshot.backbones.text import create_text_encoder

    enc = create_text_encoder("minilm")
    with caplog.at_level(logging.WARNING, logger="lowshot"):
        E = enc.encode(["short", "word " * 600, "word " * 700])
    assert E.shape == (3, 384) and np.allclose(np.linalg.norm(E, axis=1), 1, atol=1e-3)
    assert caplog.text.count("truncated") == 1 and "2 of 3" in caplog.text


def test_transferability_scores_and_distances_on_text(cr_small, cache_dir):
    from lowshot.transferability.rank import rank_backbones, rank_sources

    r = rank_backbones(cr_small / "train.csv", ["minilm"], progress=False)
    row = r["ranking"][0]
    assert r["n_classes"] == 2 and row["dim"] == 384 and np.isfinite(row["logme"])
    with pytest.raises(ConfigError, match="layers"):
        rank_backbones(cr_small / "train.csv", ["minilm"], layers=[4], progress=False)
    with pytest.raises(ConfigError, match="image backbone"):
        rank_backbones(cr_small / "train.csv", ["lite1"], progress=False)
    s = rank_sources(cr_small / "test.csv", [str(cr_small / "train.csv")], progress=False)
    assert s["ranked_by"] == "label_ot" and np.isfinite(s["ranking"][0]["mk_mmd"])
