"""Parameters of the ``probe`` predictor family (probe-conditioned forecasting)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from lesa_core.interfaces.predictor import PredictorConfig


class ProbeConfig(PredictorConfig):
    """A Taylor forecast from past full passes plus a ridge-fitted channel map of the probe's drift.

    :ivar probe_blocks: k, the body blocks that run for real on a forecast step (their output is the
        probe); unset = the adapter's declared probe point (the first block by default). Each forecast
        step costs k / (body blocks) of a full pass.
    :ivar order: the base forecast's Taylor order (0 = reuse, 1, 2), over the last full passes.
    :ivar spacing: the base forecast's distances in ``steps`` or flow ``time`` (as the ``taylor`` family).
    :ivar ridge: the ridge penalty of the drift map, relative to the mean diagonal of its normal equations
        (shrinks the correction towards the plain Taylor forecast).
    :ivar fit_increment: also fit a channel map of the Taylor increment ``taylor(history) − h[-1]`` (so the
        fit can lean the base towards reuse or extrapolate further, per channel); off = a fixed Taylor base.
    :ivar probe_channels: the probe's channel count when it differs from the tap's (e.g. a tap after the
        output projection); unset = the tap's.
    :ivar history: ``full`` only: the drift is measured from the newest history entry, the last full pass.
    """

    probe_blocks: int | None = Field(None, strict=True, ge=1)
    order: int = Field(1, strict=True, ge=0, le=2)
    spacing: Literal["steps", "time"] = "steps"
    ridge: float = Field(1e-3, ge=0.0, le=1e6, allow_inf_nan=False)
    fit_increment: bool = Field(True, strict=True)
    probe_channels: int | None = Field(None, strict=True, ge=1)
    history: Literal["full"] = "full"
