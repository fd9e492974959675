"""Options shared by several commands, declared once (Typer ``Annotated`` aliases)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

Seed = Annotated[int, typer.Option(help="Seed for sampling, splits and training (>= 0).")]
Device = Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")]
Backbone = Annotated[
    str, typer.Option("--backbone", "-b", help="Backbone name (`lowshot backbones`).")
]
Params = Annotated[
    list[str] | None,
    typer.Option(
        "--param", "-p", help="Hyper-parameter NAME=VALUE (repeatable), e.g. -p epochs=20."
    ),
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings and the result.")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
Overwrite = Annotated[
    bool,
    typer.Option(
        help="Replace an existing run folder (only one lowshot wrote), once the new run finishes."
    ),
]
Resume = Annotated[
    bool, typer.Option(help="Continue an interrupted run in --out from its last checkpoint.")
]
Out = Annotated[Path, typer.Option("--out", "-o", help="Run folder to write.")]
OptionalOut = Annotated[Path | None, typer.Option("--out", "-o", help="Run folder to write.")]
