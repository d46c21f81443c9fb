"""The interval policy's ``phase`` expresses diffusers' TaylorSeer schedule; the default keeps LESA's."""

from __future__ import annotations

import pytest

from lesa_core.interfaces import Decision
from lesa_schedulers.policies.interval import IntervalConfig, IntervalPolicy


def full_steps(config: IntervalConfig, n: int) -> list[int]:
    return [i for i, d in enumerate(IntervalPolicy(config).schedule(n)) if d is Decision.COMPUTE]


@pytest.mark.parametrize(("steps", "interval", "before"), [(28, 5, 3), (50, 7, 3), (20, 4, 2), (10, 1, 0)])
def test_phase_matches_diffusers_taylorseer_rule(steps: int, interval: int, before: int) -> None:
    config = IntervalConfig(interval=interval, warmup=before, force_full=(), phase=before + 1)
    expected = [s for s in range(steps) if s < before or (s - before - 1) % interval == 0]
    assert full_steps(config, steps) == expected


def test_default_phase_is_warmup_plus_interval_minus_one() -> None:
    implicit = IntervalConfig(interval=7, warmup=3)
    explicit = IntervalConfig(interval=7, warmup=3, phase=9)
    assert full_steps(implicit, 50) == full_steps(explicit, 50) == [0, 1, 2, 3, 9, 16, 23, 30, 37, 44]


def test_phase_must_be_non_negative() -> None:
    with pytest.raises(ValueError):
        IntervalConfig(phase=-1)
