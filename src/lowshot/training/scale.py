"""How many processes a training job runs on: devices, nodes, precision, parallel strategy.

A job's spec says it (``--devices 4 --num-nodes 2 --precision bf16-mixed --parallel
ddp``); the pipeline installs it for the job with :func:`scaled`, and every Lightning
trainer the job starts (:func:`lowshot.training.loop.run_trainer`) runs with it, however
deep in a family the trainer is made. One process on one device is the default.

Under ``ddp`` each process runs the whole job (see :mod:`lowshot._dist`): on one machine
Lightning starts the extra processes itself when training begins; on several, start one
``lowshot`` command per node (``NODE_RANK``, ``MASTER_ADDR``, ``MASTER_PORT`` set), or run
it under ``torchrun`` / ``srun``. ``docs/scale.md`` has the command lines. No heavy import.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

PRECISIONS = ("auto", "32-true", "16-mixed", "bf16-mixed", "bf16-true", "64-true")
PARALLEL = ("auto", "ddp", "fsdp")


@dataclass(frozen=True)
class Scale:
    devices: int = 1  # processes per node (GPUs on a GPU machine, processes on a CPU one)
    num_nodes: int = 1
    precision: str = "auto"  # auto: bf16-mixed on a GPU, 32-true on a CPU
    parallel: str = "auto"  # auto: ddp when more than one process, else none; fsdp: GPUs

    @property
    def processes(self) -> int:
        return self.devices * self.num_nodes

    def strategy(self) -> str:
        if self.parallel != "auto":
            return self.parallel
        return "ddp" if self.processes > 1 else "auto"

    def precision_for(self, device_type: str) -> str:
        if self.precision != "auto":
            return self.precision
        return "bf16-mixed" if device_type == "cuda" else "32-true"


_STACK: list[Scale] = [Scale()]


def current() -> Scale:
    """The scale of the job running in this process."""
    return _STACK[-1]


@contextmanager
def scaled(scale: Scale) -> Iterator[Scale]:
    """Run the enclosed job's trainers at ``scale``."""
    _STACK.append(scale)
    try:
        yield scale
    finally:
        _STACK.pop()
