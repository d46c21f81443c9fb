"""The full-step schedules a run trains on: the run's policy first, then ``training.schedules``.

A predictor trained on one schedule only sees the time offsets of that schedule's forecast spans; run at
a much longer interval, its time network extrapolates. ``training.schedules`` names neighbouring schedules —
parameter overrides of the run's policy (``[{interval: 11}]``), or ``auto`` for the policy's own
:meth:`~lesa_core.interfaces.CachePolicy.training_variants` — whose forecast steps both stages train on
as well: stage 1 pools their (schedule, step) units, stage 2 takes its rollouts under each in turn. The
run's policy stays the one the bundle stores, validation scores with and learned policies fit to.

A variant that decides the same steps as one before it, or forecasts no step, is dropped.

The default is the run's schedule only (``[]``): measured on the embedded models, a mix lost 0.5–1.3 dB on
the run's own schedule in 4 of 7 measurements and gained nothing at a moderately longer interval; it pays for
a bundle run at intervals far longer than it was trained for (trained at N = 4 and run at N = 7: +20 dB), and
for a long-interval run whose own training fails in closed loop. docs/training.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from lesa_core.config import ResolvedPlugins, TrainingConfig
from lesa_core.errors import ConfigError
from lesa_core.interfaces import CachePolicy, Decision, PluginConfig


@dataclass(frozen=True)
class TrainingSchedule:
    """One schedule the run trains on.

    :ivar label: how reports name it (``run`` for the run's policy, else its overrides).
    :ivar make_policy: a fresh policy of this schedule (the runtime keeps one per cache context).
    :ivar decisions: its decisions over the trajectories' steps.
    """

    label: str
    make_policy: Callable[[], CachePolicy]
    decisions: list[Decision]

    @property
    def forecast_steps(self) -> int:
        """How many steps it forecasts."""
        return sum(d is Decision.FORECAST for d in self.decisions)


def _variant(plugins: ResolvedPlugins, override: dict[str, Any], index: int) -> PluginConfig:
    """The run's policy parameters with ``override`` applied, validated by the policy's own model."""
    params = {**plugins.policy_config.model_dump(), **override}
    try:
        return plugins.policy_cls.Config.model_validate(params)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}" for e in exc.errors())
        raise ConfigError(
            f"training.schedules[{index}] {override} is not a valid {plugins.policy_cls.__name__} override "
            f"({problems}); give parameter overrides of the run's policy, 'auto', or []",
            path=f"training.schedules.{index}",
        ) from None


def training_schedules(plugins: ResolvedPlugins, training: TrainingConfig, num_steps: int) -> list[TrainingSchedule]:
    """The run's schedule, then each distinct neighbouring schedule of ``training.schedules`` that forecasts.

    :raises ConfigError: for an override the run's policy does not accept.
    """
    policy = plugins.make_policy()
    own = TrainingSchedule("run", plugins.make_policy, policy.schedule(num_steps))
    overrides = policy.training_variants() if training.schedules == "auto" else training.schedules
    schedules = [own]
    for index, override in enumerate(overrides):
        config = _variant(plugins, dict(override), index)

        def make(config: PluginConfig = config) -> CachePolicy:
            return plugins.policy_cls(config)

        decisions = make().schedule(num_steps)
        if Decision.FORECAST not in decisions or any(decisions == s.decisions for s in schedules):
            continue
        label = ", ".join(f"{k}={v}" for k, v in override.items())
        schedules.append(TrainingSchedule(label, make, decisions))
    return schedules
