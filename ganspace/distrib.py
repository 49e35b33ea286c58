"""Distributed runs under ``torchrun``, shared by PCA and training: this process's device, the
process group and the few collectives they use.

``torchrun --nproc_per_node N`` starts N processes with ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``
in their environment. Each calls :func:`process_device` (on CUDA, ``cuda:LOCAL_RANK``, made the
current CUDA device so NCCL and every default-device allocation use it), then enters
:func:`process_group` (NCCL for CUDA devices, gloo otherwise). Without ``torchrun``
(``WORLD_SIZE`` unset or 1) no group is created, :func:`rank_and_size` is ``(0, 1)`` and the
collectives do nothing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ganspace.errors import InputError


def rank_and_size() -> tuple[int, int]:
    """(rank, world size) of the initialised process group, else (0, 1)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def process_device(device: str | None) -> torch.device:
    """The device this process computes on.

    Args:
        device: ``cpu``, ``cuda``, ``cuda:N`` or None (CUDA when available, else CPU).
    Returns:
        The device; ``cuda`` without an index becomes ``cuda:LOCAL_RANK`` (``cuda:0`` outside
        ``torchrun``), and a CUDA device is made the current one.
    Raises:
        InputError when CUDA is asked for but not available.
    """
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"--device {device} asked for, but CUDA is not available")
        if dev.index is None:
            dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(dev)
    return dev


def join_process_group(device: torch.device) -> bool:
    """Join the ``torchrun`` process group (``WORLD_SIZE`` > 1) unless already in one: NCCL for
    a CUDA ``device``, gloo otherwise. Returns whether this call created the group."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        return True
    return False


def leave_process_group() -> None:
    """Wait for every rank, then destroy the process group (no-op outside one)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


@contextmanager
def process_group(device: torch.device) -> Iterator[None]:
    """:func:`join_process_group` for the block; the group is left on exit if the block made
    it."""
    started = join_process_group(device)
    try:
        yield
    finally:
        if started:
            leave_process_group()


def all_reduce_sum(*tensors: Tensor) -> None:
    """Sum each tensor over all ranks, in place (no-op outside a group)."""
    if rank_and_size()[1] == 1:
        return
    for t in tensors:
        dist.all_reduce(t)


def all_reduce_mean(t: Tensor) -> None:
    """Average ``t`` over all ranks, in place (no-op outside a group)."""
    size = rank_and_size()[1]
    if size > 1:
        dist.all_reduce(t)
        t /= size


def average_gradients(module: nn.Module) -> None:
    """Average the gradients of ``module``'s parameters over all ranks in one all-reduce (a
    missing gradient counts as zero; every parameter has one afterwards)."""
    size = rank_and_size()[1]
    if size == 1:
        return
    params = list(module.parameters())
    flat = torch.cat([p.grad.reshape(-1) if p.grad is not None else torch.zeros_like(p).reshape(-1)
                      for p in params])
    dist.all_reduce(flat)
    flat /= size
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset : offset + n].view_as(p).clone()
        offset += n


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank when ``flag`` is true on any rank (a tensor on ``device`` is
    all-reduced; no-op outside a group)."""
    if rank_and_size()[1] == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t)
    return bool(t.item() > 0)
