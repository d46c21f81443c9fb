"""``probe``: probe-conditioned forecasting — a Taylor forecast from the history plus a per-token channel
map of the drift of the first k body blocks' output since the last full pass, fitted in closed form."""

from __future__ import annotations

from lesa_core import hookimpl
from lesa_core.registry import Registry
from lesa_predictors.probe.config import ProbeConfig
from lesa_predictors.probe.model import ProbePredictor

__all__ = ["ProbeConfig", "ProbePredictor"]


@hookimpl
def lesa_register_predictors(registry: Registry[type[ProbePredictor]]) -> None:
    registry.add("probe", ProbePredictor)
