"""Typed job specs: what a run is asked to do, checked before any data is read.

The CLI builds a spec from its options, the Python API takes one (or the same fields as
keywords), and ``config.json`` is the spec serialised (:meth:`JobSpec.to_dict`), so a run
can be replayed from its folder: ``lowshot rerun RUN_DIR`` or ``lowshot fit --config``.
Every value is validated in :meth:`JobSpec.validate` with the option's own name in the
message, so a bad value never costs a backbone load or a feature pass.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from lowshot.backbones import DEFAULT_BACKBONE
from lowshot.errors import ConfigError
from lowshot.feature.settings import DeepTraining
from lowshot.multitask.run import MultitaskSettings
from lowshot.pipeline.spec_checks import (
    BASELINES,
    _baseline,
    _choice,
    _fraction,
    _int,
    _net_training,
    _params,
    _scale_checks,
    _unlabelled_target_checks,
    budget_seconds,
    option,
)
from lowshot.training.scale import Scale
from lowshot.training.settings import NetTraining

SPEC_VERSION = 1
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
# fields that shape how a run is executed but never its result; not part of a replay check
_EXECUTION = {"out", "overwrite", "resume", "device", "cache_dir", "progress", "devices",
              "num_nodes", "precision", "parallel"}  # fmt: skip


@dataclass(kw_only=True)
class JobSpec:
    """Fields every job shares: where the run goes and how it executes."""

    job: ClassVar[str] = ""
    # whether the job trains with Lightning and so may run on several devices and nodes
    distributable: ClassVar[bool] = False
    seed: int = 0
    out: Path | None = None
    overwrite: bool = False
    resume: bool = False
    device: str = "auto"
    cache_dir: Path | None = None
    progress: bool = True
    devices: int = 1  # processes per node for training (--devices)
    num_nodes: int = 1
    precision: str = "auto"
    parallel: str = "auto"  # Lightning strategy: auto, ddp, fsdp (GPUs)

    def __post_init__(self) -> None:
        if getattr(self, "params", {}) is None:  # "no hyper-parameters given"
            setattr(self, "params", {})  # noqa: B010  (not every spec has params)
        for f in dataclasses.fields(self):  # paths in, the types the spec declares out
            v = getattr(self, f.name)
            if f.name in ("out", "cache_dir"):
                if v is not None and not isinstance(v, Path):
                    setattr(self, f.name, Path(v))
            elif isinstance(v, Path):  # data given as a Path: kept as the string it names
                setattr(self, f.name, str(v))
            elif isinstance(v, (list, tuple)) and any(isinstance(x, Path) for x in v):
                setattr(self, f.name, [str(x) for x in v])

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the option when a value cannot work."""
        _int(self, "seed", lo=0)
        if not _DEVICE.match(str(self.device)):
            raise ConfigError(
                f"--device: {self.device!r} is not one of auto, cpu, cuda, cuda:N, mps."
            )
        _scale_checks(self)
        if self.resume and self.overwrite:
            raise ConfigError(
                "--resume and --overwrite exclude each other: continue a run or replace it."
            )
        if self.out is not None and self.out.exists() and not self.out.is_dir():
            raise ConfigError(f"--out: {self.out} is a file; name a folder for the run.")

    def scale(self) -> Scale:
        """How many processes, devices and nodes the job's training runs on."""
        return Scale(self.devices, self.num_nodes, self.precision, self.parallel)

    def to_dict(self) -> dict[str, Any]:
        """The spec as ``config.json`` holds it (paths as strings)."""
        d: dict[str, Any] = {"job": self.job, "spec_version": SPEC_VERSION}
        for f in dataclasses.fields(self):
            if f.name in ("progress", "cache_dir"):
                continue  # how this process shows and caches work, not what the run is
            v = getattr(self, f.name)
            d[f.name] = str(v) if isinstance(v, Path) else v
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "config") -> JobSpec:
        """A spec from :meth:`to_dict` output; unknown keys are an error naming them."""
        known = {f.name for f in dataclasses.fields(cls)}
        extra = sorted(set(d) - known - {"job", "spec_version"} - _RESOLVED)
        if extra:
            raise ConfigError(
                f"{where}: unknown setting(s) {', '.join(extra)} for `lowshot {cls.job}`."
            )
        if d.get("job", cls.job) != cls.job:
            raise ConfigError(f"{where}: a `lowshot {d['job']}` run, not `lowshot {cls.job}`.")
        return cls(**{k: v for k, v in d.items() if k in known})

    def replay_key(self) -> dict[str, Any]:
        """What the run is, without how this process executes it (out, device, ...): two
        specs with equal keys describe the same run. (``--resume`` checks a narrower set:
        fit.py's ``_check_resume``.)"""
        return {k: v for k, v in self.to_dict().items() if k not in _EXECUTION}


