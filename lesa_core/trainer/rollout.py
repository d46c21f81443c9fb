"""Stage 2's closed loop: the predictor attached to the real model, learning from the runtime's own
history.

The model samples a batch of prompts with the predictor attached (:meth:`ClosedLoopRollout.run`); the
runtime runs the real model on full steps of the drifting trajectory and reports every step to
:meth:`ClosedLoopRollout.observe`. At each forecast step the predictor learns from what the runtime
really forecast from (real features of the drifting trajectory, and its own forecasts in ``steps``
mode), by L1 against the uncached ground truth of that step (on the tap; with ``stage2.loss:
output`` both mapped through the adapter's tap head to the model output; with ``guided`` the errors of a
cond/uncond pair combined as the sampler combines the branches, :func:`~lesa_core.trainer.losses.guided_error`,
the default; ``online`` updates see one context at a time and so measure the tap error).
Gradients flow through the current forecast only. Two ways to update (``training.stage2.update``):

* :class:`ReplayRollout` (``replay``, the default) records those histories during the rollout and then
  takes ``replay_epochs`` shuffled passes over the forecast steps, one batched update each (the
  contexts of a step merged);
* :class:`OnlineRollout` (``online``, the reference release's) updates at each forecast step during the
  rollout, in step order.

Every update goes through the run's :class:`~lesa_core.trainer.sync.GradientSync`; in a data-parallel
run each rank samples its slice of the prompt batch and takes the forecast steps in lockstep with the
others.
"""

from __future__ import annotations

import dataclasses
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from lesa_core.assembly import Assembly
from lesa_core.config import ClosedLoopConfig
from lesa_core.errors import TrainingError
from lesa_core.interfaces import CachePolicy, Decision, ForecastInput, RuntimeComponents, StepEvent
from lesa_core.trainer.losses import guidance_weights, guided_error, latent_loss_head
from lesa_core.trainer.optim import PredictorOptimizer
from lesa_core.trainer.runner import TrajectoryRunner
from lesa_core.trainer.schedule import STAGE2_REPLAY_ORDER, cosine_lr, data_order
from lesa_core.trainer.store import StoreMeta
from lesa_core.trainer.sync import GradientSync

logger = logging.getLogger("lesa")


@dataclass(frozen=True)
class PromptBatch:
    """The prompts this process samples in one rollout.

    :ivar rows: the prompt indices it samples (its slice of the global batch, or the global batch's
        first prompt when the slice is empty).
    :ivar global_rows: the global batch's prompt count (a loss share's denominator).
    :ivar ghost: ``True`` if this process's slice is empty: it samples only to keep the lockstep, and
        contributes nothing.
    """

    rows: Tensor
    global_rows: int
    ghost: bool


@dataclass
class ForecastSample:
    """What the runtime forecast from at one step and the step's ground truth, rows first.

    :ivar contexts: how many contexts' rows ``inputs`` and ``target`` hold (replay merges a step's
        contexts). :ivar names: those contexts, in row order.
    """

    inputs: ForecastInput
    target: Tensor
    contexts: int = 1
    names: list[str] = dataclasses.field(default_factory=list)

    def merge(self, other: ForecastSample) -> None:
        """Append another context's rows of the same step (the same history layout)."""
        features = [torch.cat([a, b]) for a, b in zip(self.inputs.features, other.inputs.features, strict=True)]
        self.inputs = dataclasses.replace(self.inputs, features=features)
        self.target = torch.cat([self.target, other.target])
        self.contexts += other.contexts
        self.names = [*self.names, *other.names]


