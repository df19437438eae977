"""Data-parallel training under ``torchrun``: the same script runs single-process or as one of N ranks.

``torchrun --standalone --nproc_per_node N -m ksdiff train ...`` sets ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK``;
:func:`init_distributed` then joins the process group (``gloo`` on the CPU, ``nccl`` on CUDA, one GPU per rank).
Gradients are averaged by :class:`torch.nn.parallel.DistributedDataParallel`; every rank draws its own share of each
global batch; only rank 0 writes files (config, logs, checkpoints).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ksdiff.errors import KsdiffError


@dataclass
class DistInfo:
    """Where this process stands.

    Attributes:
        rank / world_size / local_rank: as set by torchrun (0 / 1 / 0 when not distributed).
        device: the device this rank computes on.
        enabled: True when a process group was initialised here.
    """

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    enabled: bool

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N`` -> a torch device."""
    name = (name or "auto").lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise KsdiffError(f"device {name!r} requested but CUDA is not available (use --device cpu)")
        if name == "cuda":
            return torch.device("cuda", local_rank % max(torch.cuda.device_count(), 1))
        return torch.device(name)
    if name == "cpu":
        return torch.device("cpu")
    raise KsdiffError(f"unknown device {name!r} (use auto, cpu or cuda)")


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the torchrun process group when launched by torchrun; otherwise a single-process :class:`DistInfo`."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if world <= 1:
        return DistInfo(0, 1, 0, dev, False)
    if dist.is_available() and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(backend=backend)
    return DistInfo(rank, world, local_rank, dev, True)


def cleanup(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        if info.device.type == "cuda":
            dist.barrier(device_ids=[info.device.index or 0])
        else:
            dist.barrier()


def all_reduce_mean(values: Tensor, info: DistInfo) -> Tensor:
    """Mean of ``values`` over ranks (returned unchanged when not distributed)."""
    if not info.enabled:
        return values
    v = values.detach().clone().to(info.device)
    dist.all_reduce(v, op=dist.ReduceOp.SUM)
    return v / info.world_size


def any_rank(flag: bool, info: DistInfo) -> bool:
    """True on every rank when ``flag`` is True on any rank (so that all ranks stop at the same step)."""
    if not info.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=info.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


class LossModule(nn.Module):
    """Routes ``forward(batch)`` to ``model.training_loss(batch)`` so that DDP's gradient hooks see the call."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return self.model.training_loss(batch)


def wrap_model(model: nn.Module, info: DistInfo) -> nn.Module:
    """A module whose ``forward(batch)`` returns the loss dict; DDP-wrapped when distributed."""
    wrapped = LossModule(model)
    if not info.enabled:
        return wrapped
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [info.device.index] if info.device.type == "cuda" else None
    # Some parameters may get no gradient in a step (e.g. condition dropout, ablations): let DDP find them.
    return DDP(wrapped, device_ids=ids, find_unused_parameters=True)