# keys config.json adds after resolution (backbone hash, classes, machine...): ignored on replay
_RESOLVED = {
    "lowshot_version", "resolved", "strategy_params", "backbone_arch", "backbone_weights_id",
    "preprocessing", "classes", "n_train", "n_test", "skipped_files", "machine", "command",
    "environment", "modality",
}  # fmt: skip


@dataclass(kw_only=True)
class FitSpec(JobSpec):
    """``lowshot fit``: train a strategy on K shots per class of ``train``, test, report."""

    job: ClassVar[str] = "fit"
    distributable: ClassVar[bool] = True
    train: str
    test: str | None = None
    strategy: str = "linear-probe"
    backbone: str | None = None  # None: lite0 for images, minilm for text
    weights: str | None = None
    shots: int | None = None
    params: dict[str, Any] = field(default_factory=dict)
    baseline: str = "classic"  # classic (seconds) | scratch (minutes) | none; see model/baselines.py
    strict: bool = False
    test_fraction: float = 0.2
    val_fraction: float = 0.0
    patience: int = 5
    target: str | None = None
    instance_weights: str | None = None
    unlabelled: str | None = None  # unlabelled examples of the task (self-training)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.baseline = _baseline(self.baseline)

    def validate(self) -> None:
        super().validate()
        _choice(self, "baseline", BASELINES)
        _int(self, "shots", lo=1)
        _int(self, "patience", lo=1)
        _fraction(self, "test_fraction", zero_ok=False)
        _fraction(self, "val_fraction", zero_ok=True)
        _params(self)
        if (self.target is None) != (self.instance_weights is None):
            raise ConfigError(
                "--instance-weights and --target go together: the weights say how much "
                "each training image resembles the target images."
            )
        if self.weights is not None and not Path(self.weights).expanduser().is_file():
            raise ConfigError(f"--weights: {self.weights} is not a file.")


