"""`lowshot select`: which pool examples to label next."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from lowshot.cli._app import app, console, parse_params, setup_logging
from lowshot.cli.options import Json, Params, Seed


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
            help="typiclust (the default, for the first labels), probcover, kcenter, random; "
            "with --labelled also margin, entropy, hybrid. `lowshot methods` lists them.",
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
    from lowshot.pipeline.specs import SelectSpec

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