class ClosedLoopRollout(ABC):
    """Stage 2's rollouts over one run: the observer the runtime reports to and the updates it takes.

    :param assembly: the run (its predictor is trained in place).
    :param meta: the trajectory store's metadata (prompts, seeds, steps, token subset).
    :param taps: ground truth, context → ``(P, S, N', C)``.
    :param phase: ``training.stage2``.
    :param seed: ``training.seed`` (the replay order).
    :param optimizer: takes every update. :param sync: how this process takes part in them.
    :param total_updates: the phase's update count (the learning-rate schedule's length).
    :param updates: the updates the phase already took (a resumed run continues the schedule there).
    :ivar losses: the loss of every update since the last :meth:`start_epoch`.
    """

    def __init__(self, assembly: Assembly, meta: StoreMeta, taps: dict[str, Tensor], phase: ClosedLoopConfig,
                 seed: int, optimizer: PredictorOptimizer, sync: GradientSync, *, total_updates: int,
                 updates: int) -> None:
        self.assembly = assembly
        self.predictor = assembly.predictor
        self.meta = meta
        self.taps = taps
        self.token_index = torch.tensor(meta.token_index) if meta.token_index is not None else None
        self.phase = phase
        self.seed = seed
        self.optimizer = optimizer
        self.sync = sync
        self.total_updates = total_updates
        self.updates = updates
        self.losses: list[float] = []
        self.batch: PromptBatch | None = None
        self.head = latent_loss_head(assembly.adapter, assembly.tap) if phase.loss == "output" else None
        self.guided = phase.loss == "guided" and self._guidance_known(taps, meta)
        self.components = RuntimeComponents(
            predictor=self.predictor, make_policy=assembly.plugins.make_policy, router=assembly.plugins.router,
            tap=assembly.tap, guard_non_finite=True, observer=self.observe,
        )

    @staticmethod
    def _guidance_known(taps: dict[str, Tensor], meta: StoreMeta) -> bool:
        """Whether ``stage2.loss: guided`` can combine the contexts: ``False`` (the tap error is used, with a
        warning) for a cond/uncond pair collected without a guidance scale in the call, as a pipeline that
        guides by its own default records it; ``True`` otherwise (without a pair nothing is combined)."""
        try:
            guidance_weights(list(taps), meta.call)
        except TrainingError as exc:
            logger.warning("stage 2 measures the tap error per branch: %s", exc)
            return False
        return True

    def start_epoch(self) -> None:
        """Forget the previous epoch's losses."""
        self.losses = []

    def run(self, runner: TrajectoryRunner, rows: list[int], epoch: int, index: int,
            make_policy: Callable[[], CachePolicy] | None = None) -> None:
        """Sample the global prompt batch ``rows`` (this process: its slice) with the predictor attached
        and learn from it; ``(epoch, index)`` names the batch. ``make_policy``: the schedule of this rollout
        (default: the run's policy)."""
        global_rows = torch.tensor(rows)
        local = self.sync.local_rows(global_rows)
        ghost = local.numel() == 0
        self.batch = PromptBatch(global_rows[:1] if ghost else local, len(rows), ghost)  # a ghost keeps lockstep
        sampled = self.batch.rows.tolist()
        components = self.components if make_policy is None else dataclasses.replace(
            self.components, make_policy=make_policy)
        attachment = self.assembly.adapter.attach(components)
        try:
            with torch.no_grad():
                runner.run([self.meta.prompts[r] for r in sampled], [self.meta.seed + r for r in sampled],
                           self.meta.num_steps)
        finally:
            attachment.remove()
        self.after_rollout(epoch, index)

    @abstractmethod
    def observe(self, event: StepEvent) -> None:
        """The runtime's observer: called after every step of the rollout."""

    def after_rollout(self, epoch: int, index: int) -> None:
        """What is left to do once batch ``index`` of ``epoch`` was sampled."""
        return None

    def _learns_from(self, event: StepEvent) -> bool:
        """Whether ``event`` is a forecast of a context the ground truth has."""
        return event.decision is Decision.FORECAST and event.inputs is not None and event.context in self.taps

    def _sample(self, event: StepEvent) -> ForecastSample:
        """A forecast event's input, detached, float32 and token-subsampled like the ground truth (which it
        is paired with)."""
        inputs = event.inputs
        assert inputs is not None and self.batch is not None
        device = inputs.features[-1].device
        features = [f.detach().float() for f in inputs.features]
        if self.token_index is not None:
            features = [f[:, self.token_index.to(device)] for f in features]
        local = ForecastInput(features, inputs.times.detach().float(), inputs.steps.detach().float(),
                              inputs.t.detach().float().reshape(()), inputs.step.detach().float().reshape(()))
        target = self.taps[event.context][self.batch.rows, event.step_index].to(device)
        if features[-1].shape != target.shape:
            raise TrainingError(
                f"stage 2: the runtime forecast {tuple(features[-1].shape)} in context '{event.context}' at step "
                f"{event.step_index}, and the ground truth of the batch's prompts is {tuple(target.shape)}; nothing is "
                "broadcast. The pipeline batches rows the adapter does not declare (see `batched_guidance`), or the "
                "sampling call differs from the collection's")
        return ForecastSample(local, target, names=[event.context])

    def _update(self, sample: ForecastSample | None, step: int, *, skip: bool = False) -> None:
        """One update from ``sample``'s forecast against its ground truth (``None``: this process adds
        nothing to it) at the schedule's current learning rate; counted unless it was skipped."""
        assert self.batch is not None
        with torch.enable_grad():
            share = None
            if sample is not None:
                forecast, target = self.predictor(sample.inputs), sample.target
                if self.head is not None:  # stage2.loss: output — the error where it acts
                    with torch.no_grad():
                        target = self.head(target)
                    forecast = self.head(forecast)
                error, contexts = forecast - target, sample.contexts
                if self.guided:  # the branches' errors as the sampler combines them
                    error, contexts = guided_error(error, sample.names, self.meta.call)
                share = self.sync.loss_share(error, self.batch.global_rows * contexts)
            lr = cosine_lr(self.phase.lr, self.updates, self.total_updates)
            loss = self.optimizer.update(share, lr, step=step, skip=skip)
        if loss is not None:
            self.updates += 1
            self.losses.append(loss)


