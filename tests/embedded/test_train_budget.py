"""The training script's step budget: steps timed after warm-up, the rest of the budget filled."""

from __future__ import annotations

import pytest

from tools.embedded.flux.train import steps_in_budget


def test_steps_fill_the_budget_left_after_the_untimed_warm_up() -> None:
    # 2 s of warm-up (steps 0..10), then 0.1 s/step: (100 - 2) / 0.1 = 980 steps, plus 10 spare
    total, per = steps_in_budget(100.0, t0=0.0, t_start=2.0, t_end=4.0, start=10, end=30)
    assert per == pytest.approx(0.1) and total == 990


def test_never_fewer_steps_than_were_already_taken() -> None:
    total, _ = steps_in_budget(1.0, t0=0.0, t_start=2.0, t_end=5.0, start=10, end=40)
    assert total == 41
