"""The ``interval`` cache policy (LESA's ``cal_type``, made explicit and configurable).

Step s computes the body if

* s < ``warmup`` (E), or
* s is listed in ``force_full``, or
* s ≥ E and (s − P) is a multiple of ``interval`` (N), where the phase P is ``phase`` when given and
  E + N − 1 otherwise;

otherwise it forecasts. With the default phase this is LESA's counter rule (after the warm-up,
N − 1 forecasts then one full step; forced steps do not restart the count): with N = 7, E = 3 and
``force_full = [3]`` a 50-step trajectory computes steps 0, 1, 2, 3, 9, 16, 23, 30, 37, 44: 10 full
passes (5.00×). N = 1 computes every step.

``phase`` expresses other published schedules. diffusers' ``TaylorSeerCacheConfig(cache_interval=C,
disable_cache_before_step=B)`` computes when s < B or (s − B − 1) % C == 0, which is
``interval=C, warmup=B, force_full=[], phase=B + 1``.

The decision depends only on the step index, so it is identical on every process.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import Field, field_validator

from lesa_core.interfaces import CachePolicy, Decision, PluginConfig, StepInfo


class IntervalConfig(PluginConfig):
    """:ivar interval: N ≥ 1, one full step every N. :ivar warmup: E ≥ 0 leading full steps.
    :ivar force_full: step indices that always compute (default ``[3]``, as in LESA).
    :ivar phase: one periodic full step P (the periodic full steps are the s ≥ E with (s − P) % N == 0);
        ``None`` means E + N − 1, LESA's rule."""

    interval: int = Field(7, ge=1)
    warmup: int = Field(3, ge=0)
    force_full: tuple[int, ...] = (3,)
    phase: int | None = Field(None, ge=0)

    @field_validator("force_full")
    @classmethod
    def _non_negative(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(step < 0 for step in value):
            raise ValueError("force_full step indices must be >= 0")
        return tuple(sorted(set(value)))


class IntervalPolicy(CachePolicy):
    """Warm-up, forced steps, then every N-th step computes (stateless: a function of the index)."""

    Config = IntervalConfig
    config: IntervalConfig

    def __init__(self, config: IntervalConfig) -> None:
        super().__init__(config)
        n, e = config.interval, config.warmup
        self._phase = config.phase if config.phase is not None else e + n - 1
        self._forced = frozenset(config.force_full)

    def training_variants(self) -> list[dict[str, Any]]:
        """The schedule ⌈1.5 N⌉ (same warm-up, forced steps and phase rule): one bundle trained at N then also
        serves the longer intervals users trade quality for speed with (docs/training.md); none at N = 1."""
        n = self.config.interval
        return [{"interval": math.ceil(1.5 * n)}] if n > 1 else []

    def decide(self, step: StepInfo) -> Decision:
        s = step.index
        if s < self.config.warmup or s in self._forced:
            return Decision.COMPUTE
        if (s - self._phase) % self.config.interval == 0:
            return Decision.COMPUTE
        return Decision.FORECAST
