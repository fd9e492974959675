"""The ``lowshot`` command line. Thin: each command builds a spec and calls the Python API.

Commands are grouped by job in the sibling modules; importing this package registers
them all on :data:`app`. :func:`main` is the console entry point and the one place that
tunes the process (glibc malloc, see :mod:`lowshot._runtime`).
"""

from __future__ import annotations

from lowshot.cli import (  # noqa: F401  (commands)
    adapt,
    auto,
    deploy,
    embed,
    fewshot,
    generalize,
    info,
    multitask,
    rank,
    report,
    select,
    train,
)
from lowshot.cli._app import app

__all__ = ["app", "main"]


def main() -> None:
    import os
    import signal
    import sys

    from lowshot._dist import is_writer
    from lowshot._runtime import tune_malloc
    from lowshot.errors import Terminated
    from lowshot.pipeline.runfolder import record_command

    def _terminate(signum: int, frame: object) -> None:
        Terminated.received = True
        raise Terminated()

    if not is_writer():  # another process of a distributed run: rank 0 prints the result
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115  (for the life of the process)
    signal.signal(signal.SIGTERM, _terminate)  # finish atomic writes, exit 143
    tune_malloc()
    record_command(["lowshot", *sys.argv[1:]])  # run folders note the line that made them
    app()
