"""Parameters of the ``kan`` predictor family (the paper's expert)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator

from lesa_predictors._linear_forecaster import TimeScaledConfig

_Scale = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]


class KANConfig(TimeScaledConfig):
    """LESA's expert: K-tap linear forecast scaled by α = KAN(time encoding).

    Shared fields (``taps``, ``time_encoding``, ``schedule``, ``schedule_atol``, ``hidden``,
    ``per_channel``, ``history``): see :class:`~lesa_predictors._linear_forecaster.TimeScaledConfig`.
    The spline fields default to LESA's values (lesa-method.md §3), not efficient-kan's.

    :ivar grid_size: G, uniform grid intervals over ``grid_range``.
    :ivar spline_order: k (3 = cubic); each input has G + k bases.
    :ivar grid_range: ``[lo, hi]`` of the grid (LESA: [-3, 3]).
    :ivar scale_noise: amplitude of the initial spline noise (LESA: 0.02).
    :ivar scale_base: Kaiming gain factor of the SiLU base branch at init.
    :ivar scale_spline: Kaiming gain factor of the standalone spline scalers at init (LESA: 0.2).
    """

    grid_size: int = Field(5, strict=True, ge=1, le=1024)
    spline_order: int = Field(3, strict=True, ge=1, le=16)
    grid_range: tuple[float, float] = (-3.0, 3.0)
    scale_noise: _Scale = 0.02
    scale_base: _Scale = 1.0
    scale_spline: _Scale = 0.2

    @field_validator("grid_range")
    @classmethod
    def _ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
        lo, hi = value
        if not (-1e6 < lo < hi < 1e6):  # also rejects NaN and infinities
            raise ValueError("grid_range must be two finite numbers [lo, hi] with lo < hi, e.g. [-3, 3]")
        return value