@dataclass(kw_only=True)
class AutoSpec(JobSpec):
    """``lowshot auto``: choose backbone, strategy and hyper-parameters on the labelled
    training data alone (cross-validation within ``budget``), then train and test."""

    job: ClassVar[str] = "auto"
    train: str | None = None  # labelled target data; with ``sources`` there is none
    test: str | None = None
    shots: int | None = None
    backbones: list[str] | None = None  # None: every offline backbone for the data
    strategies: list[str] | None = None  # None: linear-probe, and deep ones the budget allows
    budget: str = "10m"
    trials: int = 40  # linear-probe trials (backbone x C); each costs milliseconds
    folds: int = 5
    repeats: int = 2
    shortlist: int = 2  # backbones kept after the LogME ranking
    baseline: str = "classic"
    strict: bool = False
    test_fraction: float = 0.2
    unlabelled: str | None = None  # unlabelled examples: self-training becomes a candidate
    # unsupervised domain adaptation (pipeline/auto_adapt.py): labelled source domains, the
    # unlabelled target as ``unlabelled``; candidates are adaptation methods (None: every
    # deep one), chosen without target labels
    sources: list[str] | None = None
    methods: list[str] | None = None
    preprocess: str = "none"  # array inputs, as `lowshot adapt --preprocess`
    training: dict[str, Any] = field(default_factory=dict)  # NetTraining overrides (epochs=5...)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.baseline = _baseline(self.baseline)

    def validate(self) -> None:
        super().validate()
        _choice(self, "baseline", BASELINES)
        if self.sources is not None:
            self._validate_adapt()
        elif self.train is None:
            raise ConfigError("TRAIN: give the labelled training data (or --source with the "
                              "target as --unlabelled to choose a domain adaptation).")  # fmt: skip
        elif self.methods is not None:
            raise ConfigError("--method names adaptation methods; give --source too, or use "
                              "--strategy to choose among training strategies.")  # fmt: skip
        budget_seconds(self.budget)
        _int(self, "shots", lo=1)
        _int(self, "trials", lo=1)
        _int(self, "folds", lo=2)
        _int(self, "repeats", lo=1)
        _int(self, "shortlist", lo=1)
        _fraction(self, "test_fraction", zero_ok=False)
        from lowshot.catalogue import names

        for opt, given, known in (("--backbone", self.backbones, None),
                                  ("--strategy", self.strategies, names("model"))):  # fmt: skip
            if given is not None and (not isinstance(given, list) or not given):
                raise ConfigError(f"{opt}: give one or more names, got {given!r}.")
            bad = [g for g in given or [] if known is not None and g not in known]
            if bad:
                raise ConfigError(f"{opt}: unknown {', '.join(bad)}; known: {', '.join(known or [])}.")
        if self.strategies and "scratch" in self.strategies:
            raise ConfigError("--strategy: scratch is the baseline, not a transfer candidate; "
                              "ask for it with --baseline.")  # fmt: skip

    def _validate_adapt(self) -> None:
        if not isinstance(self.sources, list) or not self.sources:
            raise ConfigError(f"--source: give one or more labelled source domains, got {self.sources!r}.")
        if self.train is not None:
            raise ConfigError(
                "TRAIN with --source: auto chooses an unsupervised adaptation (no target labels); "
                "give the target as --unlabelled. To train on labelled target examples too, use "
                "`lowshot adapt --target-shots K`.")  # fmt: skip
        if self.unlabelled is None:
            raise ConfigError("--source needs the target domain: give it as --unlabelled (its labels, "
                              "if it has class folders, are never read).")  # fmt: skip
        for opt in ("shots", "strategies"):
            if getattr(self, opt):
                raise ConfigError(f"{option(opt)} belongs to auto on labelled training data; "
                                  "with --source the candidates are adaptation methods (--method).")  # fmt: skip
        if self.methods is not None:
            from lowshot.feature import deep_names  # the registry, without the trainer

            bad = [m for m in self.methods if m not in deep_names()] if isinstance(self.methods, list) else []
            if not isinstance(self.methods, list) or not self.methods or bad:
                raise ConfigError(f"--method: {', '.join(bad) or repr(self.methods)} is not a deep adaptation "
                                  f"method auto can choose; known: {', '.join(deep_names())}.")  # fmt: skip
        _choice(self, "preprocess", AdaptSpec.PREPROCESS)
        fields = {f.name for f in dataclasses.fields(NetTraining)} - {"mode", "blocks", "params"}
        bad = sorted(set(self.training) - fields)
        if bad:
            raise ConfigError(f"training setting(s) {', '.join(bad)}: auto --source trains frozen-feature "
                              f"networks; settable: {', '.join(sorted(fields))}.")  # fmt: skip
        _net_training(NetTraining(**self.training))  # the values, as adapt checks its own


