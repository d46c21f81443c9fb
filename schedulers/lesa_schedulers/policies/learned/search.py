"""Choosing which B of S steps compute: greedy forward selection, then single-step moves, on the
teacher-forced error of a schedule (:class:`lesa_core.interfaces.ScheduleError`).

The leading ``min_history`` steps always compute (the runtime computes a step it cannot forecast).
Three starts:

* **dynamic programming** over (passes used, last full step), exact when a forecast depends only on
  the last full step;
* **greedy addition** from the leading steps: add the step whose computing lowers the total error most,
  until B steps compute;
* the **even** schedule (:func:`even_schedule` with the leading steps as warm-up).

The best start is refined by **moves**: each chosen step (leading ones excepted) in turn goes to the
free step where the total error is least, while that lowers it; rounds repeat until none does (or
``max_rounds``).

Every evaluation is a sum of memoised per-(step, history) errors, so the search forecasts each distinct
(step, history) pair once. The result is a local optimum of the proxy, deterministic for given errors
(ties go to the earlier step).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from lesa_core.errors import ConfigError
from lesa_core.interfaces import Decision, ScheduleError

__all__ = ["MOVE_DISTANCES", "decisions_for", "even_schedule", "schedule_cost", "search_schedule", "step_moves"]


def decisions_for(steps: Iterable[int], num_steps: int) -> list[Decision]:
    """The decisions of a trajectory whose full steps are ``steps``."""
    chosen = set(steps)
    return [Decision.COMPUTE if s in chosen else Decision.FORECAST for s in range(num_steps)]


def schedule_cost(error: ScheduleError, steps: Iterable[int]) -> float:
    """The total error of the schedule whose full steps are ``steps``."""
    decisions = decisions_for(steps, error.num_steps)
    total = 0.0
    for step, decision in enumerate(decisions):
        if decision is Decision.FORECAST:
            total += error.step_error(step, error.history(decisions, step))
    return total


def even_schedule(num_steps: int, budget: int, warmup: int = 3) -> list[int]:
    """B full steps spread evenly: the first ``min(warmup, B)`` steps, then the rest evenly over the
    remaining steps starting right after the warm-up (at 50 steps and B = 10: 0, 1, 2, 3, 10, 16, 23,
    30, 37, 43, close to LESA's N = 7 schedule)."""
    budget = min(budget, num_steps)
    lead = min(warmup, budget)
    rest = budget - lead
    span = num_steps - lead
    steps = (
        list(range(lead)) + [lead + round(i * span / rest) for i in range(rest)]
        if rest
        else list(range(lead))
    )
    return sorted(set(steps))


MOVE_DISTANCES = (-2, -1, 1, 2)
"""How far :func:`step_moves` moves a full step."""


def step_moves(steps: Iterable[int], num_steps: int, distances: Sequence[int] = MOVE_DISTANCES) -> list[list[int]]:
    """The schedules one move away from ``steps`` (each sorted): every full step after the leading block
    (the run of consecutive steps from 0, which the predictor's first forecasts need) moved by each of
    ``distances`` to a free step below ``num_steps``; in step order, then distance order. Each spends as many
    full passes as ``steps``."""
    chosen = sorted(set(steps))
    lead = 0
    while lead < len(chosen) and chosen[lead] == lead:
        lead += 1
    taken = set(chosen)
    moved = []
    for step in chosen[lead:]:
        for distance in distances:
            target = step + distance
            if 0 <= target < num_steps and target not in taken:
                moved.append(sorted(taken - {step} | {target}))
    return moved


STARTS = ("dp", "greedy", "even")
"""The start schedules :func:`search_schedule` can begin from (module docstring)."""


def search_schedule(
    error: ScheduleError, budget: int, *, max_rounds: int = 8, starts: Sequence[str] = STARTS
) -> list[int]:
    """The full steps (sorted) of a B-pass schedule that locally minimises ``error`` (module docstring):
    the best of the ``starts`` (dynamic programming, greedy addition, the even schedule), refined by moves.

    :raises ConfigError: if ``budget`` is below the predictor's minimum history, or a start is unknown.
    """
    num_steps = error.num_steps
    budget = min(budget, num_steps)
    lead = max(1, error.min_history)
    if budget < lead:
        raise ConfigError(
            f"a budget of {budget} full passes is below the {lead} leading steps the predictor needs "
            "before its first forecast; raise the budget",
            path="policy.budget",
        )
    unknown = [s for s in starts if s not in STARTS]
    if unknown or not starts:
        raise ConfigError(f"unknown schedule search start(s) {unknown}; choose from {', '.join(STARTS)}")
    fixed = frozenset(range(lead))
    build = {
        "dp": lambda: _dynamic_programme(error, lead, budget),
        "greedy": lambda: _add_greedily(error, set(fixed), budget),
        "even": lambda: _even_rest(num_steps, budget, lead),
    }
    candidates = [build[name]() for name in starts]
    best = min(candidates, key=lambda c: (schedule_cost(error, c), sorted(c)))
    chosen, _ = _refine(error, set(best), fixed, max_rounds)
    return sorted(chosen)


def _even_rest(num_steps: int, budget: int, lead: int) -> set[int]:
    """The leading steps plus the rest of the budget spread evenly after them."""
    return set(even_schedule(num_steps, budget, warmup=lead))


def _dynamic_programme(error: ScheduleError, lead: int, budget: int) -> set[int]:
    """Dynamic programming over (full passes used, last full step), each state keeping its best path; a
    forecast span after the state's last full step is costed with the history that path gives. Exact when
    a forecast depends on the last full step only; a heuristic start otherwise."""
    num_steps = error.num_steps
    inf = float("inf")
    # state (b, k): b full passes, the last at step k -> (cost of the forecasts before k, path)
    states: dict[tuple[int, int], tuple[float, tuple[int, ...]]] = {
        (lead, lead - 1): (0.0, tuple(range(lead)))
    }
    best: tuple[float, tuple[int, ...]] = (inf, ())
    for b in range(lead, budget + 1):
        for k in range(lead - 1, num_steps):
            entry = states.get((b, k))
            if entry is None:
                continue
            cost, path = entry
            decisions = decisions_for(path, num_steps)
            span = 0.0  # the forecasts k + 1 .. m - 1
            for m in range(k + 1, num_steps + 1):
                if b < budget and m < num_steps:
                    total = cost + span
                    if total < states.get((b + 1, m), (inf, ()))[0]:
                        states[(b + 1, m)] = (total, (*path, m))
                if m < num_steps:
                    span += error.step_error(m, error.history(decisions, m))
            if b == budget:
                best = min(best, (cost + span, path))
    return set(best[1])


def _add_greedily(error: ScheduleError, chosen: set[int], budget: int) -> set[int]:
    while len(chosen) < budget:
        best = min((schedule_cost(error, chosen | {c}), c) for c in range(error.num_steps) if c not in chosen)
        chosen.add(best[1])
    return chosen


def _refine(
    error: ScheduleError, chosen: set[int], fixed: frozenset[int], max_rounds: int
) -> tuple[set[int], float]:
    """Single-step moves (the best move of each chosen step in turn) until none lowers the cost."""
    current = schedule_cost(error, chosen)
    for _ in range(max_rounds):
        improved = False
        for s in sorted(chosen - fixed):
            if s not in chosen:
                continue
            base = chosen - {s}
            cost, c = min(
                (schedule_cost(error, base | {c}), c) for c in range(error.num_steps) if c not in base
            )
            if c != s and cost < current - 1e-12 * max(1.0, current):
                chosen, current, improved = base | {c}, cost, True
        if not improved:
            break
    return chosen, current
