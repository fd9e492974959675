"""Multi-task learning: one shared network, several low-resource tasks that help each other.

Importing this package registers the loss weightings (family ``multitask``).
"""

from lowshot.multitask.data import Task, TaskTable, from_datasets, from_table, mask_labels
from lowshot.multitask.model import MultiTaskNet, TaskBalancedBatches, task_loss, train_net
from lowshot.multitask.run import delta_mtl, load_multitask, multitask, predict_multitask
from lowshot.multitask.weighting import (
    DWA,
    Equal,
    GradNorm,
    PCGrad,
    Uncertainty,
    Weighting,
    make_weighting,
)
from lowshot.registry import Family, register_family

register_family(
    Family("multitask", "loss weightings for one shared network", Weighting, ("multitask",))
)

__all__ = [
    "DWA",
    "Equal",
    "GradNorm",
    "MultiTaskNet",
    "PCGrad",
    "Task",
    "TaskBalancedBatches",
    "TaskTable",
    "Uncertainty",
    "Weighting",
    "delta_mtl",
    "from_datasets",
    "from_table",
    "load_multitask",
    "make_weighting",
    "mask_labels",
    "multitask",
    "predict_multitask",
    "task_loss",
    "train_net",
]
