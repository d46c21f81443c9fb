"""The training tools' optimiser: AdamW (β 0.9/0.99, no weight decay), clipped steps, an EMA of the weights."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch


def adamw(params: Iterable[torch.nn.Parameter], lr: float) -> torch.optim.AdamW:
    """AdamW as every embedded model trains with it: betas (0.9, 0.99), weight decay 0."""
    return torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.99), weight_decay=0.0)


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for group in opt.param_groups:
        group["lr"] = lr


def clipped_step(opt: torch.optim.Optimizer, loss: torch.Tensor, params, max_norm: float = 1.0) -> None:
    """Zero the gradients, back-propagate ``loss``, clip the gradient norm of ``params``, step."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, max_norm)
    opt.step()


class Ema:
    """An fp32 exponential moving average of ``params``; the decay ramps up as ``(1 + step) / (10 + step)``
    to at most ``decay``."""

    def __init__(self, params: list[torch.nn.Parameter], decay: float) -> None:
        self.params, self.decay = params, decay
        self.shadow = [p.detach().clone().float() for p in params]

    @torch.no_grad()
    def update(self, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        torch._foreach_lerp_(self.shadow, [p.detach().float() for p in self.params], 1 - d)

    @torch.no_grad()
    def copy_to_params(self) -> None:
        """Overwrite the live weights with the average (for good: e.g. to evaluate after training)."""
        for p, e in zip(self.params, self.shadow, strict=True):
            p.copy_(e)

    @contextmanager
    def swapped_in(self) -> Iterator[None]:
        """The average in the live weights inside the block (to save it), the live weights back after."""
        live = [p.detach().clone() for p in self.params]
        self.copy_to_params()
        try:
            yield
        finally:
            with torch.no_grad():
                for p, v in zip(self.params, live, strict=True):
                    p.copy_(v)
