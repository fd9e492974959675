"""What lowshot promises when things go wrong (docs/reliability.md), each promise tested."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lowshot.api import fit
from lowshot.cache import FeatureCache
from lowshot.data.torchdata import open_rgb
from lowshot.errors import RunError

# --- images decode the same, and right, everywhere ---------------------------------------


def test_a_16_bit_png_keeps_its_grey_levels(tmp_path):
    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (8, 1))
    Image.fromarray(ramp).save(tmp_path / "ramp16.png")  # a 16-bit greyscale PNG
    px = np.asarray(open_rgb(tmp_path / "ramp16.png"))[..., 0].astype(int)
    assert px[0, 0] == 0 and px[0, -1] == 255  # once: every pixel came out 255 (white)
    assert np.all(np.diff(px[0]) >= 0) and len(np.unique(px)) > 50


def test_a_float_image_in_0_1_is_scaled_not_clipped(tmp_path):
    a = np.tile(np.linspace(0, 1, 32, dtype=np.float32), (4, 1))
    Image.fromarray(a, mode="F").save(tmp_path / "f.tiff")
    px = np.asarray(open_rgb(tmp_path / "f.tiff"))[..., 0].astype(int)
    assert px[0, 0] == 0 and px[0, -1] == 255 and 120 < px[0, 16] < 136


def test_the_exif_orientation_is_applied(tmp_path):
    a = np.zeros((20, 40, 3), dtype=np.uint8)
    a[:, :10] = 255  # a white band on the left of a landscape picture
    im = Image.fromarray(a)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display", as phones write it
    im.save(tmp_path / "tagged.jpg", exif=exif, quality=95)
    shown = open_rgb(tmp_path / "tagged.jpg")
    assert shown.size == (20, 40)  # portrait, as the camera meant
    top = np.asarray(shown)[:10].mean()
    assert top > 200  # the band is now along the top


# --- the feature cache survives damage --------------------------------------------------


def test_a_damaged_cache_chunk_is_reported_once_and_recomputed(mini, tmp_path, caplog):
    from lowshot.backbones import create_backbone

    bb = create_backbone("lite0")
    files = sorted(Path(mini["train"]).rglob("*.jpg"))[:3]
    X = FeatureCache(tmp_path).features(bb, files, progress=False)
    chunk = next(tmp_path.rglob("chunk-*.npz"))
    chunk.write_bytes(chunk.read_bytes()[:100])  # truncated, as a crash or a full disk leaves it
    with caplog.at_level(logging.WARNING, logger="lowshot"):
        Y = FeatureCache(tmp_path).features(bb, files, progress=False)
        Z = FeatureCache(tmp_path).features(bb, files, progress=False)
    assert np.allclose(X, Y, atol=1e-5) and np.allclose(X, Z, atol=1e-5)
    assert caplog.text.count("is damaged") == 1  # said once: the chunk is set aside
    assert (chunk.parent / f"damaged-{chunk.name}").is_file()


# --- no silent train/test leakage -------------------------------------------------------


def test_training_items_in_the_test_set_are_counted_and_reported(mini, cache_dir, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="lowshot"):
        m = fit(mini["train"], test=mini["train"], baseline=False, progress=False)
    n = m["n_train"]
    assert m["train_test_overlap"] == {"same_file": n, "same_content": n}
    assert "also training items" in caplog.text
    clean = fit(mini["train"], test=mini["test"], baseline=False, progress=False)
    assert clean["train_test_overlap"] == {"same_file": 0, "same_content": 0}


def test_a_file_list_that_repeats_a_line_uses_the_image_once(mini, tmp_path, caplog):
    from lowshot.data.images import load_file_list

    files = sorted(Path(mini["train"]).rglob("*.jpg"))[:4]
    lines = [f"{f} {f.parent.name}" for f in files]
    (tmp_path / "l.lst").write_text("\n".join(lines + lines[:2]) + "\n")
    with caplog.at_level(logging.WARNING, logger="lowshot"):
        s = load_file_list(tmp_path / "l.lst")
    assert len(s) == 4 and "2 repeated line(s) dropped (lines 5, 6)" in caplog.text


# --- nothing lowshot reads is unpickled ---------------------------------------------------


class _Payload:
    def __reduce__(self):
        return (os.makedirs, (str(Path(os.environ["LOWSHOT_PWNED"])),))


def test_a_checkpoint_that_needs_unpickling_is_refused(tmp_path, monkeypatch):
    from lowshot.training.loop import AtomicCheckpointIO

    marker = tmp_path / "code-ran"
    monkeypatch.setenv("LOWSHOT_PWNED", str(marker))
    torch.save({"state_dict": {}, "payload": _Payload()}, tmp_path / "last.ckpt")
    with pytest.raises(RunError, match="does not unpickle"):
        AtomicCheckpointIO().load_checkpoint(tmp_path / "last.ckpt")
    assert not marker.exists()


# --- Ctrl-C and SIGTERM: a clear exit, a resumable folder, the same result ----------------

CHILD = """
import signal, sys, time
# as from a terminal: a shell that starts the test suite in the background (`cmd &`) starts
# it with SIGINT ignored, and Python keeps an ignored SIGINT ignored in its children
signal.signal(signal.SIGINT, signal.default_int_handler)
import lowshot.training.loop as loop
orig = loop.TransferModule.on_train_epoch_start
def slow(self):  # epochs long enough to be interrupted in
    time.sleep(1.5)
    orig(self)
