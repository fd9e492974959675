"""`lowshot fit`, `rerun`, `evaluate` and `predict`: train a run, replay it, serve it."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from lowshot.catalogue import names
from lowshot.cli._app import app, console, parse_params, setup_logging
from lowshot.cli.options import (
    Backbone,
    Device,
    Devices,
    Json,
    NumNodes,
    OptionalOut,
    Out,
    Overwrite,
    Parallel,
    Params,
    Precision,
    Quiet,
    Resume,
    Seed,
)
from lowshot.errors import ConfigError
from lowshot.pipeline.specs import FitSpec, spec_from_config

TrainArg = Annotated[
    str | None,
    typer.Argument(
        help="Training data: a folder of class folders (root/<class>/*, or root/images/<class>/*), "
        "a '<path> <label>' list file, a text file (label lines, CSV/TSV/JSONL), or a named set "
        "such as office31:webcam. Not needed with --config."
    ),
]


_TestOpt = Annotated[
    str | None,
    typer.Option(help="Test data, same forms. Default: the training items not used for training."),
]
_StrategyOpt = Annotated[
    str,
    typer.Option("--strategy", "-s", help="How to transfer: " + ", ".join(names("model")) + "."),
]
_WeightsOpt = Annotated[
    Path | None, typer.Option(help="Local checkpoint for the backbone (.safetensors or .pth).")
]
_ShotsOpt = Annotated[
    int | None, typer.Option(help="Labelled examples per class to train on (K-shot).")
]
_BaselineOpt = Annotated[
    str,
    typer.Option(
        help="The no-transfer baseline behind transfer gain: classic (logistic regression on 32x32 pixels, or TF-IDF for text; seconds), scratch (the same network from random weights; minutes on a CPU) or none."
    ),
]
_NoBaselineOpt = Annotated[
    bool, typer.Option("--no-baseline", help="The same as --baseline none.", hidden=True)
]
_StrictOpt = Annotated[
    bool,
    typer.Option(
        help="Fail on unreadable images or classes with too few images instead of warning."
    ),
]
_ValFractionOpt = Annotated[
    float,
    typer.Option(
        help="Deep strategies: hold out this fraction of the training images for early stopping (keeps the best epoch)."
    ),
]
_PatienceOpt = Annotated[
    int, typer.Option(help="Epochs without validation improvement before stopping.")
]
_TargetOpt = Annotated[
    str | None,
    typer.Option(
        help="Unlabelled images of the deployment domain: with --instance-weights, training images that resemble them count more."
    ),
]
_InstanceWeightsOpt = Annotated[
    str | None,
    typer.Option(
        help="Importance-weighting method: " + ", ".join(names("instance", job="fit")) + "."
    ),
]
UnlabelledOpt = Annotated[
    str | None,
    typer.Option(
        help="Unlabelled examples of the same task (a folder, list or text file), for --strategy self-training; they may be the test items themselves (transductive, said in metrics.json)."
    ),
]
_ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        help="Run the settings of a config.json (a run folder's, or written by hand); options given on the line override them."
    ),
]


@app.command()
def fit(
    ctx: typer.Context,
    train: TrainArg = None,
    test: _TestOpt = None,
    strategy: _StrategyOpt = "linear-probe",
    backbone: Backbone = "lite0",
    weights: _WeightsOpt = None,
    shots: _ShotsOpt = None,
    seed: Seed = 0,
    out: Out = Path("runs/latest"),
    param: Params = None,
    baseline: _BaselineOpt = "classic",
    no_baseline: _NoBaselineOpt = False,
    strict: _StrictOpt = False,
    val_fraction: _ValFractionOpt = 0.0,
    patience: _PatienceOpt = 5,
    target: _TargetOpt = None,
    instance_weights: _InstanceWeightsOpt = None,
    unlabelled: UnlabelledOpt = None,
    config: _ConfigOpt = None,
    resume: Resume = False,
    overwrite: Overwrite = False,
    devices: Devices = 1,
    num_nodes: NumNodes = 1,
    precision: Precision = "auto",
    parallel: Parallel = "auto",
    device: Device = "auto",
    quiet: Quiet = False,
) -> None:
    """Train on a few labelled examples and evaluate; writes OUT/metrics.json, the model, plots and a log."""
    setup_logging(quiet)
    given = {
        k: v
        for k, v in locals().items()
        if k not in ("ctx", "config", "quiet", "param", "no_baseline")
    }
    given["params"], given["progress"] = parse_params(param), not quiet
    if no_baseline:
        given["baseline"] = "none"
    if config is not None:
        spec = spec_from_config(config, job="fit")
        if not isinstance(spec, FitSpec):
            raise ConfigError(f"--config: {config} holds a `lowshot {spec.job}` run.")
        explicit = {k: v for k, v in given.items() if _on_command_line(ctx, k)
                    or (k == "baseline" and no_baseline)}  # fmt: skip
        spec = dataclasses.replace(spec, **explicit, progress=not quiet)
    else:
        if train is None:
            raise ConfigError("TRAIN: give the training data, or --config with a config.json.")
        spec = FitSpec(**given)
    from lowshot import api  # loaded when a command runs, not for --help

    result = api.fit(spec)
    _print_summary(result, spec.out)


def _on_command_line(ctx: typer.Context, name: str) -> bool:
    key = {"params": "param"}.get(name, name)
    src = ctx.get_parameter_source(key) if key in ctx.params else None
    return src is not None and src.name not in ("DEFAULT", "DEFAULT_MAP")


@app.command()
def rerun(
    run_dir: Annotated[Path, typer.Argument(help="A run folder: its config.json is replayed.")],
    out: OptionalOut = None,
    seed: Annotated[int | None, typer.Option(help="Replay with another seed.")] = None,
    device: Device = "auto",
    quiet: Quiet = False,
) -> None:
    """Replay a run from its config.json (into --out, or replacing RUN_DIR once it finishes)."""
    setup_logging(quiet)
    changes: dict[str, Any] = {"device": device, "progress": not quiet}
    if out is not None:
        changes["out"] = out
    if seed is not None:
        changes["seed"] = seed
    from lowshot import api  # loaded when a command runs, not for --help

    result = api.rerun(run_dir, **changes)
    if result.job in ("fit", "auto"):
        _print_summary(result, result.run_dir)
    else:
        console.print(f"target accuracy: {result.accuracy}\nrun folder: {result.run_dir}")


def _print_summary(m: Mapping[str, Any], out: Path | None) -> None:
    t = Table(show_header=False, box=None)
    t.add_row("accuracy", f"{m['accuracy']:.4f}")
    t.add_row("balanced accuracy", f"{m['balanced_accuracy']:.4f}")
    t.add_row("macro-F1", f"{m['macro_f1']:.4f}")
    if "transfer_gain" in m:
        gain = m["transfer_gain"]
        style = "red" if gain <= 0 else "green"
        t.add_row(f"no transfer ({m['baseline_model']})", f"{m['baseline_accuracy']:.4f}")
        t.add_row("transfer gain", f"[{style}]{gain:+.4f}[/{style}]")
    if "fit_and_eval_seconds" in m:
        t.add_row("time", f"{m['fit_and_eval_seconds']:.1f} s")
    console.print(t)
    if out is not None:
        console.print(f"run folder: {out}  (metrics.json, model.safetensors, plots/, log.txt)")


@app.command()
def evaluate(
    run_dir: Annotated[Path, typer.Argument(help="A finished `lowshot fit` run folder.")],
    data: Annotated[
        str, typer.Argument(help="Labelled images to evaluate on (same forms as fit's TRAIN).")
    ],
    strict: Annotated[bool, typer.Option(help="Fail on unreadable images.")] = False,
    device: Device = "auto",
    json_out: Json = False,
) -> None:
    """Evaluate a trained run on other labelled images; writes RUN_DIR/eval-<name>.json."""
    setup_logging(json_out)
    from lowshot.api import evaluate as api_eval

    m = api_eval(run_dir, data, strict=strict, device=device, progress=not json_out)
    if json_out:
        print(json.dumps({k: v for k, v in m.items() if k != "confusion_matrix"}, indent=2))
    else:
        _print_summary(m, None)


@app.command()
def predict(
    run_dir: Annotated[Path, typer.Argument(help="A finished `lowshot fit` run folder.")],
    files: Annotated[
        list[Path],
        typer.Argument(
            help="Image files or folders; for a text run, text files (one text a line) or texts."
        ),
    ],
    top: Annotated[int, typer.Option(help="How many classes to list per image.")] = 3,
    device: Device = "auto",
    engine: Annotated[
        str,
        typer.Option(help="torch, or onnx: the run's `lowshot export` served by ONNX Runtime."),
    ] = "torch",
    onnx_model: Annotated[
        Path | None,
        typer.Option(help="With --engine onnx: the exported file (default RUN/model.onnx)."),
    ] = None,
    json_out: Json = False,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o",
            help="Write a CSV (item, class, probability, top) a chunk at a time instead of printing: for any number of items, in bounded memory; --resume continues it.",
        ),
    ] = None,
    chunk: Annotated[int, typer.Option(help="With --out: items scored and written together.")] = 2048,
    resume: Annotated[bool, typer.Option(help="With --out: continue after its last complete row.")] = False,
    overwrite: Annotated[bool, typer.Option(help="With --out: replace an existing file.")] = False,
) -> None:
    """Predict the class of images (or texts) with a trained run's model."""
    if out is not None:
        setup_logging(json_out)
        from lowshot.api import predict_to_file

        r = predict_to_file(run_dir, list(files), out, top_k=top, device=device, engine=engine,
                            onnx_model=onnx_model, chunk=chunk, resume=resume,
                            overwrite=overwrite, progress=not json_out)  # fmt: skip
        if json_out:
            print(json.dumps(r, indent=2))
        else:
            console.print(f"{r['items']:,} predictions in {r['out']} ({r['items_per_s']:.1f} items/s)")
        return
    if resume or overwrite:
        raise ConfigError("--resume/--overwrite: they apply to a predictions file; add --out FILE.csv.")
    setup_logging(True)
    from lowshot.api import predict as api_predict

    preds = api_predict(run_dir, list(files), top_k=top, device=device, progress=not json_out,
                        engine=engine, onnx_model=onnx_model)  # fmt: skip
    if json_out:
        print(json.dumps(preds, indent=2))
        return
    t = Table(
        "text" if preds and "text" in preds[0] else "file", "class", "probability", "runners-up"
    )
    for p in preds:
        t.add_row(
            p.get("file", p.get("text", "")),
            p["class"],
            f"{p['probability']:.3f}",
            ", ".join(f"{r['class']} {r['probability']:.2f}" for r in p["top"][1:]),
        )
    console.print(t)
