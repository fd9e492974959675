"""One progress bar for long loops (feature extraction, benchmarks), via Rich."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class _Rate(ProgressColumn):
    """Items per second over the bar's recent window (Rich's own speed estimate)."""

    def render(self, task: Task) -> Text:
        return Text(f"{task.speed:,.1f}/s" if task.speed else "", style="cyan")


@contextmanager
def progress_bar(
    total: int, label: str, enabled: bool = True, done: int = 0
) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n)``; draws a bar with the rate and time left on an interactive
    terminal, stays silent otherwise. ``done``: items finished before (a resumed job)."""
    if not enabled or not sys.stderr.isatty():
        yield lambda n: None
        return
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _Rate(),
        TimeRemainingColumn(),
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=total, completed=done)
        yield lambda n: bar.advance(task, n)


@contextmanager
def status_line(label: str, enabled: bool = True) -> Iterator[Callable[..., None]]:
    """Yield ``show(text, budget=None)``: one live line on an interactive terminal with the
    current step, and the time left when given a budget (anything with ``left()``);
    silent otherwise (the steps are in the log)."""
    if not enabled or not sys.stderr.isatty():
        yield lambda text, budget=None: None
        return
    from rich.console import Console
    from rich.live import Live

    with Live("", console=Console(stderr=True), transient=True, refresh_per_second=4) as live:

        def show(text: str, budget: object = None) -> None:
            left = getattr(budget, "left", None)
            tail = f" · {max(left(), 0) / 60:.1f} min left" if callable(left) else ""
            live.update(f"[bold]{label}[/bold] {text}{tail}")

        yield show
