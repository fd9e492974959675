"""``lowshot export``: a trained image run as an ONNX model, fp32 and int8, checked on export.

The graph is the whole classifier (backbone + head) on preprocessed images, ``image``
(N, 3, S, S) float32 to ``logits`` (N, C), with a dynamic batch; for a text run, token
``input_ids`` and ``attention_mask`` (N, L) through the sentence encoder and the head, with
the tokenizer (``tokenizer.json``) in the metadata. What a program needs
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
import logging
import time
import warnings
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


def run_items(run_dir: Path, which: str) -> list[Any]:
    """The run's training (``which="train"``) or test items (image paths or texts), from
    its ``config.json``; for an adapt run, the target's images serve both."""
    from lowshot.data.load import split
    from lowshot.pipeline.specs import spec_from_config

    spec = spec_from_config(run_dir)
    if spec.job == "adapt":  # the deployment domain itself: its images calibrate and check
        from lowshot.data.pool import load_pool

        target = getattr(spec, "target_test", None) or getattr(spec, "target")  # noqa: B009
        return (
            [Path(f) for f in load_pool(target).items]
            if load_pool(target).modality == "image"
            else []
        )
    train = getattr(spec, "train", None)
    if not isinstance(train, str):
        raise RunError(f"{run_dir}: its config.json names no training images to calibrate on.")
    tr, te = split(train, getattr(spec, "test", None), getattr(spec, "shots", None),
                   spec.seed, test_fraction=getattr(spec, "test_fraction", 0.2))  # fmt: skip
    from lowshot.data.images import ImageSet
    from lowshot.data.text import TextSet

    chosen = tr if which == "train" else te
    if isinstance(chosen, TextSet):
        return list(chosen.texts)
    if not isinstance(chosen, ImageSet):
        raise DataError(f"{train}: neither images nor texts; nothing to calibrate on.")
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


