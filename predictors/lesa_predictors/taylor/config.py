"""Parameters of the ``taylor`` predictor family."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from lesa_core.interfaces.predictor import HistoryMode, PredictorConfig


class TaylorConfig(PredictorConfig):
    """TaylorSeer's finite-difference forecast (arXiv 2503.06923); order 0 is plain reuse (FORA).

    :ivar order: Taylor order m ∈ {0, 1, 2}; the forecast reads the last m + 1 history entries.
    :ivar spacing: measure distances in ``steps`` (step indices, as TaylorSeer and diffusers do) or
        in flow ``time``.
    :ivar history: ``full`` (TaylorSeer: differences of real full-pass features) or ``steps``.
    """

    order: int = Field(1, ge=0, le=2)
    spacing: Literal["steps", "time"] = "steps"
    history: HistoryMode = "full"
