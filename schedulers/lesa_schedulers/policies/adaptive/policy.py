"""The ``adaptive`` cache policy: decide per step from the forecast's own drift, under a hard budget.

The cheap signal is the disagreement between the learned forecast and reuse (order 0): its drift
``d = ||ĥ_s − h|| / ||h||`` from the newest history tap ``h`` — the last full pass in ``full`` history
mode — which the runtime measures after forecasting (one host sync per forecast step,
:meth:`~lesa_core.interfaces.CachePolicy.review`). Per trajectory of one cache context:

* the first ``warmup`` steps compute;
* a later step computes when ``d ≥ threshold`` and fewer than ``budget`` steps have computed;
* every other step keeps its forecast: never more than ``budget`` full passes (a non-finite forecast that
  the runtime's guard replaces by a full step is the one exception: the policy is not told of it).

Where the features change fast (low t on the embedded model) the drift grows faster and passes come
closer together. The decision is a function of the trajectory's own inputs: deterministic for a given
input, and state (the count of full passes) is kept per cache context (one policy per context).

``lesa train`` trains the predictor on the even schedule of B passes (:meth:`AdaptivePolicy.schedule`),
then fits ``threshold`` for the budget (:meth:`AdaptivePolicy.fit`): it replays the policy on
the collected trajectories teacher-forced (:func:`~lesa_core.interfaces.replay`) for a grid of thresholds and keeps the one
with the least forecast error.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from lesa_core.interfaces import CachePolicy, Decision, PluginConfig, ScheduleError, StepInfo, replay
from lesa_schedulers.policies.learned.search import even_schedule


class AdaptiveConfig(PluginConfig):
    """:ivar budget: B ≥ 1, the most full passes per trajectory (the leading ``warmup`` included).
    :ivar threshold: the forecast drift at which a step computes instead (> 0).
    :ivar warmup: leading full steps (≥ 1: the first step has nothing to forecast from)."""

    budget: int = Field(10, ge=1)
    threshold: float = Field(0.1, gt=0)
    warmup: int = Field(3, ge=1)


class AdaptivePolicy(CachePolicy):
    """Warm-up, then compute when the forecast's drift reaches the threshold, at most ``budget`` times."""

    Config = AdaptiveConfig
    config: AdaptiveConfig
    reviews_forecasts = True

    def __init__(self, config: AdaptiveConfig) -> None:
        super().__init__(config)
        self.full = 0

    def reset(self) -> None:
        self.full = 0

    def decide(self, step: StepInfo) -> Decision:
        if step.index < self.config.warmup and self.full < self.config.budget:
            self.full += 1
            return Decision.COMPUTE
        return Decision.FORECAST

    def schedule(self, num_steps: int) -> list[Decision]:
        """The decisions the predictor trains on under this policy (stage 1's teacher forcing): the real
        ones depend on the input, so the even schedule of ``budget`` passes after the warm-up stands in."""
        full = set(even_schedule(num_steps, self.config.budget, self.config.warmup))
        return [Decision.COMPUTE if s in full else Decision.FORECAST for s in range(num_steps)]

    def review(self, step: StepInfo, drift: float) -> Decision:
        if self.full < self.config.budget and not drift < self.config.threshold:  # NaN drift computes too
            self.full += 1
            return Decision.COMPUTE
        return Decision.FORECAST

    def fit(self, error: ScheduleError) -> dict[str, Any] | None:
        """The threshold (of 49 log-spaced in [1e-3, 10]) whose replay on the trajectories has the least error."""
        best: tuple[float, float] | None = None
        for i in range(49):
            threshold = 10 ** (-3 + i / 12)
            policy = AdaptivePolicy(self.config.model_copy(update={"threshold": threshold}))
            cost = replay(policy, error)[1]
            if best is None or cost < best[0] - 1e-12 * max(1.0, best[0]):
                best = (cost, threshold)
        assert best is not None
        return {**self.config.model_dump(), "threshold": float(f"{best[1]:.6g}")}
