"""``linear``: a per-step linear forecast of the history, fitted in closed form (L2P-style)."""

from __future__ import annotations

from lesa_core import hookimpl
from lesa_core.registry import Registry
from lesa_predictors.linear.config import LinearConfig
from lesa_predictors.linear.model import LinearStepPredictor

__all__ = ["LinearConfig", "LinearStepPredictor"]


@hookimpl
def lesa_register_predictors(registry: Registry[type[LinearStepPredictor]]) -> None:
    registry.add("linear", LinearStepPredictor)
