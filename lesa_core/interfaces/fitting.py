"""Optional predictor capabilities the trainer uses when a family has them.

A predictor family declares a capability by implementing the method (the trainer checks with
``isinstance`` against these runtime-checkable protocols; the core never names a family):

* :class:`ClosedFormFit` — the family fits its parameters in closed form from teacher-forced examples
  (a ridge least-squares fit, say) instead of by gradient descent. The trainer then skips both
  training stages and calls :meth:`ClosedFormFit.fit_closed_form` once.
* :class:`CoefficientStart` — a :class:`~lesa_core.interfaces.LinearPredictor` that can set its
  parameters so that its coefficients reproduce given ones (as closely as its form allows). The trainer
  uses it to start training from the best training-free (or closed-form) forecaster.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from torch import Tensor

from lesa_core.interfaces.predictor import ForecastInput


@dataclass(frozen=True)
class Example:
    """One teacher-forced example: the forecast's input (ground-truth history) and the true tap.

    :ivar inputs: the history, its times and steps, the time and step to forecast; features ``(B, N, C)``.
    :ivar target: ``(B, N, C)`` the ground-truth tap at ``inputs.step``.
    """

    inputs: ForecastInput
    target: Tensor


@dataclass(frozen=True)
class CoefficientTarget:
    """The coefficients a start should reproduce at one forecast step.

    :ivar inputs: the forecast's input at that step (only times, steps and the history length matter:
        linear coefficients never depend on feature values).
    :ivar coef: ``(len(inputs.features),)`` or ``(len(inputs.features), C)``.
    :ivar bias: ``()`` or ``(C,)``.
    """

    inputs: ForecastInput
    coef: Tensor
    bias: Tensor


@runtime_checkable
class ClosedFormFit(Protocol):
    """A family fitted in closed form (see the module docstring)."""

    def fit_closed_form(self, examples: Iterable[Example]) -> dict[str, float]:
        """Fit the parameters to ``examples`` (every forecast step of the schedule, in row batches; one
        pass) and return summary numbers for the report (e.g. the fit's residual)."""
        ...


@runtime_checkable
class CoefficientStart(Protocol):
    """A linear family that can start from given coefficients (see the module docstring)."""

    def start_from(self, targets: Sequence[CoefficientTarget]) -> float:
        """Set the parameters so that ``coefficients(t.inputs)`` approximates ``(t.coef, t.bias)`` for every
        target; return the remaining mean squared coefficient error."""
        ...
