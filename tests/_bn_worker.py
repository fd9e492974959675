"""The worker of test_scale's two-process BatchNorm test, in a module of its own so that
the spawned processes import torch and lowshot.training.syncbn only."""

from __future__ import annotations

import torch


def bn_worker(rank: int, init: str, X: torch.Tensor, out: str) -> None:
    import torch.distributed as dist

    from lowshot.training.syncbn import restore_batchnorm, use_global_batchnorm

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    swapped = use_global_batchnorm(net)
    part = X[rank::2].clone().requires_grad_(True)
    y = net(part)
    (y.tanh() * torch.arange(1.0, 4.0)).sum().backward()
    restore_batchnorm(swapped)
    assert type(net[1]) is torch.nn.BatchNorm1d  # the original layer is back, trained
    torch.save({"y": y.detach(), "gx": part.grad, "gw": net[0].weight.grad,
                "rm": net[1].running_mean, "rv": net[1].running_var}, f"{out}-{rank}.pt")  # fmt: skip
    dist.destroy_process_group()
