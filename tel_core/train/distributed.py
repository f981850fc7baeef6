"""Data parallel: torchrun's environment, DistributedDataParallel, and the few collectives
the loop needs.

``torchrun --nproc-per-node N -m tel_core run FILE`` starts N processes and tells each
its ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` and where to meet (``MASTER_ADDR``,
``MASTER_PORT``). Every process builds the same model from the same seed, takes its own
share of each step's rows (``tel_core.data.batching``), and DDP averages the gradients across
processes during the backward pass. A plain ``tel run`` is a world of one, in which every
function here does nothing. Under torchrun even one process joins the process group, so
``--nproc-per-node 1`` runs the data-parallel path (DDP, the backend's collectives) alone.
"""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import Iterator
from typing import Any

import attrs
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from tel_core.errors import TelError


@attrs.frozen
class Distributed:
    """This process's place among the processes of a run."""

    rank: int = 0  # 0 .. world_size - 1, over every machine
    local_rank: int = 0  # 0 .. processes on this machine - 1: picks the GPU
    world_size: int = 1
    launched: bool = False  # by torchrun (its environment is set), even as a world of one

    @property
    def enabled(self) -> bool:
        return self.world_size > 1 or self.launched

    def backend(self, device: torch.device) -> str | None:
        """The process group's backend: NCCL between GPUs, gloo between CPU processes."""
        if not self.enabled:
            return None
        return "nccl" if device.type == "cuda" else "gloo"

    @property
    def is_main(self) -> bool:
        """Rank 0 alone logs, writes the run directory and saves checkpoints."""
        return self.rank == 0

    # -- the process group ---------------------------------------------------

    def start(self, device: torch.device) -> None:
        """Join the process group: NCCL between GPUs, gloo between CPU processes."""
        if not self.enabled or dist.is_initialized():
            return
        backend = self.backend(device)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend, rank=self.rank, world_size=self.world_size)

    def stop(self, clean: bool) -> None:
        """Leave the process group; after a clean run, wait for every process first."""
        if not self.enabled or not dist.is_initialized():
            return
        gc.collect()  # anything still holding the group (a DDP module) goes first
        if clean:
            dist.barrier()  # no process tears down while another still talks to it
        dist.destroy_process_group()

    # -- collectives (no-ops in a world of one) -------------------------------

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    @contextlib.contextmanager
    def local_main_first(self) -> Iterator[None]:
        """Run the body on each machine's first process, then on the others: for work
        whose result they can share through the disk (the token cache)."""
        first = self.local_rank == 0
        if not first:
            self.barrier()
        yield
        if first:
            self.barrier()

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` summed over every process (in place)."""
        if self.enabled:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def max(self, value: int, device: torch.device) -> int:
        """The largest ``value`` of any process: keeps every process's decisions in step."""
        if not self.enabled:
            return value
        tensor = torch.tensor([value], dtype=torch.int64, device=device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return int(tensor.item())

    def gather(self, obj: Any) -> list[Any]:
        """Every process's ``obj``, indexed by rank (picklable objects)."""
        if not self.enabled:
            return [obj]
        objects: list[Any] = [None] * self.world_size
        dist.all_gather_object(objects, obj)
        return objects

    # -- the model ------------------------------------------------------------

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        """The model DDP-wrapped (gradients averaged over processes in backward)."""
        if not self.enabled:
            return model
        device_ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=device_ids)

    @staticmethod
    def no_sync(model: nn.Module, sync: bool) -> contextlib.AbstractContextManager[Any]:
        """Skip DDP's gradient all-reduce unless ``sync``: only the last micro-batch of a
        step needs it (the others just accumulate locally)."""
        if sync or not isinstance(model, DistributedDataParallel):
            return contextlib.nullcontext()
        return model.no_sync()


def from_environment() -> Distributed:
    """This process's rank and world size, as torchrun set them (a world of one if not)."""
    try:
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError as exc:
        raise TelError(f"bad torchrun environment (RANK, LOCAL_RANK, WORLD_SIZE): {exc}") from None
    launched = "WORLD_SIZE" in os.environ
    return Distributed(rank=rank, local_rank=local_rank, world_size=world_size, launched=launched)


@contextlib.contextmanager
def process_group(world: Distributed, device: torch.device) -> Iterator[None]:
    """Inside: joined to the process group. Leaving after an error skips the barrier (the
    other processes may be gone); torchrun then stops the rest."""
    world.start(device)
    clean = False
    try:
        yield
        clean = True
    finally:
        world.stop(clean)
