"""``lowshot export``: a trained run as an ONNX model, fp32 and int8, checked on export.

The graph is the run's whole predictor with a dynamic batch: for images, ``image`` (N, 3,
S, S) preprocessed float32 through the backbone and head to ``logits`` (N, C); for texts,
``input_ids`` and ``attention_mask`` (N, L) through the sentence encoder; for a multi-task
run, one output per task (``task:NAME``). What a program needs around it travels in the
file's metadata: ``lowshot.classes`` (or ``lowshot.tasks``), ``lowshot.modality``,
``lowshot.preprocessing`` (resize, crop, mean, std, interpolation) or ``lowshot.tokenizer``
(``tokenizer.json``), and the run it came from, so ``onnxruntime``, ``numpy`` and
``pillow`` serve an image model (docs/deployment.md). On export the ONNX model runs beside
the PyTorch one on the run's test items: the largest output difference and the top-1
agreement go into ``RUN/export.json``.

``--int8``: for images static quantization with ONNX Runtime (QDQ, per-channel int8
weights, uint8 activations) calibrated on the run's training images (``config.json`` names
them; an adapt run's target images); for texts dynamic quantization.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lowshot._log import log
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


def fit_split(run_dir: Path, spec: Any = None) -> tuple[Any, Any]:
    """The (train, test) sets of a ``lowshot fit`` run, as its ``config.json`` made them."""
    from lowshot.data.load import split
    from lowshot.pipeline.specs import spec_from_config

    spec = spec or spec_from_config(run_dir)
    train = getattr(spec, "train", None)
    if not isinstance(train, str):
        raise RunError(f"{run_dir}: its config.json names no training data.")
    return split(train, getattr(spec, "test", None), getattr(spec, "shots", None), spec.seed,
                 test_fraction=getattr(spec, "test_fraction", 0.2))  # fmt: skip


def run_items(run_dir: Path, which: str) -> list[Any]:
    """The run's training (``which="train"``) or test items (image paths or texts), from
    its ``config.json``; for an adapt run, the target's images serve both; for a
    generalize run, the sources train and the unseen domain's test images check; for a
    distill run, the teacher run's (or its ``--test``)."""
    from lowshot.data.images import ImageSet
    from lowshot.data.text import TextSet
    from lowshot.pipeline.specs import spec_from_config

    spec = spec_from_config(run_dir)
    if spec.job == "multitask":
        from lowshot.multitask.run import load_tasks

        m: Any = spec
        tr_t, te_t = load_tasks(m.tasks, table=m.table, label_columns=m.label_columns,
                                input_column=m.input_column, regression=m.regression,
                                shots=m.shots, seed=m.seed)  # fmt: skip
        return list((tr_t if which == "train" else te_t).items)
    if spec.job == "adapt":  # the deployment domain itself: its images calibrate and check
        from lowshot.data.pool import load_pool

        target = load_pool(getattr(spec, "target_test", None) or getattr(spec, "target"))  # noqa: B009
        return [Path(f) for f in target.items] if target.modality == "image" else []
    if spec.job == "distill":  # the teacher's images (or --test): what the student learned on
        d: Any = spec
        if which == "test" and d.test:
            from lowshot.data.load import load

            return [Path(f) for f in load(d.test, arrays=False).files]  # type: ignore[union-attr]
        return run_items(Path(d.teacher), which)
    if spec.job == "generalize":  # the sources calibrate; the unseen domain checks, if given
        from lowshot.data.pool import load_pool

        g: Any = spec
        where = [g.target_test] if which == "test" and g.target_test else g.sources
        pools = [load_pool(w) for w in where]
        return [Path(f) for p in pools if p.modality == "image" for f in p.items]
    tr, te = fit_split(run_dir, spec)
    chosen = tr if which == "train" else te
    if isinstance(chosen, TextSet):
        return list(chosen.texts)
    if not isinstance(chosen, ImageSet):
        raise DataError(f"{run_dir}: neither images nor texts; nothing to calibrate on.")
    return [Path(f) for f in chosen.files]


