"""The ``learned`` schedule policy (search, rescaling, config) and the ``adaptive`` policy (review, budget
cap, fitted threshold), on synthetic schedule errors whose optimum is known."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import pytest
import torch
from torch import Tensor

from lesa_core.errors import ConfigError
from lesa_core.interfaces import Decision, StepInfo, replay
from lesa_schedulers.policies.adaptive import AdaptiveConfig, AdaptivePolicy
from lesa_schedulers.policies.learned import (
    LearnedScheduleConfig,
    LearnedSchedulePolicy,
    even_schedule,
    search_schedule,
)
from lesa_schedulers.policies.learned.policy import rescale_steps
from lesa_schedulers.policies.learned.search import schedule_cost, step_moves


class SyntheticError:
    """A :class:`ScheduleError` whose forecast error grows with the distance to the last full step, times a
    per-step rate (fast change late in the trajectory), and whose drift is the same distance times the rate."""

    def __init__(self, rates: Sequence[float], min_history: int = 1) -> None:
        self.rates = list(rates)
        self.num_steps = len(rates)
        self.min_history = min_history
        self.flow_times = [1 - s / len(rates) for s in range(len(rates))]
        self.calls = 0

    def history(self, decisions: Sequence[Decision], step: int) -> tuple[int, ...]:
        return tuple(i for i in range(step) if decisions[i] is Decision.COMPUTE)[-2:]

    def step_error(self, step: int, history: tuple[int, ...]) -> float:
        self.calls += 1
        return self.rates[step] * (step - history[-1]) ** 2

    def step_drift(self, step: int, history: tuple[int, ...]) -> float:
        return self.rates[step] * (step - history[-1])

    def __call__(self, decisions: Sequence[Decision]) -> Tensor:
        out = torch.zeros(self.num_steps)
        for s, d in enumerate(decisions):
            if d is Decision.FORECAST:
                out[s] = self.step_error(s, self.history(decisions, s))
        return out


RATES = [0.1] * 8 + [1.0] * 8  # the second half changes 10x faster


def test_search_finds_the_exhaustive_optimum() -> None:
    error = SyntheticError(RATES)
    budget = 5
    found = search_schedule(error, budget)
    best = min(schedule_cost(error, (0, *rest)) for rest in itertools.combinations(range(1, 16), budget - 1))
    assert len(found) == budget and found[0] == 0
    assert schedule_cost(error, found) == pytest.approx(best)
    # the passes go where the features change fast
    assert sum(s >= 8 for s in found) > sum(s < 8 for s in found)
    assert schedule_cost(error, found) < schedule_cost(error, even_schedule(16, budget, warmup=1))


def test_search_keeps_the_leading_steps_and_refuses_a_too_small_budget() -> None:
    error = SyntheticError(RATES, min_history=3)
    assert search_schedule(error, 6)[:3] == [0, 1, 2]
    with pytest.raises(ConfigError, match="budget"):
        search_schedule(error, 2)


def test_even_schedule_is_lesa_like() -> None:
    assert even_schedule(50, 10) == [0, 1, 2, 3, 10, 16, 23, 30, 37, 43]
    assert even_schedule(4, 10) == [0, 1, 2, 3]
    assert len(even_schedule(50, 16)) == 16


def test_learned_policy_runs_its_steps_and_rescales_them() -> None:
    steps = (0, 1, 2, 10, 20, 30, 40, 45)
    policy = LearnedSchedulePolicy(LearnedScheduleConfig(budget=8, steps=steps, num_steps=50))
    decisions = policy.schedule(50)
    assert [i for i, d in enumerate(decisions) if d is Decision.COMPUTE] == list(steps)
    for other in (10, 28, 100):
        full = policy.num_full_passes(other)
        assert full == 8
    assert rescale_steps(steps, 50, 25) == frozenset(
        {0, 1, 2, 5, 10, 15, 20, 22}
    )  # 0 and 1 collide: 2 fills in
    # before fitting: the even schedule of the budget
    assert LearnedSchedulePolicy(LearnedScheduleConfig(budget=10)).num_full_passes(50) == 10


@pytest.mark.parametrize(
    "bad",
    [
        {"budget": 3, "steps": [0, 1, 2]},  # no num_steps
        {"budget": 3, "steps": [0, 1, 60], "num_steps": 50},
        {"budget": 3, "steps": [0, 1, 1], "num_steps": 50},
        {"budget": 4, "steps": [0, 1, 2], "num_steps": 50},
    ],
)
def test_learned_config_refuses_inconsistent_steps(bad: dict) -> None:
    with pytest.raises(ValueError):
        LearnedScheduleConfig.model_validate(bad)


def test_learned_fit_returns_the_searched_steps() -> None:
    error = SyntheticError(RATES)
    params = LearnedSchedulePolicy(LearnedScheduleConfig(budget=5)).fit(error)
    assert params is not None and params["num_steps"] == 16
    assert list(params["steps"]) == search_schedule(error, 5)
    assert params["times"] == [error.flow_times[s] for s in params["steps"]]
    LearnedScheduleConfig.model_validate(params)


def test_step_moves_keep_the_leading_block_and_the_pass_count() -> None:
    moves = step_moves([0, 1, 5, 9, 11], 12)
    assert all(m[:2] == [0, 1] and len(set(m)) == 5 and all(0 <= s < 12 for s in m) for m in moves)
    # 5 -> 3, 4, 6, 7; 9 -> 7, 8, 10 (11 is taken); 11 -> 10 (9 taken, 12 and 13 out of range)
    assert moves == [[0, 1, 3, 9, 11], [0, 1, 4, 9, 11], [0, 1, 6, 9, 11], [0, 1, 7, 9, 11],
                     [0, 1, 5, 7, 11], [0, 1, 5, 8, 11], [0, 1, 5, 10, 11], [0, 1, 5, 9, 10]]
    assert [0, 1, 2] not in step_moves([0, 2, 4], 5) and [0, 1, 4] in step_moves([0, 2, 4], 5)


def test_learned_moves_carry_their_flow_times_and_need_a_fit() -> None:
    times = [1 - s / 12 for s in range(12)]
    assert LearnedSchedulePolicy(LearnedScheduleConfig(budget=3)).moves(times) == []  # nothing fitted yet
    fitted = LearnedSchedulePolicy(LearnedScheduleConfig(budget=3, steps=(0, 4, 8), num_steps=12))
    moves = fitted.moves(times)
    assert [m["steps"] for m in moves] == step_moves([0, 4, 8], 12)
    for m in moves:
        assert m["times"] == [times[s] for s in m["steps"]] and m["budget"] == 3
        LearnedScheduleConfig.model_validate(m)
    assert fitted.moves(times[:6]) == []  # flow times of another (shorter) trajectory: no moves


def test_learned_refinement_starts_are_the_other_even_schedules_of_the_budget() -> None:
    times = [1 - s / 50 for s in range(50)]
    config = LearnedScheduleConfig(budget=8, steps=tuple(even_schedule(50, 8, 1)), num_steps=50)
    starts = LearnedSchedulePolicy(config).refinement_starts(times)
    assert [s["steps"] for s in starts] == sorted([even_schedule(50, 8, 2), even_schedule(50, 8, 3)])
    assert all(s["times"] == [times[i] for i in s["steps"]] for s in starts)
    assert LearnedSchedulePolicy(LearnedScheduleConfig(budget=8)).refinement_starts(times) == []


def test_learned_policy_goes_by_flow_time_without_a_step_count() -> None:
    steps, times = (0, 1, 5, 9), (1.0, 0.9, 0.5, 0.1)  # fitted on a 10-step trajectory t = 1 - s / 10
    policy = LearnedSchedulePolicy(LearnedScheduleConfig(budget=4, steps=steps, num_steps=10, times=times))

    def run(n: int) -> list[int]:
        policy.reset()
        return [s for s in range(n) if policy.decide(StepInfo(s, 1 - s / n)) is Decision.COMPUTE]

    assert run(10) == list(steps)  # the fitted step count: exactly the fitted steps
    assert run(20) == [0, 2, 10, 18]  # t = 1, 0.9, 0.5, 0.1
    assert run(3) == [0, 1, 2]  # t = 1, 0.67, 0.33: 0.1 is never reached, never more than B passes


def test_adaptive_reviews_forecasts_under_a_hard_cap() -> None:
    policy = AdaptivePolicy(AdaptiveConfig(budget=4, threshold=0.5, warmup=2))
    assert policy.reviews_forecasts
    out = []
    for i in range(10):
        d = policy.decide(StepInfo(i))
        if d is Decision.FORECAST:
            d = policy.review(StepInfo(i), 1.0 if i in (3, 4, 5, 6) else 0.1)
        out.append(d)
    # warm-up 0, 1; drift over the threshold at 3 and 4; then the cap (4) holds at 5 and 6
    assert [i for i, d in enumerate(out) if d is Decision.COMPUTE] == [0, 1, 3, 4]
    policy.reset()
    assert policy.decide(StepInfo(0)) is Decision.COMPUTE and policy.full == 1
    # what the predictor trains on: the even schedule of the budget, not the warm-up alone
    assert policy.num_full_passes(10) == 4 and policy.schedule(10)[0] is Decision.COMPUTE
    assert policy.review(StepInfo(5), float("nan")) is Decision.COMPUTE  # a NaN drift computes


def test_adaptive_fit_picks_the_threshold_with_the_least_replayed_error() -> None:
    error = SyntheticError(RATES)
    policy = AdaptivePolicy(AdaptiveConfig(budget=6, warmup=1))
    params = policy.fit(error)
    assert params is not None
    fitted = AdaptivePolicy(AdaptiveConfig.model_validate(params))
    decisions, cost = replay(fitted, error)
    assert sum(d is Decision.COMPUTE for d in decisions) <= 6
    for threshold in (0.01, 0.1, 1.0, 5.0):
        other = AdaptivePolicy(AdaptiveConfig(budget=6, warmup=1, threshold=threshold))
        assert cost <= replay(other, error)[1] + 1e-9
    for gap in (None, 3, 4):
        other = AdaptivePolicy(AdaptiveConfig(budget=6, warmup=1, threshold=0.5, max_gap=gap))
        assert cost <= replay(other, error)[1] + 1e-9


def test_adaptive_gap_rule_keeps_a_reserve() -> None:
    policy = AdaptivePolicy(AdaptiveConfig(budget=4, threshold=0.5, warmup=1, max_gap=4))
    out = []
    for i in range(12):
        info = StepInfo(i, None, 12)
        d = policy.decide(info)
        if d is Decision.FORECAST:
            d = policy.review(info, 1.0 if i in (1, 2) else 0.0)
        out.append(d)
    # step 1: drift, 3 passes left, reserve (10 // 4) = 2: taken; step 2: 2 left, reserve 2: refused;
    # then the gap rule computes at 5 and 9, and the budget (4) is spent
    assert [i for i, d in enumerate(out) if d is Decision.COMPUTE] == [0, 1, 5, 9]


def test_replay_computes_a_step_without_history() -> None:
    error = SyntheticError(RATES, min_history=2)
    policy = LearnedSchedulePolicy(LearnedScheduleConfig(budget=3, steps=(0, 8, 12), num_steps=16))
    decisions, _ = replay(policy, error)
    assert decisions[1] is Decision.COMPUTE  # one history entry only: the runtime would compute it


@pytest.mark.parametrize("argv", [["--fit-policy", "learned"], ["--budget", "8"]])
def test_train_fit_policy_and_budget_go_together(tmp_path, capsys: pytest.CaptureFixture[str], argv) -> None:
    from lesa_core.cli import main

    assert main(["train", "--out", str(tmp_path / "b"), "--quiet", *argv]) == 2
    err = capsys.readouterr().err
    assert "--fit-policy and --budget go together" in err and not (tmp_path / "b").exists()