@dataclass(kw_only=True)
class AdaptSpec(JobSpec, DeepTraining):
    """``lowshot adapt``: labelled source(s) and a target, images or feature arrays."""

    job: ClassVar[str] = "adapt"
    distributable: ClassVar[bool] = True
    sources: list[str] = field(default_factory=list)
    target: str
    method: str
    target_test: str | None = None
    target_shots: int | None = None
    # a finished run to adapt without its source data (source-free: SHOT, TENT)
    from_run: str | None = None
    # after adapting, SHOT's pseudo-label self-training on the target, its epoch chosen by SND
    self_train: bool = False
    backbone: str = DEFAULT_BACKBONE
    classifier: str | None = None
    preprocess: str = "none"
    measure: bool = True
    plot: bool = True

    SELECT: ClassVar[tuple[str, ...]] = ("dev", "iwv", "snd", "entropy", "source-val")
    PREPROCESS: ClassVar[tuple[str, ...]] = ("none", "l2", "log1p-l2")
    CLASSIFIERS: ClassVar[tuple[str, ...]] = ("logreg", "1nn")

    def __post_init__(self) -> None:
        if isinstance(self.sources, (str, Path)):  # one source given on its own
            self.sources = [self.sources]
        if isinstance(self.trade_off, tuple):
            self.trade_off = list(self.trade_off)
        super().__post_init__()

    def validate(self) -> None:
        super().validate()
        _unlabelled_target_checks(self)
        _choice(self, "select", self.SELECT)
        _choice(self, "preprocess", self.PREPROCESS)
        _choice(self, "classifier", self.CLASSIFIERS)
        _int(self, "target_shots", lo=1)
        _net_training(self)
        offs = self.trade_off if isinstance(self.trade_off, list) else [self.trade_off]
        if len(offs) > 1 and self.select is None:
            raise ConfigError(
                "several --trade-off values need --select (dev, iwv, snd, entropy or source-val) "
                "to choose among them without target labels."
            )


@dataclass(kw_only=True)
class GeneralizeSpec(JobSpec, NetTraining):
    """``lowshot generalize``: labelled source domains only; a domain never seen is the goal.

    ``params`` values may be lists (or comma-separated strings): every combination is a
    candidate, and ``select`` chooses among them without the target."""

    job: ClassVar[str] = "generalize"
    distributable: ClassVar[bool] = True
    sources: list[str]
    method: str = "erm"
    target_test: str | None = None
    select: str = "train-val"
    backbone: str = DEFAULT_BACKBONE
    preprocess: str = "none"
    val_fraction: float = 0.2  # DomainBed's training-domain validation holds out 20%
    ensemble: int = 1  # members (seeds) of the chosen candidate, probabilities averaged

    SELECT: ClassVar[tuple[str, ...]] = ("train-val", "lodo")
    PREPROCESS: ClassVar[tuple[str, ...]] = ("none", "l2", "log1p-l2")

    def __post_init__(self) -> None:
        if isinstance(self.sources, (str, Path)):
            self.sources = [self.sources]
        super().__post_init__()

    def validate(self) -> None:
        super().validate()
        if len(self.sources) < 2:
            raise ConfigError(
                "--source: generalization needs two or more labelled source domains, got "
                f"{len(self.sources)}. With one domain, train with `lowshot fit`; with "
                "unlabelled target data at hand, `lowshot adapt`."
            )
        if len(set(self.sources)) < len(self.sources):
            raise ConfigError("--source: a domain is given twice; give each source once.")
        if self.target_test is not None and self.target_test in self.sources:
            raise ConfigError(
                f"--target-test {self.target_test} is also a --source: the unseen domain must "
                "not be trained on; leave it out of the sources."
            )
        _choice(self, "select", self.SELECT)
        _choice(self, "preprocess", self.PREPROCESS)
        if self.select == "lodo" and len(self.sources) < 3:
            raise ConfigError(
                "--select lodo trains on all sources but one, so it needs three or more "
                "(each fold still trains on two); with two sources use --select train-val."
            )
        _net_training(self)
        _int(self, "ensemble", lo=1)
        if self.ensemble > 1 and self.mode != "frozen":
            raise ConfigError(
                f"--ensemble {self.ensemble} averages heads over one frozen backbone; with "
                f"--mode {self.mode} each member would train its own: use --mode frozen."
            )


