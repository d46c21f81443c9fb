"""The ``mlp`` predictor: ``forecast = h[-1] + MLP(time) · (Σ_k w_k h_k + b)``."""

from __future__ import annotations

import torch
from torch import nn

from lesa_predictors._linear_forecaster import TimeScaledLinearPredictor
from lesa_predictors.mlp.config import MLPConfig


class MLPPredictor(TimeScaledLinearPredictor):
    """One expert with a SiLU MLP time network (Linear layers with bias, default PyTorch init)."""

    Config = MLPConfig
    config: MLPConfig

    def build_time_net(self, widths: list[int], output_scale: float) -> nn.Module:
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
            layers.append(nn.Linear(a, b))
            if i < len(widths) - 2:
                layers.append(nn.SiLU())
        net = nn.Sequential(*layers)
        last = net[-1]
        assert isinstance(last, nn.Linear)
        with torch.no_grad():
            last.weight.mul_(output_scale)
            last.bias.mul_(output_scale)
        return net
