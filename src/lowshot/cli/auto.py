"""`lowshot auto`: the practitioner's one command (choose, train, test, report)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from lowshot.cli._app import app, console, setup_logging
from lowshot.cli.options import Device, Out, Overwrite, Quiet, Resume, Seed

_TrainArg = Annotated[
    str | None,
    typer.Argument(help="Labelled training data: a folder of class folders, a '<path> <label>' list, a text file (label lines, CSV/TSV/JSONL) or a named set such as office31:webcam.", show_default=False),
]
_UnlabelledOpt = Annotated[
    str | None,
    typer.Option(help="Unlabelled examples of the same task (folder, list or text file): self-training on them becomes a candidate. They may be the test items themselves (transductive, said in metrics.json)."),
]


def _names(values: list[str] | None) -> list[str] | None:
    """Repeatable options that also take comma lists: -b lite0,lite2 or -b lite0 -b lite2."""
    if not values:
        return None
    return [n.strip() for v in values for n in v.split(",") if n.strip()]


@app.command()
def auto(
    train: _TrainArg = None,
    test: Annotated[str | None, typer.Option(help="Test data, same forms. Default: the training items not used for training; never read by the search.")] = None,
    shots: Annotated[int | None, typer.Option(help="Labelled examples per class to use (K-shot).")] = None,
    unlabelled: _UnlabelledOpt = None,
    budget: Annotated[str, typer.Option(help="Time for the search, e.g. 90s, 10m, 1h30m (the final training comes after it).")] = "10m",
    backbone: Annotated[list[str] | None, typer.Option("--backbone", "-b", help="Candidate backbones (repeatable or comma list). Default: every offline one for the data.")] = None,
    strategy: Annotated[list[str] | None, typer.Option("--strategy", "-s", help="Candidate strategies (repeatable or comma list). Default: linear-probe, then deep ones while the budget lasts.")] = None,
    trials: Annotated[int, typer.Option(help="Linear-probe trials (backbone x C).")] = 40,
    folds: Annotated[int, typer.Option(help="Cross-validation folds (fewer when a class is smaller).")] = 5,
    repeats: Annotated[int, typer.Option(help="Repeats of the cross-validation, reshuffled.")] = 2,
    shortlist: Annotated[int, typer.Option(help="Backbones kept after the LogME ranking.")] = 2,
    baseline: Annotated[str, typer.Option(help="The no-transfer baseline behind transfer gain: classic (seconds), scratch (the network from random weights; minutes on a CPU) or none.")] = "classic",
    no_baseline: Annotated[bool, typer.Option("--no-baseline", help="The same as --baseline none.", hidden=True)] = False,
    strict: Annotated[bool, typer.Option(help="Fail on unreadable items or classes with too few examples instead of warning.")] = False,
    source: Annotated[list[str] | None, typer.Option("--source", help="Labelled source domain (repeatable): auto then chooses a domain adaptation for the target given as --unlabelled, without its labels.")] = None,
    method: Annotated[list[str] | None, typer.Option("--method", "-m", help="With --source: candidate adaptation methods (repeatable or comma list). Default: every deep one.")] = None,
    preprocess: Annotated[str, typer.Option(help="With --source and array files: none, l2 or log1p-l2 (word counts).")] = "none",
    epochs: Annotated[int | None, typer.Option(help="With --source: training epochs of each candidate (default 10).")] = None,
    seed: Seed = 0,
    out: Out = Path("runs/auto"),
    resume: Resume = False,
    overwrite: Overwrite = False,
    device: Device = "auto",
    quiet: Quiet = False,
) -> None:
    """Choose backbone, strategy and hyper-parameters on the labelled training data alone,
    train the choice, test it, and write a run folder with report.html. With --source S
    and the target as --unlabelled (no TRAIN), choose a domain adaptation method without
    target labels instead."""
    setup_logging(quiet)
    from lowshot.pipeline.specs import AutoSpec

    spec = AutoSpec(train=train, test=test, shots=shots, unlabelled=unlabelled, budget=budget, backbones=_names(backbone),
                    strategies=_names(strategy), trials=trials, folds=folds, repeats=repeats,
                    shortlist=shortlist, baseline="none" if no_baseline else baseline, strict=strict, sources=source or None,
                    methods=_names(method), preprocess=preprocess,
                    training={"epochs": epochs} if epochs is not None else {}, seed=seed, out=out,
                    resume=resume, overwrite=overwrite, device=device, progress=not quiet)  # fmt: skip
    from lowshot import api  # loaded when a command runs, not for --help

    r = api.auto(spec)
    a = r["auto"]
    console.print(f"[bold]chose[/bold] {a['why']}")
    for note in a["notes"]:
        console.print(f"[yellow]note:[/yellow] {note}")
    t = Table(show_header=False, box=None)
    acc = r.metrics.get("accuracy", r.metrics.get("target_accuracy"))
    if acc is not None:
        t.add_row("test accuracy", f"{acc:.4f}")
    if r.metrics.get("balanced_accuracy") is not None:
        t.add_row("balanced accuracy", f"{r['balanced_accuracy']:.4f}")
    if "transfer_gain" in r.metrics:
        t.add_row("transfer gain", f"{r['transfer_gain']:+.4f}")
    t.add_row("search", f"{a['search_seconds']:.0f} s of a {a['budget_seconds']:.0f} s budget")
    console.print(t)
    if r.run_dir is not None:
        console.print(f"run folder: {r.run_dir}  (report.html, model.safetensors, metrics.json)")
