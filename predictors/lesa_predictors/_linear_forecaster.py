"""The shared body of the learned LESA experts (``kan``, ``mlp``): a K-tap linear forecaster whose
correction is scaled by a learned function of time.

One expert (lesa-method.md §2)::

    z        = Σ_k w_k · h_k + b             K taps, oldest → newest; w, b shared over tokens and channels
    α        = f(time encoding)              a scalar; f is a KAN (``kan``) or an MLP (``mlp``)
    forecast = h[-1] + α · z

This is linear in the history, so the predictor is a :class:`~lesa_core.interfaces.LinearPredictor`:
``coef_k = α·w_k (+1 on the newest tap)``, ``bias = α·b``. ``f`` runs once per forecast on a ``(1, D)``
encoding, never per token; the history is read once, by :func:`~lesa_core.interfaces.predictor.combine`.
Encoding, ``α`` and the coefficients are computed in float32 whatever the feature dtype.

How many scales ``f`` gives (``alpha``):

``scalar`` (the paper's)
    one ``α`` for the whole correction: over the steps of a stage the coefficients are the rank-1 family
    ``α_s · [w, b]``, so a per-step forecaster whose taps move independently (a closed-form fit) is only
    approximated.
``per_tap``
    ``f`` gives K + 1 scales, one per tap and one for the bias: ``coef_k = α_k · w_k (+1 on the newest)``,
    ``bias = α_b · b``. Any per-step linear forecaster over the K taps is representable, so a start from
    coefficients is reproduced up to the time network's fit, and it still reads only time offsets (any step
    count, any interval).

Time encodings:

``schedule`` (the paper's)
    ``Δt = t − T[j]`` for the S + 1 points of the training schedule (terminal 0 included). Bound to that
    schedule: :meth:`check_num_steps` refuses another S, :meth:`check_time` a time that is off schedule.
``relative``
    ``[(t − t_j) / δ for the K history entries] + [t]``: no step count in the shapes, so one predictor
    serves any number of steps and any full-pass interval. ``relative_units: flow`` (default) has
    ``δ = 1``: raw flow-time offsets. ``spacing`` measures them in units of the history's mean spacing
    ``δ`` (the mean gap between its distinct times; ``δ = t_newest − t`` for a one-entry history), so
    the newest entry's offset is the Taylor ratio. Raw offsets between neighbouring steps are ~1e-2, so
    the time network sees almost the same input at every step of a stage and α is nearly constant per
    stage; ``spacing`` lets α vary step by step and fits the teacher-forced targets better, yet on the
    embedded model it gives *lower* image PSNR (docs/results.md), hence the default.

Short histories: with fewer than K entries the oldest entry is repeated (features and, for ``relative``,
its time), i.e. its coefficient absorbs the missing taps'. So an expert with K = 8 still forecasts at the
first forecast step of a 4-step distilled schedule.

Initialisation — an untrained expert is (almost) **reuse**: ``w`` is the first difference
(``z = h[-1] − h[-2]``, ``b = 0``) and the output layer of ``f`` is scaled by :attr:`ALPHA_INIT_SCALE`
(1e-2), so ``|α| ≪ 1`` and ``forecast ≈ h[-1] + small·(h[-1] − h[-2])``. Training thus starts from FORA
reuse quality, on the Taylor-1 direction (α = Δt ratio gives Taylor order 1), and no gradient is zero at
the start (``z ≠ 0`` feeds ``f``, ``α ≠ 0`` feeds ``w`` and ``b``). α ≈ 1 would instead overshoot in
``history: full`` mode, where the right Taylor-1 factor is j/N ≤ (N−1)/N.

Starting elsewhere — the trainer usually replaces that initialisation: :meth:`start_from` (the
:class:`~lesa_core.interfaces.CoefficientStart` capability) sets ``w``, ``b`` and the time network to
reproduce the per-step coefficients of the best training-free or closed-form forecaster on the run's
validation slice (``training.start``; :mod:`lesa_core.trainer.selection`).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import Annotated, ClassVar, Literal

import torch
from einops import rearrange
from pydantic import Field, field_validator, model_validator
from torch import Tensor, nn

from lesa_core.errors import ConfigError, ScheduleMismatchError
from lesa_core.interfaces import CoefficientTarget, ForecastInput, LinearPredictor, PredictorContext
from lesa_core.interfaces.predictor import HistoryMode, PredictorConfig

TapCount = Annotated[int, Field(strict=True, ge=1, le=64)]
"""K: the paper uses 4 and 8; bounded so that a config (or a bundle's stored one) cannot ask for a huge model."""
Width = Annotated[int, Field(strict=True, ge=1, le=4096)]
"""A hidden width of the time network (the paper: 256)."""
MAX_SCHEDULE_POINTS = 10_001
"""The longest schedule (S + 1 flow times): at most 10 000 steps."""


class TimeScaledConfig(PredictorConfig):
    """Parameters shared by the time-scaled linear families (``kan``, ``mlp``).

    :ivar taps: K, the history entries one expert reads; an int for every stage or one per stage
        (paper: ``[4, 8, 8]`` for t > 0.9, 0.5 < t ≤ 0.9, t ≤ 0.5). A list must have one entry per
        stage of the run's router.
    :ivar time_encoding: ``relative`` (default: offsets to the history times plus t; any step count and
        interval) or ``schedule`` (the paper's Δt to every schedule point; bound to ``schedule``).
    :ivar relative_units: ``flow`` (raw flow-time offsets, default) or ``spacing`` (offsets in units of
        the history's mean spacing); ``relative`` encoding only, ``spacing`` is refused with ``schedule``
        (see the module docstring).
    :ivar schedule: the S + 1 flow times of the training schedule, descending, terminal 0 included;
        ``time_encoding: schedule`` only (refused otherwise). ``lesa train`` fills it from the collected
        trajectories when the config leaves it out; a predictor cannot be built without it.
    :ivar schedule_atol: how far a runtime time may be from ``schedule[step]`` before
        :meth:`~TimeScaledLinearPredictor.check_time` refuses it.
    :ivar hidden: hidden widths of the time network (paper: ``[256, 256]``; default ``[32, 32]``: α is a
        smooth scalar of a handful of inputs, and the small net trains faster on CPU).
    :ivar per_channel: per-channel tap weights ``w (K, C)`` and bias ``b (C,)`` instead of scalars
        (needs the tap's channel count).
    :ivar history: ``full`` (taps of full passes only) or ``steps``.
    :ivar alpha: ``scalar`` (one α, the paper's) or ``per_tap`` (one α per tap and one for the bias); see
        the module docstring.
    """

    taps: TapCount | Annotated[tuple[TapCount, ...], Field(min_length=1, max_length=64)] = (4, 8, 8)
    time_encoding: Literal["relative", "schedule"] = "relative"
    relative_units: Literal["flow", "spacing"] = "flow"
    schedule: Annotated[tuple[float, ...], Field(min_length=2, max_length=MAX_SCHEDULE_POINTS)] | None = None
    schedule_atol: float = Field(1e-4, gt=0.0, allow_inf_nan=False)
    hidden: Annotated[tuple[Width, ...], Field(max_length=16)] = (32, 32)
    per_channel: bool = Field(False, strict=True)
    history: HistoryMode = "full"
    alpha: Literal["scalar", "per_tap"] = "scalar"

    @field_validator("schedule")
    @classmethod
    def _valid_schedule(cls, value: tuple[float, ...] | None) -> tuple[float, ...] | None:
        if value is None:
            return value
        if any(not (0.0 <= x <= 1.0) for x in value):  # also rejects NaN
            raise ValueError("schedule times must lie in [0, 1] (flow time, 1 = noise)")
        if any(a <= b for a, b in zip(value, value[1:], strict=False)):
            raise ValueError(
                "schedule must be strictly descending: S + 1 flow times from ~1 to the terminal 0"
            )
        return value

    @model_validator(mode="after")
    def _schedule_matches_encoding(self) -> TimeScaledConfig:
        if self.time_encoding == "schedule" and self.relative_units != "flow":
            raise ValueError(
                f"relative_units '{self.relative_units}' only applies to time_encoding 'relative' (the "
                "'schedule' encoding's offsets are always flow time); remove it or set time_encoding: relative"
            )
        if self.time_encoding == "relative" and self.schedule is not None:
            raise ValueError(
                "`schedule` is only used by time_encoding 'schedule'; remove it or set "
                "time_encoding: schedule"
            )
        return self


class TimeScaledLinearPredictor(LinearPredictor):
    """``forecast = h[-1] + α(time) · (Σ_k w_k h_k + b)`` (``α`` a scalar, or one per tap and the bias);
    subclasses choose the network behind α.

    :cvar ALPHA_INIT_SCALE: factor on the time network's output layer at initialisation (see the module
        docstring).
    """

    Config: ClassVar[type[PredictorConfig]] = TimeScaledConfig
    config: TimeScaledConfig
    stage_aware = True
    learnable = True
    ALPHA_INIT_SCALE: ClassVar[float] = 1e-2
    schedule: Tensor  # (S + 1,) float32 buffer, ``schedule`` encoding only

    def __init__(self, config: TimeScaledConfig, context: PredictorContext | None = None) -> None:
        super().__init__(config, context)
        self.taps = self._taps_for_stage(config, self.context)
        shape: tuple[int, ...] = ()
        if config.per_channel:
            if self.context.channels is None:
                raise ConfigError(
                    "per_channel needs the tap's channel count; build the predictor with "
                    "PredictorContext(channels=C)",
                    path="predictor.per_channel",
                )
            shape = (self.context.channels,)
        k = self.taps
        # first difference z = h[-1] - h[-2] (K = 1: z = h[-1]); see the module docstring
        init = torch.zeros(k) if k > 1 else torch.ones(1)
        if k > 1:
            init[-1], init[-2] = 1.0, -1.0
        self.weight = nn.Parameter(init.reshape(k, *([1] * len(shape))).repeat(1, *shape))
        self.bias = nn.Parameter(torch.zeros(shape))
        if config.time_encoding == "schedule" and config.schedule is None:
            raise ConfigError(
                "time_encoding 'schedule' needs `schedule`: the S + 1 flow times of the training schedule "
                "(terminal 0 included); `lesa train` fills it in from the collected trajectories, so give it "
                "only to build a predictor by hand",
                path="predictor.schedule",
            )
        if config.schedule is not None:
            self.register_buffer(
                "schedule", torch.tensor(config.schedule, dtype=torch.float32), persistent=False
            )
        self.time_net = self.build_time_net(
            [self.encoding_size, *config.hidden, self.alpha_size], self.ALPHA_INIT_SCALE
        )

    @classmethod
    def check_config(cls, config: PredictorConfig, num_stages: int) -> None:
        """Refuse a ``taps`` list whose length is not the router's stage count."""
        if isinstance(config, TimeScaledConfig):
            cls._taps_for_stage(config, PredictorContext(0, num_stages))

    @staticmethod
    def _taps_for_stage(config: TimeScaledConfig, context: PredictorContext) -> int:
        if isinstance(config.taps, int):
            return config.taps
        if len(config.taps) != context.num_stages:
            raise ConfigError(
                f"taps lists {len(config.taps)} values {list(config.taps)} but the router has "
                f"{context.num_stages} stage(s); give one value per stage or a single int",
                path="predictor.taps",
            )
        return config.taps[context.stage]

    @abstractmethod
    def build_time_net(self, widths: list[int], output_scale: float) -> nn.Module:
        """The network ``(1, widths[0]) → (1, widths[-1])`` giving α (:attr:`alpha_size` values), its output
        layer scaled by ``output_scale``."""

    # -- sizes --------------------------------------------------------------------------------
    @property
    def history_size(self) -> int:
        return self.taps

    @property
    def coefficient_shape(self) -> tuple[int, ...]:
        return tuple(self.bias.shape)

    @property
    def num_steps(self) -> int | None:
        """S for the ``schedule`` encoding, ``None`` for ``relative``."""
        return None if self.config.schedule is None else len(self.config.schedule) - 1

    @property
    def alpha_size(self) -> int:
        """How many scales the time network gives: 1 (``scalar``) or K + 1 (``per_tap``)."""
        return 1 if self.config.alpha == "scalar" else self.taps + 1

    @property
    def encoding_size(self) -> int:
        """D: S + 1 (``schedule``) or K + 1 (``relative``)."""
        n = self.num_steps
        return n + 1 if n is not None else self.taps + 1

    # -- the forecast ---------------------------------------------------------------------------
    def time_encoding(self, inputs: ForecastInput) -> Tensor:
        """The ``(1, D)`` float32 input of the time network."""
        t = inputs.t.to(torch.float32).reshape(())
        if self.config.time_encoding == "schedule":
            enc = t - self.schedule
        else:
            times = inputs.times[-self.taps :].to(torch.float32)
            offsets = t - times
            if self.config.relative_units == "spacing":
                # mean gap between distinct history times (a repeated, padded entry adds no gap)
                gaps = (times[:-1] - times[1:]).abs()
                spacing = gaps.sum() / (gaps > 1e-9).sum().clamp_min(1)
                spacing = torch.where(spacing > 0, spacing, offsets[-1].abs())
                offsets = offsets / spacing.clamp_min(1e-6)
            if offsets.shape[0] < self.taps:  # repeat the oldest entry, as the coefficients do
                offsets = torch.cat([offsets[:1].expand(self.taps - offsets.shape[0]), offsets])
            enc = torch.cat([offsets, t.reshape(1)])
        return rearrange(enc, "d -> 1 d")

    def alpha(self, inputs: ForecastInput) -> Tensor:
        """``α`` for this forecast, float32: shape ``()`` (``scalar``) or ``(K + 1,)`` (``per_tap``: the taps'
        scales, oldest → newest, then the bias')."""
        enc = self.time_encoding(inputs)
        dtype = next(self.time_net.parameters()).dtype
        out = self.time_net(enc.to(dtype)).to(torch.float32)
        return out.reshape(()) if self.alpha_size == 1 else out.reshape(self.alpha_size)

    def coefficients(self, inputs: ForecastInput) -> tuple[Tensor, Tensor]:
        n, k = len(inputs.features), self.taps
        alpha = self.alpha(inputs)
        weight, bias = self.weight.to(torch.float32), self.bias.to(torch.float32)
        if alpha.dim() == 0:
            coef, bias = alpha * weight, alpha * bias
        else:  # per tap: (K,) scales broadcast over a per-channel weight's channels
            coef = alpha[:k].reshape(k, *([1] * (weight.dim() - 1))) * weight
            bias = alpha[k] * bias
        coef = torch.cat([coef[:-1], coef[-1:] + 1.0])  # + h[-1]
        if n < k:  # the oldest entry stands in for the k - n missing ones
            coef = torch.cat([coef[: k - n + 1].sum(0, keepdim=True), coef[k - n + 1 :]])
        elif n > k:  # older entries than the K taps weigh nothing
            coef = torch.cat([coef.new_zeros((n - k, *coef.shape[1:])), coef])
        return coef, bias

    # -- starting from given coefficients (lesa_core.interfaces.CoefficientStart) ----------------
    START_FIT_ITERATIONS: ClassVar[int] = 400
    """Full-batch Adam iterations fitting the time network to the start's α per step."""

    def start_from(self, targets: Sequence[CoefficientTarget]) -> float:
        """Set ``w``, ``b`` and the time network so that the coefficients approximate ``targets``.

        The targets' residuals against reuse, ``[c_s − e_newest, b_s]`` (one row per forecast step), are
        approximated by rank-1 products (the leading singular pair, ``|α| ≤ 1``): ``scalar`` α fits the whole
        row, ``α_s · [w, b]``; ``per_tap`` fits each tap's and the bias's block on its own, ``α_{s,k} · w_k``
        (exact unless a per-channel weight meets targets that differ per channel in more than a scale). The
        time network is then fitted to the α of every step on the steps' time encodings (full-batch Adam). A
        block whose residuals are all zero (reuse) keeps its weight and gets α = 0.

        :return: the mean squared difference between the realised and the target coefficients.
        """
        if not targets:
            return 0.0
        k, shape = self.taps, tuple(self.bias.shape)
        rows = []
        with torch.no_grad():
            for target in targets:
                coef, bias = target.coef.to(torch.float64), target.bias.to(torch.float64)
                if coef.dim() > 1 and not shape:  # per-channel target, shared weights: their mean
                    coef, bias = coef.mean(-1), bias.mean(-1)
                n = coef.shape[0]
                full = torch.zeros((k, *shape), dtype=torch.float64)
                full[k - n :] = (
                    coef.cpu().reshape(n, *([1] * len(shape))).expand(n, *shape)
                    if (shape and coef.dim() == 1)
                    else coef.cpu()
                )
                full[-1] -= 1.0
                rows.append(torch.cat([full.flatten(), bias.cpu().expand(shape).flatten()]))
            matrix = torch.stack(rows)  # (steps, K·C + C)
            current = torch.cat([self.weight.detach().flatten(), self.bias.detach().flatten()]).cpu().double()
            width = max(1, self.bias.numel())  # C, or 1 for shared weights
            blocks = [slice(0, matrix.shape[1])] if self.alpha_size == 1 else [
                slice(i * width, (i + 1) * width) for i in range(k + 1)
            ]
            alphas = torch.zeros(len(targets), len(blocks), dtype=torch.float64)
            for j, block in enumerate(blocks):
                fitted = _rank_one(matrix[:, block])
                if fitted is not None:
                    alphas[:, j], current[block] = fitted
            device, size = self.weight.device, self.weight.numel()
            self.weight.copy_(current[:size].reshape(self.weight.shape).to(device, self.weight.dtype))
            self.bias.copy_(current[size:].reshape(self.bias.shape).to(device, self.bias.dtype))
            encodings = torch.cat([self.time_encoding(t.inputs) for t in targets]).to(device)
        wanted = alphas.to(device, torch.float32)
        params = list(self.time_net.parameters())
        optimizer = torch.optim.Adam(params, lr=1e-2)
        dtype = params[0].dtype
        with torch.enable_grad():
            for _ in range(self.START_FIT_ITERATIONS):
                optimizer.zero_grad()
                loss = (self.time_net(encodings.to(dtype)).float() - wanted).pow(2).mean()
                loss.backward()
                optimizer.step()
        with torch.no_grad():
            errors = []
            for target in targets:
                coef, _ = self.coefficients(target.inputs)
                want = target.coef.to(coef.device, torch.float32)
                if want.dim() > coef.dim():
                    want = want.mean(-1)
                elif want.dim() < coef.dim():
                    want = want.unsqueeze(-1)
                errors.append(float((coef - want).pow(2).mean()))
        return sum(errors) / len(errors)

    # -- schedule binding -----------------------------------------------------------------------
    def check_num_steps(self, num_steps: int) -> None:
        expected = self.num_steps
        if expected is not None and num_steps != expected:
            raise ScheduleMismatchError(
                f"this {type(self).__name__} uses the 'schedule' time encoding of a {expected}-step schedule "
                f"and cannot run {num_steps} steps; sample with {expected} steps, or train a predictor with "
                "time_encoding: relative (any step count)"
            )

    def check_time(self, step_index: int, t: float) -> None:
        schedule = self.config.schedule
        if schedule is None:
            return
        if not 0 <= step_index < len(schedule) - 1:
            raise ScheduleMismatchError(
                f"step {step_index} is outside the {len(schedule) - 1}-step schedule this predictor was "
                f"trained on; sample with {len(schedule) - 1} steps, or train a predictor with "
                "time_encoding: relative (any step count)"
            )
        expected = schedule[step_index]
        if not abs(t - expected) <= self.config.schedule_atol:
            raise ScheduleMismatchError(
                f"step {step_index} runs at t = {t:.6g} but the predictor's {len(schedule) - 1}-step schedule has "
                f"t = {expected:.6g} there (tolerance {self.config.schedule_atol:g}); sample with the step count "
                "and scheduler settings (shift, resolution) the predictor was trained with, or train a predictor "
                "with time_encoding: relative"
            )

    def extra_repr(self) -> str:
        return (
            f"taps={self.taps}, time_encoding={self.config.time_encoding!r}, "
            f"per_channel={self.config.per_channel}, stage={self.context.stage}"
        )


def _rank_one(block: Tensor) -> tuple[Tensor, Tensor] | None:
    """The leading singular pair of ``block (steps, width)`` as ``(α (steps,), vector (width,))`` with
    ``max |α| = 1`` and ``mean α ≥ 0``; ``None`` when the block is zero (nothing to scale)."""
    u, sigma, vh = torch.linalg.svd(block, full_matrices=False)
    if float(sigma[0]) < 1e-9:
        return None
    alphas, vector = u[:, 0] * sigma[0], vh[0]
    scale = alphas.abs().max()
    alphas, vector = alphas / scale, vector * scale
    if float(alphas.mean()) < 0:
        alphas, vector = -alphas, -vector
    return alphas, vector
