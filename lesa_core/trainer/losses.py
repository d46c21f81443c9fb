"""Stage 1's error measures, set by ``training.loss``.

Stage 1 is teacher forced: for a forecast step the predictor reads the ground-truth taps of the steps
:func:`~lesa_core.trainer.schedule.history_indices` names (the last K full steps, or the last K steps,
by history mode). One update covers a *unit* of steps and a batch of *rows*:

* ``tap`` (:class:`TapLoss`, the paper's): a unit is one forecast step, a row one trajectory of one
  cache context (the contexts pooled); the error is the forecast minus the ground-truth tap.
* ``guided`` (:class:`GuidedTapLoss`): a unit is one forecast step, a row one prompt with all its contexts;
  the error is the contexts' tap errors combined as the sampler combines a cond/uncond pair
  (:func:`guided_error`), so that an error both branches share counts once. On trajectories without a
  cond/uncond pair the trainer uses ``tap``.
* ``latent`` (:class:`LatentSpanLoss`): a unit is a forecast span (the run of forecast steps between
  two full passes), a row one prompt with all its contexts; the error is the latent error the span
  leaves at the next full pass: each forecast's error through the adapter's
  :meth:`~lesa_core.interfaces.BackboneAdapter.tap_head`, the contexts combined with the guidance
  weights of the collection's call (:func:`guidance_weights`), summed over the span with the sampler's
  step sizes |Δσ|.

The trainer takes the mean absolute value of the error (in a data-parallel run each rank its share:
see :mod:`lesa_core.trainer.sync`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import torch
from einops import einsum, rearrange
from torch import Tensor, nn

from lesa_core.errors import TrainingError
from lesa_core.interfaces import BackboneAdapter, Decision, ForecastInput, Predictor
from lesa_core.trainer.schedule import STAGE1_LATENT_ORDER, STAGE1_TAP_ORDER, forecast_spans, history_indices
from lesa_core.trainer.store import StoreMeta


def guidance_weights(contexts: Sequence[str], call: Mapping[str, Any]) -> Tensor | None:
    """How the sampler combines the contexts' model outputs into one velocity, as weights per context.

    True classifier-free guidance with scale g computes ``uncond + g (cond − uncond)``: weights g for
    ``cond`` and 1 − g for ``uncond``; the scale is the call's ``true_cfg_scale`` if it has one, else its
    ``guidance_scale``. ``None`` unless the contexts are exactly that pair: each context's output is then
    a velocity of its own.

    :raises TrainingError: for a cond/uncond pair whose call names no guidance scale.
    """
    if sorted(contexts) != ["cond", "uncond"]:
        return None
    scale = call.get("true_cfg_scale", call.get("guidance_scale"))
    if scale is None:
        raise TrainingError(
            "the trajectories have cond and uncond contexts but their sampling call names no guidance scale "
            "(true_cfg_scale or guidance_scale); collect with the scale set, or use training.loss: tap"
        )
    weight = {"cond": float(scale), "uncond": 1.0 - float(scale)}
    return torch.tensor([weight[c] for c in contexts], dtype=torch.float32)


def guided_error(error: Tensor, contexts: Sequence[str], call: Mapping[str, Any]) -> tuple[Tensor, int]:
    """Rows of several contexts' errors combined as the sampler combines the contexts' outputs.

    :param error: ``(X·B, ...)``: the contexts' rows one context after the other, the same B prompts in each.
    :param contexts: the X context names, in that order.
    :return: ``(B, ...)`` combined with :func:`guidance_weights` and 1 when ``contexts`` are a cond/uncond pair
        (``uncond + g (cond − uncond)`` of the errors: an error both branches share counts once, an error of
        one branch g or 1 − g times); else ``error`` unchanged and X.
    """
    weights = guidance_weights(contexts, call)
    if weights is None:
        return error, len(contexts)
    per_context = rearrange(error, "(x b) ... -> x b ...", x=len(contexts))
    return einsum(per_context, weights.to(error.device, error.dtype), "x b ..., x -> b ..."), 1


def latent_loss_head(adapter: BackboneAdapter, tap: str) -> Callable[[Tensor], Tensor]:
    """The head ``training.loss: latent`` measures errors through (:meth:`BackboneAdapter.tap_head`).

    :raises TrainingError: if the adapter has none for ``tap``, saying which taps to use instead.
    """
    if not adapter.tap_is_token_major(tap):
        usable = [name for name in adapter.taps if adapter.tap_is_token_major(name) and adapter.tap_head(name)]
        raise TrainingError(
            f"training.loss 'latent' measures errors per token, and {type(adapter).__name__}'s tap '{tap}' is a "
            f"channels-first model output; use a token tap with an output head ({', '.join(usable) or 'none'}), or "
            "training.loss: tap"
        )
    head = adapter.tap_head(tap)
    if head is None:
        usable = [name for name in adapter.taps if adapter.tap_head(name) is not None]
        raise TrainingError(
            f"training.loss 'latent' needs a tap the adapter can map to the model output without the step's "
            f"conditioning; {type(adapter).__name__}'s tap '{tap}' has no such head. Use one that has: "
            f"{', '.join(usable) or 'none on this adapter'}, or training.loss: tap"
        )
    return head


def steps_of(truth: Tensor, steps: Sequence[int], rows: Tensor | None = None) -> Tensor:
    """``truth[rows][:, steps]`` of trajectories ``(P, S, ...)`` without copying the other steps: ``(B, len(steps), ...)``
    (all rows when ``rows`` is ``None``)."""
    index = torch.as_tensor(list(steps), dtype=torch.long, device=truth.device)
    if rows is None:
        return truth.index_select(1, index)
    return truth[rows.to(truth.device).reshape(-1, 1), index.reshape(1, -1)]


class TeacherForcing:
    """Forecasts from ground-truth history: the predictor, the policy's step decisions and the flow
    time of every step.

    :param times: ``(S,)`` the flow time of each step.
    """

    def __init__(self, predictor: Predictor, decisions: Sequence[Decision], times: Tensor) -> None:
        self.predictor = predictor
        self.decisions = decisions
        self.times = times

    def history(self, step: int) -> list[int]:
        """The steps a forecast at ``step`` reads."""
        return history_indices(self.decisions, step, self.predictor.history_size, self.predictor.history_mode)

    def can_forecast(self, step: int) -> bool:
        """Whether ``step`` has the predictor's minimum history."""
        return len(self.history(step)) >= self.predictor.min_history

    def forecast_input(self, features: list[Tensor], idx: list[int], step: int) -> ForecastInput:
        """The predictor's input at ``step`` from the features of the steps ``idx``."""
        return ForecastInput(
            features=features,
            times=self.times[idx],
            steps=torch.tensor(idx, dtype=torch.float32),
            t=self.times[step].clone(),
            step=torch.tensor(float(step)),
        )

    def forecast(self, truth: Tensor, step: int, rows: Tensor | None = None) -> Tensor:
        """The forecast at ``step`` of the trajectories ``truth`` ``(P, S, N', C)``, or of its ``rows`` only:
        ``(B, N', C)``. Only the history's steps of those rows are read (a copy of whole trajectories per
        update cost stage 1 more than the predictor did)."""
        idx = self.history(step)
        return self.predictor(self.forecast_input(list(steps_of(truth, idx, rows).unbind(1)), idx, step))


