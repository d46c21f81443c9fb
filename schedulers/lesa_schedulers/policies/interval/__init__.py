"""``interval``: LESA's fixed schedule — warm-up, forced full steps, then one full step every N."""

from __future__ import annotations

from lesa_core import hookimpl
from lesa_core.registry import Registry
from lesa_schedulers.policies.interval.policy import IntervalConfig, IntervalPolicy

__all__ = ["IntervalConfig", "IntervalPolicy"]


@hookimpl
def lesa_register_cache_policies(registry: Registry[type[IntervalPolicy]]) -> None:
    registry.add("interval", IntervalPolicy, default=True)
