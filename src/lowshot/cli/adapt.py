"""`lowshot adapt`, `reweight` and `benchmark`: transfer from a labelled source domain."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lowshot.catalogue import names
from lowshot.cli._app import app, console, parse_params, setup_logging
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
from lowshot.errors import ConfigError
from lowshot.feature import deep_names
from lowshot.pipeline.specs import AdaptSpec

Sources = Annotated[
    list[str] | None,
    typer.Option(
        "--source",
        "-s",
        help="Labelled source domain (repeatable): a folder of class folders, a named domain (office31:amazon) or an array file.",
    ),
]


_TargetOpt = Annotated[
    str,
    typer.Option(
        "--target",
        "-t",
        help="Target domain: images (class folders or a flat folder of unlabelled images) or an array file.",
    ),
]
_MethodOpt = Annotated[
    str | None,
    typer.Option(
        "--method",
        "-m",
        help="erm, or a method of the feature or instance family: "
        + ", ".join(names(job="adapt"))
        + ". With --from: shot (default) or tent.",
    ),
]
_FromOpt = Annotated[
    str | None,
    typer.Option(
        "--from",
        help="A finished run folder to adapt to --target without its source data (source-free: "
        "-m shot or tent); no --source then.",
    ),
]
_TargetTestOpt = Annotated[
    str | None,
    typer.Option(
        help="Labelled target data to score on; default: the target's own labels (never trained on)."
    ),
]
_TargetShotsOpt = Annotated[
    int | None,
    typer.Option(help="Labelled target examples per class to train on too (semi-supervised)."),
]
_ModeOpt = Annotated[
    str,
    typer.Option(help="frozen (MLP on cached features), partial (last --blocks stages) or full."),
]
_SelectOpt = Annotated[
    str | None,
    typer.Option(
        help="Choose the epoch (and --trade-off) without target labels: dev, iwv, snd, entropy or source-val."
    ),
]
_TradeOffOpt = Annotated[
    str | None,
    typer.Option(help="Weight of the transfer loss; several comma-separated values need --select."),
]
_LrOpt = Annotated[float, typer.Option(help="Learning rate (the body trains at a tenth of it).")]
_ClassifierOpt = Annotated[
    str | None, typer.Option(help="Shallow methods: logreg or 1nn (default logreg).")
]
_PreprocessOpt = Annotated[str, typer.Option(help="Arrays: none, l2 or log1p-l2 (word counts).")]


@app.command()
def adapt(
    target: _TargetOpt,
    source: Sources = None,
    method: _MethodOpt = None,
    from_run: _FromOpt = None,
    out: Out = Path("runs/adapt"),
    target_test: _TargetTestOpt = None,
    target_shots: _TargetShotsOpt = None,
    mode: _ModeOpt = "frozen",
    backbone: Backbone = "lite0",
    blocks: Annotated[int, typer.Option(help="--mode partial: how many last stages train.")] = 1,
    select: _SelectOpt = None,
    trade_off: _TradeOffOpt = None,
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = 10,
    iters: Annotated[int, typer.Option(help="Iterations per epoch.")] = 100,
    batch_size: Annotated[int, typer.Option(help="Batch size per domain.")] = 32,
    lr: _LrOpt = 0.01,
    bottleneck: Annotated[int, typer.Option(help="Bottleneck width.")] = 256,
    classifier: _ClassifierOpt = None,
    preprocess: _PreprocessOpt = "none",
    param: Params = None,
    seed: Seed = 0,
    devices: Devices = 1,
    num_nodes: NumNodes = 1,
    precision: Precision = "auto",
    parallel: Parallel = "auto",
    device: Device = "auto",
    overwrite: Overwrite = False,
    plot: Annotated[bool, typer.Option(help="Write embedding.png (t-SNE).")] = True,
    self_train: Annotated[bool, typer.Option(
        "--self-train", help="After adapting, self-train on the target's pseudo-labels (SHOT), the "
        "epoch chosen without labels (SND); --mode frozen.")] = False,
) -> None:
    """Domain adaptation from labelled source(s) to a target; writes OUT/metrics.json."""
    setup_logging(False)
    if method is None and from_run is None:
        raise ConfigError("--method: give a method (e.g. -m dann), or --from RUN for source-free adaptation.")
    spec = AdaptSpec(
        sources=source or [], target=target, method=method or "shot", from_run=from_run, out=out,
        target_test=target_test,
        target_shots=target_shots, mode=mode, backbone=backbone, blocks=blocks, select=select,
        trade_off=_trade_off(trade_off), epochs=epochs, iters_per_epoch=iters,
        batch_size=batch_size, lr=lr, bottleneck=bottleneck, classifier=classifier,
        preprocess=preprocess, params=parse_params(param), seed=seed, device=device,
        devices=devices, num_nodes=num_nodes, precision=precision, parallel=parallel,
        overwrite=overwrite, plot=plot, self_train=self_train, progress=True,
    )  # fmt: skip
    from lowshot import api  # loaded when a command runs, not for --help

    m = api.adapt(spec)
    acc = m["target_accuracy"]
    before = f" (the run's model before adapting: {m['target_accuracy_before']:.4f})" if m.get("target_accuracy_before") is not None else ""
    console.print(f"target accuracy: {acc:.4f}{before}" if acc is not None
                  else "target accuracy: not measured (no target labels)")  # fmt: skip
    if "a_distance_before" in m:
        console.print(
            f"A-distance {m['a_distance_before']:.3f} -> {m['a_distance_after']:.3f}, "
            f"MK-MMD {m['mmd_before']:.4f} -> {m['mmd_after']:.4f}"
        )
    console.print(f"run folder: {out}")


def _trade_off(text: str | None) -> list[float] | float | None:
    if not text:
        return None
    try:
        offs = [float(v) for v in text.split(",")]
    except ValueError:
        raise ConfigError(
            f"--trade-off: expected numbers separated by commas, got {text!r}."
        ) from None
    return offs if len(offs) > 1 else offs[0]


@app.command()
def benchmark(
    name: Annotated[
        str, typer.Argument(help="office31 or amazon-reviews; dg office31|amazon-reviews.")
    ],
    dataset: Annotated[
        str | None, typer.Argument(help="After dg: the data set, each domain held out in turn.")
    ] = None,
    methods: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated methods (default: every deep adaptation method; "
            "for dg every generalization method the mode runs)."
        ),
    ] = None,
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds.")] = "0,1,2,3,4",
    out: Annotated[
        Path, typer.Option("--out", "-o", help="JSON results (resumed if it exists).")
    ] = Path("benchmark.json"),
    table: Annotated[
        Path | None, typer.Option(help="Markdown table to write (default: beside --out).")
    ] = None,
    tasks: Annotated[
        str | None, typer.Option(help="Only these tasks, e.g. A→W,D→A (or A-W,D-A).")
    ] = None,
    data_root: Annotated[
        Path | None, typer.Option(help="Data root (default: LOWSHOT_DATA, ../shared/data).")
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="Override a setting NAME=VALUE (e.g. mode=partial)."),
    ] = None,
) -> None:
    """Reproduce a published domain-adaptation table: JSON + markdown beside the paper's."""
    setup_logging(False)
    from lowshot.benchmark import run_benchmark

    try:
        seed_list = [int(s) for s in seeds.split(",")]
    except ValueError:
        raise typer.BadParameter(
            f"expected integers, got {seeds!r}", param_hint="--seeds"
        ) from None
    task_list = [t.replace("-", "→") for t in tasks.split(",")] if tasks else None
    md = table or out.with_suffix(".md")
    chosen = [m.strip() for m in methods.split(",") if m.strip()] if methods else None
    if name == "dg" or dataset is not None:
        _dg(name, dataset, chosen, seed_list, out, md, data_root, parse_params(param), task_list)
        return
    run_benchmark(
        name,
        chosen or deep_names(),
        seed_list,
        out_json=out,
        out_md=md,
        data_root=data_root,
        overrides=parse_params(param),
        tasks=task_list,
        on_result=lambda k, r: console.print(f"{k}: {r['accuracy']:.4f} ({r['seconds']:.0f} s)"),
    )
    console.print(f"results: {out}; table: {md}")


