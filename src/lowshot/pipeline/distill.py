"""The ``distill`` job: a finished image run (the teacher) in, a smaller student run out.

validate the spec -> the teacher's model -> its labelled training images (a ``fit``
run's own split), the unlabelled pool (without the labelled images) and the test set
-> the student (ImageNet weights where they exist offline, else random; at
``--image-size``) -> open the run folder, config.json -> the teacher's logits on every
training image, once -> distillation (:mod:`lowshot.model.distill`) -> test accuracy of
both, their agreement, size and speed of both -> model, plots, metrics.json

The student run is an ordinary run folder: ``predict``, ``evaluate`` and ``export`` serve it.
"""

from __future__ import annotations

import dataclasses
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lowshot._log import log
from lowshot.backbones import OFFLINE, Backbone, create_backbone
from lowshot.cache import default_cache, pick_device
from lowshot.data.images import ImageSet
from lowshot.errors import BackboneError, ConfigError, DataError
from lowshot.evaluation.metrics import classification_report
from lowshot.evaluation.speed import torch_speed
from lowshot.io import content_hash
from lowshot.model.runner import logits_for
from lowshot.nets import Classifier
from lowshot.pipeline.model_io import load_model, save_model
from lowshot.pipeline.results import RunResult
from lowshot.pipeline.runfolder import maybe_run
from lowshot.pipeline.specs import DistillSpec, spec_from_config
from lowshot.training.context import FitContext


def run_distill(spec: DistillSpec) -> RunResult:
    spec.validate()
    teacher, tmeta = load_model(spec.teacher)
    if tmeta.get("modality", "image") != "image":
        raise ConfigError(
            f"{spec.teacher}: a {tmeta.get('modality')} run; `lowshot distill` trains image "
            "students (a text run's encoder shrinks with `lowshot export --int8` instead)."
        )
    classes = list(tmeta["classes"])
    labelled, test = _teacher_data(spec, classes)
    pool = _pool(spec, labelled)
    if not len(labelled.files) and not pool:
        raise DataError(
            f"{spec.teacher} is not a `lowshot fit` run, so it names no labelled images: give "
            "--unlabelled DIR, the images the student learns the teacher's answers on."
        )
    student, init = _student(spec, len(classes))
    with maybe_run(spec.out, resume=spec.resume, overwrite=spec.overwrite,
                   scale=spec.scale()) as rf:
        if rf is not None:
            rf.write_config(_config(spec, student, classes, labelled, pool, test))
        cache = default_cache(spec.cache_dir)
        files = [Path(f) for f in labelled.files] + pool
        labels = np.concatenate([labelled.labels, np.full(len(pool), -1)]).astype(np.int64)
        frozen = bool(tmeta.get("backbone_weights_id"))
        t0 = time.perf_counter()
        t_logits = logits_for(teacher, files, backbone_frozen=frozen, cache=cache,
                              device=spec.device, progress=spec.progress)  # fmt: skip
        teacher_s = time.perf_counter() - t0
        log.info("distilling %s into %s (%s) on %d labelled + %d unlabelled images",
                 spec.teacher, spec.student, init, len(labelled.files), len(pool))  # fmt: skip
        from lowshot.model.distill import distill  # loads Lightning

        scratch = init == "random"
        ctx = FitContext(seed=spec.seed, device=spec.device, progress=spec.progress,
                         run_dir=rf.path if rf else None, resume=spec.resume)  # fmt: skip
        res = distill(
            student, files, labels, t_logits, ctx, temperature=spec.temperature,
            alpha=spec.alpha, epochs=spec.epochs, min_steps=spec.min_steps,
            batch_size=spec.batch_size, lr=spec.lr or (2e-3 if scratch else 1e-2),
            weight_decay=spec.weight_decay if spec.weight_decay is not None
            else (0.05 if scratch else 1e-4),
            optimizer="adamw" if scratch else "sgd",
        )  # fmt: skip
        m: dict[str, Any] = {"accuracy": None}
        if test is not None:
            m.update(_scores(spec, teacher, frozen, res.model, test, classes, cache))
        m.update({
            "strategy": f"distill:{spec.student}", "teacher": str(Path(spec.teacher).resolve()),
            "teacher_strategy": tmeta.get("strategy"), "student": spec.student,
            "student_init": init, "image_size": student.backbone.preprocessing.input_size,
            "teacher_image_size": teacher.backbone.preprocessing.input_size,
            "n_labelled": len(labelled.files), "n_unlabelled": len(pool),
            "temperature": spec.temperature, "alpha": spec.alpha, "epochs": res.epochs,
            "teacher_logits_seconds": round(teacher_s, 2), "train_seconds": res.train_seconds,
            "speed": _speed(teacher, res.model, test, files),
            "history": res.history,
        })  # fmt: skip
        sp = m["speed"]
        m["speedup"] = round(sp["student"]["throughput"] / sp["teacher"]["throughput"], 2)
        out = RunResult("distill", m, {"train": res.train_seconds})
        if rf is not None:
            _write(rf, out, res.model, classes, test)
            out.run_dir = rf.finish(out.to_json())
    if m["accuracy"] is not None:
        log.info("student %.4f, teacher %.4f, %.1fx the teacher's throughput",
                 m["accuracy"], m["teacher_accuracy"], m["speedup"])  # fmt: skip
    return out