class Stage1Loss(Protocol):
    """What one stage-1 update measures (see the module docstring)."""

    #: the units, each a list of steps, in a fixed order (the data order indexes them)
    units: list[list[int]]
    #: how many rows a unit's batches are drawn from
    num_rows: int
    #: the data-order stream of this loss (:func:`~lesa_core.trainer.schedule.data_order`)
    order_stream: int
    #: the schedule's teacher-forced forecasts the errors are measured with
    teacher: TeacherForcing

    def error(self, unit: Sequence[int], rows: Tensor) -> Tensor:
        """The error of ``unit`` on ``rows``, rows first; the unit must be forecastable."""
        ...


class TapLoss:
    """``training.loss: tap``: forecast minus truth at one forecast step, for rows of the contexts'
    trajectories pooled (context after context).

    :param taps: context → ``(P, S, N', C)`` ground truth.
    """

    order_stream = STAGE1_TAP_ORDER

    def __init__(self, teacher: TeacherForcing, taps: Mapping[str, Tensor]) -> None:
        self.teacher = teacher
        self.pooled = torch.cat(list(taps.values()))
        self.units = [[step] for step, d in enumerate(teacher.decisions) if d is Decision.FORECAST]
        self.num_rows = self.pooled.shape[0]

    def error(self, unit: Sequence[int], rows: Tensor) -> Tensor:
        """``(B, N', C)``: the forecast at the unit's step minus its ground truth."""
        (step,) = unit
        return self.teacher.forecast(self.pooled, step, rows) - steps_of(self.pooled, [step], rows)[:, 0]


class GuidedTapLoss:
    """``training.loss: guided``: forecast minus truth at one forecast step, the cond and uncond rows of each
    prompt combined by the guidance weights of the collection's call (:func:`guided_error`).

    :param taps: context → ``(P, S, N', C)`` ground truth: a cond/uncond pair, the same prompts in each.
    :raises TrainingError: if the contexts are not a cond/uncond pair of equal prompt counts, or the call
        names no guidance scale.
    """

    order_stream = STAGE1_TAP_ORDER

    def __init__(self, teacher: TeacherForcing, taps: Mapping[str, Tensor], meta: StoreMeta) -> None:
        counts = {name: truth.shape[0] for name, truth in taps.items()}
        if guidance_weights(list(taps), meta.call) is None or len(set(counts.values())) != 1:
            raise TrainingError(f"training.loss 'guided' needs a cond/uncond pair of contexts with the same prompts, "
                                f"and the trajectory store holds {counts}; use training.loss: tap")
        self.teacher = teacher
        self.taps = taps
        self.call = meta.call
        self.units = [[step] for step, d in enumerate(teacher.decisions) if d is Decision.FORECAST]
        self.num_rows = next(iter(counts.values()))

    def error(self, unit: Sequence[int], rows: Tensor) -> Tensor:
        """``(B, N', C)``: the guidance-combined forecast error of the rows' prompts at the unit's step."""
        (step,) = unit
        errors = [self.teacher.forecast(truth, step, rows) - steps_of(truth, [step], rows)[:, 0]
                  for truth in self.taps.values()]
        combined, _ = guided_error(torch.cat(errors), list(self.taps), self.call)
        return combined


