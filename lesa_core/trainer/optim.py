"""One optimizer update of the predictor, the same in both stages and in every process layout: AdamW
(``training.weight_decay``) with the gradient norm clipped to ``training.clip_grad_norm``, every
update through the run's :class:`~lesa_core.trainer.sync.GradientSync`."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from lesa_core.config import TrainingConfig
from lesa_core.trainer.sync import GradientSync


class PredictorOptimizer:
    """AdamW over ``params`` (the predictor's trainable parameters), updated through ``sync``.

    :ivar adamw: the torch optimizer (its state goes into checkpoints).
    """

    def __init__(self, predictor: nn.Module, params: list[nn.Parameter], training: TrainingConfig,
                 sync: GradientSync) -> None:
        self.predictor = predictor
        self.adamw = torch.optim.AdamW(params, lr=training.stage1.lr, weight_decay=training.weight_decay)
        self.clip_grad_norm = training.clip_grad_norm
        self.sync = sync

    def update(self, loss: Tensor | None, lr: float, *, step: int, skip: bool = False) -> float | None:
        """Back-propagate this process's ``loss`` share, combine the gradients of all processes and take
        one AdamW step at learning rate ``lr``.

        :param loss: this process's share of the batch's loss (``None``: it had no rows).
        :param step: the forecast step the update belongs to (the processes' lockstep check).
        :param skip: this process wants the update skipped (its forecast fell back to a full step).
        :return: the batch's loss, or ``None`` if the update was skipped (on every process alike). A
            non-finite loss or gradient norm is returned as NaN *without* stepping (the caller stops the
            run: see :meth:`lesa_core.trainer.fit.Trainer.check_finite`).
        """
        self.adamw.zero_grad(set_to_none=True)
        if loss is not None and not skip:
            loss.backward()
        total, skipped = self.sync.reduce(self.predictor, loss, step=step, skip=skip)
        if skipped:
            return None
        if not math.isfinite(total):
            return math.nan
        for group in self.adamw.param_groups:
            group["lr"] = lr
        norm = torch.nn.utils.clip_grad_norm_(self.predictor.parameters(), self.clip_grad_norm)
        if not bool(torch.isfinite(norm)):
            return math.nan  # the gradients overflowed: a step would make the weights non-finite
        self.adamw.step()
        return total