@dataclass(kw_only=True)
class MultitaskSpec(JobSpec, MultitaskSettings):
    """``lowshot multitask``: several tasks on one shared network, each also trained alone."""

    job: ClassVar[str] = "multitask"
    distributable: ClassVar[bool] = True
    tasks: list[str] | None = None
    table: str | None = None
    label_columns: list[str] | None = None
    input_column: str = "text"
    regression: list[str] | None = None
    backbone: str | None = None
    shots: int | None = None
    mask_fraction: float = 0.0

    SHARING: ClassVar[tuple[str, ...]] = ("hard", "soft")

    def validate(self) -> None:
        super().validate()
        if (self.tasks is None) == (self.table is None):
            raise ConfigError("give the tasks either as --task NAME=TRAIN[:TEST] or as --table.")
        if self.table is not None and not self.label_columns:
            raise ConfigError("--table needs --label-columns (one task per column).")
        _choice(self, "sharing", self.SHARING)
        for name in ("epochs", "trunk"):
            _int(self, name, lo=1)
        _int(self, "shots", lo=1)
        _fraction(self, "mask_fraction", zero_ok=True)
        for name in ("lr", "body_lr"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0):
                raise ConfigError(f"{option(name)}: expected a number > 0, got {v!r}.")


@dataclass(kw_only=True)
class MetaTrainSpec(JobSpec):
    """``lowshot meta-train``: episodic meta-training of a few-shot learner."""

    job: ClassVar[str] = "meta-train"
    distributable: ClassVar[bool] = True
    data: str
    method: str = "protonet"
    encoder: str = "conv4"
    backbone: str | None = None
    ways: int = 5
    shots: int = 1
    queries: int | None = None  # 15 at 5 ways or fewer, 5 beyond
    episodes_per_epoch: int = 100
    epochs: int = 20
    meta_batch: int = 1
    lr: float | None = None
    params: dict[str, Any] = field(default_factory=dict)
    image_size: int = 28
    channels: int = 1
    rotations: bool = True
    invert: bool | str = "auto"  # auto: each image to a dark background; yes; no
    augment: bool = True
    within_groups: bool | str = "auto"

    ENCODERS: ClassVar[tuple[str, ...]] = ("conv4", "resnet12", "mlp")

    def validate(self) -> None:
        super().validate()
        _choice(self, "encoder", self.ENCODERS)
        for name in ("ways", "shots", "queries", "episodes_per_epoch", "epochs", "meta_batch",
                     "image_size"):  # fmt: skip
            _int(self, name, lo=1)
        _int(self, "ways", lo=2)
        _choice(self, "channels", (1, 3))  # type: ignore[arg-type]
        if self.within_groups not in (True, False, "auto"):
            raise ConfigError(f"--within-groups: auto, true or false; got {self.within_groups!r}.")
        if self.invert not in (True, False, "auto", "yes", "no"):
            raise ConfigError(f"--invert: one of auto, yes, no; got {self.invert!r}.")
        if self.lr is not None and (isinstance(self.lr, bool) or not isinstance(self.lr, (int, float))
                                    or self.lr <= 0):  # fmt: skip
            raise ConfigError(f"--lr: expected a number > 0, got {self.lr!r}.")
        _params(self)


