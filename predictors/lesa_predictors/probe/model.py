"""The ``probe`` predictor: ``forecast = taylor(history) + drift · W + increment · M + b``.

On a forecast step the runtime runs the first k body blocks for real and hands the predictor the probe's
drift since the last full pass, ``d = probe(now) − probe(last full pass)`` (:attr:`ForecastInput.probe_drift`,
``(..., P)``). The forecast is the ``taylor`` family's finite-difference forecast from the history plus a
per-token channel map of the drift: ``W (P, C)`` and ``b (C,)``, one map shared by every token and step
(token-wise, so context parallelism holds). With ``fit_increment`` a second map ``M (C, C)`` of the Taylor
increment ``taylor(history) − h[-1]`` lets the fit correct the base per channel (``M = −I`` is reuse).

Fitted in closed form (:class:`~lesa_core.interfaces.ClosedFormFit`): on teacher-forced examples the
residual of the Taylor forecast, ``y = target − taylor(history)``, is regressed on ``[d, (increment,) 1]``; the normal
equations are accumulated in float64 over every prompt and token, then solved once with a ridge penalty
(``ridge`` × their mean diagonal). An unfitted predictor (W = 0, M = 0, b = 0) is
the Taylor forecast, and so is any forecast without a drift (a runtime that ran no probe).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from einops import einsum, rearrange
from torch import Tensor

from lesa_core.errors import ConfigError, TrainingError
from lesa_core.interfaces import Example, ForecastInput, Predictor, PredictorContext
from lesa_core.interfaces.predictor import PredictorConfig
from lesa_predictors.probe.config import ProbeConfig
from lesa_predictors.taylor.config import TaylorConfig
from lesa_predictors.taylor.model import TaylorPredictor


class ProbePredictor(Predictor):
    """Taylor forecast plus a closed-form channel map of the probe's drift (see the module docstring)."""

    Config = ProbeConfig
    config: ProbeConfig
    learnable = True  # fitted by `lesa train` (in closed form)
    weight: Tensor  # (P, C) float32 buffer: the drift map
    increment_map: Tensor  # (C, C) float32 buffer (fit_increment) or (0, C)
    bias: Tensor  # (C,) float32 buffer

    def __init__(self, config: ProbeConfig, context: PredictorContext | None = None) -> None:
        super().__init__(config, context)
        channels = self.context.channels
        if channels is None:
            raise ConfigError(
                "the probe family needs the tap's channel count; build it with PredictorContext(channels=C)",
                path="predictor",
            )
        probe_channels = config.probe_channels or channels
        self.base = TaylorPredictor(TaylorConfig(order=config.order, spacing=config.spacing, history="full"))
        self.register_buffer("weight", torch.zeros(probe_channels, channels))
        self.register_buffer("increment_map", torch.zeros(channels if config.fit_increment else 0, channels))
        self.register_buffer("bias", torch.zeros(channels))

    # -- what the runtime reads ---------------------------------------------------------------------
    @property
    def history_size(self) -> int:
        return self.base.history_size

    @classmethod
    def reads_probe(cls, config: PredictorConfig) -> bool:
        return True

    # -- the forecast -----------------------------------------------------------------------------
    def forward(self, inputs: ForecastInput) -> Tensor:
        base = self.base(inputs)
        drift = inputs.probe_drift
        if drift is None:
            return base
        self._check_drift(drift)
        x = self._regressors(drift, base, inputs.features[-1])
        weights = torch.cat([self.weight, self.increment_map])
        correction = einsum(x, weights, "... p, p c -> ... c") + self.bias
        return (base.to(torch.float32) + correction).to(base.dtype)

    def _regressors(
        self, drift: Tensor, base: Tensor, newest: Tensor, dtype: torch.dtype = torch.float32
    ) -> Tensor:
        """``[drift, increment]`` (or ``drift`` alone) along the last axis, in ``dtype``."""
        drift = drift.to(dtype)
        if not self.config.fit_increment:
            return drift
        return torch.cat([drift, base.to(dtype) - newest.to(dtype)], dim=-1)

    def _check_drift(self, drift: Tensor) -> None:
        if drift.shape[-1] != self.weight.shape[0]:
            raise ConfigError(
                f"the probe has {drift.shape[-1]} channels but this predictor maps {self.weight.shape[0]}; set "
                "probe_channels to the probe's width (the hidden stream's)",
                path="predictor.probe_channels",
            )

    # -- closed-form fit (lesa_core.interfaces.ClosedFormFit) ---------------------------------------
    def fit_closed_form(self, examples: Iterable[Example]) -> dict[str, float]:
        """Ridge least squares of the Taylor residual on ``[drift, 1]``, float64 normal equations.

        :raises TrainingError: if no example carries a probe drift (a collection made without probes).
        """
        xx: Tensor | None = None
        xy: Tensor | None = None
        yy = 0.0
        rows = 0
        with torch.no_grad():
            for example in examples:
                drift = example.inputs.probe_drift
                if drift is None:
                    continue
                self._check_drift(drift)
                base = self.base(example.inputs)
                residual = example.target.to(torch.float64) - base.to(torch.float64)
                x = self._regressors(drift, base, example.inputs.features[-1], torch.float64)
                x = rearrange(x, "... p -> (...) p")
                x = torch.cat([x, x.new_ones(x.shape[0], 1)], dim=1)
                y = rearrange(residual, "... c -> (...) c")
                xx = x.T @ x if xx is None else xx + x.T @ x
                xy = x.T @ y if xy is None else xy + x.T @ y
                yy += float((y * y).sum())
                rows += x.shape[0]
        if xx is None or xy is None:
            raise TrainingError(
                "the probe family is fitted on the probe drift of collected trajectories, and these examples carry "
                "none: the trajectories were collected without probes. Collect again into a new data_dir with this "
                "run (`lesa collect` records the probe when the run's predictor reads one)"
            )
        size = xx.shape[0]
        eye = torch.eye(size, dtype=xx.dtype, device=xx.device)
        scale = torch.diagonal(xx)[:-1].mean().clamp_min(1e-30)
        solution = torch.linalg.solve(xx + self.config.ridge * scale * eye + 1e-12 * eye, xy)
        rss = (
            yy - 2 * float((solution * xy).sum()) + float(einsum(solution, xx, solution, "i c, i j, j c ->"))
        )
        probe_channels = self.weight.shape[0]
        self.weight.copy_(solution[:probe_channels].to(self.weight))
        self.increment_map.copy_(solution[probe_channels:-1].to(self.increment_map))
        self.bias.copy_(solution[-1].to(self.bias))
        return {
            "probe_rows": float(rows),
            "taylor_residual": yy,
            "probe_residual": max(rss, 0.0),
            "residual_ratio": max(rss, 0.0) / max(yy, 1e-30),
        }

    def extra_repr(self) -> str:
        return (
            f"probe_blocks={self.config.probe_blocks}, order={self.config.order}, "
            f"probe_channels={self.weight.shape[0]}, channels={self.weight.shape[1]}"
        )
