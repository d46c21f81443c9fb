"""Gradient synchronisation: how the ranks of a run agree on each update.

Every update of both stages goes through a :class:`GradientSync`, so the trainer has one code path:

* :class:`SingleProcess` (no process group, or a group of one): every row of a batch is local, the
  loss is the plain mean absolute error, and nothing is exchanged.
* :class:`DataParallel` (a process group of P > 1 ranks, e.g. under ``torchrun``; see
  :mod:`lesa_core.distributed`): every rank walks the same global batches in the same order and takes
  its contiguous slice of each batch's rows (``torch.tensor_split``: uneven splits and empty slices are
  fine). A rank's loss is the *sum* of its absolute errors divided by the global batch's element
  count; :func:`all_reduce_gradients` sums the gradients (and the loss) over ranks, so every rank
  applies the update the single-process run would (the gradient of the global mean), up to float
  summation order. In stage 2 each rank samples its slice of the prompt batch (a rank whose slice is
  empty samples the batch's first prompt as a ghost that contributes nothing), and the forecast steps
  — the policy's decision depends only on the step index — are taken by every rank in lockstep, one
  all-reduce each; a forecast that fell back to a full step on any rank skips that update on all of
  them. Rank 0 alone writes checkpoints (the others wait at a barrier); every rank resumes from the
  same one, and the parameters are broadcast from rank 0 so that the replicas start identical.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import torch
from torch import Tensor, nn

from lesa_core import distributed
from lesa_core.errors import TrainingError
from lesa_core.trainer.checkpoint import TrainState


class GradientSync(ABC):
    """How this process takes part in the run's updates.

    :ivar rank: this process's rank. :ivar world_size: the number of processes.
    """

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """``True`` on the process that writes checkpoints and shows progress."""
        return self.rank == 0

    @abstractmethod
    def local_rows(self, rows: Tensor) -> Tensor:
        """This process's part of a global batch's ``rows`` (possibly empty)."""

    @abstractmethod
    def loss_share(self, error: Tensor, global_rows: int) -> Tensor:
        """This process's share of the batch's mean absolute error, given its rows' ``error`` (rows first)
        and the number of rows the global batch has; the shares of all processes sum to the mean."""

    @abstractmethod
    def reduce(self, predictor: nn.Module, loss: Tensor | None, *, step: int, skip: bool) -> tuple[float, bool]:
        """Combine the gradients (and losses) of all processes after this one's backward pass.

        :param loss: this process's share (``None``: it had no rows).
        :param step: the update's forecast step; all processes must be at the same one.
        :param skip: this process wants the update skipped (a forecast fell back to a full step).
        :return: the batch's loss, and whether the update must be skipped (the gradients are then unset).
        """

    @abstractmethod
    def start_together(self, predictor: nn.Module, state: TrainState, checkpoint_dir: Path) -> None:
        """Check that every process resumes from the same point and give all the same parameters."""

    @abstractmethod
    def barrier(self) -> None:
        """Wait until every process reaches this point."""


class SingleProcess(GradientSync):
    """One process holds every row: the loss is the mean, and there is nothing to exchange."""

    def local_rows(self, rows: Tensor) -> Tensor:
        return rows

    def loss_share(self, error: Tensor, global_rows: int) -> Tensor:
        return error.abs().mean()

    def reduce(self, predictor: nn.Module, loss: Tensor | None, *, step: int, skip: bool) -> tuple[float, bool]:
        return (0.0 if loss is None else float(loss.detach())), skip

    def start_together(self, predictor: nn.Module, state: TrainState, checkpoint_dir: Path) -> None:
        return None

    def barrier(self) -> None:
        return None


class DataParallel(GradientSync):
    """This rank of the initialised default process group (see the module docstring)."""

    def __init__(self) -> None:
        self.rank = distributed.rank()
        self.world_size = distributed.world_size()

    def local_rows(self, rows: Tensor) -> Tensor:
        return torch.tensor_split(rows, self.world_size)[self.rank]

    def loss_share(self, error: Tensor, global_rows: int) -> Tensor:
        return error.abs().sum() / (global_rows * error[0].numel())

    def reduce(self, predictor: nn.Module, loss: Tensor | None, *, step: int, skip: bool) -> tuple[float, bool]:
        return all_reduce_gradients(predictor, None if skip else loss, step=step, skip=skip)

    def start_together(self, predictor: nn.Module, state: TrainState, checkpoint_dir: Path) -> None:
        """Every rank must start from the same checkpoint (also a barrier: rank 0 writes none before);
        the parameters are then broadcast from rank 0, as DDP does, so the replicas start identical.

        :raises TrainingError: if the ranks resumed from different checkpoints.
        """
        import torch.distributed as dist

        device = next(iter(predictor.parameters())).device
        mine = torch.tensor([state.phase, state.epoch, state.updates], dtype=torch.float64, device=device)
        low, high = mine.clone(), mine.clone()
        dist.all_reduce(low, op=dist.ReduceOp.MIN)
        dist.all_reduce(high, op=dist.ReduceOp.MAX)
        if not torch.equal(low, high):
            raise TrainingError(
                f"ranks resumed from different checkpoints (phase/epoch/updates from {low.tolist()} to "
                f"{high.tolist()}); {checkpoint_dir} must be one folder every rank sees (a shared filesystem)"
            )
        with torch.no_grad():
            for p in predictor.parameters():
                dist.broadcast(p.data, src=0)

    def barrier(self) -> None:
        distributed.barrier()


def gradient_sync() -> GradientSync:
    """The synchronisation of this process: data parallel under an initialised process group of more
    than one process, else single process."""
    return DataParallel() if distributed.is_distributed() else SingleProcess()


def all_reduce_gradients(predictor: nn.Module, loss: Tensor | None, *, step: int = 0, skip: bool = False,
                         ) -> tuple[float, bool]:
    """Sum the gradients and the loss of every rank (data parallel), in one all-reduce.

    Each rank's ``loss`` must already be scaled by the *global* element count (a sum of its errors
    divided by the whole batch's size), so the sums are the single-process gradient and loss. A rank
    with nothing to contribute passes ``loss=None`` (its gradients are left unset). A parameter gets a
    gradient if any rank produced one — exactly the parameters the single-process run would update.

    :param step: the forecast step of this update; the ranks must agree on it (lockstep check).
    :param skip: this rank wants the update skipped (a non-finite forecast fell back to a full step);
        if any rank does, every rank skips it, as the single-process run would.
    :return: the global loss, and whether the update must be skipped.
    :raises TrainingError: if the ranks are not at the same step.
    """
    import torch.distributed as dist

    params = [p for p in predictor.parameters() if p.requires_grad]
    device = params[0].device
    has = [p.grad is not None for p in params]
    pieces = [p.grad.reshape(-1).float() if p.grad is not None else p.new_zeros(p.numel(), dtype=torch.float32)
              for p in params]
    tail = torch.tensor([*map(float, has), float(skip), float(step), 1.0,
                         0.0 if loss is None else float(loss.detach())], dtype=torch.float32, device=device)
    flat = torch.cat([*pieces, tail])
    dist.all_reduce(flat)
    flags = flat[-len(tail):].tolist()
    world = round(flags[-2])
    if abs(flags[-3] - world * step) > 0.5:
        raise TrainingError(
            f"data-parallel ranks are out of lockstep (this rank is at step {step}); every rank must take "
            "the same forecast steps — check that all ranks run the same config and policy"
        )
    skipped = flags[-4] > 0.5
    offset = 0
    for p, any_grad in zip(params, flags[: len(params)], strict=True):
        n = p.numel()
        if any_grad > 0.5 and not skipped:
            p.grad = flat[offset:offset + n].view_as(p).to(p.dtype)
        else:
            p.grad = None
        offset += n
    return flags[-1], skipped