class _TextGraph:
    """A text run as one graph: token ids and mask -> sentence embedding -> head -> logits."""

    @staticmethod
    def build(model: Any) -> Any:
        import torch

        class Graph(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.encoder, self.head = model.backbone.model, model.head

            def forward(
                self, input_ids: torch.Tensor, attention_mask: torch.Tensor
            ) -> torch.Tensor:
                f = self.encoder({"input_ids": input_ids, "attention_mask": attention_mask})
                return self.head(f["sentence_embedding"])

        return Graph().eval()


def _export_text(model: Any, path: Path, opset: int, metadata: dict[str, str]) -> None:
    import torch

    onnx = _require()
    tok = model.backbone.tokenize(["a first example", "and a second, somewhat longer one"])
    batch, length = (
        torch.export.Dim("batch"),
        torch.export.Dim("length", max=model.backbone.max_seq_length),
    )
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*axis name.*will not be used.*")  # batch, length
        prog = torch.onnx.export(
            _TextGraph.build(model), (tok["input_ids"], tok["attention_mask"]),
            input_names=["input_ids", "attention_mask"], output_names=["logits"],
            dynamic_shapes=({0: batch, 1: length}, {0: batch, 1: length}), opset_version=opset,
            dynamo=True, verbose=False,
        )  # fmt: skip
        assert prog is not None
        proto = prog.model_proto
        for k, v in metadata.items():
            proto.metadata_props.add(key=k, value=v)
        onnx.save(proto, str(tmp))


def _quantize(fp32: Path, out: Path, calibration: list[Any], pre: Any) -> None:
    """Static int8 for images (calibrated on ``calibration``); dynamic int8 for text
    encoders (``pre`` None), whose activations vary too much with the text for one
    static scale."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
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
            if pre is None:  # the transformer's symbolic shapes defeat pre-processing
                root = logging.getLogger()  # which ONNX Runtime then suggests on the root logger
                level = root.level
                root.setLevel(logging.ERROR)
                try:
                    quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8)
                finally:
                    root.setLevel(level)
            else:
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
        how = "int8 dynamic" if pre is None else "int8 static (QDQ, per-channel)"
        m.metadata_props.add(key="lowshot.quantization", value=how)
        onnx.save(m, str(tmp))


@dataclass
class OnnxClassifier:
    """An exported model and its metadata, served by ONNX Runtime: images through the
    run's preprocessing, texts through the run's tokenizer (the ``tokenizers`` package)."""

    session: Any
    classes: list[str]
    modality: str
    preprocessing: Any = None
    tokenizer: Any = None
    path: Path | None = None

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
        classes = json.loads(meta["lowshot.classes"])
        if meta.get("lowshot.modality") == "text":
            from tokenizers import Tokenizer

            tok = Tokenizer.from_str(meta["lowshot.tokenizer"])
            tok.enable_truncation(int(meta["lowshot.max_length"]))
            tok.enable_padding()
            return cls(session, classes, "text", tokenizer=tok, path=path)
        pre = Preprocessing.from_dict(json.loads(meta["lowshot.preprocessing"]))
        return cls(session, classes, "image", preprocessing=pre, path=path)

    def feeds(self, items: list[Any], batch_size: int = 32) -> Iterator[dict[str, np.ndarray]]:
        """The graph's inputs for ``items`` (image paths or texts), a batch at a time."""
        if self.modality == "image":
            for b in preprocessed(items, self.preprocessing, batch_size):
                yield {"image": b}
            return
        for i in range(0, len(items), batch_size):
            enc = self.tokenizer.encode_batch([str(t) for t in items[i : i + batch_size]])
            yield {"input_ids": np.array([e.ids for e in enc], dtype=np.int64),
                   "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64)}  # fmt: skip

    def logits(self, items: list[Any]) -> np.ndarray:
        return np.concatenate([self.session.run(None, f)[0] for f in self.feeds(items)])


def _agreement(model: Any, onnx_path: Path, items: list[Any]) -> dict[str, float]:
    """The ONNX model beside PyTorch on ``items``: top-1 agreement and largest logit gap."""
    import torch

    clf = OnnxClassifier.load(onnx_path)
    net = _TextGraph.build(model) if clf.modality == "text" else model.eval()
    ref, got = [], []
    t_torch = t_onnx = 0.0
    for feed in clf.feeds(items):
        t0 = time.perf_counter()
        with torch.inference_mode():
            ref.append(net(*[torch.from_numpy(v) for v in feed.values()]).numpy())
        t1 = time.perf_counter()
        got.append(clf.session.run(None, feed)[0])
        t_torch, t_onnx = t_torch + t1 - t0, t_onnx + time.perf_counter() - t1
    r, g = np.concatenate(ref), np.concatenate(got)
    return {"items": len(items), "top1_agreement": float((r.argmax(1) == g.argmax(1)).mean()),
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
    text = meta.get("modality") == "text"
    pre: Any = None if text else model.backbone.preprocessing
    fp32 = Path(out) if out is not None else run_dir / "model.onnx"
    if fp32.suffix.lower() != ".onnx":
        raise ConfigError(f"--out: {fp32} should end in .onnx.")
    fp32.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"lowshot.format": ONNX_FORMAT, "lowshot.version": __version__,
                "lowshot.classes": json.dumps(meta["classes"]), "lowshot.run": str(run_dir.resolve()),
                "lowshot.arch": meta["arch"], "lowshot.modality": "text" if text else "image"}  # fmt: skip
    t0 = time.perf_counter()
    if text:
        enc: Any = model.backbone
        metadata["lowshot.tokenizer"] = enc.model.tokenizer.backend_tokenizer.to_str()
        metadata["lowshot.max_length"] = str(enc.max_seq_length)
        _export_text(model, fp32, opset, metadata)
    else:
        metadata["lowshot.preprocessing"] = json.dumps(pre.to_dict())
        _export_fp32(model, pre.input_size, fp32, opset, metadata)
    report: dict[str, Any] = {"run": str(run_dir), "opset": opset, "fp32": {
        "file": str(fp32), "mb": fp32.stat().st_size / 2**20, "seconds": time.perf_counter() - t0}}  # fmt: skip
    try:
        files = run_items(run_dir, "test")
    except (RunError, DataError):
        files = []
    files = files[:check_images]
    if files:
        report["fp32"]["check"] = _agreement(model, fp32, files)
    if int8:
        q = fp32.with_name(fp32.stem + ".int8.onnx")
        t0 = time.perf_counter()
        _quantize(fp32, q, [] if text else run_items(run_dir, "train"), pre)
        report["int8"] = {"file": str(q), "mb": q.stat().st_size / 2**20,
                          "seconds": time.perf_counter() - t0}  # fmt: skip
        if files:
            report["int8"]["check"] = _agreement(model, q, files)
    write_json(run_dir / "export.json", report)
    return report
