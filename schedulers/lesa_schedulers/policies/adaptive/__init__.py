"""``adaptive``: per step, compute when the forecast drifts too far from the last full pass (hard cap B)."""

from __future__ import annotations

from lesa_core import hookimpl
from lesa_core.registry import Registry
from lesa_schedulers.policies.adaptive.policy import AdaptiveConfig, AdaptivePolicy

__all__ = ["AdaptiveConfig", "AdaptivePolicy"]


@hookimpl
def lesa_register_cache_policies(registry: Registry[type[AdaptivePolicy]]) -> None:
    registry.add("adaptive", AdaptivePolicy)
