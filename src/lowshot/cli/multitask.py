"""`lowshot multitask`: several tasks on one shared network."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from lowshot.cli._app import app, console, setup_logging
from lowshot.cli.options import (
    Devices,
    NumNodes,
    OptionalOut,
    Overwrite,
    Parallel,
    Precision,
    Quiet,
    Seed,
)
from lowshot.pipeline.specs import MultitaskSpec

_TaskOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--task",
        "-t",
        help="NAME=TRAIN[:TEST], once per task (image folders, text files, named sets "
        "such as sentences:CR). Without TEST, the examples not used for training.",
    ),
]
_TableOpt = Annotated[
    Path | None,
    typer.Option(help="One CSV / TSV / JSONL with a label column per task (empty = missing)."),
]
_LabelColumnsOpt = Annotated[
    str | None, typer.Option(help="With --table: comma list of label columns, one per task.")
]
_InputColumnOpt = Annotated[
    str, typer.Option(help="With --table: the column holding the text or the image path.")
]
_RegressionOpt = Annotated[
    str | None, typer.Option(help="With --table: label columns that are numbers to regress.")
]
_BackboneOpt = Annotated[
    str | None,
    typer.Option("--backbone", "-b", help="Shared backbone (default lite0 / minilm)."),
]
_WeightingOpt = Annotated[
    str, typer.Option("--weighting", "-w", help="equal, uncertainty, dwa, gradnorm or pcgrad.")
]
_SharingOpt = Annotated[
    str, typer.Option(help="hard (one trunk) or soft (plus per-task low-rank residuals).")
]
_ShotsOpt = Annotated[
    int | None, typer.Option("--shots", "-k", help="Labelled examples per class per task.")
]
_EpochsOpt = Annotated[int, typer.Option(help="Training epochs (passes over the largest task).")]
_MaskLabelsOpt = Annotated[
    float,
    typer.Option(help="Hide this fraction of every task's training labels (experiments)."),
]
_NoSingleTaskOpt = Annotated[
    bool,
    typer.Option("--no-single-task", help="Skip the single-task baselines (no delta_mtl)."),
]
_TrainBodyOpt = Annotated[
    bool,
    typer.Option(
        "--train-body", help="Fine-tune the backbone too, shared by the tasks (slow on a CPU)."
    ),
]
_BodyLrOpt = Annotated[float | None, typer.Option(help="Backbone learning rate with --train-body.")]


@app.command()
def multitask(
    task: _TaskOpt = None,
    table: _TableOpt = None,
    label_columns: _LabelColumnsOpt = None,
    input_column: _InputColumnOpt = "text",
    regression: _RegressionOpt = None,
    backbone: _BackboneOpt = None,
    weighting: _WeightingOpt = "equal",
    sharing: _SharingOpt = "hard",
    shots: _ShotsOpt = None,
    seed: Seed = 0,
    epochs: _EpochsOpt = 60,
    trunk: Annotated[int, typer.Option(help="Width of the shared trunk.")] = 256,
    mask_labels: _MaskLabelsOpt = 0.0,
    no_single_task: _NoSingleTaskOpt = False,
    train_body: _TrainBodyOpt = False,
    body_lr: _BodyLrOpt = None,
    devices: Devices = 1,
    num_nodes: NumNodes = 1,
    precision: Precision = "auto",
    parallel: Parallel = "auto",
    out: OptionalOut = None,
    overwrite: Overwrite = False,
    quiet: Quiet = False,
) -> None:
    """Train several tasks on one shared network; report each beside single-task training."""
    setup_logging(quiet)
    from lowshot import api  # loaded when a command runs, not for --help

    spec = MultitaskSpec(
        tasks=task, table=str(table) if table else None, label_columns=label_columns.split(",") if label_columns else None,
        input_column=input_column, regression=regression.split(",") if regression else None,
        backbone=backbone, weighting=weighting, sharing=sharing, shots=shots, seed=seed,
        epochs=epochs, trunk=trunk, mask_fraction=mask_labels, single_task=not no_single_task,
        train_body=train_body, body_lr=body_lr, out=out, overwrite=overwrite, progress=not quiet,
        devices=devices, num_nodes=num_nodes, precision=precision, parallel=parallel,
    )  # fmt: skip
    m = api.multitask(spec)
    t = Table("task", "metric", "multi-task", "single-task", "n_train", "n_test")
    for name, r in m["tasks"].items():
        key = "accuracy" if "accuracy" in r else "rmse"
        alone = r.get(f"single_task_{key}")
        t.add_row(
            name, key, f"{r[key]:.4f}", "–" if alone is None else f"{alone:.4f}",
            str(r["n_train"]), str(r["n_test"]),
        )  # fmt: skip
    console.print(t)
    if "delta_mtl" in m:
        console.print(f"delta_mtl {m['delta_mtl']:+.2f}%  (mean relative gain over single-task)")
    if out is not None:
        console.print(f"run folder: {out}")
