"""The :class:`Predictor` interface: a pure forecaster of one tapped feature.

Contract, in words:

* **Inputs** (:class:`ForecastInput`): the history of past tapped features, oldest first, each the
  same shape ``(..., C)`` as the feature to forecast, their flow times ``t`` in [0, 1] and step
  indices, and the time and step index of the step to forecast. Every tensor lives on the features'
  device; nothing in a forecast reads a device value on the host.
* **Output**: a tensor with the shape and dtype of ``features[-1]``.
* **Purity**: ``forward`` has no side effects — no I/O, no optimizer, no device choice, no mutation of
  its inputs or of itself. The same inputs give the same output.
* **History**: the runtime keeps at most :attr:`Predictor.history_size` entries and calls the
  predictor once it holds at least :attr:`Predictor.min_history`. In ``"steps"`` history mode the
  history holds the taps of the last steps, forecasts included; in ``"full"`` mode only the taps of
  the last full passes (always real model features).
* **Token-wise**: a forecast may mix history entries and channels but never tokens, so forecasting
  a sequence shard equals the matching shard of the whole forecast (context parallelism).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import Tensor, nn

from lesa_core.interfaces.base import PluginConfig
from lesa_core.interfaces.coefficients import fast_coefficients

HistoryMode = Literal["steps", "full"]


@dataclass(frozen=True)
class ForecastInput:
    """Everything a predictor may look at to forecast one step.

    :ivar features: past tapped features, oldest first (length ≥ ``min_history``).
    :ivar times: ``(len(features),)`` float32 flow times of the history entries.
    :ivar steps: ``(len(features),)`` float32 step indices of the history entries.
    :ivar t: ``()`` float32 flow time of the step to forecast.
    :ivar step: ``()`` float32 step index of the step to forecast.
    :ivar scalars: optional copies of ``(times, steps, t, step)`` as Python numbers, given by a runtime
        that knows them without a device synchronisation (e.g. from ``CacheContext.sigma``). Predictors
        never need them; :func:`lesa_core.interfaces.coefficients.fast_coefficients` uses them to memoise
        coefficients of device inputs. They must identify the device values: the same numbers always
        come with the same device values (the same schedule passed the same way).
    :ivar probe_drift: for a predictor that reads a probe (:attr:`Predictor.uses_probe`), the drift of the
        probe point — the hidden stream after the first k body blocks, computed for real on every step —
        between the step to forecast and the last full pass: ``probe(now) − probe(last full pass)``, shaped
        like the probe ``(..., C_probe)`` with the features' leading (token) axes. ``None`` for every other
        predictor, and wherever no probe was run; predictors that ignore it are unchanged.
    """

    features: Sequence[Tensor]
    times: Tensor
    steps: Tensor
    t: Tensor
    step: Tensor
    scalars: tuple[tuple[float, ...], tuple[float, ...], float, float] | None = None
    probe_drift: Tensor | None = None

    def last(self, k: int) -> ForecastInput:
        """The same input restricted to the ``k`` newest history entries (the probe drift is kept)."""
        s = self.scalars
        scalars = None if s is None else (s[0][-k:], s[1][-k:], s[2], s[3])
        return ForecastInput(
            self.features[-k:], self.times[-k:], self.steps[-k:], self.t, self.step, scalars, self.probe_drift
        )


@dataclass(frozen=True)
class PredictorContext:
    """Facts about the deployment a predictor is built for (fixed for its lifetime).

    :ivar stage: the stage this instance serves when it is one expert of a stage-aware composite.
    :ivar num_stages: the number of stages of the run's router.
    :ivar channels: size of the tap's last axis, for families with per-channel parameters.
    """

    stage: int = 0
    num_stages: int = 1
    channels: int | None = None


class PredictorConfig(PluginConfig):
    """Parameters shared by every predictor family.

    :ivar history: which taps the history holds (see the module docstring).
    """

    history: HistoryMode = "full"


class Predictor(nn.Module, ABC):
    """Base class of predictor families. Subclasses set ``Config`` and implement :meth:`forward`.

    :cvar Config: the family's pydantic parameter model (a :class:`PredictorConfig` subclass).
    :cvar stage_aware: ``True`` for families that train one expert per stage of the router; the
        runtime then builds one instance per stage (see :class:`lesa_core.composite.StageAwarePredictor`).
    :cvar learnable: ``True`` if the family has parameters that the trainer should fit.
    :cvar schedule_bound: ``True`` if its parameters belong to the full steps of the policy it was fitted for
        (per-step coefficients over that policy's history): a bundle of it refuses another policy.
    """

    Config: ClassVar[type[PredictorConfig]] = PredictorConfig
    stage_aware: ClassVar[bool] = False
    learnable: ClassVar[bool] = False
    schedule_bound: ClassVar[bool] = False

    def __init__(self, config: PredictorConfig, context: PredictorContext | None = None) -> None:
        super().__init__()
        self.config = config
        self.context = context or PredictorContext()

    @property
    def history_mode(self) -> HistoryMode:
        """``"steps"`` or ``"full"`` (from the config)."""
        return self.config.history

    @classmethod
    def check_config(cls, config: PredictorConfig, num_stages: int) -> None:
        """Refuse a config that cannot be built for a router of ``num_stages`` stages (a value per stage
        given for another number of stages, say) with a :class:`~lesa_core.errors.ConfigError` naming the
        field. Called by the one resolution of a run (:func:`lesa_core.run.resolve_run`), so that
        ``lesa config validate``, ``attach`` and ``train`` refuse it before any work; the model (and so
        the tap's channel count) is not known yet. The default accepts any."""

    @property
    @abstractmethod
    def history_size(self) -> int:
        """The most history entries a forecast reads (K). Runtime memory is K × tap size per context."""

    @property
    def min_history(self) -> int:
        """The fewest history entries a forecast accepts (default 1: it degrades gracefully)."""
        return 1

    @classmethod
    def reads_probe(cls, config: PredictorConfig) -> bool:
        """Whether a predictor built from ``config`` reads :attr:`ForecastInput.probe_drift` (known before
        building it: collection records probes for such a run). Default ``False``."""
        return False

    @property
    def uses_probe(self) -> bool:
        """``True`` if forecasts read :attr:`ForecastInput.probe_drift`: the runtime then runs the first
        :attr:`probe_blocks` body blocks for real on forecast steps too (their cost counts) and records the
        probe on every step. Default: :meth:`reads_probe` of the config (``False``: no block runs on a
        forecast step)."""
        return type(self).reads_probe(self.config)

    @property
    def probe_blocks(self) -> int | None:
        """k, the body blocks whose output is the probe point: the config's ``probe_blocks`` if it has one,
        else ``None`` for the adapter's declared probe point (only read when :attr:`uses_probe`)."""
        value = getattr(self.config, "probe_blocks", None)
        return None if value is None else int(value)

    @abstractmethod
    def forward(self, inputs: ForecastInput) -> Tensor:
        """Forecast the tapped feature at ``inputs.t``; pure (see the module docstring)."""

    def check_num_steps(self, num_steps: int) -> None:
        """Raise :class:`~lesa_core.errors.ScheduleMismatchError` if the predictor cannot run a
        trajectory of ``num_steps`` steps (schedule-bound families); the default accepts any."""

    def check_time(self, step_index: int, t: float) -> None:
        """Raise :class:`~lesa_core.errors.ScheduleMismatchError` if step ``step_index`` at time ``t``
        contradicts the schedule the predictor was trained on; the default accepts any."""


class LinearPredictor(Predictor):
    """A predictor whose forecast is linear in the history:

    ``forecast = sum_k coef[k] * features[k] + bias``

    where ``coef`` and ``bias`` depend only on times and steps (KAN, MLP and Taylor all have this
    form). Implementing :meth:`coefficients` instead of :meth:`forward` lets a stage-aware composite
    select an expert on the device and touch the history only once.
    """

    @abstractmethod
    def coefficients(self, inputs: ForecastInput) -> tuple[Tensor, Tensor]:
        """Return ``(coef, bias)``: ``coef`` of shape ``(len(inputs.features), *coefficient_shape)``,
        ``bias`` of shape ``coefficient_shape``."""

    @property
    def coefficient_shape(self) -> tuple[int, ...]:
        """The per-entry shape of the coefficients: ``()`` for scalar weights (the default), ``(C,)`` for
        per-channel ones. Fixed for the predictor's lifetime."""
        return ()

    def forward(self, inputs: ForecastInput) -> Tensor:
        coef, bias = fast_coefficients(self, self.coefficients, inputs)
        return combine(inputs.features, coef, bias)


def combine(features: Sequence[Tensor], coef: Tensor, bias: Tensor) -> Tensor:
    """``sum_k coef[k] * features[k] + bias``, computed in float32 and cast back to the feature dtype.

    ``coef`` is ``(K,)`` or ``(K, C)``; ``bias`` is ``()`` or ``(C,)``; features share one shape ``(..., C)``.
    One fused multiply-add per history entry into a float32 accumulator (the features are read once,
    in their own dtype; no float32 copies of them are made).
    """
    if coef.shape[0] != len(features):
        raise ValueError(f"{coef.shape[0]} coefficients for {len(features)} history entries")
    dtype = features[-1].dtype
    coef = coef.to(torch.float32)
    # one-element slices, not 0-d tensors: a 0-d float32 tensor would not promote bf16 features
    out = torch.addcmul(bias.to(torch.float32).reshape(bias.shape or (1,)), features[0], coef[0:1])
    for k in range(1, len(features)):
        out.addcmul_(features[k], coef[k : k + 1])
    return out if out.dtype == dtype else out.to(dtype)
