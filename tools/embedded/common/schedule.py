"""Step schedules of the training tools: warm-up + cosine learning rate, the time budget, σ shifts."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch


def lr_at(step: int, total: int, base: float, warmup: int, floor: float = 0.1) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine from ``base`` down to ``floor · base`` at ``total``."""
    if step < warmup:
        return base * (step + 1) / warmup
    p = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * p)))


def steps_in_budget(budget: float, t0: float, t_start: float, t_end: float, start: int,
                    end: int) -> tuple[int, float]:  # fmt: skip
    """How many steps fit in ``budget`` seconds (counted from ``t0``), timed on steps ``start..end`` (the
    first steps include warm-up, so they are not timed): at least ``end + 1``, plus 10 spare.

    :return: the total number of steps and the measured seconds per step.
    """
    per = (t_end - t_start) / (end - start)
    return max(end + 1, int((budget - (t_start - t0)) / per) + 10), per


class StepBudget:
    """Fixes a training loop's step count from its own speed: steps ``start..end`` are timed, then
    :func:`steps_in_budget` fills the ``seconds`` left counted from the loop's start."""

    def __init__(self, seconds: float, start: int, end: int) -> None:
        self.seconds, self.start, self.end = seconds, start, end
        self.t0 = self.t_start = time.time()

    def after(self, steps_done: int) -> tuple[int, float] | None:
        """Call after every step with the steps done so far: ``(total steps, seconds per step)`` once, at
        ``end``; otherwise None."""
        if steps_done == self.start:
            self.t_start = time.time()
        if steps_done == self.end:
            return steps_in_budget(self.seconds, self.t0, self.t_start, time.time(), self.start, self.end)
        return None

    def settle(
        self,
        steps_done: int,
        total: int | None,
        say: Callable[[str], None],
        label: str,
        ms_format: str = ".0f",
    ) -> int | None:
        """``total`` if already fixed; else, at ``end``, the budget's step count, announced with ``say``
        as ``<label>: <ms> ms/step -> <total> steps``. Call after every step."""
        fixed = self.after(steps_done)
        if fixed is None or total is not None:
            return total
        total, per = fixed
        say(f"{label}: {per * 1000:{ms_format}} ms/step -> {total} steps")
        return total


def scheduler_mu(scheduler, image_seq_len: int) -> float:
    """The dynamic shift μ a ``FlowMatchEulerDiscreteScheduler`` config gives at ``image_seq_len`` tokens."""
    c = scheduler.config
    m = (c.max_shift - c.base_shift) / (c.max_image_seq_len - c.base_image_seq_len)
    return image_seq_len * m + (c.base_shift - m * c.base_image_seq_len)


def exponential_shift(s: torch.Tensor, mu: float) -> torch.Tensor:
    """FLUX's exponential time shift: σ' = e^μ σ / (1 + (e^μ − 1) σ)."""
    return math.exp(mu) / (math.exp(mu) + (1 / s - 1))


def static_shift(s: torch.Tensor, shift: float) -> torch.Tensor:
    """FlowMatchEulerDiscreteScheduler's static shift: σ' = shift·σ / (1 + (shift − 1)·σ)."""
    return shift * s / (1 + (shift - 1) * s)


def logit_normal_sigmas(b: int, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    """``b`` noise levels σ ~ logit-normal(0, 1), drawn from ``gen`` (before any shift)."""
    return torch.sigmoid(torch.randn(b, generator=gen, device=device))