loop.TransferModule.on_train_epoch_start = slow
from lowshot.cli import main
sys.argv = ["lowshot", *sys.argv[1:]]
main()
"""
DEEP = {
    "strategy": "finetune",
    "params": {"epochs": 3, "min_steps": 0, "batch_size": 8},  # 3 batches an epoch
    "baseline": False,
}


@pytest.fixture(scope="module")
def uninterrupted(mini, tmp_path_factory, cache_dir):
    out = tmp_path_factory.mktemp("ref") / "run"
    m = fit(mini["train"], test=mini["test"], out=out, progress=False, **DEEP)
    return m, out


@pytest.mark.parametrize(
    "signum, code, said",
    [
        (signal.SIGINT, 130, "interrupted"),
        # the same path but the handler (./run test-all runs it)
        pytest.param(signal.SIGTERM, 143, "terminated", marks=pytest.mark.slow),
    ],
)
def test_an_interrupted_fit_exits_clearly_and_resumes_to_the_same_result(
    signum, code, said, mini, tmp_path, cache_dir, uninterrupted
):
    out = tmp_path / "run"
    argv = ["fit", str(mini["train"]), "--test", str(mini["test"]), "-s", "finetune", "-p",
            "epochs=3", "-p", "min_steps=0", "-p", "batch_size=8", "--no-baseline", "-q", "--out",
            str(out)]  # fmt: skip
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, *argv], stderr=subprocess.PIPE, text=True
    )
    ckpt = out / "checkpoints" / "last.ckpt"
    deadline = time.time() + 180
    while not ckpt.is_file() and child.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    child.send_signal(signum)  # during epoch 2 (each sleeps 1.5 s first)
    err = child.communicate(timeout=120)[1]
    assert child.returncode == code, err
    assert said in err and "Traceback" not in err and "--resume" in err
    assert ckpt.is_file() and not (out / "metrics.json").exists()

    m = fit(mini["train"], test=mini["test"], out=out, resume=True, progress=False, **DEEP)
    ref, ref_out = uninterrupted
    assert m["accuracy"] == ref["accuracy"]
    losses = [h["train_loss"] for h in m["history"]]
    assert losses == pytest.approx([h["train_loss"] for h in ref["history"]], rel=1e-5)
    epochs = [int(r.split(",")[0]) for r in _csv_epochs(out)]
    assert epochs == [int(r.split(",")[0]) for r in _csv_epochs(ref_out)]  # the whole history
    assert json.loads((out / "metrics.json").read_text())["accuracy"] == m["accuracy"]


def _csv_epochs(run: Path) -> list[str]:
    import csv

    with open(run / "logs" / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return sorted({f"{r['epoch']}," for r in rows if r.get("epoch")})


def test_a_features_csv_with_the_label_first_uses_the_label(tmp_path):
    from lowshot.data.arrays import load_csv

    rows = ["label,f1,f2"] + [f"{'ab'[i % 2]},{i}.0,{i * 2}.5" for i in range(6)]
    (tmp_path / "first.csv").write_text("\n".join(rows) + "\n")
    s = load_csv(tmp_path / "first.csv")
    assert s.classes == ["a", "b"] and s.X.shape == (6, 2)  # once: f2 was taken as the label
    (tmp_path / "last.csv").write_text("f1,f2,kind\n1,2,x\n3,4,y\n")
    assert load_csv(tmp_path / "last.csv").classes == ["x", "y"]  # no label name: the last
