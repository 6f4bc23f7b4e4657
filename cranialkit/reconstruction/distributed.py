"""Multi-process training with PyTorch DDP, launched by ``torchrun``.

Taught in notebook 10_unet_training (as a note: notebooks run one process).

``torchrun --nproc-per-node N -m cranialkit train ...`` starts N processes with ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK`` set; :func:`init_from_env` joins them into one process group (NCCL on CUDA, gloo on CPU). Each rank
trains on its own items of every global batch (see ``MixedBatches``) and DDP averages the gradients, so N processes
with a global batch B follow the same optimisation path as one process with batch B.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``rank`` of ``world`` processes; ``local_rank`` picks its GPU."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def current() -> DistInfo:
    """The process group this process belongs to (rank 0 of 1 when not distributed)."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    return DistInfo()


def init_from_env() -> DistInfo:
    """Join the process group described by torchrun's environment variables; a no-op for a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or (dist.is_available() and dist.is_initialized()):
        return current()
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl")
    else:
        dist.init_process_group("gloo")
    return current()


def device_for(info: DistInfo, requested: torch.device) -> torch.device:
    """The device of this rank: its own GPU (``LOCAL_RANK``) when training on CUDA with several processes."""
    if requested.type == "cuda" and info.world > 1:
        return torch.device("cuda", info.local_rank)
    return requested


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def shutdown() -> None:
    """Leave the process group (call once at the end of a torchrun job)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
