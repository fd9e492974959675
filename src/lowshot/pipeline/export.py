"""``lowshot export``: a trained image run as an ONNX model, fp32 and int8, checked on export.

The graph is the whole classifier (backbone + head) on preprocessed images, ``image``
(N, 3, S, S) float32 to ``logits`` (N, C), with a dynamic batch. What a program needs
around it travels in the file's metadata: ``lowshot.classes`` (JSON list),
``lowshot.preprocessing`` (resize, crop, mean, std, interpolation) and the run it came
from, so ``onnxruntime``, ``numpy`` and ``pillow`` suffice to serve it
(docs/deployment.md). On export the ONNX model is run beside the PyTorch one on real
images of the run (its test images when the run says which, else its training images):
the largest logit difference and the top-1 agreement go into ``export.json``.

``--int8``: static quantization with ONNX Runtime (QDQ, per-channel int8 weights, uint8
activations) calibrated on the run's training images, which ``config.json`` names.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lowshot._version import __version__
from lowshot.errors import ConfigError, DataError, RunError
from lowshot.io import atomic_path, write_json
from lowshot.pipeline.model_io import load_model

ONNX_FORMAT = "lowshot-onnx/1"


def _require() -> Any:
    try:
        import onnx
        import onnxruntime  # noqa: F401
    except ImportError:
        raise ConfigError(
            "export needs ONNX and ONNX Runtime: pip install 'lowshot[deploy]'."
        ) from None
    return onnx


def preprocessed(files: list[Path], pre: Any, batch_size: int = 32) -> Iterator[np.ndarray]:
    """Batches of images prepared exactly as the PyTorch path prepares them."""
    from lowshot.data.torchdata import ImageFiles, eval_transform

    ds = ImageFiles(files, None, eval_transform(pre), min_side=pre.resize)
    for i in range(0, len(ds), batch_size):
        yield np.stack([ds[j][0].numpy() for j in range(i, min(len(ds), i + batch_size))])


def run_images(run_dir: Path, which: str) -> list[Path]:
    """The run's training (``which="train"``) or test images, from its ``config.json``."""
    from lowshot.data.load import split
    from lowshot.pipeline.specs import spec_from_config

    spec = spec_from_config(run_dir)
    train = getattr(spec, "train", None)
    if not isinstance(train, str):
        raise RunError(f"{run_dir}: its config.json names no training images to calibrate on.")
    tr, te = split(train, getattr(spec, "test", None), getattr(spec, "shots", None),
                   spec.seed, test_fraction=getattr(spec, "test_fraction", 0.2))  # fmt: skip
    from lowshot.data.images import ImageSet

    chosen = tr if which == "train" else te
    if not isinstance(chosen, ImageSet):
        raise DataError(f"{train}: not images; int8 calibration here needs the run's images.")
    return [Path(f) for f in chosen.files]


def _export_fp32(model: Any, size: int, path: Path, opset: int, metadata: dict[str, str]) -> None:
    import torch

    onnx = _require()
    x = torch.zeros(2, 3, size, size)
    with atomic_path(path) as tmp:
        prog = torch.onnx.export(
            model.eval(), (x,), input_names=["image"], output_names=["logits"],
            dynamic_shapes=({0: torch.export.Dim("batch")},), opset_version=opset, dynamo=True,
            verbose=False,
        )  # fmt: skip
        assert prog is not None  # dynamo=True without a file returns the program
        proto = prog.model_proto
        for k, v in metadata.items():
            proto.metadata_props.add(key=k, value=v)
        onnx.save(proto, str(tmp))  # one file: the weights inside, not beside


def _quantize(fp32: Path, out: Path, calibration: list[Path], pre: Any) -> None:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    onnx = _require()

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self.batches = preprocessed(calibration, pre, batch_size=8)

        def get_next(self) -> dict[str, np.ndarray] | None:
            b = next(self.batches, None)
            return None if b is None else {"image": b}

    with atomic_path(out) as tmp:
        staged = tmp.with_name(tmp.name + ".pre.onnx")
        try:
            quant_pre_process(str(fp32), str(staged))
            quantize_static(str(staged), str(tmp), Reader(), quant_format=QuantFormat.QDQ,
                            per_channel=True, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8)  # fmt: skip
        finally:
            staged.unlink(missing_ok=True)
        m = onnx.load(str(tmp))
        src = onnx.load(str(fp32), load_external_data=False)
        del m.metadata_props[:]
        for p in src.metadata_props:
            m.metadata_props.add(key=p.key, value=p.value)
        m.metadata_props.add(key="lowshot.quantization", value="int8 static (QDQ, per-channel)")
        onnx.save(m, str(tmp))


