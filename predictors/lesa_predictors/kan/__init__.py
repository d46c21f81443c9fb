"""``kan``: the paper's learned expert, a K-tap linear forecast scaled by a KAN of the time encoding."""

from __future__ import annotations

from lesa_core import hookimpl
from lesa_core.registry import Registry
from lesa_predictors.kan.config import KANConfig
from lesa_predictors.kan.model import KANPredictor

__all__ = ["KANConfig", "KANPredictor"]


@hookimpl
def lesa_register_predictors(registry: Registry[type[KANPredictor]]) -> None:
    registry.add("kan", KANPredictor)
