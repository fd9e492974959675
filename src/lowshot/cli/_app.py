"""The Typer application, its sub-command groups and the helpers every command shares.

Bad input ends as one clear line and exit status 2 (``--debug`` shows the traceback),
Ctrl-C as a message and status 130. Commands live in the sibling modules.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import typer
from rich.console import Console
from rich.logging import RichHandler
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


def setup_logging(quiet: bool) -> None:
    log.handlers.clear()
    log.addHandler(RichHandler(console=err, show_time=False, show_path=False, markup=False))
    log.setLevel(logging.WARNING if quiet else logging.INFO)
    log.propagate = False


def parse_params(items: list[str] | None) -> dict:
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
