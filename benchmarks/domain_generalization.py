"""Domain generalization, leave one domain out: every method on Amazon reviews and
Office-31, beside ERM, with the wall time per task (issue: domain generalization).

Three grids, each resumable (a JSON store under benchmarks/results/), each with its
markdown table under docs/benchmarks/:

- ``amazon``: the 4 review domains, each the unseen target of the other three (their
  2,000 labelled training rows; scored on the target's test file), 5 seeds (seconds a run).
- ``office31``: A, D and W each the target of the other two; frozen Lite0 features, 5 seeds.
  Both frozen grids also run ``erm*5``, the ensemble of five ERM runs (``--ensemble 5``).
- ``office31-partial``: the same with the last stage trained on cached activations
  (MixStyle needs feature maps), ERM and MixStyle, 3 seeds, 5 epochs (minutes a run).

    python benchmarks/domain_generalization.py [amazon office31 office31-partial]

The same runs as ``lowshot benchmark dg amazon-reviews|office31 ...``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from lowshot._runtime import tune_malloc
from lowshot.catalogue import names
from lowshot.pipeline.dg_benchmark import run_dg_benchmark

HERE = Path(__file__).parent
FROZEN = ["erm"] + [m for m in names("generalization") if m not in ("erm", "mixstyle")]
FROZEN += ["erm*5"]  # an ensemble of five ERM runs (--ensemble 5): five times the cost
GRIDS = {
    "amazon": ("amazon-reviews", FROZEN, [0, 1, 2, 3, 4], {}),
    "office31": ("office31", FROZEN, [0, 1, 2, 3, 4], {}),
    "office31-partial": (
        "office31",
        ["erm", "mixstyle"],
        [0, 1, 2],
        {"mode": "partial", "epochs": 5},
    ),
}


def main(which: list[str]) -> None:
    tune_malloc()  # the wall times are part of the table
    for key in which or list(GRIDS):
        data, methods, seeds, overrides = GRIDS[key]
        stem = f"dg_{key.replace('-', '_')}"
        run_dg_benchmark(data, methods, seeds, overrides=overrides,
                         out_json=HERE / "results" / f"{stem}.json",
                         out_md=HERE.parent / "docs" / "benchmarks" / f"{stem}.md")  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1:])