@dataclass(kw_only=True)
class DistillSpec(JobSpec):
    """``lowshot distill``: a smaller student trained on a finished run's soft labels."""

    job: ClassVar[str] = "distill"
    distributable: ClassVar[bool] = True
    teacher: str  # the run folder
    student: str = "lite0"
    init: str = "auto"  # imagenet | random | auto (ImageNet weights where they exist offline)
    image_size: int | None = None  # the student's input side; None: its backbone's default
    unlabelled: str | None = None
    test: str | None = None  # None: the teacher run's own test set
    temperature: float = 4.0
    alpha: float = 0.9
    epochs: int = 15
    min_steps: int = 200
    batch_size: int = 32
    lr: float | None = None  # None: 1e-2 (SGD) from ImageNet weights, 2e-3 (AdamW) from random
    weight_decay: float | None = None  # None: 1e-4 (SGD), 0.05 (AdamW)

    INITS: ClassVar[tuple[str, ...]] = ("auto", "imagenet", "random")

    def validate(self) -> None:
        super().validate()
        if not isinstance(self.teacher, str) or not self.teacher:
            raise ConfigError("distill needs the teacher: a finished run folder.")
        _choice(self, "init", self.INITS)
        _int(self, "image_size", lo=32, hi=1024)
        for name in ("epochs", "batch_size"):
            _int(self, name, lo=1)
        _int(self, "min_steps", lo=0)
        for name in ("temperature", "lr", "weight_decay"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0
                                  or (v == 0 and name != "weight_decay")):  # fmt: skip
                raise ConfigError(f"{option(name)}: expected a number > 0, got {v!r}.")
        a = self.alpha
        if isinstance(a, bool) or not isinstance(a, (int, float)) or not 0 <= a <= 1:
            raise ConfigError(f"--alpha: the soft labels' weight, between 0 and 1; got {a!r}.")


@dataclass(kw_only=True)
class RankBackbonesSpec(JobSpec):
    """``lowshot rank backbones``: every transferability score per candidate (and layer)."""

    job: ClassVar[str] = "rank-backbones"
    data: str
    candidates: list[str] = field(default_factory=lambda: ["lite0", "lite1", "lite2"])
    layers: list[int] | None = None
    shots: int | None = None

    def validate(self) -> None:
        super().validate()
        if not self.candidates or not all(isinstance(c, str) and c for c in self.candidates):
            raise ConfigError(f"--candidates: expected backbone names, got {self.candidates!r}.")
        _int(self, "shots", lo=1)
        for v in self.layers or []:
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ConfigError(f"--layers: expected stage indices >= 0, got {self.layers!r}.")


@dataclass(kw_only=True)
class RankSourcesSpec(JobSpec):
    """``lowshot rank sources``: distances from each candidate source to the target."""

    job: ClassVar[str] = "rank-sources"
    target: str
    sources: list[str]
    backbone: str | None = None

    def validate(self) -> None:
        super().validate()
        if not self.sources:
            raise ConfigError("--sources: give at least one candidate source.")


JOBS: dict[str, type[JobSpec]] = {
    s.job: s
    for s in (
        FitSpec,
        AutoSpec,
        AdaptSpec,
        GeneralizeSpec,
        MultitaskSpec,
        MetaTrainSpec,
        DistillSpec,
        RankBackbonesSpec,
        RankSourcesSpec,
    )
}


def spec_from_config(path: str | Path, job: str | None = None) -> JobSpec:
    """The spec a run folder's ``config.json`` (or a config file) holds; ``job`` is the
    job to assume for a hand-written file that does not say (``fit --config``)."""
    p = Path(path)
    if p.is_dir():
        p = p / "config.json"
    if not p.is_file():
        raise ConfigError(f"{p}: no such config file; a run folder holds config.json.")
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: not valid JSON ({exc}).") from None
    if not isinstance(d, dict):
        raise ConfigError(f"{p}: expected a JSON object of settings.")
    job = d.get("job", job if "job" not in d else None)
    if job is None and "strategy" in d:  # written by lowshot before specs: a fit run
        job = "fit"
    if job is None and "method" in d and "sources" in d:
        job = "adapt"
    if job is None and "weighting" in d and ("tasks" in d or "table" in d):
        job = "multitask"
    if job not in JOBS:
        raise ConfigError(
            f"{p}: cannot replay a {job or 'unknown'!r} run (replayable: {', '.join(JOBS)})."
        )
    d = {("preprocess" if k == "preprocess_as" else k): v for k, v in d.items()}
    if job == "fit" and "params" not in d:  # older configs: the resolved hyper-parameters
        d["params"] = d.get("strategy_params") or {}
    d = {k: v for k, v in d.items() if not (k == "test_fraction" and v is None)}
    return JOBS[job].from_dict(d, where=str(p))
