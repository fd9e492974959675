"""`lowshot generalize`: train on labelled source domains for a domain never seen."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lowshot.catalogue import names
from lowshot.cli._app import app, console, parse_params, setup_logging
from lowshot.cli.adapt import Sources
from lowshot.cli.options import (
    Backbone,
    Device,
    Devices,
    NumNodes,
    Out,
    Overwrite,
    Parallel,
    Params,
    Precision,
    Seed,
)
from lowshot.pipeline.specs import GeneralizeSpec

_MethodOpt = Annotated[
    str,
    typer.Option(
        "--method",
        "-m",
        help="One of: " + ", ".join(sorted(names("generalization"), key=lambda n: (n != "erm", n))),
    ),
]
_TargetTestOpt = Annotated[
    str | None,
    typer.Option(
        help="Labelled data of the unseen domain, read only after training to score the model."
    ),
]
_SelectOpt = Annotated[
    str,
    typer.Option(
        help="Model selection without the target: train-val (a held-out part of every source) "
        "or lodo (each source held out in turn; three or more sources)."
    ),
]
_ModeOpt = Annotated[
    str,
    typer.Option(help="frozen (MLP on cached features), partial (last --blocks stages) or full."),
]


@app.command()
def generalize(
    source: Sources,
    method: _MethodOpt = "erm",
    out: Out = Path("runs/generalize"),
    target_test: _TargetTestOpt = None,
    select: _SelectOpt = "train-val",
    mode: _ModeOpt = "frozen",
    backbone: Backbone = "lite0",
    blocks: Annotated[int, typer.Option(help="--mode partial: how many last stages train.")] = 1,
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = 10,
    iters: Annotated[int, typer.Option(help="Iterations per epoch.")] = 100,
    batch_size: Annotated[int, typer.Option(help="Batch size per source domain.")] = 32,
    lr: Annotated[float, typer.Option(help="Learning rate (the body trains at a tenth).")] = 0.01,
    bottleneck: Annotated[int, typer.Option(help="Bottleneck width.")] = 256,
    val_fraction: Annotated[
        float, typer.Option(help="--select train-val: the part of each source held out.")
    ] = 0.2,
    preprocess: Annotated[str, typer.Option(help="Arrays: none, l2 or log1p-l2.")] = "none",
    ensemble: Annotated[
        int,
        typer.Option(
            help="Train the chosen setting with this many seeds and average their "
            "probabilities (--mode frozen)."
        ),
    ] = 1,
    param: Params = None,
    seed: Seed = 0,
    devices: Devices = 1,
    num_nodes: NumNodes = 1,
    precision: Precision = "auto",
    parallel: Parallel = "auto",
    device: Device = "auto",
    overwrite: Overwrite = False,
) -> None:
    """Domain generalization: train on two or more labelled sources (never the target);
    -p NAME=V1,V2 gives candidates that --select chooses among."""
    setup_logging(False)
    spec = GeneralizeSpec(
        sources=list(source or []), method=method, out=out, target_test=target_test, select=select,
        mode=mode, backbone=backbone, blocks=blocks, epochs=epochs, iters_per_epoch=iters,
        batch_size=batch_size, lr=lr, bottleneck=bottleneck, val_fraction=val_fraction,
        preprocess=preprocess, ensemble=ensemble, params=parse_params(param), seed=seed, device=device,
        devices=devices, num_nodes=num_nodes, precision=precision, parallel=parallel,
        overwrite=overwrite, progress=True,
    )  # fmt: skip
    from lowshot import api  # loaded when a command runs, not for --help

    m = api.generalize(spec)
    if m["n_candidates"] > 1:
        console.print(
            f"chosen by {select}: {m['chosen_params']} (score {m['selection_score']:.4f})"
        )
    console.print(f"source validation accuracy: {m['val_accuracy']:.4f}"
                  if m["val_accuracy"] is not None else "")  # fmt: skip
    acc = m["target_accuracy"]
    if acc is not None:
        console.print(f"unseen-domain accuracy: {acc:.4f} ({target_test})")
    console.print(f"run folder: {out}")
