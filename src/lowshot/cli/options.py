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
Devices = Annotated[
    int,
    typer.Option(
        help="Training processes per node: GPUs on a GPU machine, CPU processes (gloo) on a CPU one. Above 1, training is data-parallel (DDP); see docs/scale.md.",
        rich_help_panel="Scale",
    ),
]
NumNodes = Annotated[
    int,
    typer.Option(
        help="Machines the training spans (start the same command on each, with NODE_RANK, MASTER_ADDR and MASTER_PORT set, or under torchrun/srun).",
        rich_help_panel="Scale",
    ),
]
Precision = Annotated[
    str,
    typer.Option(
        help="auto (bf16-mixed on a GPU, 32-true on a CPU), 32-true, 16-mixed, bf16-mixed, bf16-true.",
        rich_help_panel="Scale",
    ),
]
Parallel = Annotated[
    str,
    typer.Option(
        help="Lightning strategy: auto (ddp above one process), ddp, or fsdp (sharded; GPUs only).",
        rich_help_panel="Scale",
    ),
]
