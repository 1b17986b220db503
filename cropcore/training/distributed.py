"""Data-parallel training across processes started by ``torchrun``.

``torchrun --nproc_per_node=N -m cropcore train ...`` sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR;
we read them, join the process group (gloo on CPU, NCCL on CUDA) and give each rank its shard of the
batches. Without those variables everything runs in one process and these helpers are no-ops.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any, NoReturn

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Distributed:
    """Where this process stands in the group."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes the run folder and shows progress."""
        return self.rank == 0


def from_environment() -> Distributed:
    """The group described by torchrun's environment variables (single process if absent)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Distributed()
    return Distributed(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")))


def setup(context: Distributed, device: str) -> str:
    """Join the process group; returns the device this rank uses (cuda:<local_rank> on GPU)."""
    if not context.enabled:
        return device
    on_cuda = str(device).startswith("cuda")
    if on_cuda:
        torch.cuda.set_device(context.local_rank)
        device = f"cuda:{context.local_rank}"
    if not dist.is_initialized():
        dist.init_process_group("nccl" if on_cuda else "gloo", rank=context.rank, world_size=context.world_size)
    return device


def teardown(context: Distributed) -> None:
    """Leave the process group."""
    if context.enabled and dist.is_initialized():
        dist.destroy_process_group()


def exit_worker(code: int) -> NoReturn:
    """End a torchrun worker process now, without the interpreter's shutdown.

    DistributedDataParallel keeps the gloo process group and its worker threads alive after
    ``destroy_process_group``. A worker thread that frees a finished collective's tensors while the interpreter
    shuts down must take the GIL, and the process aborts ("terminate called without an active exception"):
    in about one two-process ``cropcore train`` in 80, after every file was written, and torchrun then
    reported the run as failed. A barrier before leaving only moves the crash to the barrier's own work. By
    now the command has written and closed its files, so the worker flushes its output and leaves.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def all_max(values: torch.Tensor, context: Distributed) -> torch.Tensor:
    """Elementwise maximum over ranks (used to agree on stop flags so no rank waits forever)."""
    if context.enabled:
        dist.all_reduce(values, op=dist.ReduceOp.MAX)
    return values


def all_min_int(value: int, context: Distributed, device: str) -> int:
    """Smallest integer over ranks (the number of batches every rank can run in lock step)."""
    if not context.enabled:
        return value
    tensor = torch.tensor([value], dtype=torch.long, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
    return int(tensor.item())


def all_mean(value: float, context: Distributed, device: str) -> float:
    """Mean of a float over ranks."""
    if not context.enabled:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return float(tensor.item()) / context.world_size


def gather_objects(obj: Any, context: Distributed) -> list[Any]:
    """Every rank's object, in rank order, on every rank."""
    if not context.enabled:
        return [obj]
    gathered: list[Any] = [None] * context.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_object(obj: Any, context: Distributed) -> Any:
    """Rank 0's object on every rank."""
    if not context.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(context: Distributed) -> None:
    if context.enabled:
        dist.barrier()
