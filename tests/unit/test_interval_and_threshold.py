"""The interval policy reproduces LESA's schedules; the threshold router LESA's stages."""

from __future__ import annotations

import pytest

from lesa_core.interfaces import Decision
from lesa_schedulers.policies.interval import IntervalConfig, IntervalPolicy
from lesa_schedulers.routers.threshold import ThresholdConfig, ThresholdRouter


def full_steps(policy: IntervalPolicy, n: int = 50) -> list[int]:
    return [i for i, d in enumerate(policy.schedule(n)) if d is Decision.COMPUTE]


@pytest.mark.parametrize(
    ("interval", "expected"),
    [
        (5, [0, 1, 2, 3, 7, 12, 17, 22, 27, 32, 37, 42, 47]),
        (7, [0, 1, 2, 3, 9, 16, 23, 30, 37, 44]),
        (8, [0, 1, 2, 3, 10, 18, 26, 34, 42]),
        (10, [0, 1, 2, 3, 12, 22, 32, 42]),
    ],
)
def test_lesa_schedules_at_50_steps(interval: int, expected: list[int]) -> None:
    assert full_steps(IntervalPolicy(IntervalConfig(interval=interval, warmup=3))) == expected


def test_interval_one_computes_every_step() -> None:
    assert full_steps(IntervalPolicy(IntervalConfig(interval=1, warmup=0, force_full=()))) == list(range(50))


def test_taylorseer_schedule_without_forced_step() -> None:
    # TaylorSeer FLUX N = 6, first_enhance 3: full steps 0, 1, 2, 8, 14, ..., 44 (4.99x)
    policy = IntervalPolicy(IntervalConfig(interval=6, warmup=3, force_full=()))
    assert full_steps(policy) == [0, 1, 2, 8, 14, 20, 26, 32, 38, 44]


@pytest.mark.parametrize(("t", "stage"), [(1.0, 0), (0.95, 0), (0.9, 1), (0.51, 1), (0.5, 2), (0.0, 2)])
def test_threshold_stages(t: float, stage: int) -> None:
    assert ThresholdRouter(ThresholdConfig()).route(t) == stage


def test_single_stage_router() -> None:
    router = ThresholdRouter(ThresholdConfig(boundaries=()))
    assert router.num_stages == 1 and router.route(0.3) == 0
