"""The rectified-flow (stage 2) training loop of the training tools: warm-up + cosine learning rate,
clipped AdamW steps, the EMA, ``losses.csv`` rows, a smoothed loss on the console, the step count fixed
from the budget, and a hook after every step (the tools' checkpoints)."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .optim import Ema, clipped_step, set_lr
from .runlog import CsvLog
from .schedule import StepBudget, lr_at


@dataclass
class FlowLogging:
    """How the loop reports: a ``flow`` row in ``csv`` every ``every`` steps, a console line every
    ``console_every`` steps; the running loss is smoothed with ``smoothing`` = (a, b): new = a·old + b·loss,
    on the steps ``smooth_on`` selects; the budget line prints ms/step with ``ms_format``."""

    csv: CsvLog
    console: Callable[[str], None]
    every: int
    console_every: int
    smoothing: tuple[float, float]
    smooth_on: Callable[[int], bool] = lambda step: True
    ms_format: str = ".0f"


@dataclass
class FlowResult:
    steps: int
    seconds: float
    smoothed_loss: float | None

    def record(self, meta: dict, t_start: float) -> None:
        """``steps``, ``flow_seconds``, ``flow_final_loss_smoothed`` and ``total_seconds`` (since ``t_start``)
        into a weight folder's ``meta``."""
        meta["steps"] = self.steps
        meta["flow_seconds"] = round(self.seconds, 1)
        meta["flow_final_loss_smoothed"] = self.smoothed_loss
        meta["total_seconds"] = round(time.time() - t_start, 1)


def run_flow_loop(
    loss_at: Callable[[], torch.Tensor],
    opt: torch.optim.Optimizer,
    params: list[torch.nn.Parameter],
    ema: Ema,
    *,
    total: int | None,
    budget: StepBudget,
    lr: float,
    warmup: int,
    log: FlowLogging,
    after_step: Callable[[int, int | None], None] = lambda step, total: None,
) -> FlowResult:
    """Train until ``total`` steps (None: until ``budget`` fixes it): each step draws ``loss_at()``, steps
    ``opt`` at ``lr_at(step, total or 10**9, lr, warmup)`` with the gradient norm clipped to 1, updates
    ``ema``, logs, then calls ``after_step(steps_done, total)``."""
    t0 = time.time()
    step, run_loss = 0, None
    while total is None or step < total:
        step_lr = lr_at(step, total or 10**9, lr, warmup)
        set_lr(opt, step_lr)
        loss = loss_at()
        clipped_step(opt, loss, params)
        ema.update(step)
        if log.smooth_on(step):
            li = loss.item()
            keep, take = log.smoothing
            run_loss = li if run_loss is None else keep * run_loss + take * li
            if step % log.every == 0:
                log.csv.stage_row("flow", step, li, step_lr, t0)
            if step % log.console_every == 0:
                log.console(
                    f"flow step {step}/{total} loss {li:.4f} (smoothed {run_loss:.4f}) lr {step_lr:.2e}"
                )
        step += 1
        total = budget.settle(step, total, log.console, "flow", log.ms_format)
        after_step(step, total)
    return FlowResult(step, time.time() - t0, run_loss)


def run_flow_stage(
    args: argparse.Namespace,
    t_start: float,
    loss_at: Callable[[], torch.Tensor],
    opt: torch.optim.Optimizer,
    params: list[torch.nn.Parameter],
    ema: Ema,
    log: FlowLogging,
    timed: tuple[int, int] = (10, 30),
    after_step: Callable[[int, int | None], None] = lambda step, total: None,
) -> FlowResult:
    """:func:`run_flow_loop` with a training tool's flags: ``--steps`` (else the ``--budget-seconds`` left
    since ``t_start``, timed on steps ``timed``), ``--lr``, ``--warmup``."""
    budget = StepBudget(args.budget_seconds - (time.time() - t_start), *timed)
    return run_flow_loop(loss_at, opt, params, ema, total=args.steps, budget=budget, lr=args.lr,
                         warmup=args.warmup, log=log, after_step=after_step)  # fmt: skip
