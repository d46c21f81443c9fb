"""The training tools' step budget (steps timed after warm-up, the rest of the budget filled) and their
EMA of the weights (tools/embedded/common)."""

from __future__ import annotations

import pytest
import torch

from tools.embedded.common import schedule
from tools.embedded.common.optim import Ema
from tools.embedded.common.schedule import StepBudget, steps_in_budget


def test_steps_fill_the_budget_left_after_the_untimed_warm_up() -> None:
    # 2 s of warm-up (steps 0..10), then 0.1 s/step: (100 - 2) / 0.1 = 980 steps, plus 10 spare
    total, per = steps_in_budget(100.0, t0=0.0, t_start=2.0, t_end=4.0, start=10, end=30)
    assert per == pytest.approx(0.1) and total == 990


def test_never_fewer_steps_than_were_already_taken() -> None:
    total, _ = steps_in_budget(1.0, t0=0.0, t_start=2.0, t_end=5.0, start=10, end=40)
    assert total == 41


def test_step_budget_times_only_its_window_and_answers_once(monkeypatch) -> None:
    clock = iter([100.0, 102.0, 104.0])  # construction, after step 10, after step 30
    monkeypatch.setattr(schedule.time, "time", lambda: next(clock))
    budget = StepBudget(100.0, start=10, end=30)
    answers = [budget.after(step) for step in range(1, 31)]
    assert answers[:-1] == [None] * 29
    total, per = answers[-1]
    assert per == pytest.approx(0.1) and total == 990  # as steps_in_budget(100, 0, 2, 4, 10, 30)


def test_ema_swaps_the_average_in_for_saving_and_the_live_weights_back() -> None:
    w = torch.nn.Parameter(torch.zeros(3))
    ema = Ema([w], decay=0.5)
    with torch.no_grad():
        w.fill_(1.0)
    ema.update(step=100)  # decay min(0.5, 101 / 110) = 0.5: average 0.5
    with ema.swapped_in():
        assert torch.allclose(w, torch.full((3,), 0.5))
    assert torch.allclose(w, torch.ones(3))