class LatentSpanLoss:
    """``training.loss: latent``: the latent error a forecast span leaves at the next full pass.

    Set up on construction: the tap's output head (a frozen float32 copy, so that the model's own
    weights never get gradients), the contexts' guidance weights and the sampler's step sizes.

    :param taps: context → ``(P, S, N', C)`` ground truth, the same prompts in every context.
    :raises TrainingError: if the adapter has no head for ``tap``, the contexts hold different prompt
        counts, or a cond/uncond pair was collected without a guidance scale.
    """

    order_stream = STAGE1_LATENT_ORDER

    def __init__(self, teacher: TeacherForcing, adapter: BackboneAdapter, tap: str, taps: Mapping[str, Tensor],
                 meta: StoreMeta) -> None:
        head = latent_loss_head(adapter, tap)
        device = next(iter(taps.values())).device
        if isinstance(head, nn.Module):
            head = copy.deepcopy(head).float().to(device).requires_grad_(False)
        self.head = head
        counts = {name: truth.shape[0] for name, truth in taps.items()}
        if len(set(counts.values())) != 1:
            raise TrainingError(f"training.loss 'latent' pairs the contexts of each prompt, but the trajectory store "
                                f"holds different prompt counts per context: {counts}; collect again")
        weights = guidance_weights(list(taps), meta.call)
        self.context_weights = None if weights is None else weights.to(device)
        assert meta.schedule is not None
        schedule = torch.tensor(meta.schedule, dtype=torch.float32)
        self.step_sizes = (schedule[1:] - schedule[:-1]).abs()
        self.teacher = teacher
        self.taps = taps
        self.units = forecast_spans(teacher.decisions)
        self.num_rows = next(iter(counts.values()))

    def error(self, unit: Sequence[int], rows: Tensor) -> Tensor:
        """The latent error of the span ``unit``; see :meth:`span_error`."""
        error = self.span_error(unit, rows)
        assert error is not None  # the unit is forecastable
        return error

    def span_error(self, span: Sequence[int], rows: Tensor) -> Tensor | None:
        """The latent error the teacher-forced forecasts of ``span`` leave at the next full pass, per
        unit of flow time: ``Σ_s |Δσ_s| · head(forecast_s − truth_s) / Σ_s |Δσ_s|`` over the span's
        steps, with the contexts' output errors combined by the guidance weights (or kept apart when
        the contexts are not a guidance pair). ``(B, X', N', C_out)``; ``None`` if no step of the span
        has enough history to forecast.
        """
        gt = torch.cat([truth[rows] for truth in self.taps.values()])  # contexts stacked: (x b) s n c
        contexts = len(self.taps)
        drift: Tensor | None = None
        total = 0.0
        for step in span:
            if not self.teacher.can_forecast(step):
                continue
            forecast = self.teacher.forecast(gt, step)
            error = rearrange(self.head(forecast) - self.head(gt[:, step]), "(x b) n o -> b x n o", x=contexts)
            if self.context_weights is not None:
                guided = einsum(error, self.context_weights, "b x n o, x -> b n o")
                error = rearrange(guided, "b n o -> b 1 n o")
            size = float(self.step_sizes[step])
            drift = error * size if drift is None else drift + error * size
            total += size
        return None if drift is None else drift / max(total, 1e-12)


class ScheduleMix:
    """Stage 1 over several schedules (:mod:`lesa_core.trainer.schedules`): the units of every schedule's loss,
    schedule after schedule, each error measured by its own schedule's teacher. With one schedule it is that
    loss (the same units in the same order).

    :param losses: one stage-1 loss per schedule, the run's first; all of one kind (the same rows and data
        order stream).
    """

    def __init__(self, losses: Sequence[Stage1Loss]) -> None:
        self.losses = list(losses)
        self.owner: list[int] = []
        self.units: list[list[int]] = []
        for index, loss in enumerate(self.losses):
            self.owner.extend([index] * len(loss.units))
            self.units.extend(loss.units)
        self.num_rows = self.losses[0].num_rows
        self.order_stream = self.losses[0].order_stream

    def teacher_of(self, unit_index: int) -> TeacherForcing:
        """The teacher of the schedule unit ``unit_index`` belongs to."""
        return self.losses[self.owner[unit_index]].teacher

    def unit_error(self, unit_index: int, rows: Tensor) -> Tensor:
        """The error of unit ``unit_index`` on ``rows``, by its own schedule's loss."""
        return self.losses[self.owner[unit_index]].error(self.units[unit_index], rows)
