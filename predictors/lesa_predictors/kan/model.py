"""The ``kan`` predictor: ``forecast = h[-1] + KAN(time) · (Σ_k w_k h_k + b)`` (LESA, arXiv 2602.20497)."""

from __future__ import annotations

import torch
from torch import nn

from lesa_predictors._linear_forecaster import TimeScaledLinearPredictor
from lesa_predictors.kan.config import KANConfig
from lesa_predictors.kan.layers import KAN, BSplineKANLinear


class KANPredictor(TimeScaledLinearPredictor):
    """One LESA expert with an efficient-KAN time network ``[D, *hidden, 1]``."""

    Config = KANConfig
    config: KANConfig

    def build_time_net(self, widths: list[int], output_scale: float) -> nn.Module:
        c = self.config
        net = KAN(
            widths,
            grid_size=c.grid_size,
            spline_order=c.spline_order,
            grid_range=c.grid_range,
            scale_noise=c.scale_noise,
            scale_base=c.scale_base,
            scale_spline=c.scale_spline,
        )
        last = net.layers[-1]
        assert isinstance(last, BSplineKANLinear)
        with torch.no_grad():  # output = scale · (base + spline): scale both branches exactly once
            last.base_weight.mul_(output_scale)
            last.spline_scaler.mul_(output_scale)
        return net
