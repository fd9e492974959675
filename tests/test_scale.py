"""Distributed training (issue 30): one writer, shares of every batch, same run on N
processes. The 2-process runs start real gloo processes through the CLI."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from lowshot import _dist
from lowshot.errors import ConfigError
from lowshot.io import write_json
from lowshot.pipeline.runfolder import RunFolder
from lowshot.pipeline.specs import FitSpec, RankBackbonesSpec

RANK_VARS = ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID", "SLURM_NTASKS",
             "WORLD_SIZE")  # fmt: skip


@pytest.fixture
def clean_env(monkeypatch):
    for k in RANK_VARS:
        monkeypatch.delenv(k, raising=False)
    return monkeypatch


@pytest.mark.parametrize(
    "env, writer",
    [
        ({}, True),
        ({"RANK": "0", "WORLD_SIZE": "2"}, True),
        ({"RANK": "3", "WORLD_SIZE": "4"}, False),  # torchrun
        ({"LOCAL_RANK": "1", "NODE_RANK": "0"}, False),  # Lightning's launcher, second device
        ({"LOCAL_RANK": "0", "NODE_RANK": "1"}, False),  # second node
        ({"SLURM_PROCID": "1", "SLURM_NTASKS": "2"}, False),
        ({"SLURM_PROCID": "0", "SLURM_NTASKS": "2"}, True),
    ],
)
def test_the_writer_is_global_rank_zero(clean_env, env, writer):
    for k, v in env.items():
        clean_env.setenv(k, v)
    assert _dist.is_writer() is writer


def test_other_ranks_write_nothing_and_touch_no_run(clean_env, tmp_path):
    old = tmp_path / "run"
    old.mkdir()
    write_json(old / "config.json", {"lowshot_version": "x"})
    before = sorted(p.name for p in tmp_path.rglob("*"))
    clean_env.setenv("LOCAL_RANK", "1")
    write_json(tmp_path / "elsewhere.json", {"a": 1})  # dropped, nothing left beside it
    rf = RunFolder.open(old, overwrite=True)  # rank 0 checked it; no error, no staging
    with rf.session():
        write_json(rf.file("metrics.json"), {"accuracy": 1})
        assert rf.finish({"accuracy": 1}) == rf.final
        scratch = rf.path
    assert not scratch.exists()  # its private folder is gone, the real run untouched
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    resumed = RunFolder.open(old, resume=True)  # a resume reads the real folder
    assert resumed.path == old and not resumed.writer


def test_log_records_below_warnings_only_from_rank_zero(clean_env, caplog):
    from lowshot._log import log

    clean_env.setenv("RANK", "1")
    with caplog.at_level("INFO", logger="lowshot"):
        log.info("hidden")
        log.warning("shown")
    assert [r.getMessage() for r in caplog.records] == ["shown"]


def test_scale_options_are_checked(tmp_path):
    for kw, opt in (({"devices": 0}, "--devices"), ({"num_nodes": -1}, "--num-nodes"),
                    ({"precision": "fp8"}, "--precision"), ({"parallel": "horovod"}, "--parallel")):  # fmt: skip
        with pytest.raises(ConfigError, match=opt):
            FitSpec(train="x", **kw).validate()
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="fsdp: sharded training needs GPUs"):
            FitSpec(train="x", parallel="fsdp").validate()
    with pytest.raises(ConfigError, match="does not train with Lightning"):
        RankBackbonesSpec(data="x", devices=2).validate()
    spec = FitSpec(train="x", devices=2, precision="bf16-mixed")
    spec.validate()
    assert spec.scale().strategy() == "ddp" and spec.scale().processes == 2
    assert "devices" not in spec.replay_key()  # how a run executes, not what it is


def test_each_process_gets_its_share_of_the_global_batch(monkeypatch):
    from lowshot.multitask.model import TaskBalancedBatches
    from lowshot.training import sampling
    from lowshot.training.loop import _shared

    Y = np.array([[0, np.nan], [1, 0], [0, 1], [1, np.nan], [np.nan, 1], [0, 0]] * 5)
    whole = list(TaskBalancedBatches(Y, 4, seed=3))
    shares = []
    for rank in range(2):
        monkeypatch.setattr(sampling, "process_share", lambda r=rank: (r, 2))
        import lowshot.multitask.model as mm

        monkeypatch.setattr(mm, "process_share", lambda r=rank: (r, 2))
        shares.append(list(TaskBalancedBatches(Y, 4, seed=3)))
    assert [sorted(a + b) for a, b in zip(*shares, strict=True)] == whole
    loader = DataLoader(TensorDataset(torch.arange(10.0)), batch_size=7, drop_last=True)
    assert _shared(loader, 2).batch_size == 4 and _shared(loader, 2).drop_last
    assert _shared(loader, 1).batch_size == 7


def _adapt(data_root: Path, out: Path, devices: int, seed: int) -> float:
    d = data_root / "amazon-reviews"
    cmd = [sys.executable, "-m", "lowshot.cli", "adapt", "--source", str(d / "books_train.svmlight"),
           "--target", str(d / "kitchen_train.svmlight"), "--target-test", str(d / "kitchen_test.svmlight"),
           "-m", "dann", "--preprocess", "log1p-l2", "--epochs", "2", "--iters", "30", "--no-plot",
           "--seed", str(seed), "--devices", str(devices), "--out", str(out)]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in RANK_VARS}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.count("target accuracy") == 1  # one process prints the result
    return float(json.loads((out / "metrics.json").read_text())["target_accuracy"])


@pytest.mark.slow
def test_two_gloo_processes_train_the_same_run(data_root, tmp_path):
    """DANN on Amazon books -> kitchen, 1 and 2 CPU processes, 2 seeds each: the
    2-process accuracy lies within the spread of the seeds (and 2 points)."""
    one = [_adapt(data_root, tmp_path / f"one{s}", 1, s) for s in (0, 1)]
    two = [_adapt(data_root, tmp_path / f"two{s}", 2, s) for s in (0, 1)]
    spread = max(max(one) - min(one), 0.02)
    assert abs(np.mean(two) - np.mean(one)) <= spread, (one, two)
    run = tmp_path / "two0"
    assert json.loads((run / "config.json").read_text())["devices"] == 2
    log = (run / "log.txt").read_text()
    assert log.count("selection score") == 1  # one process wrote the log
    assert not list(tmp_path.glob(".*"))  # no staging or scratch folder left behind


# --- embedding and prediction at scale ------------------------------------------------


def _embed(data, out, **kw):
    from lowshot import api

    return api.embed([str(d) for d in data], out=out, progress=False, **kw)


def test_embed_streams_the_cache_features_chunk_by_chunk(mini, cache_dir, tmp_path):
    from lowshot.backbones import create_backbone
    from lowshot.cache import default_cache

    r = _embed([mini["train"], mini["test"]], tmp_path / "e", chunk=10)
    run = tmp_path / "e"
    names = (run / "items.txt").read_text().split("\n")
    assert len(names) == 48 and r["n"] == 48 and r["chunks"] == 5 and r["dim"] == 1280
    X = np.load(run / "features.npy", mmap_mode="r")
    ref = default_cache().features(create_backbone("lite0"), [Path(n) for n in names])
    np.testing.assert_allclose(X, ref, atol=1e-4)  # the same features fit and adapt use
    assert sorted(int(c) for c in (run / "done-0.txt").read_text().split()) == [0, 1, 2, 3, 4]
    assert r["peak_rss_mb"] > 0 and r["items_per_s"] > 0 and r["processes"] == 1


def test_embed_resumes_after_an_interrupt_and_refuses_other_items(mini, cache_dir, tmp_path,
                                                                  monkeypatch):  # fmt: skip
    from lowshot.pipeline import embed as em

    real, calls = em._features, []

    def flaky(bb, modality, items, *a, **k):
        calls.append(len(items))
        if len(calls) == 3:
            raise KeyboardInterrupt  # Ctrl-C during the third chunk
        return real(bb, modality, items, *a, **k)

    monkeypatch.setattr(em, "_features", flaky)
    with pytest.raises(KeyboardInterrupt):
        _embed([mini["train"]], tmp_path / "e", chunk=10)
    assert (tmp_path / "e" / "done-0.txt").read_text().split() == ["0", "1"]
    calls.clear()
    monkeypatch.setattr(em, "_features", real)
    counted = []
    monkeypatch.setattr(em, "_features", lambda *a, **k: counted.append(1) or real(*a, **k))
    r = _embed([mini["train"]], tmp_path / "e", chunk=10, resume=True)
    assert len(counted) == 1 and r["chunks_resumed"] == 2  # only the unfinished chunk
    fresh = _embed([mini["train"]], tmp_path / "fresh", chunk=10)
    np.testing.assert_allclose(np.load(tmp_path / "e" / "features.npy"),
                               np.load(tmp_path / "fresh" / "features.npy"), atol=1e-5)  # fmt: skip
    assert fresh["n"] == r["n"] == 24
    from lowshot.errors import RunError

    with pytest.raises(RunError, match="other items"):
        _embed([mini["test"]], tmp_path / "e", chunk=10, resume=True)


def test_embed_refuses_arrays_and_mixed_inputs(mini, cr_small, tmp_path):
    from lowshot.errors import DataError

    np.save(tmp_path / "X.npy", np.zeros((3, 4), dtype=np.float32))
    with pytest.raises(DataError, match="already a feature array"):
        _embed([tmp_path / "X.npy"], tmp_path / "e")
    lines = tmp_path / "texts.txt"
    lines.write_text("a fine phone\nthe battery died\n")
    with pytest.raises(DataError, match="mix images and texts"):
        _embed([mini["train"], lines], tmp_path / "e2")


@pytest.fixture(scope="module")
def probe_run(mini, cache_dir, tmp_path_factory):
    from lowshot import api

    out = tmp_path_factory.mktemp("probe") / "run"
    api.fit(str(mini["train"]), test=str(mini["test"]), out=out, baseline="none", progress=False)
    return out


def test_predict_to_file_matches_predict_and_resumes(probe_run, mini, tmp_path):
    from lowshot.api import predict, predict_to_file

    ref = predict(probe_run, [mini["test"]], top_k=2, progress=False)
    out = tmp_path / "p.csv"
    r = predict_to_file(probe_run, [mini["test"]], out, top_k=2, chunk=5, progress=False)
    rows = list(csv.reader(io.StringIO(out.read_text())))
    assert r["items"] == 24 and rows[0] == ["item", "class", "probability", "top"]
    assert [(x[0], x[1]) for x in rows[1:]] == [(p["file"], p["class"]) for p in ref]
    text = out.read_text()
    lines = text.splitlines(keepends=True)
    out.write_text("".join(lines[:8]) + lines[8][:15])  # 7 rows and half a row, as after a crash
    with pytest.raises(ConfigError, match="--resume continues it"):
        predict_to_file(probe_run, [mini["test"]], out, chunk=5, progress=False)
    r2 = predict_to_file(probe_run, [mini["test"]], out, top_k=2, chunk=5, resume=True,
                         progress=False)  # fmt: skip
    assert r2["resumed_after"] == 7 and out.read_text() == text
    from lowshot.errors import RunError

    with pytest.raises(RunError, match="other items"):
        predict_to_file(probe_run, [mini["train"]], out, chunk=5, resume=True, progress=False)


@pytest.mark.slow
def test_embed_with_two_processes_writes_the_same_features(mini, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in RANK_VARS}
    outs = []
    for devices in (1, 2):
        out = tmp_path / f"e{devices}"
        r = subprocess.run([sys.executable, "-m", "lowshot.cli", "embed", str(mini["train"]),
                            str(mini["test"]), "--chunk", "7", "--devices", str(devices), "--out",
                            str(out), "-q"], capture_output=True, text=True, env=env, timeout=600)  # fmt: skip
        assert r.returncode == 0, r.stderr[-2000:]
        outs.append(out)
    np.testing.assert_allclose(np.load(outs[0] / "features.npy"),
                               np.load(outs[1] / "features.npy"), atol=1e-4)  # fmt: skip
    done = [sorted(int(c) for c in f.read_text().split()) for f in sorted(outs[1].glob("done-*.txt"))]
    assert len(done) == 2 and sorted(done[0] + done[1]) == list(range(7))  # split, none twice
    assert json.loads((outs[1] / "metrics.json").read_text())["processes"] == 2


def test_global_batchnorm_equals_one_process_batchnorm(tmp_path):
    """Two gloo processes with half a batch each: outputs, input gradients, the summed
    weight gradients and the running statistics equal BatchNorm on the whole batch."""
    import torch.multiprocessing as mp

    X = torch.randn(10, 4, generator=torch.Generator().manual_seed(1))
    from _bn_worker import bn_worker  # a light module: each spawned process imports it

    mp.spawn(bn_worker, args=(f"file://{tmp_path}/init", X, str(tmp_path / "r")), nprocs=2)
    r = [torch.load(tmp_path / f"r-{k}.pt") for k in range(2)]
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    x = X.clone().requires_grad_(True)
    y = net(x)
    (y.tanh() * torch.arange(1.0, 4.0)).sum().backward()
    for k in range(2):
        torch.testing.assert_close(r[k]["y"], y[k::2].detach(), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(r[k]["gx"], x.grad[k::2], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(r[k]["rm"], net[1].running_mean, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(r[k]["rv"], net[1].running_var, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(r[0]["gw"] + r[1]["gw"], net[0].weight.grad, atol=1e-5, rtol=1e-5)
