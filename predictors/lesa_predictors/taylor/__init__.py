"""``taylor``: TaylorSeer-style finite-difference forecasting (order 0 = reuse, as in FORA)."""

from __future__ import annotations

from lesa_core import hookimpl
from lesa_core.registry import Registry
from lesa_predictors.taylor.config import TaylorConfig
from lesa_predictors.taylor.model import TaylorPredictor

__all__ = ["TaylorConfig", "TaylorPredictor"]


@hookimpl
def lesa_register_predictors(registry: Registry[type[TaylorPredictor]]) -> None:
    registry.add("taylor", TaylorPredictor, default=True)
