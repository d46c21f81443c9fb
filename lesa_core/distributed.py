"""Multi-process runs under ``torchrun``: process group from the environment, rank queries, barriers.

``lesa collect`` and ``lesa train`` call :func:`session` around their work. With ``WORLD_SIZE`` > 1 in
the environment (what ``torchrun`` sets, together with ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT``) it initialises the default process group — ``nccl`` when the device is CUDA, ``gloo``
on the CPU — and puts the process on ``cuda:LOCAL_RANK``; otherwise it does nothing and every helper
here answers as a single process would (rank 0 of 1, barriers are no-ops). The trainer reads the
rank and world size from the initialised group, so library code that initialises a group itself gets
the same behaviour.

What is distributed (see ``docs/scale-out.md``): collection shards the prompts ``i % world == rank``;
training is data parallel with the rows of every global batch split across ranks and the gradients
summed (:func:`lesa_core.trainer.sync.all_reduce_gradients`); closed-loop validation splits its prompts
across ranks and sums the per-prompt scores (:func:`sum_over_ranks`); rank 0 alone writes checkpoints and
the bundle.

Environment: ``LESA_DIST_TIMEOUT`` (seconds, default 1800) bounds how long a collective waits for a
slow or dead rank.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from lesa_core.environment import env_int

__all__ = [
    "DistContext", "barrier", "is_distributed", "is_main_process", "rank", "session", "sum_over_ranks", "world_size",
]


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: its rank, the world size, its local rank and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """``True`` on rank 0 (the one that writes checkpoints and bundles and shows progress)."""
        return self.rank == 0


def is_distributed() -> bool:
    """``True`` when a default process group with more than one process is initialised."""
    return bool(dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1)


def rank() -> int:
    """This process's rank in the default group (0 without one)."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """The number of processes in the default group (1 without one)."""
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    """``True`` on rank 0, and in a single process."""
    return rank() == 0


def barrier() -> None:
    """Wait until every rank reaches this point (no-op in a single process)."""
    if not is_distributed():
        return
    if dist.get_backend() == "nccl":
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


def sum_over_ranks(value: torch.Tensor) -> torch.Tensor:
    """The element-wise sum of ``value`` over every rank (``value`` itself in a single process); every rank
    gets the same result, on ``value``'s device. Ranks that hold zeros where another holds a number get that
    number exactly (``x + 0 = x``), so gathering disjoint parts this way is exact."""
    if not is_distributed():
        return value
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    total = value.detach().to(device, copy=True)
    dist.all_reduce(total)
    return total.to(value.device)


def _env_int(name: str, default: int) -> int:
    """An integer set by ``torchrun`` or the user (validated: see :mod:`lesa_core.environment`)."""
    return env_int(name, default, minimum=1 if name in ("WORLD_SIZE", "LESA_DIST_TIMEOUT") else 0)


def _device_for(device: str | torch.device, local_rank: int, world: int) -> torch.device:
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None and world > 1:
        dev = torch.device("cuda", local_rank % max(torch.cuda.device_count(), 1))
    return dev


@contextmanager
def session(device: str | torch.device = "cpu") -> Iterator[DistContext]:
    """Initialise the default process group from ``torchrun``'s environment for the block's duration.

    With ``WORLD_SIZE`` ≤ 1 (a plain ``lesa ...``) nothing is initialised and the context is rank 0 of
    1 on ``device``. A group that is already initialised is used as is and left alone on exit.

    :param device: the requested device; ``cuda`` becomes ``cuda:LOCAL_RANK`` in a multi-process run.
    """
    world = _env_int("WORLD_SIZE", 1)
    local_rank = _env_int("LOCAL_RANK", 0)
    dev = _device_for(device, local_rank, world)
    if world <= 1 or not dist.is_available():
        yield DistContext(0, 1, 0, dev)
        return
    owned = not dist.is_initialized()
    if owned:
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        backend = "nccl" if dev.type == "cuda" else "gloo"
        timeout = timedelta(seconds=_env_int("LESA_DIST_TIMEOUT", 1800))
        dist.init_process_group(backend=backend, timeout=timeout)
    try:
        yield DistContext(dist.get_rank(), dist.get_world_size(), local_rank, dev)
        if owned:  # leave together: a gloo rank whose peer tears the group down mid-exchange can abort (SIGABRT)
            dist.barrier()
    finally:
        if owned and dist.is_initialized():
            dist.destroy_process_group()
