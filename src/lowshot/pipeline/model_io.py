"""The run folder's model format: ``model.safetensors`` + ``model.json``, and loading it back.

A run folder holds ``config.json`` (resolved settings), ``metrics.json`` (written
last: its presence marks a finished run), ``model.safetensors`` + ``model.json``
(weights, class names, architecture and preprocessing: enough to predict without
the training data), ``plots/``, ``log.txt`` and, for deep strategies,
``checkpoints/last.ckpt`` (resume) and ``logs/metrics.csv``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import timm
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from lowshot._version import __version__
from lowshot.backbones import Backbone, Preprocessing
from lowshot.errors import RunError
from lowshot.io import atomic_path, write_json
from lowshot.nets import Classifier

MODEL_FORMAT = "lowshot-model/1"


def save_model(
    model: Classifier, classes: list[str], run_dir: Path, *, strategy: str, backbone_frozen: bool
) -> None:
    bb = model.backbone
    meta = {
        "format": MODEL_FORMAT,
        "lowshot_version": __version__,
        "arch": bb.arch,
        "backbone": bb.name,
        "num_features": bb.num_features,
        "classes": classes,
        "modality": getattr(bb, "modality", "image"),
        "preprocessing": bb.preprocessing.to_dict() if bb.preprocessing else None,
        "strategy": strategy,
        "backbone_frozen": backbone_frozen,
        # With an unchanged backbone, predictions can reuse cached features.
        "backbone_weights_id": bb.weights_id if backbone_frozen else None,
        "neck": model.neck,
        "members": getattr(model, "members", 1),
    }
    members: Any = getattr(bb, "members", None)
    if members is not None:  # a combined backbone: how to rebuild it
        meta["combined"] = [
            {"name": m.name, "arch": m.arch, "preprocessing": m.preprocessing.to_dict(),
             "weights_id": m.weights_id if backbone_frozen else None}
            for m in members
        ]  # fmt: skip
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    if meta["modality"] == "text" and backbone_frozen:
        # the pretrained encoder comes from its package: only the head is the run's own
        state = {k: v for k, v in state.items() if not k.startswith("backbone.")}
    with atomic_path(run_dir / "model.safetensors") as tmp:
        save_file(state, str(tmp), metadata={"format": MODEL_FORMAT})
    write_json(run_dir / "model.json", meta)


def load_model(run_dir: str | Path) -> tuple[Classifier, dict]:
    try:
        return _load_model(run_dir)
    except RunError:  # already says what is wrong and where
        raise
    except (SafetensorError, KeyError, RuntimeError, OSError) as exc:
        where = Path(run_dir) / "model.safetensors"
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise RunError(
            f"{where}: damaged or not this run's model ({why}); train the run again."
        ) from None


def _load_model(run_dir: str | Path) -> tuple[Classifier, dict]:
    run_dir = Path(run_dir)
    meta_path, weights = run_dir / "model.json", run_dir / "model.safetensors"
    if not meta_path.is_file() or not weights.is_file():
        raise RunError(
            f"{run_dir} has no trained model (model.json + model.safetensors). Is it a finished "
            "`lowshot fit` run folder? An interrupted deep run continues with `lowshot fit ... --resume`."
        )
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise RunError(f"{meta_path}: damaged ({exc}); train the run again.") from None
    if not isinstance(meta, dict) or meta.get("format") != MODEL_FORMAT:
        fmt = meta.get("format") if isinstance(meta, dict) else None
        raise RunError(f"{meta_path}: unknown model format {fmt!r}.")
    if meta.get("modality") == "text":
        from lowshot.backbones.text import create_text_encoder

        enc: Any = create_text_encoder(meta["backbone"])
        model = Classifier(enc, len(meta["classes"]), neck=meta.get("neck"))
        state = load_file(str(weights))
        if meta.get("backbone_frozen"):  # only the head is stored
            model.head.load_state_dict(
                {k[5:]: v for k, v in state.items() if k.startswith("head.")}
            )
        else:  # a fine-tuned encoder: its features are the run's own
            model.load_state_dict(state, strict=True)
            enc.weights_id = f"run:{run_dir.resolve()}:{weights.stat().st_mtime_ns}"
        return model.eval(), meta
    own = f"run:{run_dir.resolve()}:{weights.stat().st_mtime_ns}"
    bb: Backbone
    if meta.get("combined"):
        from lowshot.backbones import CombinedBackbone

        bb = CombinedBackbone([
            Backbone(m["name"], m["arch"], timm.create_model(m["arch"], pretrained=False, num_classes=0),
                     Preprocessing.from_dict(m["preprocessing"]), m.get("weights_id") or f"{own}:{i}")
            for i, m in enumerate(meta["combined"])
        ])  # fmt: skip
    else:
        net = timm.create_model(meta["arch"], pretrained=False, num_classes=0)
        pre = Preprocessing.from_dict(meta["preprocessing"])
        bb = Backbone(meta["backbone"], meta["arch"], net, pre, meta.get("backbone_weights_id") or own)
    model = Classifier(bb, len(meta["classes"]), neck=meta.get("neck"),
                       members=int(meta.get("members", 1)))  # fmt: skip
    model.load_state_dict(load_file(str(weights)), strict=True)
    model.eval()
    return model, meta