def _teacher_data(spec: DistillSpec, classes: list[str]) -> tuple[ImageSet, Any]:
    """The teacher run's labelled training images (a ``fit`` run's split; none for other
    runs) and the test set: ``--test``, else the fit run's own."""
    from lowshot.data.load import load

    tspec = spec_from_config(spec.teacher)
    train = test = None
    if tspec.job == "fit":
        from lowshot.pipeline.export import fit_split

        train, test = fit_split(Path(spec.teacher), tspec)
        train, test = train.relabel(classes), test.relabel(classes)
    if spec.test is not None:
        test = load(spec.test, arrays=False)
        if getattr(test, "modality", "image") != "image":
            raise DataError(f"--test {spec.test}: {test.modality} data; the teacher reads images.")
        test = test.relabel(classes)
    empty = ImageSet([], np.zeros(0, dtype=np.int64), classes)
    return (train if train is not None else empty), test


def _pool(spec: DistillSpec, labelled: ImageSet) -> list[Path]:
    """The unlabelled images, without those that are labelled ones too (same content)."""
    if spec.unlabelled is None:
        return []
    from lowshot.data.pool import load_pool

    pool = load_pool(spec.unlabelled)
    if pool.modality != "image":
        raise DataError(
            f"--unlabelled {spec.unlabelled}: {pool.modality} data; the student learns from images."
        )
    seen = {content_hash(Path(f)) for f in labelled.files}
    files = [Path(f) for f in pool.items if content_hash(Path(f)) not in seen]
    if len(files) < len(pool.items):
        log.warning("--unlabelled: %d images are labelled training images too; used once, "
                    "with their labels.", len(pool.items) - len(files))  # fmt: skip
    return files


def _student(spec: DistillSpec, n_classes: int) -> tuple[Classifier, str]:
    """The student network and how it starts: ``imagenet`` (offline weights, or timm's hub
    when online) or ``random``; ``auto`` takes ImageNet weights where they exist offline."""
    init = spec.init
    if init == "auto":
        from lowshot.backbones import ALIASES

        init = "imagenet" if ALIASES.get(spec.student, spec.student) in OFFLINE else "random"
    try:
        bb: Backbone = create_backbone(spec.student, pretrained=init == "imagenet", seed=spec.seed)
    except BackboneError as exc:
        raise ConfigError(
            f"--student {spec.student}: {exc} Or train it from random weights: --init random."
        ) from None
    if spec.image_size is not None:
        bb.preprocessing = dataclasses.replace(bb.preprocessing, input_size=spec.image_size)
    torch.manual_seed(spec.seed)
    return Classifier(bb, n_classes), init


def _scores(spec: DistillSpec, teacher: Classifier, frozen: bool, student: Classifier,
            test: ImageSet, classes: list[str], cache: Any) -> dict[str, Any]:  # fmt: skip
    files = [Path(f) for f in test.files]
    t = logits_for(teacher, files, backbone_frozen=frozen, cache=cache, device=spec.device,
                   progress=spec.progress).argmax(1)  # fmt: skip
    s = logits_for(student, files, backbone_frozen=False, cache=cache, device=spec.device,
                   progress=spec.progress).argmax(1)  # fmt: skip
    m = classification_report(test.labels, s, classes)
    m["teacher_accuracy"] = float((t == test.labels).mean())
    m["agreement_with_teacher"] = float((t == s).mean())
    m["n_test"] = len(files)
    return m


def _speed(teacher: Classifier, student: Classifier, test: Any, files: list[Path]) -> dict:
    """Size, batch-1 latency and batch-32 throughput of both networks in PyTorch, on up to
    128 prepared images (each at its own input size), BatchNorm folded as predict does."""
    from lowshot.backbones import fold_batchnorm
    from lowshot.data.torchdata import ImageFiles, eval_transform

    items = [Path(f) for f in (test.files if test is not None else files)][:128]
    out = {}
    for name, model in (("teacher", teacher), ("student", student)):
        pre = model.backbone.preprocessing
        ds = ImageFiles(items, None, eval_transform(pre), min_side=pre.resize)
        x = torch.stack([ds[i][0] for i in range(len(ds))])
        net = torch.nn.Sequential(fold_batchnorm(model.backbone, reuse=False), model.head)
        out[name] = torch_speed(net.eval(), x) | {"image_size": pre.input_size}
    return out


def _config(spec: DistillSpec, student: Classifier, classes: list[str], labelled: ImageSet,
            pool: list[Path], test: Any) -> dict[str, Any]:  # fmt: skip
    cfg = spec.to_dict()
    cfg.update({
        "backbone_arch": student.backbone.arch,
        "preprocessing": student.backbone.preprocessing.to_dict(), "classes": classes,
        "n_train": len(labelled.files) + len(pool), "n_test": 0 if test is None else len(test),
        "machine": {"python": platform.python_version(), "torch": torch.__version__,
                    "device": str(pick_device(spec.device))},
    })  # fmt: skip
    return cfg


def _write(rf: Any, out: RunResult, model: Classifier, classes: list[str], test: Any) -> None:
    from lowshot.evaluation.plots import confusion_matrix_png, learning_curve_png
    from lowshot.io import write_text
    from lowshot.pipeline.fit import per_class_md

    m = out.metrics
    save_model(model, classes, rf.path, strategy=m["strategy"], backbone_frozen=False)
    out.artefacts += ["model.safetensors", "model.json", "log.txt"]
    if test is not None:
        confusion_matrix_png(m["confusion_matrix"], classes, rf.file("plots/confusion_matrix.png"),
                             f"{m['strategy']}: accuracy {m['accuracy']:.3f}")  # fmt: skip
        write_text(rf.file("per_class.md"), per_class_md(m))
        out.artefacts += ["plots/confusion_matrix.png", "per_class.md"]
    learning_curve_png(m["history"], rf.file("plots/learning_curve.png"),
                       f"{m['strategy']} (train_acc: agreement with the teacher)")  # fmt: skip
    out.artefacts += ["plots/learning_curve.png"]
