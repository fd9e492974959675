"""Which process of a distributed run this one is: one writer, the others silent.

Under data-parallel training every process runs the whole job: that is how ``torchrun``,
SLURM's ``srun`` and Lightning's own DDP launcher start them (Lightning's launcher runs the
command again in a child process per extra device when training starts). The processes
read the same data, agree on every decision and train one network together; only global
rank 0 writes files (:func:`lowshot.io.atomic_path` discards the others' writes) and
talks (their log records below warnings are dropped). The rank is read from the
variables those launchers set, so it is known before any process group exists.
"""

from __future__ import annotations

import logging
import os


def global_rank() -> int:
    """This process's rank in the job: 0 when it runs alone."""
    env = os.environ
    if env.get("RANK", "").isdigit():  # torchrun, torch.distributed launchers
        return int(env["RANK"])
    if env.get("SLURM_PROCID", "").isdigit() and int(env.get("SLURM_NTASKS", "1") or 1) > 1:
        return int(env["SLURM_PROCID"])
    local = int(env.get("LOCAL_RANK", "0") or 0)  # Lightning's launcher: node and local rank
    node = int(env.get("NODE_RANK", env.get("GROUP_RANK", "0")) or 0)
    return node * 1_000 + local  # only "is it 0" matters here; Lightning has the exact one


def world_size() -> int:
    for key in ("WORLD_SIZE", "SLURM_NTASKS"):
        if os.environ.get(key, "").isdigit():
            return max(1, int(os.environ[key]))
    return 1


def is_writer() -> bool:
    """Whether this process writes the run's files (rank 0, or the only process)."""
    return global_rank() == 0


class _WriterOnly(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or is_writer()


def quiet_other_ranks(logger: logging.Logger) -> None:
    """Drop ``logger``'s records below warnings in processes other than rank 0."""
    if not any(isinstance(f, _WriterOnly) for f in logger.filters):
        logger.addFilter(_WriterOnly())