class OnlineRollout(ClosedLoopRollout):
    """``update: online``: one update per forecast step and context, during the rollout.

    Every process sees the same events in the same order (the decision depends on the step only); a
    forecast that fell back to a full step on any process skips the update on all of them.
    """

    def observe(self, event: StepEvent) -> None:
        assert self.batch is not None
        forecast = self._learns_from(event)
        if not (forecast or (event.fallback and event.context in self.taps)):
            return
        if forecast and not self.batch.ghost:
            self._update(self._sample(event), event.step_index)
        else:
            self._update(None, event.step_index, skip=not forecast)


class ReplayRollout(ClosedLoopRollout):
    """``update: replay``: record every forecast step's history during the rollout, then take
    ``replay_epochs`` shuffled passes over the recorded steps, one batched update each.

    :ivar recorded: (step, history steps) → the step's sample, for the rollout under way.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.recorded: dict[tuple[int, tuple[float, ...]], ForecastSample] = {}

    def observe(self, event: StepEvent) -> None:
        """Keep what the runtime really forecast from (token-subsampled) and the ground truth; the contexts
        of one step are merged into one batch (they share the step's history layout)."""
        if not self._learns_from(event):
            return
        sample = self._sample(event)
        key = (event.step_index, tuple(sample.inputs.steps.tolist()))
        if key in self.recorded:
            self.recorded[key].merge(sample)
        else:
            self.recorded[key] = sample

    def after_rollout(self, epoch: int, index: int) -> None:
        """The replay passes over the recorded steps, in an order drawn from ``(seed, epoch, index)``."""
        assert self.batch is not None
        recorded, self.recorded = self.recorded, {}
        keys = sorted(recorded)
        generator = data_order(self.seed, STAGE2_REPLAY_ORDER + epoch * 10_007 + index)
        for _ in range(self.phase.replay_epochs):
            for i in torch.randperm(len(keys), generator=generator).tolist():
                (step, _), sample = keys[i], recorded[keys[i]]
                self._update(None if self.batch.ghost else sample, step)
