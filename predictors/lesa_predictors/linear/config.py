"""Parameters of the ``linear`` predictor family (L2P-style closed-form per-step forecaster)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator

from lesa_core.interfaces.predictor import HistoryMode, PredictorConfig

MAX_SCHEDULE_POINTS = 10_001
"""The longest schedule (S + 1 flow times): at most 10 000 steps."""


class LinearConfig(PredictorConfig):
    """A per-forecast-step linear combination of the history plus a bias, fitted by ridge least squares.

    :ivar taps: K, the newest history entries a forecast reads (L2P reads every earlier step; 3 full
        passes already carry the trajectory's curvature).
    :ivar per_channel: one coefficient set per channel (``(K, C)`` weights and ``(C,)`` bias per step)
        instead of scalars shared by every channel.
    :ivar ridge: the ridge penalty, relative to the mean diagonal of the normal equations; the fit
        solves for the residual against reuse, so the penalty shrinks towards reuse.
    :ivar schedule: the S + 1 flow times of the schedule the fit is bound to (coefficients are per step);
        ``lesa train`` fills it from the collected trajectories.
    :ivar schedule_atol: how far a runtime time may be from ``schedule[step]``.
    :ivar history: ``full`` (real full-pass features only, the default) or ``steps``.
    """

    taps: int = Field(3, strict=True, ge=1, le=64)
    per_channel: bool = Field(False, strict=True)
    ridge: float = Field(1e-4, ge=0.0, le=1e6, allow_inf_nan=False)
    schedule: Annotated[tuple[float, ...], Field(min_length=2, max_length=MAX_SCHEDULE_POINTS)] | None = None
    schedule_atol: float = Field(1e-4, gt=0.0, allow_inf_nan=False)
    history: HistoryMode = "full"

    @field_validator("schedule")
    @classmethod
    def _descending(cls, value: tuple[float, ...] | None) -> tuple[float, ...] | None:
        if value is None:
            return value
        if any(not (0.0 <= x <= 1.0) for x in value):  # also rejects NaN
            raise ValueError("schedule times must lie in [0, 1] (flow time, 1 = noise)")
        if any(a <= b for a, b in zip(value, value[1:], strict=False)):
            raise ValueError(
                "schedule must be strictly descending: S + 1 flow times from ~1 to the terminal 0"
            )
        return value
