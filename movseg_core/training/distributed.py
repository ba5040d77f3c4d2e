"""torch.distributed helpers that are no-ops in a single process."""
from __future__ import annotations

import torch
import torch.distributed as dist


def is_dist() -> bool:
    """Whether a torch.distributed process group is initialised."""
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    """Number of processes (1 when not distributed)."""
    return dist.get_world_size() if is_dist() else 1


def rank() -> int:
    """This process's rank (0 when not distributed)."""
    return dist.get_rank() if is_dist() else 0


def is_main() -> bool:
    """Whether this is rank 0 (the process that logs and writes files)."""
    return rank() == 0


def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over processes (a copy; ``x`` itself in one process)."""
    if not is_dist():
        return x
    y = x.detach().clone()
    dist.all_reduce(y)
    return y / world_size()


def barrier() -> None:
    """Wait for every process (no-op when not distributed)."""
    if is_dist():
        dist.barrier()
