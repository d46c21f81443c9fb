"""An example third-party LESA plugin: one predictor family and one stage router.

It depends only on the public API of ``lesa_core`` and registers through the ``lesa`` entry point
declared in its ``pyproject.toml``.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor, nn

from lesa_core import ForecastInput, LinearPredictor, PluginConfig, PredictorContext, StageRouter, hookimpl
from lesa_core.interfaces.predictor import PredictorConfig
from lesa_core.registry import Registry


class DampedConfig(PredictorConfig):
    """:ivar gamma: initial damping factor (1 = Taylor order 1, 0 = reuse); learnable."""

    gamma: float = Field(0.8, ge=0.0, le=2.0)


class DampedPredictor(LinearPredictor):
    """``h[-1] + γ · (h[-1] − h[-2]) · x / d`` with x, d measured in flow time."""

    Config = DampedConfig
    config: DampedConfig
    stage_aware = True
    learnable = True

    def __init__(self, config: DampedConfig, context: PredictorContext | None = None) -> None:
        super().__init__(config, context)
        self.gamma = nn.Parameter(torch.tensor(float(config.gamma)))

    @property
    def history_size(self) -> int:
        return 2

    def coefficients(self, inputs: ForecastInput) -> tuple[Tensor, Tensor]:
        n = len(inputs.features)
        coef = torch.zeros(n, device=inputs.times.device)
        coef = coef + torch.nn.functional.one_hot(torch.tensor(n - 1), n).to(coef)
        if n >= 2:
            slope = (inputs.t - inputs.times[-1]) / (inputs.times[-1] - inputs.times[-2])
            step = self.gamma * slope
            coef = coef + step * torch.nn.functional.one_hot(torch.tensor(n - 1), n).to(coef)
            coef = coef - step * torch.nn.functional.one_hot(torch.tensor(n - 2), n).to(coef)
        return coef, torch.zeros((), device=coef.device)


class UniformConfig(PluginConfig):
    """:ivar num_stages: how many equal slices of t ∈ [0, 1]."""

    num_stages: int = Field(3, ge=1, le=32)


class UniformRouter(StageRouter):
    """Stage boundaries at 1 − i / num_stages."""

    Config = UniformConfig
    config: UniformConfig

    @property
    def boundaries(self) -> tuple[float, ...]:
        n = self.config.num_stages
        return tuple(1.0 - i / n for i in range(1, n))


@hookimpl
def lesa_register_predictors(registry: Registry[type[DampedPredictor]]) -> None:
    registry.add("damped", DampedPredictor)


@hookimpl
def lesa_register_stage_routers(registry: Registry[type[UniformRouter]]) -> None:
    registry.add("uniform", UniformRouter)
