"""The bad-input corpus: what a new user gets wrong, each case through the real CLI.

Every case builds its inputs in a fresh folder, runs one ``lowshot`` command and
asserts the exit status, that the one-line message names the file / line / option,
that no traceback reaches the user, and that nothing outside the run folder changed.
The cases fail before any backbone runs, so the corpus stays fast.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from lowshot.cli import app

runner = CliRunner()


@dataclass
class Case:
    id: str
    make: Callable[[Path], list[str]]  # builds inputs under the folder; returns the argv
    needle: str  # the message must contain this (whitespace-normalised)
    code: int = 2


def img(path: Path, size: tuple[int, int] = (24, 24), mode: str = "RGB", seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(a).convert(mode).save(path)
    return path


def classes(root: Path, names: tuple[str, ...] = ("cat", "dog"), n: int = 3) -> Path:
    for c in names:
        for i in range(n):
            img(root / c / f"{c}{i}.png", seed=hash((c, i)) % 1000)
    return root


def fit(*args: str) -> list[str]:
    return ["fit", *args, "--no-baseline", "-q"]


def good_train(t: Path) -> Path:
    return classes(t / "train")


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    return path


def arrays(t: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    s = np.c_[rng.normal(size=(20, 4)), np.arange(20) % 2]
    tt = np.c_[rng.normal(size=(20, 4)), np.arange(20) % 2]
    np.save(t / "s.npy", s)
    np.save(t / "t.npy", tt)
    return t / "s.npy", t / "t.npy"


def adapt(source: Path | str, target: Path | str, *extra: str, out: str = "out") -> list[str]:
    return ["adapt", "--source", str(source), "--target", str(target), "--method", "coral-linear",
            "--out", out, *extra]  # fmt: skip


def dann(t: Path, *extra: str) -> list[str]:
    """Deep adaptation (DANN, an MLP on arrays) between two small array files."""
    s, tt = arrays(t)
    return ["adapt", "--source", str(s), "--target", str(tt), "--method", "dann", "--out", "out",
            *extra]  # fmt: skip


def corrupt_zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("X.npy", b"not really")
    return path


CASES = [
    # --- images ---------------------------------------------------------------------
    Case(
        "truncated-jpeg",
        lambda t: (
            classes(t / "d"),
            write(t / "d/cat/bad.jpg", b"\xff\xd8\xff\xe0garbage"),
            fit(str(t / "d"), "--strict"),
        )[-1],
        "bad.jpg",
    ),  # fmt: skip
    Case(
        "empty-image-file",
        lambda t: (
            classes(t / "d"),
            write(t / "d/dog/zero.png", b""),
            fit(str(t / "d"), "--strict"),
        )[-1],
        "zero.png",
    ),  # fmt: skip
    Case(
        "text-named-png",
        lambda t: (
            classes(t / "d"),
            write(t / "d/dog/notes.png", "hello"),
            fit(str(t / "d"), "--strict"),
        )[-1],
        "notes.png",
    ),  # fmt: skip
    Case(
        "one-pixel-image",
        lambda t: (
            classes(t / "d"),
            img(t / "d/cat/dot.png", (1, 1)),
            fit(str(t / "d"), "--strict"),
        )[-1],
        "1x1",
    ),  # fmt: skip
    Case(
        "decompression-bomb",
        lambda t: ["--max-image-pixels", "100", *fit(str(classes(t / "d")), "--strict")],
        "--max-image-pixels",
    ),  # fmt: skip
    Case(
        "max-image-pixels-zero",
        lambda t: ["--max-image-pixels", "0", *fit(str(t))],
        "--max-image-pixels",
    ),
    # --- folders --------------------------------------------------------------------
    Case("train-missing", lambda t: fit(str(t / "nowhere")), "nowhere"),
    Case(
        "train-empty-folder", lambda t: ((t / "empty").mkdir(), fit(str(t / "empty")))[-1], "empty"
    ),
    Case("one-class", lambda t: fit(str(classes(t / "d", ("cat",))), "--shots", "1"), "cat"),
    Case(
        "classes-one-level-too-deep",
        lambda t: fit(str(classes(t / "d" / "all"))[:-4]),
        "one folder too deep",
    ),  # fmt: skip
    Case("train-is-one-image", lambda t: fit(str(img(t / "a.png"))), "single image"),
    Case(
        "test-class-unknown",
        lambda t: fit(str(good_train(t)), "--test", str(classes(t / "test", ("cat", "cow")))),
        "cow",
    ),  # fmt: skip
    Case("test-missing", lambda t: fit(str(good_train(t)), "--test", str(t / "gone")), "gone"),
    Case(
        "target-empty",
        lambda t: (
            (t / "tg").mkdir(),
            fit(str(good_train(t)), "--target", str(t / "tg"), "--instance-weights", "kmm"),
        )[-1],
        "tg",
    ),  # fmt: skip
    Case("named-set-unknown", lambda t: fit("office31:nosuchdomain"), "nosuchdomain"),
    # --- file lists -----------------------------------------------------------------
    Case("list-missing-image", lambda t: fit(str(write(t / "l.txt", "gone.png cat\n"))), "l.txt:1"),
    Case(
        "list-line-without-label",
        lambda t: (img(t / "a.png"), fit(str(write(t / "l.txt", "a.png\n"))))[-1],
        "l.txt:1",
    ),  # fmt: skip
    Case("list-empty", lambda t: fit(str(write(t / "l.lst", "# nothing\n"))), "no entries"),
    Case(
        "list-one-image-two-labels",
        lambda t: (
            img(t / "a.png"),
            img(t / "b.png"),
            fit(str(write(t / "l.txt", "a.png cat\nb.png dog\na.png dog\n"))),
        )[-1],
        "l.txt:3",
    ),  # fmt: skip
    Case(
        "list-not-utf8",
        lambda t: (
            img(t / "a.png"),
            fit(str(write(t / "l.lst", b"a.png caf\xe9\n\xff\xfe.png dog\n"))),
        )[-1],
        "l.lst",
    ),  # fmt: skip
    # --- feature arrays (lowshot adapt) -------------------------------------------------
    Case(
        "npy-empty",
        lambda t: (np.save(t / "e.npy", np.zeros((0, 5))), adapt(arrays(t)[0], t / "e.npy"))[-1],
        "e.npy",
    ),  # fmt: skip
    Case(
        "npy-1d",
        lambda t: (np.save(t / "v.npy", np.arange(5.0)), adapt(arrays(t)[0], t / "v.npy"))[-1],
        "v.npy",
    ),  # fmt: skip
    Case("npy-not-numpy", lambda t: adapt(arrays(t)[0], write(t / "x.npy", "hello")), "x.npy"),
    Case(
        "npy-pickled-objects",
        lambda t: (
            np.save(t / "o.npy", np.array([{"a": 1}], dtype=object)),
            adapt(arrays(t)[0], t / "o.npy"),
        )[-1],
        "o.npy",
    ),  # fmt: skip
    Case(
        "npz-missing-key",
        lambda t: (np.savez(t / "k.npz", A=np.ones((4, 2))), adapt(arrays(t)[0], t / "k.npz"))[-1],
        "k.npz",
    ),  # fmt: skip
    Case("npz-corrupt", lambda t: adapt(arrays(t)[0], corrupt_zip(t / "c.npz")), "c.npz"),
    Case(
        "mat-not-matlab", lambda t: adapt(arrays(t)[0], write(t / "m.mat", "MATLAB? no")), "m.mat"
    ),
    Case(
        "npz-named-keys-missing",
        lambda t: (
            np.savez(t / "k2.npz", A=np.ones((4, 2))),
            adapt(arrays(t)[0], f"{t / 'k2.npz'}:Xs,Ys"),
        )[-1],
        "Xs",
    ),  # fmt: skip
    Case(
        "npy-with-named-keys",
        lambda t: adapt(arrays(t)[0], f"{arrays(t)[1]}:Xs,Ys"),
        "names the variables",
    ),
    Case(
        "csv-not-numbers",
        lambda t: adapt(arrays(t)[0], write(t / "c.csv", "a,b,label\nx,1,0\ny,2,1\n")),
        "c.csv",
    ),  # fmt: skip
    Case(
        "csv-ragged-rows",
        lambda t: adapt(arrays(t)[0], write(t / "r.csv", "a,b,label\n1,2,0\n3\n")),
        "r.csv:3",
    ),  # fmt: skip
    Case(
        "csv-header-only", lambda t: adapt(arrays(t)[0], write(t / "h.csv", "a,b,label\n")), "h.csv"
    ),
    Case(
        "svmlight-malformed",
        lambda t: adapt(write(t / "s.svmlight", "1 3:x\n0 1:2\n"), arrays(t)[1]),
        "s.svmlight",
    ),  # fmt: skip
    Case(
        "arrays-width-differs",
        lambda t: (np.save(t / "w.npy", np.ones((6, 8))), adapt(arrays(t)[0], t / "w.npy"))[-1],
        "w.npy",
    ),  # fmt: skip
    Case(
        "arrays-nan",
        lambda t: (
            np.save(t / "n.npy", np.c_[np.full((6, 4), np.nan), np.zeros(6)]),
            adapt(arrays(t)[0], t / "n.npy"),
        )[-1],
        "n.npy",
    ),  # fmt: skip
    Case(
        "arrays-unknown-suffix",
        lambda t: adapt(arrays(t)[0], write(t / "d.parquet", "x")),
        "d.parquet",
    ),
    Case("arrays-and-images-mixed", lambda t: adapt(arrays(t)[0], good_train(t)), "mix"),
    # --- text -----------------------------------------------------------------------
    Case("text-one-label", lambda t: fit(str(write(t / "one.txt", "1 good\n1 fine\n"))), "one.txt"),
    Case("text-empty", lambda t: fit(str(write(t / "e.txt", "\n\n"))), "e.txt"),
    Case(
        "jsonl-bad-line",
        lambda t: fit(str(write(t / "j.jsonl", '{"text": "a", "label": 1}\n{oops\n'))),
        "j.jsonl:2",
    ),  # fmt: skip
    Case(
        "jsonl-not-object",
        lambda t: fit(str(write(t / "j.jsonl", '{"text": "a", "label": 1}\n[1, 2]\n'))),
        "j.jsonl:2",
    ),  # fmt: skip
    Case(
        "jsonl-missing-field",
        lambda t: fit(str(write(t / "j.jsonl", '{"txt": "a", "label": 1}\n'))),
        "text",
    ),  # fmt: skip
    Case(
        "csv-text-missing-column",
        lambda t: fit(str(write(t / "t.csv", "sentence,label\nhi,1\nbye,0\n"))),
        "t.csv",
    ),  # fmt: skip
    Case(
        "tsv-ragged",
        lambda t: fit(str(write(t / "t.tsv", "text\tlabel\nhi\t1\tx\tz\nbye\n"))),
        "t.tsv",
    ),
    Case("text-is-binary", lambda t: fit(str(write(t / "b.txt", bytes(range(256)) * 4))), "b.txt"),
    # --- options --------------------------------------------------------------------
    Case("seed-negative", lambda t: fit(str(good_train(t)), "--seed", "-1"), "--seed"),
    Case("shots-zero", lambda t: fit(str(good_train(t)), "--shots", "0"), "--shots"),
    Case(
        "param-not-a-number",
        lambda t: fit(str(good_train(t)), "-s", "finetune", "-p", "epochs=abc"),
        "epochs",
    ),  # fmt: skip
    Case("param-without-equals", lambda t: fit(str(good_train(t)), "-p", "epochs"), "-p"),
    Case("param-unknown", lambda t: fit(str(good_train(t)), "-p", "depth=3"), "depth"),
    Case(
        "val-fraction-out-of-range",
        lambda t: fit(str(good_train(t)), "--val-fraction", "2"),
        "--val-fraction",
    ),  # fmt: skip
    Case(
        "test-fraction-zero",
        lambda t: fit(str(good_train(t)), "--test-fraction", "0"),
        "No such option",
    ),
    Case("strategy-unknown", lambda t: fit(str(good_train(t)), "-s", "finetuned"), "finetune"),
    Case("backbone-unknown", lambda t: fit(str(good_train(t)), "-b", "resnet9000"), "resnet9000"),
    Case(
        "backbone-text-for-images", lambda t: fit(str(good_train(t)), "-b", "minilm"), "--backbone"
    ),
    Case("device-unknown", lambda t: fit(str(good_train(t)), "--device", "gpu"), "--device"),
    Case(
        "weights-missing",
        lambda t: fit(str(good_train(t)), "--weights", str(t / "w.pt")),
        "--weights",
    ),
    Case(
        "instance-weights-without-target",
        lambda t: fit(str(good_train(t)), "--instance-weights", "kmm"),
        "--target",
    ),  # fmt: skip
    Case(
        "instance-weights-not-a-reweighter",
        lambda t: fit(
            str(good_train(t)),
            "--target",
            str(classes(t / "tg")),
            "--instance-weights",
            "tradaboost",
        ),
        "--instance-weights",
    ),  # fmt: skip
    Case(
        "resume-and-overwrite",
        lambda t: fit(str(good_train(t)), "--resume", "--overwrite"),
        "--resume",
    ),
    Case("config-missing", lambda t: ["fit", "--config", str(t / "c.json")], "c.json"),
    Case(
        "config-not-json",
        lambda t: ["fit", "--config", str(write(t / "c.json", "{strategy"))],
        "c.json",
    ),
    Case(
        "config-unknown-setting",
        lambda t: [
            "fit",
            "--config",
            str(write(t / "c.json", json.dumps({"train": "x", "colour": "red"}))),
        ],
        "colour",
    ),  # fmt: skip
    Case("fit-without-train", lambda t: ["fit"], "TRAIN"),
    Case("adapt-mode-unknown", lambda t: adapt(*arrays(t), "--mode", "half"), "--mode"),
    Case(
        "adapt-trade-off-words", lambda t: adapt(*arrays(t), "--trade-off", "lots"), "--trade-off"
    ),
    Case(
        "adapt-method-unknown", lambda t: [*adapt(*arrays(t))[:-3], "dannn", "--out", "o"], "dann"
    ),
    Case(
        "adapt-trade-offs-without-select",
        lambda t: adapt(*arrays(t), "--trade-off", "0.1,1"),
        "--select",
    ),
    Case(
        "rank-layers-words",
        lambda t: ["rank", "backbones", "--data", str(good_train(t)), "--layers", "x"],
        "--layers",
    ),  # fmt: skip
    Case(
        "rank-candidates-empty",
        lambda t: ["rank", "backbones", "--data", str(good_train(t)), "--candidates", ","],
        "--candidates",
    ),  # fmt: skip
    Case(
        "fewshot-shots-words",
        lambda t: ["fewshot", "eval", "--data", str(good_train(t)), "--shots", "a"],
        "--shots",
    ),  # fmt: skip
    Case(
        "meta-train-one-way",
        lambda t: ["meta-train", "--data", str(good_train(t)), "--ways", "1", "--out", "m"],
        "--ways",
    ),  # fmt: skip
    Case("multitask-no-tasks", lambda t: ["multitask", "--out", "m"], "--task"),
    Case("multitask-task-format", lambda t: ["multitask", "--task", "nonsense"], "--task"),
    Case(
        "reweight-not-a-reweighter",
        lambda t: [
            "reweight",
            "--source",
            str(arrays(t)[0]),
            "--target",
            str(arrays(t)[1]),
            "--method",
            "coral-linear",
            "--out",
            "w.npy",
        ],
        "--method",
    ),  # fmt: skip
    # --- outputs and run folders ------------------------------------------------------
    Case(
        "out-is-a-file",
        lambda t: fit(str(good_train(t)), "--out", str(write(t / "f", "x"))),
        "--out",
    ),
    Case(
        "out-under-a-file",
        lambda t: fit(str(good_train(t)), "--out", str(write(t / "f", "x") / "run")),
        "--out",
    ),  # fmt: skip
    Case(
        "overwrite-foreign-folder",
        lambda t: (
            write(t / "mine" / "notes.txt", "keep"),
            fit(str(good_train(t)), "--out", str(t / "mine"), "--overwrite"),
        )[-1],
        "not a lowshot run",
    ),  # fmt: skip
    Case(
        "out-exists",
        lambda t: (
            write(t / "old" / "config.json", '{"lowshot_version": "0"}'),
            fit(str(good_train(t)), "--out", str(t / "old")),
        )[-1],
        "--resume",
    ),  # fmt: skip
    Case(
        "evaluate-not-a-run",
        lambda t: ["evaluate", str(good_train(t)), str(good_train(t))],
        "no trained model",
    ),
    Case(
        "predict-missing-file",
        lambda t: ["predict", str(run_folder(t)), str(t / "gone.jpg")],
        "gone.jpg",
    ),
    Case(
        "predict-not-an-image",
        lambda t: ["predict", str(run_folder(t)), str(write(t / "x.jpg", "no"))],
        "x.jpg",
    ),  # fmt: skip
    Case(
        "model-json-damaged",
        lambda t: ["predict", str(run_folder(t, damage="model.json")), str(img(t / "q.png"))],
        "model.json",
    ),  # fmt: skip
    Case(
        "model-weights-damaged",
        lambda t: [
            "predict",
            str(run_folder(t, damage="model.safetensors")),
            str(img(t / "q.png")),
        ],
        "model.safetensors",
    ),  # fmt: skip
    Case("rerun-without-config", lambda t: ["rerun", str(good_train(t))], "config.json"),
    Case(
        "resume-changed-settings",
        lambda t: fit(str(good_train(t)), "--out", str(run_folder(t)), "--resume", "--seed", "5"),
        "different settings",
    ),  # fmt: skip
    # --- adapt hyper-parameters, selection, export (checked before any data is read) ----
    Case("adapt-option-given-as-param", lambda t: dann(t, "-p", "epochs=2"), "give it as --epochs"),
    Case(
        "adapt-unknown-deep-param",
        lambda t: dann(t, "-p", "trade=2"),
        "method dann has no hyper-parameter 'trade'",
    ),
    Case(
        "select-budget-above-pool",
        lambda t: ["select", arrays(t)[0], "--budget", "50", "--out", "o/next.txt"],
        "the pool holds only 20",
    ),  # fmt: skip
    Case(
        "select-uncertainty-cold",
        lambda t: [
            "select",
            arrays(t)[0],
            "--budget",
            "2",
            "--strategy",
            "margin",
            "--out",
            "o/n.txt",
        ],
        "needs labelled examples first",
    ),  # fmt: skip
    Case(
        "export-not-a-run",
        lambda t: ["export", str(classes(t / "d"))],
        "has no trained model",
    ),  # fmt: skip
    Case(
        "predict-onnx-not-exported",
        lambda t: ["predict", str(run_folder(t)), str(t / "run"), "--engine", "onnx"],
        "create it with `lowshot export RUN`",
    ),  # fmt: skip
    # --- auto, unlabelled pools, reports -------------------------------------------------
    Case("auto-budget-in-words",
         lambda t: ["auto", str(good_train(t)), "--budget", "soon", "--out", str(t / "out")], "--budget"),
    Case("auto-scratch-as-candidate",
         lambda t: ["auto", str(good_train(t)), "-s", "scratch", "--out", str(t / "out")], "--baseline"),
    Case("auto-text-strategy-on-images",
         lambda t: ["auto", str(good_train(t)), "-s", "setfit", "--out", str(t / "out")], "cannot train image"),
    Case("auto-self-training-without-pool",
         lambda t: ["auto", str(good_train(t)), "-s", "self-training", "--out", str(t / "out")], "--unlabelled"),
    Case("fit-pool-for-a-strategy-without-one",
         lambda t: fit(str(good_train(t)), "--unlabelled", str(classes(t / "pool")), "--out", str(t / "out")),
         "does not use unlabelled"),
    Case("fit-text-pool-for-images",
         lambda t: fit(str(good_train(t)), "-s", "self-training", "--unlabelled",
                       str(write(t / "pool.txt", "one review\nanother review\n")), "--out", str(t / "out")),
         "text items"),
    Case("fit-label-spreading-without-pool",
         lambda t: fit(str(good_train(t)), "-s", "label-spreading", "--out", str(t / "out")), "--unlabelled"),
    Case("auto-label-spreading-candidate",
         lambda t: ["auto", str(good_train(t)), "-s", "label-spreading", "--unlabelled", str(classes(t / "pool")),
                    "--out", str(t / "out")], "auto searches self-training"),
    Case("adapt-from-a-missing-run",
         lambda t: ["adapt", "--from", str(t / "no-run"), "-t", str(classes(t / "tgt")), "--out", str(t / "out")],
         "no such run folder"),
    Case("auto-source-without-target",
         lambda t: ["auto", "--source", str(arrays(t)[0]), "--out", str(t / "out")], "--unlabelled"),
    Case("auto-source-with-labelled-train",
         lambda t: ["auto", str(good_train(t)), "--source", str(classes(t / "src")), "--unlabelled",
                    str(classes(t / "tgt")), "--out", str(t / "out")], "--target-shots"),
    Case("auto-source-unknown-method",
         lambda t: ["auto", "--source", str(arrays(t)[0]), "--unlabelled", str(arrays(t)[1]), "-m", "dan,shot",
                    "--out", str(t / "out")], "shot is not a deep adaptation method"),
    Case("auto-method-without-source",
         lambda t: ["auto", str(good_train(t)), "-m", "dann", "--out", str(t / "out")], "give --source"),
    Case("auto-source-backbone-for-arrays",
         lambda t: ["auto", "--source", str(arrays(t)[0]), "--unlabelled", str(arrays(t)[1]), "-b", "lite2",
                    "--out", str(t / "out")], "feature arrays"),
    Case("auto-source-shots",
         lambda t: ["auto", "--source", str(arrays(t)[0]), "--unlabelled", str(arrays(t)[1]), "--shots", "3",
                    "--out", str(t / "out")], "--shots belongs"),
    Case("auto-source-zero-epochs",
         lambda t: ["auto", "--source", str(arrays(t)[0]), "--unlabelled", str(arrays(t)[1]), "--epochs", "0",
                    "--out", str(t / "out")], "--epochs"),
    Case("auto-source-mixes-arrays-and-images",
         lambda t: ["auto", "--source", str(arrays(t)[0]), "--unlabelled", str(classes(t / "tgt")),
                    "--out", str(t / "out")], "mix array files and image folders"),
    Case("fit-baseline-of-another-kind",
         lambda t: ["fit", str(good_train(t)), "--baseline", "pixels", "--out", str(t / "out")], "--baseline"),
    Case("fit-zero-devices",
         lambda t: fit(str(good_train(t)), "--devices", "0", "--out", str(t / "out")), "--devices"),
    Case("adapt-unknown-precision", lambda t: dann(t, "--precision", "fp8"), "--precision"),
    Case("generalize-unknown-parallel-strategy",
         lambda t: ["generalize", "-s", str(arrays(t)[0]), "-s", str(arrays(t)[1]), "--parallel",
                    "horovod", "--out", str(t / "out")], "--parallel"),
    Case("report-of-a-plain-folder", lambda t: ["report", str(good_train(t))], "no metrics.json"),
    Case("report-of-an-unfinished-run",
         lambda t: (write(t / "r/config.json", '{"job": "fit", "lowshot_version": "0.1.0"}'),
                    ["report", str(t / "r")])[-1], "unfinished run"),
]


def run_folder(t: Path, damage: str | None = None) -> Path:
    """A finished run folder, made once per test folder (a linear probe on tiny images)."""
    run = t / "run"
    if not (run / "metrics.json").is_file():
        from lowshot.api import fit as api_fit

        api_fit(good_train(t), baseline=False, progress=False, out=run, shots=2)
    if damage == "model.json":
        (run / "model.json").write_text('{"format": "lowshot-model/1", "classes": [')
    elif damage == "model.safetensors":
        data = (run / "model.safetensors").read_bytes()
        (run / "model.safetensors").write_bytes(data[: len(data) // 3])
    return run


def snapshot(root: Path, skip: set[Path]) -> dict[str, tuple[int, int]]:
    out = {}
    for p in root.rglob("*"):
        if any(p == s or s in p.parents for s in skip):
            continue
        st = p.lstat()
        out[str(p.relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return out


def test_the_corpus_is_large_and_covers_every_group():
    assert len(CASES) >= 60
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gets_one_clear_line(case, tmp_path, cache_dir, data_root, monkeypatch):
    monkeypatch.setenv("LOWSHOT_DATA", str(data_root))  # named sets resolve from any cwd
    monkeypatch.chdir(tmp_path)
    argv = [str(a) for a in case.make(tmp_path)]
    outs = {tmp_path / "out", tmp_path / "m", tmp_path / "o", tmp_path / "run"}
    outs |= {Path(argv[i + 1]) for i, a in enumerate(argv[:-1]) if a in ("--out", "-o")}
    before = snapshot(tmp_path, outs)
    from PIL import Image as PILImage

    limit = PILImage.MAX_IMAGE_PIXELS
    try:
        res = runner.invoke(app, argv, env={"COLUMNS": "400"})
    finally:
        PILImage.MAX_IMAGE_PIXELS = limit  # --max-image-pixels sets PIL's global
    text = " ".join(res.output.split())
    assert "Traceback" not in res.output, res.output
    assert res.exit_code == case.code, f"exit {res.exit_code}: {text}"
    assert case.needle in text, text
    assert not isinstance(res.exception, Exception) or isinstance(res.exception, SystemExit), (
        res.exception
    )
    after = snapshot(tmp_path, outs)
    assert after == before, f"changed outside the run folder: {set(after) ^ set(before)}"
    assert os.getcwd() == str(tmp_path)
