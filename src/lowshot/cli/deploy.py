"""`lowshot export` (a trained run as an ONNX model, fp32 and int8) and `lowshot distill`
(a smaller student trained on a run's soft labels)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from lowshot.cli._app import app, console, setup_logging
from lowshot.cli.options import (
    Device,
    Devices,
    Json,
    NumNodes,
    Out,
    Overwrite,
    Parallel,
    Precision,
    Resume,
    Seed,
)
from lowshot.pipeline.specs import DistillSpec


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


@app.command("distill")
def distill_cmd(
    teacher: Annotated[Path, typer.Argument(help="A finished image run folder: the teacher.")],
    out: Out,
    student: Annotated[
        str,
        typer.Option(
            help="The student: lite0/1/2 or any timm model name (e.g. mobilenetv3_small_100)."
        ),
    ] = "lite0",
    init: Annotated[
        str,
        typer.Option(help="auto (ImageNet weights where they exist offline), imagenet or random."),
    ] = "auto",
    image_size: Annotated[
        int | None,
        typer.Option(help="The student's input side in pixels (e.g. 128; default its own)."),
    ] = None,
    unlabelled: Annotated[
        str | None,
        typer.Option(help="More images the student learns the teacher's answers on."),
    ] = None,
    test: Annotated[
        str | None, typer.Option(help="Labelled test images (default: the teacher run's test set).")
    ] = None,
    temperature: Annotated[
        float, typer.Option(help="Softmax temperature of the soft labels.")
    ] = 4.0,
    alpha: Annotated[
        float, typer.Option(help="Weight of the soft labels; 1 - alpha: of the true labels.")
    ] = 0.9,
    epochs: Annotated[
        int, typer.Option(help="Passes over the images (at least --min-steps steps).")
    ] = 15,
    min_steps: Annotated[int, typer.Option(help="Fewest optimizer steps.")] = 200,
    batch_size: Annotated[int, typer.Option(help="Batch size.")] = 32,
    lr: Annotated[
        float | None,
        typer.Option(help="Learning rate (default 1e-2 from ImageNet, 2e-3 from random)."),
    ] = None,
    seed: Seed = 0,
    devices: Devices = 1,
    num_nodes: NumNodes = 1,
    precision: Precision = "auto",
    parallel: Parallel = "auto",
    device: Device = "auto",
    resume: Resume = False,
    overwrite: Overwrite = False,
) -> None:
    """Distil a run into a smaller, faster student (Hinton et al. 2015): it learns the
    teacher's soft labels on the labelled and --unlabelled images; an ordinary run folder."""
    setup_logging(False)
    spec = DistillSpec(
        teacher=str(teacher), out=out, student=student, init=init, image_size=image_size,
        unlabelled=unlabelled, test=test, temperature=temperature, alpha=alpha, epochs=epochs,
        min_steps=min_steps, batch_size=batch_size, lr=lr, seed=seed, device=device,
        devices=devices, num_nodes=num_nodes, precision=precision, parallel=parallel,
        resume=resume, overwrite=overwrite,
    )  # fmt: skip
    from lowshot import api  # loaded when a command runs, not for --help

    m = api.distill(spec)
    sp = m["speed"]
    t = Table("model", "input", "MB", "latency (ms)", "throughput (/s)", "test accuracy")
    for who, acc in (("teacher", m.get("teacher_accuracy")), ("student", m["accuracy"])):
        r = sp[who]
        t.add_row(who, f"{r['image_size']} px", f"{r['mb']:.1f}", f"{r['latency_ms']:.1f}",
                  f"{r['throughput']:.0f}", "–" if acc is None else f"{100 * acc:.1f}%")  # fmt: skip
    console.print(t)
    console.print(f"{m['speedup']:.1f}x the teacher's throughput; run folder: {out}")