def _dg(name: str, dataset: str | None, methods: list[str] | None, seeds: list[int], out: Path,
        md: Path, data_root: Path | None, overrides: dict, tasks: list[str] | None) -> None:  # fmt: skip
    from lowshot.pipeline.dg_benchmark import run_dg_benchmark

    if name != "dg" or dataset is None:
        raise ConfigError(
            f"`lowshot benchmark {name} {dataset or ''}`: domain generalization is "
            "`lowshot benchmark dg office31` (or amazon-reviews)."
        )
    if methods is None:
        methods = names("generalization")
        if overrides.get("mode", "frozen") == "frozen" or dataset != "office31":
            methods = [m for m in methods if m != "mixstyle"]  # it needs feature maps
        methods = ["erm"] + [m for m in methods if m != "erm"]
    run_dg_benchmark(
        dataset, methods, seeds, out_json=out, out_md=md, data_root=data_root,
        overrides=overrides, tasks=tasks,
        on_result=lambda k, r: console.print(f"{k}: {r['accuracy']:.4f} ({r['seconds']:.0f} s)"),
    )  # fmt: skip
    console.print(f"results: {out}; table: {md}")


@app.command()
def reweight(
    source: Annotated[str, typer.Option(help="Source array file.")],
    target: Annotated[str, typer.Option(help="Target array file (labels not used).")],
    method: Annotated[
        str,
        typer.Option(
            help="kmm, kliep, ulsif, rulsif, discriminative, nn-weighting, cluster-selection."
        ),
    ] = "kmm",
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="Where to save the weights (.npy, one per source row)."),
    ] = Path("weights.npy"),
    preprocess: Annotated[str, typer.Option(help="none, l2 or log1p-l2.")] = "none",
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="Method hyper-parameter NAME=VALUE.")
    ] = None,
) -> None:
    """Importance weights of source rows for a target: p_target(x) / p_source(x)."""
    setup_logging(False)
    from lowshot import api  # loaded when a command runs, not for --help

    s = api.reweight(
        source, target, method=method, out=out, params=parse_params(param), preprocess_as=preprocess
    )
    console.print(
        f"{s['n_source']} weights in [{s['min']:.3g}, {s['max']:.3g}], effective sample size "
        f"{s['effective_sample_size']:.0f}, saved to {out}"
    )
