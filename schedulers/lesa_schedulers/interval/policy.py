"""The ``interval`` cache policy (LESA's ``cal_type``, made explicit and configurable).

Step s computes the body if s < ``warmup`` (E), if s is listed in ``force_full``, or if the counter
of forecast steps since the last counted full step has reached N − 1 (then the counter restarts);
otherwise it forecasts and the counter grows. Forced steps do not restart the counter, exactly as in
the reference. With N = 7, E = 3 and ``force_full = [3]`` a 50-step trajectory computes steps
0, 1, 2, 3, 9, 16, 23, 30, 37, 44: 10 full passes (5.00×). N = 1 computes every step.

The decision depends only on the step index, so it is identical on every process.
"""

from __future__ import annotations

from pydantic import Field, field_validator

from lesa_core.interfaces import CachePolicy, Decision, PluginConfig, StepInfo


class IntervalConfig(PluginConfig):
    """:ivar interval: N ≥ 1, one full step every N. :ivar warmup: E ≥ 0 leading full steps.
    :ivar force_full: step indices that always compute (default ``[3]``, as in LESA)."""

    interval: int = Field(7, ge=1)
    warmup: int = Field(3, ge=0)
    force_full: tuple[int, ...] = (3,)

    @field_validator("force_full")
    @classmethod
    def _non_negative(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(step < 0 for step in value):
            raise ValueError("force_full step indices must be >= 0")
        return tuple(sorted(set(value)))


class IntervalPolicy(CachePolicy):
    """Warm-up, forced steps, then every N-th step computes."""

    Config = IntervalConfig
    config: IntervalConfig

    def __init__(self, config: IntervalConfig) -> None:
        super().__init__(config)
        self._counter = 0

    def reset(self) -> None:
        self._counter = 0

    def decide(self, step: StepInfo) -> Decision:
        n, e = self.config.interval, self.config.warmup
        if step.index < e or self._counter >= n - 1:
            self._counter = 0
            decision = Decision.COMPUTE
        else:
            self._counter += 1
            decision = Decision.FORECAST
        if step.index in self.config.force_full:
            decision = Decision.COMPUTE
        return decision
