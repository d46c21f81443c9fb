"""``mlp``: the ``kan`` expert with an MLP time network (the paper's ablation)."""

from __future__ import annotations

from lesa_core import hookimpl
from lesa_core.registry import Registry
from lesa_predictors.mlp.config import MLPConfig
from lesa_predictors.mlp.model import MLPPredictor

__all__ = ["MLPConfig", "MLPPredictor"]


@hookimpl
def lesa_register_predictors(registry: Registry[type[MLPPredictor]]) -> None:
    registry.add("mlp", MLPPredictor)
