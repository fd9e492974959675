"""Specs of the label-selection jobs (``lowshot select``, ``lowshot selection-curves``):
they write a list of picks or curves, not a run folder, so they are not replayed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from lowshot.errors import ConfigError
from lowshot.pipeline.specs import JobSpec, _fraction, _int, _params


@dataclass(kw_only=True)
class SelectSpec(JobSpec):
    """``lowshot select``: the ``budget`` pool examples to label next, as a list and a CSV.

    ``out`` is the list file here (the CSV goes beside it, ``.csv``), not a run folder.
    """

    job: ClassVar[str] = "select"
    pool: str
    budget: int
    labelled: str | None = None
    strategy: str = "typiclust"
    backbone: str | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        out, self.out = self.out, None  # a file, not a run folder: checked below
        try:
            super().validate()
        finally:
            self.out = out
        _int(self, "budget", lo=1)
        _params(self)
        if out is not None:
            if out.is_dir():
                raise ConfigError(
                    f"--out: {out} is a folder; name the list file to write, e.g. {out / 'to-label.txt'}."
                )
            if out.suffix.lower() == ".csv":
                raise ConfigError(
                    f"--out: name the list file (e.g. {out.with_suffix('.txt')}); the CSV is written beside it."
                )
            for f in (out, out.with_suffix(".csv")):
                if f.exists() and not self.overwrite:
                    raise ConfigError(f"--out: {f} exists; choose another name or add --overwrite.")


CURVE_STRATEGIES = ("random", "typiclust", "probcover", "kcenter", "hybrid", "margin")


@dataclass(kw_only=True)
class SelectionCurvesSpec(JobSpec):
    """``lowshot selection-curves``: active selection simulated on a labelled pool, each
    strategy's learning curve (probe accuracy against labels spent) beside random's."""

    job: ClassVar[str] = "selection-curves"
    pool: str
    test: str | None = None
    strategies: list[str] = field(default_factory=lambda: list(CURVE_STRATEGIES))
    per_class: list[float] = field(default_factory=lambda: [1.0, 2.0, 5.0])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    backbone: str | None = None
    test_fraction: float = 0.2

    def validate(self) -> None:
        super().validate()
        if not self.strategies:
            raise ConfigError("--strategies: give at least one strategy.")
        if not self.seeds or any(
            isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in self.seeds
        ):
            raise ConfigError(f"--seeds: expected whole numbers >= 0, got {self.seeds!r}.")
        pc = self.per_class
        if not pc or any(
            isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0 for v in pc
        ):
            raise ConfigError(f"--per-class: expected numbers > 0, got {pc!r}.")
        if list(pc) != sorted(set(pc)):
            raise ConfigError(
                f"--per-class: rounds spend more labels each time; give increasing values, got {pc!r}."
            )
        _fraction(self, "test_fraction", zero_ok=False)
