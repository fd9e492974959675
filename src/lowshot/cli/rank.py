"""`lowshot rank backbones|sources`: transferability before any training."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from lowshot.cli._app import comma_list, console, rank_app, setup_logging
from lowshot.cli.options import Json, Seed
from lowshot.pipeline.specs import RankBackbonesSpec, RankSourcesSpec


def _print_ranking(result: dict, cols: list[str], first: str) -> None:
    t = Table(first, *cols, "seconds")
    for r in result["ranking"]:
        label = Path(r["source"]).name if "source" in r else ""
        if "layer" in r:
            label = f"{r['backbone']} / {r['layer']}"
        t.add_row(
            str(label),
            *[f"{r[c]:.4g}" if c in r else "–" for c in cols],
            f"{sum(r['seconds'].values()):.2f}",
        )
    console.print(t)
    console.print(f"recommendation: {result['recommendation']}")


@rank_app.command("backbones")
def rank_backbones_cmd(
    data: Annotated[
        str,
        typer.Option(
            help="Labelled target images (class folders, a list, office31:webcam) or texts "
            "(a text file, sentences:CR)."
        ),
    ],
    candidates: Annotated[
        str, typer.Option(help="Comma-separated backbone names, e.g. lite0,lite1,lite2.")
    ] = "lite0,lite1,lite2",
    layers: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated stage indices to score too (features entering that stage, average-pooled)."
        ),
    ] = None,
    shots: Annotated[int | None, typer.Option(help="Score on K labelled images per class.")] = None,
    seed: Seed = 0,
    json_out: Json = False,
) -> None:
    """Every transferability score for each candidate backbone (and layer), with timings."""
    setup_logging(json_out)
    from lowshot import api  # loaded when a command runs, not for --help
    from lowshot.transferability.rank import score_names

    stages = comma_list(layers, "--layers", int, "whole numbers") if layers else None
    spec = RankBackbonesSpec(data=data, candidates=comma_list(candidates, "--candidates"),
                             layers=stages, shots=shots, seed=seed, progress=not json_out)  # fmt: skip
    res = api.rank_backbones(spec).metrics
    if json_out:
        print(json.dumps(res, indent=2))
    else:
        _print_ranking(res, score_names(), "backbone / layer")


@rank_app.command("sources")
def rank_sources_cmd(
    target: Annotated[
        str,
        typer.Option(
            help="Target: image folder or array file (labels used by the label-aware distance)."
        ),
    ],
    sources: Annotated[
        str,
        typer.Option(
            help="Comma-separated candidate sources (same kind as the target); A+B is their union."
        ),
    ],
    backbone: Annotated[str, typer.Option(help="Backbone for image folders.")] = "lite0",
    json_out: Json = False,
) -> None:
    """Distances from each candidate source domain to the target, closest first."""
    setup_logging(json_out)
    from lowshot import api  # loaded when a command runs, not for --help

    spec = RankSourcesSpec(target=target, sources=comma_list(sources, "--sources"), backbone=backbone,
                           progress=not json_out)  # fmt: skip
    res = api.rank_sources(spec).metrics
    if json_out:
        print(json.dumps(res, indent=2))
    else:
        _print_ranking(res, ["label_ot", "a_distance", "mk_mmd", "coral"], "source")