@dataclass
class OnnxClassifier:
    """An exported model and its metadata, served by ONNX Runtime."""

    session: Any
    classes: list[str]
    preprocessing: Any
    path: Path

    @classmethod
    def load(cls, path: str | Path) -> OnnxClassifier:
        _require()
        import onnxruntime as ort

        from lowshot.backbones import Preprocessing

        path = Path(path)
        if not path.is_file():
            raise RunError(f"{path}: no such ONNX file; create it with `lowshot export RUN`.")
        try:
            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as exc:  # ONNX Runtime raises its own types for damaged files
            why = str(exc).splitlines()[0][:200]
            raise RunError(
                f"{path}: not a readable ONNX model ({why}); export the run again."
            ) from None
        meta = session.get_modelmeta().custom_metadata_map
        if meta.get("lowshot.format") != ONNX_FORMAT:
            raise RunError(f"{path}: an ONNX model lowshot did not export (no {ONNX_FORMAT} metadata); "
                           "export the run with `lowshot export RUN`.")  # fmt: skip
        return cls(session, json.loads(meta["lowshot.classes"]),
                   Preprocessing.from_dict(json.loads(meta["lowshot.preprocessing"])), path)  # fmt: skip

    def logits(self, files: list[Path]) -> np.ndarray:
        return np.concatenate(
            [
                self.session.run(None, {"image": b})[0]
                for b in preprocessed(files, self.preprocessing)
            ]
        )


def _agreement(model: Any, onnx_path: Path, files: list[Path]) -> dict[str, float]:
    """The ONNX model beside PyTorch on ``files``: top-1 agreement and largest logit gap."""
    import torch

    clf = OnnxClassifier.load(onnx_path)
    ref, got = [], []
    t_torch = t_onnx = 0.0
    for b in preprocessed(files, clf.preprocessing):
        t0 = time.perf_counter()
        with torch.inference_mode():
            ref.append(model(torch.from_numpy(b)).numpy())
        t1 = time.perf_counter()
        got.append(clf.session.run(None, {"image": b})[0])
        t_torch, t_onnx = t_torch + t1 - t0, t_onnx + time.perf_counter() - t1
    r, g = np.concatenate(ref), np.concatenate(got)
    return {"images": len(files), "top1_agreement": float((r.argmax(1) == g.argmax(1)).mean()),
            "max_logit_difference": float(np.abs(r - g).max()),
            "seconds_torch": t_torch, "seconds_onnx": t_onnx}  # fmt: skip


def export_run(run_dir: str | Path, *, out: str | Path | None = None, int8: bool = False,
               opset: int = 18, check_images: int = 256) -> dict[str, Any]:  # fmt: skip
    """Export ``run_dir``'s model to ONNX (``out``, default ``RUN/model.onnx``; int8 beside
    it as ``model.int8.onnx``), check it against PyTorch, write ``RUN/export.json``."""
    _require()
    run_dir = Path(run_dir)
    if isinstance(opset, bool) or not isinstance(opset, int) or not 18 <= opset <= 23:
        raise ConfigError(f"--opset: expected a whole number from 18 to 23, got {opset!r}.")
    model, meta = load_model(run_dir)
    if meta.get("modality") == "text":
        raise ConfigError(f"{run_dir}: a text run; ONNX export covers image runs so far.")
    pre = model.backbone.preprocessing
    fp32 = Path(out) if out is not None else run_dir / "model.onnx"
    if fp32.suffix.lower() != ".onnx":
        raise ConfigError(f"--out: {fp32} should end in .onnx.")
    fp32.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"lowshot.format": ONNX_FORMAT, "lowshot.version": __version__,
                "lowshot.classes": json.dumps(meta["classes"]),
                "lowshot.preprocessing": json.dumps(pre.to_dict()),
                "lowshot.run": str(run_dir.resolve()), "lowshot.arch": meta["arch"]}  # fmt: skip
    t0 = time.perf_counter()
    _export_fp32(model, pre.input_size, fp32, opset, metadata)
    report: dict[str, Any] = {"run": str(run_dir), "opset": opset, "fp32": {
        "file": str(fp32), "mb": fp32.stat().st_size / 2**20, "seconds": time.perf_counter() - t0}}  # fmt: skip
    try:
        files = run_images(run_dir, "test")
    except (RunError, DataError):
        files = []
    files = files[:check_images]
    if files:
        report["fp32"]["check"] = _agreement(model, fp32, files)
    if int8:
        q = fp32.with_name(fp32.stem + ".int8.onnx")
        t0 = time.perf_counter()
        _quantize(fp32, q, run_images(run_dir, "train"), pre)
        report["int8"] = {"file": str(q), "mb": q.stat().st_size / 2**20,
                          "seconds": time.perf_counter() - t0}  # fmt: skip
        if files:
            report["int8"]["check"] = _agreement(model, q, files)
    write_json(run_dir / "export.json", report)
    return report
