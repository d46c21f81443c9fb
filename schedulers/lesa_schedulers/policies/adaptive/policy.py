"""The ``adaptive`` cache policy: decide per step from the forecast's own drift, under a hard budget.

The cheap signal is the disagreement between the learned forecast and reuse (order 0): its drift
``d = ||ĥ_s − h|| / ||h||`` from the newest history tap ``h`` — the last full pass in ``full`` history
mode — which the runtime measures after forecasting (one host sync per forecast step,
:meth:`~lesa_core.interfaces.CachePolicy.review`). Per trajectory of one cache context:

* the first ``warmup`` steps compute;
* a later step computes when ``d ≥ threshold`` and fewer than ``budget`` steps have computed — or, with
  ``max_gap``, when ``max_gap`` steps have passed since the last full one (drift-triggered passes then
  keep a reserve of budget for that rule);
* every other step keeps its forecast: never more than ``budget`` full passes (a non-finite forecast that
  the runtime's guard replaces by a full step is the one exception: the policy is not told of it).

Where the features change fast (low t on the embedded model) the drift grows faster and passes come
closer together. The decision is a function of the trajectory's own inputs: deterministic for a given
input, and state (the count of full passes) is kept per cache context (one policy per context).

``lesa train`` trains the predictor on the even schedule of B passes (:meth:`AdaptivePolicy.schedule`),
then fits ``threshold`` for the budget (:meth:`AdaptivePolicy.fit`): it replays the policy on
the collected trajectories teacher-forced (:func:`~lesa_core.interfaces.replay`) over a grid of thresholds
and gaps and keeps the pair with the least forecast error.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import Field

from lesa_core.interfaces import CachePolicy, Decision, PluginConfig, ScheduleError, StepInfo, replay
from lesa_schedulers.policies.learned.search import even_schedule


class AdaptiveConfig(PluginConfig):
    """:ivar budget: B ≥ 1, the most full passes per trajectory (the leading ``warmup`` included).
    :ivar threshold: the forecast drift at which a step computes instead (> 0).
    :ivar warmup: leading full steps (≥ 1: the first step has nothing to forecast from).
    :ivar max_gap: if set, a step computes whenever ``max_gap`` steps have passed since the last full one,
        and a drift-triggered pass is taken only while the budget left keeps enough passes for that rule
        over the rest of the trajectory (when the step count is known)."""

    budget: int = Field(10, ge=1)
    threshold: float = Field(0.1, gt=0)
    warmup: int = Field(3, ge=1)
    max_gap: int | None = Field(None, ge=1)


class AdaptivePolicy(CachePolicy):
    """Warm-up, then compute when the forecast's drift reaches the threshold, at most ``budget`` times."""

    Config = AdaptiveConfig
    config: AdaptiveConfig
    reviews_forecasts = True

    def __init__(self, config: AdaptiveConfig) -> None:
        super().__init__(config)
        self.full = 0
        self.last_full = -1

    def reset(self) -> None:
        self.full = 0
        self.last_full = -1

    def _compute(self, step: StepInfo) -> Decision:
        self.full += 1
        self.last_full = step.index
        return Decision.COMPUTE

    def decide(self, step: StepInfo) -> Decision:
        if step.index < self.config.warmup and self.full < self.config.budget:
            return self._compute(step)
        return Decision.FORECAST

    def schedule(self, num_steps: int) -> list[Decision]:
        """The decisions the predictor trains on under this policy (stage 1's teacher forcing): the real
        ones depend on the input, so the even schedule of ``budget`` passes after the warm-up stands in."""
        full = set(even_schedule(num_steps, self.config.budget, self.config.warmup))
        return [Decision.COMPUTE if s in full else Decision.FORECAST for s in range(num_steps)]

    def review(self, step: StepInfo, drift: float) -> Decision:
        c = self.config
        left = c.budget - self.full
        if left <= 0:
            return Decision.FORECAST
        if c.max_gap is not None and step.index - self.last_full >= c.max_gap:
            return self._compute(step)
        reserve = 0
        if c.max_gap is not None and step.num_steps is not None:
            reserve = (step.num_steps - 1 - step.index) // c.max_gap  # passes the gap rule may still need
        if not drift < c.threshold and left - 1 >= reserve:  # a NaN drift computes too
            return self._compute(step)
        return Decision.FORECAST

    def fit(self, error: ScheduleError) -> dict[str, Any] | None:
        """The threshold (13 log-spaced in [1e-3, 10]) and ``max_gap`` (none, or 0–3 steps above the even
        spacing of the budget) whose replay on the trajectories has the least error."""
        c = self.config
        even_gap = max(1, math.ceil((error.num_steps - c.warmup) / max(1, c.budget - c.warmup)))
        gaps: list[int | None] = [None, *range(even_gap, even_gap + 4)]
        best: tuple[float, float, int | None] | None = None
        for gap in gaps:
            for i in range(13):
                threshold = 10 ** (-3 + i / 3)
                policy = AdaptivePolicy(c.model_copy(update={"threshold": threshold, "max_gap": gap}))
                cost = replay(policy, error)[1]
                if best is None or cost < best[0] - 1e-12 * max(1.0, best[0]):
                    best = (cost, threshold, gap)
        assert best is not None
        return {**c.model_dump(), "threshold": float(f"{best[1]:.6g}"), "max_gap": best[2]}
