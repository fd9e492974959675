"""`lowshot select`: which pool examples to label next."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from lowshot.catalogue import names
from lowshot.cli._app import app, comma_list, console, parse_params, setup_logging
from lowshot.cli.options import Json, Params, Seed
from lowshot.pipeline.select_specs import CURVE_STRATEGIES


@app.command("select")
def select_cmd(
    pool: Annotated[
        str,
        typer.Argument(
            help="Unlabelled examples: an image folder (flat or nested), a file list, a text "
            "file (a text a line), a CSV/JSONL with a text column, an array file, or a named "
            "set (office31:webcam, sentences:CR)."
        ),
    ],
    budget: Annotated[int, typer.Option(help="How many examples to label next.")],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="The list to write (an image path or a text a line, ready to label); the "
            "CSV with each pick's score and reason goes beside it (FILE.csv).",
        ),
    ],  # fmt: skip
    labelled: Annotated[
        str | None,
        typer.Option(
            help="Examples labelled so far (class folders, a labelled list or text file, an "
            "array file): left out of the pool, treated as covered, and the model that "
            "margin, entropy and hybrid rank by is trained on them."
        ),
    ] = None,
    strategy: Annotated[
        str,
        typer.Option(
            "--strategy",
            "-s",
            help="How to choose (typiclust suits the first labels): "
            + ", ".join(names("select"))
            + ". margin and entropy need --labelled.",
        ),
    ] = "typiclust",  # fmt: skip
    backbone: Annotated[
        str | None,
        typer.Option(
            "--backbone",
            "-b",
            help="Backbone that embeds the pool (default: lite0 for images, minilm for text).",
        ),
    ] = None,  # fmt: skip
    param: Params = None,
    seed: Seed = 0,
    overwrite: Annotated[
        bool, typer.Option(help="Replace the list and CSV if they exist.")
    ] = False,
    json_out: Json = False,
) -> None:
    """Choose the examples to label next from an unlabelled pool; writes a list and a CSV."""
    setup_logging(json_out)
    from lowshot import api  # loaded when a command runs, not for --help
    from lowshot.pipeline.select_specs import SelectSpec

    spec = SelectSpec(pool=pool, budget=budget, out=out, labelled=labelled, strategy=strategy,
                      backbone=backbone, params=parse_params(param), seed=seed,
                      overwrite=overwrite, progress=not json_out)  # fmt: skip
    res = api.select_examples(spec)
    if json_out:
        print(json.dumps(res.to_json(), indent=2))
        return
    t = Table("#", "example", "score", "reason", title=f"{strategy}: {budget} of {res['n_pool']} "
              f"pool examples")  # fmt: skip
    picks = res["picks"]
    for p in picks[:10]:
        item = p["item"] if res["modality"] != "image" else Path(p["item"]).name
        t.add_row(str(p["rank"]), item[:60], f"{p['score']:.4g}", p["reason"])
    if len(picks) > 10:
        t.add_row("...", f"({len(picks) - 10} more in the list)", "", "")
    console.print(t)
    console.print(f"wrote {out} (label each line) and {out.with_suffix('.csv')} "
                  f"({res['timings']['wall']:.1f} s)")  # fmt: skip


@app.command("selection-curves")
def selection_curves_cmd(
    pool: Annotated[
        str,
        typer.Argument(
            help="A labelled pool (class folders, a labelled list or text file, an array file, "
            "office31:webcam): its labels are revealed only for the examples picked."
        ),
    ],
    test: Annotated[
        str | None,
        typer.Option(help="Labelled test data (default: a stratified --test-fraction of POOL)."),
    ] = None,
    strategies: Annotated[
        str, typer.Option(help="Comma-separated strategies; random is the reference.")
    ] = ",".join(CURVE_STRATEGIES),
    per_class: Annotated[
        str, typer.Option(help="Labels per class on average after each round, increasing.")
    ] = "1,2,5",
    seeds: Annotated[
        str, typer.Option(help="Comma-separated seeds (split and selection).")
    ] = "0,1,2",
    backbone: Annotated[
        str | None, typer.Option("--backbone", "-b", help="Backbone (default: lite0 / minilm).")
    ] = None,
    test_fraction: Annotated[float, typer.Option(help="Held out when --test is not given.")] = 0.2,
    json_out: Json = False,
) -> None:
    """Simulate active selection on labelled data: each strategy's accuracy per round beside random."""
    setup_logging(json_out)
    from lowshot import api  # loaded when a command runs, not for --help
    from lowshot.pipeline.select_specs import SelectionCurvesSpec

    spec = SelectionCurvesSpec(
        pool=pool, test=test, strategies=comma_list(strategies, "--strategies"),
        per_class=comma_list(per_class, "--per-class", float, "numbers"),
        seeds=comma_list(seeds, "--seeds", int, "whole numbers"),
        backbone=backbone, test_fraction=test_fraction, progress=not json_out,
    )  # fmt: skip
    res = api.selection_curves(spec)
    if json_out:
        print(json.dumps(res.to_json(), indent=2))
        return
    rounds = spec.per_class
    t = Table("strategy", *[f"{b:g}/class" for b in rounds], *[f"gap {b:g}/class" for b in rounds],
              title=f"linear-probe accuracy (%), mean ± std over {len(spec.seeds)} seeds")  # fmt: skip
    for name in spec.strategies:
        rows = [c for c in res["curves"] if c["strategy"] == name]
        accs = [f"{100 * c['accuracy']:.1f}±{100 * c['std']:.1f}" for c in rows]
        gaps = [f"{100 * c['gap_to_random']:+.1f}" if "gap_to_random" in c else "–" for c in rows]
        t.add_row(name, *accs, *gaps)
    console.print(t)
