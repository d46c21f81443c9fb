"""The ``taylor`` predictor: TaylorSeer's recursive finite differences in closed form.

With history h_0, h_1, h_2 (oldest first) at positions p_0 < p_1 < p_2 and the forecast position p,
TaylorSeer keeps factors F_0 = h_2, F_1 = (h_2 − h_1)/d_1, F_2 = (F_1 − F_1^prev)/d_1 with
F_1^prev = (h_1 − h_0)/d_0, d_i = p_{i+1} − p_i, and forecasts Σ_i F_i x^i / i! with x = p − p_2.
This is linear in the history, so the predictor only computes the coefficients.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lesa_core.interfaces import ForecastInput, LinearPredictor
from lesa_predictors.taylor.config import TaylorConfig


class TaylorPredictor(LinearPredictor):
    """Finite-difference Taylor forecast of order 0, 1 or 2 (training-free)."""

    Config = TaylorConfig
    config: TaylorConfig

    @property
    def history_size(self) -> int:
        return self.config.order + 1

    def coefficients(self, inputs: ForecastInput) -> tuple[Tensor, Tensor]:
        positions = inputs.steps if self.config.spacing == "steps" else inputs.times
        target = inputs.step if self.config.spacing == "steps" else inputs.t
        n = len(inputs.features)
        order = min(self.config.order, n - 1)
        device = positions.device
        # unit vectors built on the device: writing Python numbers into a CUDA tensor would sync the host
        index = torch.arange(n, device=device)
        unit = [(index == n - 1 - j).to(torch.float32) for j in range(order + 1)]  # newest, previous, ...
        bias = torch.zeros((), dtype=torch.float32, device=device)
        if order == 0:
            return unit[0], bias
        p = positions.to(torch.float32)
        x = target.to(torch.float32) - p[-1]
        d1 = p[-1] - p[-2]
        first = x / d1
        coef = unit[0] * (1 + first) - unit[1] * first
        if order == 2:
            d0 = p[-2] - p[-3]
            half_x2 = x * x / 2
            coef = (coef + unit[0] * (half_x2 / (d1 * d1)) - unit[1] * (half_x2 * (1 / (d1 * d1) + 1 / (d1 * d0)))
                    + unit[2] * (half_x2 / (d1 * d0)))
        return coef, bias
