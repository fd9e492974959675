"""Conformance for the strategies that train sentence encoders (finetune, l2sp, lp-ft,
bitfit, lora, setfit), the memory-safe contrastive pairs, and the CLI on text."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from lowshot.api import logits_for, make_strategy, strategies_for, train_and_score
from lowshot.backbones.text import create_text_encoder
from lowshot.cache import FeatureCache
from lowshot.cli import app
from lowshot.data.text import load_text
from lowshot.errors import ConfigError, DataError
from lowshot.model import FitContext
from lowshot.model.runner import pool_strategies
from lowshot.model.text import ContrastivePairs
from lowshot.pipeline.model_io import load_model, save_model

runner = CliRunner()
# the strategies that train the encoder; the feature-level ones (linear-probe,
# self-training) are in test_text.py and test_self_training.py
TEXT = [s for s in strategies_for("text") if s != "linear-probe" and s not in pool_strategies()]
# A few passes keep the suite fast; enough for every strategy to beat chance clearly.
FAST = {"setfit": {"iterations": 2}}
NO_FLOOR = {"min_steps": 0}  # the default epochs, without the floor on optimizer steps


@pytest.fixture(scope="module")
def cr(cr_small):
    train = load_text(cr_small / "train.csv")
    test = load_text(cr_small / "test.csv").relabel(train.classes)
    idx = np.concatenate([np.flatnonzero(train.labels == c)[:16] for c in (0, 1)])
    return train.subset(idx), test


@pytest.fixture(scope="module")
def minilm():
    return create_text_encoder("minilm")


def test_text_strategies_are_registered():
    assert set(TEXT) == {"finetune", "l2sp", "lp-ft", "bitfit", "lora", "setfit"}
    assert "setfit" not in strategies_for("image")


# l2sp and lp-ft train exactly as finetune does (a penalty, a starting head), bitfit picks
# biases and norms by the same names on text as on images (its image contract runs by
# default), and a fine-tuned encoder is served by default below; setfit's pairs are tested
# by default below: every text contract runs with the slow tests (the 5-minute budget)
SLOW = {"l2sp", "lp-ft", "bitfit", "finetune", "lora", "setfit"}


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in TEXT]
)
def test_text_strategy_contract(name, cr, minilm, cache_dir, tmp_path):
    train, test = cr
    strat = make_strategy(name, FAST.get(name, NO_FLOOR))
    before = {k: v.clone() for k, v in minilm.state_dict().items()}
    ctx = FitContext(cache=FeatureCache(cache_dir), seed=0, progress=False)
    result, logits, _, _ = train_and_score(strat, train, test, minilm, ctx)
    # the caller's pretrained encoder is never modified; the run's own encoder moved
    assert all(torch.equal(before[k], v) for k, v in minilm.state_dict().items())
    tuned = result.model.backbone.state_dict()
    assert not result.backbone_frozen
    assert any(not torch.equal(before[k], tuned[k]) for k in before), name
    assert not any("lora_" in k for k in tuned)  # adapters are merged away
    assert logits.shape == (len(test), 2) and np.isfinite(logits).all()
    # 16 labelled reviews per class; the 100 test reviews are balanced: chance is 0.5
    acc = float((logits.argmax(1) == test.labels).mean())
    assert acc >= 0.65, (name, acc)
    # the saved run folder model predicts what the trained one did
    save_model(result.model, train.classes, tmp_path, strategy=name, backbone_frozen=False)
    loaded, meta = load_model(tmp_path)
    assert meta["modality"] == "text" and not meta["backbone_frozen"]
    relog = logits_for(loaded, test.texts, backbone_frozen=False, cache=ctx.cache, progress=False)
    assert np.allclose(relog, logits, atol=1e-4)


def test_text_defaults_apply_only_to_untouched_hyper_parameters(cr):
    train, _ = cr
    ft = make_strategy("finetune")
    assert ft.for_data(train).lr == 3e-5 and ft.for_data(train).optimizer == "adamw"
    assert ft.lr == 1e-3 and ft.optimizer == "sgd"  # the strategy itself is not changed
    mine = make_strategy("finetune", {"lr": 1e-4, "epochs": 2})
    resolved = mine.for_data(train)
    assert resolved.lr == 1e-4 and resolved.epochs == 2 and resolved.head_lr == 3e-2


def test_lora_trains_only_adapters_and_head(cr, minilm, cache_dir):
    train, test = cr
    ctx = FitContext(cache=FeatureCache(cache_dir), seed=0, progress=False)
    res = make_strategy("lora", {"epochs": 1, "min_steps": 0}).fit(train, minilm, ctx)
    n_body = sum(p.numel() for p in minilm.parameters())
    # r = 8 on 6 layers' query and value (384 x 384): 6 * 2 * 2 * 8 * 384, plus the head
    assert res.info["trainable_params"] == 6 * 2 * 2 * 8 * 384 + 2 * 384 + 2
    assert res.info["trainable_params"] < 0.01 * n_body
    with pytest.raises(ConfigError, match="no layer"):
        make_strategy("lora", {"targets": "nothing_like_this"}).fit(train, minilm, ctx)


def test_contrastive_pairs_are_balanced_correct_and_reproducible():
    labels = np.repeat([0, 1, 2, 3], [1, 5, 20, 74])  # very unequal classes, one singleton
    p = ContrastivePairs(labels, seed=3)
    assert len(p) == 2 * len(labels)
    pairs = [p[k] for k in range(len(p))]
    pos = [(i, j) for i, j, t in pairs if t == 1.0]
    neg = [(i, j) for i, j, t in pairs if t == 0.0]
    assert len(pos) == len(neg) == len(labels)
    assert sorted(i for i, _ in pos) == list(range(len(labels)))  # every example anchors once
    assert all(labels[i] == labels[j] for i, j in pos)
    assert all(i != j for i, j in pos if labels[i] != 0)  # a partner, not itself...
    assert all(i == j for i, j in pos if labels[i] == 0)  # ...unless the class is alone
    assert all(labels[i] != labels[j] for i, j in neg)
    assert [p[k] for k in range(10)] == [ContrastivePairs(labels, seed=3)[k] for k in range(10)]
    p.epoch = 1  # another pass draws other partners
    assert [p[k] for k in range(len(p))] != pairs


def test_contrastive_negatives_are_uniform_over_other_classes():
    labels = np.repeat([0, 1, 2], [50, 100, 850])
    p = ContrastivePairs(labels, seed=0)
    hits = np.zeros(3)
    for e in range(4):
        p.epoch = e
        for k in range(1, 100, 2):  # anchors 0..49 are class 0: negatives from 1 and 2
            hits[labels[p[k][1]]] += 1
    assert hits[0] == 0 and 0.05 < hits[1] / hits.sum() < 0.17  # expected 100 / 950 = 0.105


def test_contrastive_pairs_need_no_quadratic_memory():
    # SetFit lists every pair (O(n^2)): 200,000 examples would be 2e10 pairs.
    labels = np.random.default_rng(0).integers(0, 1000, size=200_000)
    p = ContrastivePairs(labels)
    held = sum(v.nbytes for v in vars(p).values() if isinstance(v, np.ndarray))
    assert len(p) == 400_000 and held < 64 * len(labels)
    i, j, t = p[399_999]
    assert t == 0.0 and labels[i] != labels[j]
    with pytest.raises(DataError, match="two classes"):
        ContrastivePairs(np.zeros(5))


def test_text_fit_predict_evaluate_with_a_trained_encoder(cr_small, cache_dir, tmp_path):
    run = tmp_path / "run"
    r = runner.invoke(
        app,
        ["fit", str(cr_small / "train.csv"), "--test", str(cr_small / "test.csv"), "--shots",
         "8", "--strategy", "lp-ft", "-p", "epochs=2", "-p", "min_steps=0", "--no-baseline", "--out", str(run)],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    m = json.loads((run / "metrics.json").read_text())
    assert m["n_train"] == 16 and m["accuracy"] > 0.6
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["strategy"] == "lp-ft"
    r = runner.invoke(app, ["evaluate", str(run), str(cr_small / "test.csv")])
    assert r.exit_code == 0, r.output
    ev = json.loads((run / "eval-test.csv.json").read_text())
    assert ev["accuracy"] == pytest.approx(m["accuracy"])
    r = runner.invoke(app, ["predict", str(run), "the battery died after a week", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)[0]["class"] in ("0", "1")


def test_text_strategy_errors(cr_small, data_root, tmp_path):
    r = runner.invoke(
        app,
        ["fit", str(cr_small / "train.csv"), "--strategy", "partial", "--out", str(tmp_path / "a")],
    )
    assert r.exit_code != 0 and "setfit" in r.output and "finetune" in r.output
    imgs = data_root / "office31" / "dslr"
    r = runner.invoke(
        app,
        ["fit", str(imgs), "--strategy", "setfit", "--shots", "1", "--out", str(tmp_path / "b")],
    )
    assert r.exit_code != 0 and "sentence encoders only" in r.output


def test_length_grouped_forward_matches_the_padded_batch(cr, minilm):
    """On CPU the encoder runs a batch as length-sorted groups, each cut to its longest
    text: the embeddings and their gradients must be those of the padded batch."""
    train, _ = cr
    texts = [str(t) for t in train.texts[:20]]
    batch = minilm.tokenize(texts)
    lengths = batch["attention_mask"].sum(1)
    assert lengths.max() > 2 * lengths.min()  # padding is there to be saved
    enc = minilm.eval()
    params = [p for n, p in enc.named_parameters() if "position_embeddings" in n or "layer.5." in n]
    out, widths = {}, []
    hook = enc.model.register_forward_pre_hook(
        lambda _, args: widths.append(args[0]["input_ids"].shape[1])
    )
    for group in (enc.length_group, 10**9):
        enc.length_group = group
        try:
            e = enc(batch)
            grads = torch.autograd.grad(e.sum(dim=0).square().sum(), params)
        finally:
            enc.length_group = type(enc).length_group
        out[group] = (e.detach(), grads)
    hook.remove()
    # three groups (8 + 8 + 4 texts), the shortest narrower than the padded batch
    assert len(widths) == 4 and widths[0] < widths[3] == lengths.max()
    (e8, g8), (e_all, g_all) = out.values()
    assert e8.shape == (len(texts), enc.num_features)
    torch.testing.assert_close(e8, e_all, atol=1e-5, rtol=1e-4)
    for a, b in zip(g8, g_all, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-3)
