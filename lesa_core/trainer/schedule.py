"""What the trainer does when: the steps a forecast reads, the forecast spans, the data order and the
learning rate.

Everything here is a pure function of its arguments. The data order in particular is a function of
``(seed, stream, epoch)``, so a resumed run walks the same batches as an uninterrupted one and every
data-parallel rank walks the same global batches.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from lesa_core.interfaces import Decision

# The streams of random numbers a run draws its data order from (one per use, so that one use never
# shifts another's): stage 1's batches under each loss, stage 2's prompt order, stage 2's replay order.
STAGE1_TAP_ORDER = 1_000
STAGE1_LATENT_ORDER = 1_500
STAGE2_PROMPT_ORDER = 2_000
STAGE2_REPLAY_ORDER = 3_000


def history_indices(decisions: Sequence[Decision], step: int, size: int, mode: str) -> list[int]:
    """The step indices a forecast at ``step`` reads: the last ``size`` full steps (``full``) or the
    last ``size`` steps (``steps``), oldest first."""
    if mode == "full":
        full = [i for i in range(step) if decisions[i] is Decision.COMPUTE]
        return full[-size:]
    return list(range(max(0, step - size), step))


def forecast_spans(decisions: Sequence[Decision]) -> list[list[int]]:
    """The runs of consecutive forecast steps (each ends at a full step or at the trajectory's end)."""
    spans: list[list[int]] = []
    for step, decision in enumerate(decisions):
        if decision is not Decision.FORECAST:
            continue
        if spans and spans[-1][-1] == step - 1:
            spans[-1].append(step)
        else:
            spans.append([step])
    return spans


def data_order(seed: int, stream: int) -> torch.Generator:
    """The CPU generator of one data-order draw: ``stream`` (one of the ``*_ORDER`` constants, plus the
    epoch and whatever else tells the draws of that stream apart) under the run's ``seed``."""
    return torch.Generator().manual_seed(seed * 1_000_003 + stream)


def unit_batches(num_units: int, num_rows: int, batch_size: int, generator: torch.Generator,
                 ) -> list[tuple[int, Tensor]]:
    """Every (unit index, rows) pair of one stage-1 epoch, in training order: for each unit in turn the
    rows ``0 .. num_rows - 1`` shuffled and cut into batches of ``batch_size``, then all those pairs
    shuffled together."""
    batches = []
    for unit in range(num_units):
        order = torch.randperm(num_rows, generator=generator)
        for start in range(0, num_rows, batch_size):
            batches.append((unit, order[start:start + batch_size]))
    shuffle = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in shuffle]


def cosine_lr(peak: float, update: int, total: int) -> float:
    """The learning rate of update ``update`` of ``total`` in a phase: a cosine decay from ``peak`` to
    10 % of it, flat at 10 % past ``total``."""
    done = min(update / max(total, 1), 1.0)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * done)))
