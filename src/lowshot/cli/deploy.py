"""`lowshot export`: a trained run as an ONNX model (fp32, and int8 with --int8)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from lowshot.cli._app import app, console, setup_logging
from lowshot.cli.options import Json


@app.command("export")
def export_cmd(
    run_dir: Annotated[
        Path, typer.Argument(help="A finished `lowshot fit`, `adapt` or `multitask` run folder.")
    ],
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="The ONNX file to write (default RUN/model.onnx)."),
    ] = None,
    int8: Annotated[
        bool,
        typer.Option(
            "--int8", help="Also a static int8 model, calibrated on the run's training images."
        ),
    ] = False,
    opset: Annotated[int, typer.Option(help="ONNX opset, 18 to 23.")] = 18,
    json_out: Json = False,
) -> None:
    """Export a run's model to ONNX, checked against PyTorch on the run's test images."""
    setup_logging(json_out)
    from lowshot.pipeline.export import export_run

    rep = export_run(run_dir, out=out, int8=int8, opset=opset)
    if json_out:
        print(json.dumps(rep, indent=2))
        return
    t = Table("model", "file", "MB", "top-1 agreement", "max logit diff", "speed-up")
    for kind in ("fp32", "int8"):
        if kind not in rep:
            continue
        r, c = rep[kind], rep[kind].get("check")
        t.add_row(
            kind, r["file"], f"{r['mb']:.1f}",
            f"{100 * c['top1_agreement']:.1f}% of {c['items']}" if c else "–",
            f"{c['max_logit_difference']:.2g}" if c else "–",
            f"{c['seconds_torch'] / c['seconds_onnx']:.1f}x" if c else "–",
        )  # fmt: skip
    console.print(t)
    console.print(f"report: {Path(run_dir) / 'export.json'}")
    console.print(f"serve it: lowshot predict {run_dir} FILES --engine onnx"
                  + ("" if out is None else f" --onnx-model {out}"))  # fmt: skip