class _TextEncoderGraph:
    """A sentence encoder as a graph: token ids and mask -> its (pooled) sentence embedding."""

    @staticmethod
    def build(encoder: Any) -> Any:
        import torch

        class Graph(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.st = encoder.model

            def forward(
                self, input_ids: torch.Tensor, attention_mask: torch.Tensor
            ) -> torch.Tensor:
                out = self.st({"input_ids": input_ids, "attention_mask": attention_mask})
                return out["sentence_embedding"]

        return Graph()


def _then(body: Any, top: Any, modality: str) -> Any:
    """``top(body(inputs))`` with the inputs named as the ONNX graph names them; a list of
    task outputs becomes a tuple (one ONNX output each)."""
    import torch

    def out(x: Any) -> Any:
        return tuple(x) if isinstance(x, list) else x

    class Images(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body, self.top = body, top

        def forward(self, image: torch.Tensor) -> Any:
            return out(self.top(self.body(image)))

    class Texts(Images):
        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Any:  # type: ignore[override]
            return out(self.top(self.body(input_ids, attention_mask)))

    return (Texts() if modality == "text" else Images()).eval()


@dataclass
class _Kind:
    modality: str


@dataclass
class Exportable:
    """What a run exports: the graph from inputs to outputs, the encoder it starts with
    (its preprocessing or tokenizer), the output names and the metadata."""

    graph: Any
    modality: str
    encoder: Any
    outputs: list[str]
    metadata: dict[str, str]


def exportable(run_dir: Path) -> Exportable:
    """The run's predictor as one graph: backbone (or sentence encoder) and head, or the
    multi-task network with one output per task."""
    from lowshot.multitask.run import FORMAT as MULTITASK

    try:
        fmt = json.loads((run_dir / "model.json").read_text()).get("format")
    except (OSError, ValueError, AttributeError):
        fmt = None  # missing or damaged: load_model says which, naming the file
    if fmt == MULTITASK:
        from lowshot.backbones.select import backbone_for
        from lowshot.multitask.run import load_multitask

        net, meta, body_state = load_multitask(run_dir)
        enc = backbone_for(_Kind(meta["modality"]), meta["backbone"])
        if body_state is not None:
            enc.load_state_dict(body_state, strict=True)
        tasks = meta["tasks"]
        extra = {"lowshot.tasks": json.dumps(tasks), "lowshot.classes": "[]"}
        outputs, top, modality = [f"task:{t['name']}" for t in tasks], net.eval(), meta["modality"]
        arch = meta["backbone"]
    else:
        model, meta = load_model(run_dir)
        enc, top, modality, arch = (
            model.backbone,
            model.head,
            meta.get("modality", "image"),
            meta["arch"],
        )
        outputs, extra = ["logits"], {"lowshot.classes": json.dumps(meta["classes"])}
    metadata = {"lowshot.format": ONNX_FORMAT, "lowshot.version": __version__,
                "lowshot.run": str(run_dir.resolve()), "lowshot.arch": str(arch),
                "lowshot.modality": modality, **extra}  # fmt: skip
    if modality == "text":
        metadata["lowshot.tokenizer"] = enc.model.tokenizer.backend_tokenizer.to_str()
        metadata["lowshot.max_length"] = str(enc.max_seq_length)
        body = _TextEncoderGraph.build(enc)
    else:
        metadata["lowshot.preprocessing"] = json.dumps(enc.preprocessing.to_dict())
        body = enc
    return Exportable(_then(body.eval(), top, modality), modality, enc, outputs, metadata)


def _export(ex: Exportable, path: Path, opset: int) -> None:
    import torch

    onnx = _require()
    if ex.modality == "text":
        tok = ex.encoder.tokenize(["a first example", "and a second, somewhat longer one"])
        args: tuple = (tok["input_ids"], tok["attention_mask"])
        batch = torch.export.Dim("batch")
        length = torch.export.Dim("length", max=ex.encoder.max_seq_length)
        names = ["input_ids", "attention_mask"]
        shapes: tuple[dict[int, Any], ...] = ({0: batch, 1: length},) * 2
    else:
        size = ex.encoder.preprocessing.input_size
        args, names = (torch.zeros(2, 3, size, size),), ["image"]
        shapes = ({0: torch.export.Dim("batch")},)
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*axis name.*will not be used.*")  # batch, length
        prog = torch.onnx.export(ex.graph, args, input_names=names, output_names=ex.outputs,
                                 dynamic_shapes=shapes, opset_version=opset, dynamo=True,
                                 verbose=False)  # fmt: skip
        assert prog is not None  # dynamo=True without a file returns the program
        proto = prog.model_proto
        for k, v in ex.metadata.items():
            proto.metadata_props.add(key=k, value=v)
        onnx.save(proto, str(tmp))  # one file: the weights inside, not beside


@contextlib.contextmanager
def _scratch_cwd() -> Iterator[None]:
    """Run in a temporary working folder: ONNX Runtime's shape inference writes (and on
    failure leaves) files in the current folder, which is the user's, not ours."""
    import tempfile

    here = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="lowshot-quantize-") as d:
        os.chdir(d)
        try:
            yield
        finally:
            os.chdir(here)


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
    calibration = [Path(f).resolve() for f in calibration]  # read from a scratch folder below
    fp32, out = fp32.resolve(), out.resolve()

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self.batches = preprocessed(calibration, pre, batch_size=8)

        def get_next(self) -> dict[str, np.ndarray] | None:
            b = next(self.batches, None)
            return None if b is None else {"image": b}

    with atomic_path(out) as tmp, _scratch_cwd():
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
    run's preprocessing, texts through the run's tokenizer (the ``tokenizers`` package);
    ``tasks`` for a multi-task model (one output each)."""

    session: Any
    classes: list[str]
    modality: str
    preprocessing: Any = None
    tokenizer: Any = None
    tasks: list[dict] | None = None
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
        out = cls(session, json.loads(meta["lowshot.classes"]), meta.get("lowshot.modality", "image"),
                  tasks=json.loads(meta["lowshot.tasks"]) if "lowshot.tasks" in meta else None,
                  path=path)  # fmt: skip
        if out.modality == "text":
            from tokenizers import Tokenizer

            out.tokenizer = Tokenizer.from_str(meta["lowshot.tokenizer"])
            out.tokenizer.enable_truncation(int(meta["lowshot.max_length"]))
            out.tokenizer.enable_padding()
        else:
            out.preprocessing = Preprocessing.from_dict(json.loads(meta["lowshot.preprocessing"]))
        return out

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

    def outputs(self, items: list[Any]) -> list[np.ndarray]:
        """Every output (one per task) for ``items``."""
        parts = [self.session.run(None, f) for f in self.feeds(items)]
        return [np.concatenate([p[k] for p in parts]) for k in range(len(parts[0]))]

    def logits(self, items: list[Any]) -> np.ndarray:
        return self.outputs(items)[0]


def _agreement(ex: Exportable, onnx_path: Path, items: list[Any],
               truth: dict[str, str] | None = None) -> dict[str, float]:  # fmt: skip
    """The ONNX model beside PyTorch on ``items``: top-1 agreement (over the classification
    outputs) and the largest output difference; with ``truth`` (item -> true class, from
    the run's predictions.csv) both models' accuracy on the items too."""
    import torch

    clf = OnnxClassifier.load(onnx_path)
    kinds = [t["kind"] for t in clf.tasks] if clf.tasks else ["classification"]
    ref: list[list[np.ndarray]] = [[] for _ in kinds]
    got: list[list[np.ndarray]] = [[] for _ in kinds]
    t_torch = t_onnx = 0.0
    for feed in clf.feeds(items):
        t0 = time.perf_counter()
        with torch.inference_mode():
            r = ex.graph(*[torch.from_numpy(v) for v in feed.values()])
        t1 = time.perf_counter()
        g = clf.session.run(None, feed)
        t_torch, t_onnx = t_torch + t1 - t0, t_onnx + time.perf_counter() - t1
        for k, (a, b) in enumerate(zip(r if isinstance(r, tuple) else (r,), g, strict=True)):
            ref[k].append(a.numpy())
            got[k].append(b)
    R, G = [np.concatenate(x) for x in ref], [np.concatenate(x) for x in got]
    agree = [(a.argmax(1) == b.argmax(1)).mean() for a, b, k in zip(R, G, kinds, strict=True)
             if k == "classification"]  # fmt: skip
    out = {"items": len(items), "top1_agreement": float(np.mean(agree)) if agree else 1.0,
           "max_logit_difference": float(max(np.abs(a - b).max() for a, b in zip(R, G, strict=True))),
           "seconds_torch": t_torch, "seconds_onnx": t_onnx}  # fmt: skip
    known = [i for i, it in enumerate(items) if truth and str(it) in truth]
    if len(kinds) == 1 and kinds[0] == "classification" and known:
        y = np.array([clf.classes.index(truth[str(items[i])]) for i in known])  # type: ignore[index]
        out["accuracy_torch"] = float((R[0][known].argmax(1) == y).mean())
        out["accuracy_onnx"] = float((G[0][known].argmax(1) == y).mean())
    return out


def _truth(run_dir: Path) -> dict[str, str]:
    """Item -> true class from the run's ``predictions.csv`` (empty when it has none)."""
    from lowshot.evaluation.predictions import FILE, read_predictions

    p = read_predictions(run_dir / FILE)
    return dict(zip(p.items, p.true, strict=True)) if p is not None else {}


def export_run(run_dir: str | Path, *, out: str | Path | None = None, int8: bool = False,
               opset: int = 18, check_items: int = 256) -> dict[str, Any]:  # fmt: skip
    """Export ``run_dir``'s model to ONNX (``out``, default ``RUN/model.onnx``; int8 beside
    it as ``*.int8.onnx``), check it against PyTorch, write ``RUN/export.json``."""
    _require()
    run_dir = Path(run_dir)
    if isinstance(opset, bool) or not isinstance(opset, int) or not 18 <= opset <= 23:
        raise ConfigError(f"--opset: expected a whole number from 18 to 23, got {opset!r}.")
    fp32 = (Path(out) if out is not None else run_dir / "model.onnx").resolve()
    if fp32.suffix.lower() != ".onnx":
        raise ConfigError(f"--out: {fp32} should end in .onnx.")
    ex = exportable(run_dir)
    fp32.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    log.info("exporting %s (%s) to %s", run_dir, ex.modality, fp32)
    _export(ex, fp32, opset)
    report: dict[str, Any] = {"run": str(run_dir), "opset": opset, "modality": ex.modality, "fp32": {
        "file": str(fp32), "mb": fp32.stat().st_size / 2**20, "seconds": time.perf_counter() - t0}}  # fmt: skip
    try:
        items = run_items(run_dir, "test")[:check_items]
    except (RunError, DataError):
        items = []
    if items:
        log.info("checking it against PyTorch on %d of the run's test items", len(items))
        truth = _truth(run_dir)
        report["fp32"]["check"] = _agreement(ex, fp32, items, truth)
    if int8:
        q = fp32.with_name(fp32.stem + ".int8.onnx")
        t0 = time.perf_counter()
        text = ex.modality == "text"
        pre = None if text else ex.encoder.preprocessing
        calibration = [] if text else run_items(run_dir, "train")
        log.info(
            "int8: %s",
            "dynamic (text)"
            if text
            else f"static, calibrating on {len(calibration)} training images",
        )
        _quantize(fp32, q, calibration, pre)
        report["int8"] = {"file": str(q), "mb": q.stat().st_size / 2**20,
                          "seconds": time.perf_counter() - t0}  # fmt: skip
        if items:
            report["int8"]["check"] = _agreement(ex, q, items, truth)
    write_json(run_dir / "export.json", report)
    if (run_dir / "metrics.json").is_file():  # the report gains its deployment section
        from lowshot.pipeline.runfolder import RunFolder

        RunFolder(run_dir, run_dir, resumed=True).write_report()
    return report
