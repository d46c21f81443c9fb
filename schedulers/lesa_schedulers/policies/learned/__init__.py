"""``learned``: a schedule of B full passes fitted to the trained predictor's forecast error."""

from __future__ import annotations

from lesa_core import hookimpl
from lesa_core.registry import Registry
from lesa_schedulers.policies.learned.policy import LearnedScheduleConfig, LearnedSchedulePolicy
from lesa_schedulers.policies.learned.search import even_schedule, search_schedule

__all__ = ["LearnedScheduleConfig", "LearnedSchedulePolicy", "even_schedule", "search_schedule"]


@hookimpl
def lesa_register_cache_policies(registry: Registry[type[LearnedSchedulePolicy]]) -> None:
    registry.add("learned", LearnedSchedulePolicy)
