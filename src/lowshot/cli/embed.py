"""`lowshot embed`: features of a large set of images or texts, streamed to disk."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lowshot.cli._app import app, console, setup_logging
from lowshot.cli.options import Device, Devices, NumNodes, Out, Overwrite, Quiet, Resume


@app.command()
def embed(
    data: Annotated[
        list[str],
        typer.Argument(
            help="Image folders (any depth), file lists (a path a line), text files (a text a line) or named sets."
        ),
    ],
    out: Out = Path("runs/embed"),
    backbone: Annotated[
        str | None,
        typer.Option("--backbone", "-b", help="Backbone (default lite0 for images, minilm for text)."),
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Items per forward pass.")] = 32,
    chunk: Annotated[
        int, typer.Option(help="Items written (and resumable) together; memory holds one chunk.")
    ] = 2048,
    devices: Devices = 1,
    num_nodes: NumNodes = 1,
    device: Device = "auto",
    resume: Resume = False,
    overwrite: Overwrite = False,
    quiet: Quiet = False,
) -> None:
    """Backbone features of every item into OUT/features.npy (N x D float32, memory-mapped) and
    OUT/items.txt, in bounded memory, resumable; --devices N embeds with N processes."""
    setup_logging(quiet)
    from lowshot.pipeline.embed import EmbedSpec

    spec = EmbedSpec(data=data, out=out, backbone=backbone, batch_size=batch_size, chunk=chunk,
                     devices=devices, num_nodes=num_nodes, device=device, resume=resume,
                     overwrite=overwrite, progress=not quiet)  # fmt: skip
    from lowshot import api  # loaded when a command runs, not for --help

    m = api.embed(spec).metrics
    console.print(
        f"{m['n']:,} {m['modality']}s x {m['dim']} features ({m['backbone']}) in {m['seconds']:.1f} s: "
        f"{m['items_per_s']:.1f} items/s, peak memory {m['peak_rss_mb']:.0f} MB"
    )
    console.print(f"run folder: {out}  (features.npy, items.txt, metrics.json)")
