"""The checks every spec's ``validate`` is made of, each raising a :class:`ConfigError`
that names the option as the command line spells it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from lowshot.errors import ConfigError
from lowshot.training.scale import PARALLEL, PRECISIONS
from lowshot.training.settings import NetTraining


def option(name: str) -> str:
    """The CLI spelling of a spec field (``val_fraction`` -> ``--val-fraction``)."""
    return "--" + name.replace("_", "-")


def _int(spec: Any, name: str, lo: int | None = None, hi: int | None = None) -> None:
    v = getattr(spec, name)
    if v is None:
        return
    if isinstance(v, bool) or not isinstance(v, int):
        raise ConfigError(f"{option(name)}: expected a whole number, got {v!r}.")
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        rng = f"at least {lo}" if hi is None else f"between {lo} and {hi}"
        raise ConfigError(f"{option(name)}: must be {rng}, got {v}.")


def _fraction(spec: Any, name: str, *, zero_ok: bool) -> None:
    v = getattr(spec, name)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ConfigError(f"{option(name)}: expected a number, got {v!r}.")
    if not ((v >= 0 if zero_ok else v > 0) and v < 1):
        low = "0 <=" if zero_ok else "0 <"
        raise ConfigError(f"{option(name)}: must satisfy {low} value < 1, got {v}.")


BASELINES = ("classic", "scratch", "none")


def _baseline(v: Any) -> Any:
    """``baseline`` as the kind it names; a bool (earlier config.json files, Python callers)
    keeps its old meaning: True the from-scratch network, False none."""
    return ("scratch" if v else "none") if isinstance(v, bool) else v


def _choice(spec: Any, name: str, choices: tuple[str, ...] | list[str]) -> None:
    v = getattr(spec, name)
    if v is not None and v not in choices:
        raise ConfigError(f"{option(name)}: must be one of {', '.join(choices)}, got {v!r}.")


def _params(spec: Any) -> None:
    if not isinstance(spec.params, dict) or not all(isinstance(k, str) for k in spec.params):
        raise ConfigError(f"-p/--param: expected NAME=VALUE settings, got {spec.params!r}.")


def _scale_checks(spec: Any) -> None:
    """--devices, --num-nodes, --precision, --parallel: values Lightning takes, and only
    for jobs that train with Lightning."""
    _int(spec, "devices", lo=1)
    _int(spec, "num_nodes", lo=1)
    _choice(spec, "precision", PRECISIONS)
    _choice(spec, "parallel", PARALLEL)
    if spec.parallel == "fsdp":
        import torch

        if not torch.cuda.is_available() or str(getattr(spec, "device", "auto")) == "cpu":
            raise ConfigError(
                "--parallel fsdp: sharded training needs GPUs, and none is in use here; use "
                "--parallel ddp (or auto) on CPU processes."
            )
    many = spec.devices > 1 or spec.num_nodes > 1
    if many and not type(spec).distributable:
        raise ConfigError(
            f"--devices/--num-nodes: `lowshot {spec.job}` does not train with Lightning, so it "
            "runs in one process; leave them at 1 (fit, adapt, generalize, multitask, "
            "meta-train and distill take them)."
        )
    if many and spec.parallel == "auto" and str(getattr(spec, "device", "")).startswith("cuda:"):
        raise ConfigError(
            f"--device {spec.device} names one GPU but --devices asks for {spec.devices}: "
            "use --device cuda (Lightning picks the first N) or --devices 1."
        )


def _net_training(spec: Any) -> None:
    """The :class:`NetTraining` settings adapt and generalize share."""
    _choice(spec, "mode", NetTraining.MODES)
    for name in ("epochs", "iters_per_epoch", "batch_size", "bottleneck", "blocks"):
        _int(spec, name, lo=1)
    _fraction(spec, "val_fraction", zero_ok=False)
    _fraction(spec, "dropout", zero_ok=True)
    for name in ("lr", "weight_decay"):
        v = getattr(spec, name)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            raise ConfigError(f"{option(name)}: expected a number >= 0, got {v!r}.")
    _params(spec)


_BUDGET = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?$")


def budget_seconds(text: str | float | int) -> float:
    """``90``, ``90s``, ``10m``, ``1h30m`` -> seconds (a ConfigError naming --budget)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        secs = float(text)
    else:
        m = _BUDGET.match(str(text).strip().lower())
        if not m or not any(m.groups()):
            raise ConfigError(f"--budget: expected a time such as 90s, 10m or 1h30m, got {text!r}.")
        h, mi, se = (float(g) if g else 0.0 for g in m.groups())
        secs = 3600 * h + 60 * mi + se
    if secs <= 0:
        raise ConfigError(f"--budget: must be more than zero, got {text!r}.")
    return secs


def _unlabelled_target_checks(spec: Any) -> None:
    """``adapt``'s source-free (``--from RUN``) and ``--self-train`` options: what needs
    source data is refused by name, and each applies only where it can."""
    from lowshot.feature import deep_names
    from lowshot.feature.source_free import make_source_free, source_free_names

    if spec.from_run is None:
        if not spec.sources:
            raise ConfigError("--source: give at least one labelled source (or --from RUN to adapt "
                              "a trained run without its source data).")  # fmt: skip
        if spec.method in source_free_names():
            raise ConfigError(f"--method {spec.method} adapts a trained run without its source data: "
                              "give --from RUN (and no --source).")  # fmt: skip
    else:
        given = [(bool(spec.sources), "--source"), (spec.target_shots is not None, "--target-shots"),
                 (spec.mode != "frozen", "--mode"), (spec.select is not None, "--select"),
                 (spec.classifier is not None, "--classifier"), (spec.devices > 1, "--devices")]  # fmt: skip
        for wrong, opt in given:
            if wrong:
                raise ConfigError(f"{opt}: not with --from RUN, which adapts the run's model to the "
                                  "target without any source data.")  # fmt: skip
        if not Path(spec.from_run).is_dir():
            raise ConfigError(f"--from {spec.from_run}: no such run folder.")
        make_source_free(spec.method, dict(spec.params))  # a wrong method or -p value
    if spec.self_train and (spec.from_run is not None or spec.mode != "frozen"
                            or spec.method not in deep_names() or spec.classifier):  # fmt: skip
        raise ConfigError("--self-train refines a deep method's network over frozen features "
                          "(--mode frozen, -m dann, mdd, ...); with --from RUN the method "
                          "self-trains already.")  # fmt: skip
