"""`lowshot report`: a run's self-contained report.html, or several runs side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lowshot.cli._app import app, console, setup_logging


@app.command("report")
def report_cmd(
    runs: Annotated[list[Path], typer.Argument(help="One finished run folder, or several to compare.")],
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="The HTML file to write (default RUN/report.html; compare.html for several runs)."),
    ] = None,
) -> None:
    """Rebuild a run's report.html (one file, no network needed), or compare runs: their
    numbers side by side and, on the same test items, McNemar's paired test."""
    setup_logging(False)
    from lowshot.api import report

    page = report(*runs, out=out)
    console.print(f"report: {page}")
