"""The two training stages of LESA, generic over adapter, predictor family, router and policy.

* **Stage 1, GT-guided** (teacher forcing): for every forecast step of the policy's schedule, the
  history is the ground-truth taps (of the last K full steps, or the last K steps, by history mode)
  and the target is the ground-truth tap of that step, measured by ``training.loss`` (``tap`` or
  ``latent``; see :mod:`lesa_core.trainer.losses`). Batched: one update per (unit, row batch), a unit
  being a forecast step (``tap``) or a forecast span (``latent``).
* **Stage 2, closed loop** (:mod:`lesa_core.trainer.rollout`): the real model runs with the predictor
  attached on the drifting trajectory of a batch of prompts, and the predictor learns from the
  runtime's own history at each forecast step, by L1 against the uncached ground truth of that step —
  in batched replays after each rollout (``update: replay``) or during it (``online``).

Both use AdamW with gradient clipping (:mod:`lesa_core.trainer.optim`) and a cosine learning-rate
decay to 10 % over the phase. A run that diverges — a NaN or infinite loss or gradient, or weights that are
no longer finite at the end of an epoch — stops with a :class:`~lesa_core.errors.TrainingError` naming the
stage and epoch; the epoch's checkpoint is not written, nor a bundle. The data order is a function of ``(seed, phase, epoch)``
(:mod:`lesa_core.trainer.schedule`), so a resumed run — from the per-epoch checkpoint
(:mod:`lesa_core.trainer.checkpoint`) — matches an uninterrupted one.

One code path serves one process and many: every update goes through the run's
:class:`~lesa_core.trainer.sync.GradientSync` (data parallel under an initialised process group of
more than one process, e.g. ``torchrun``; see :mod:`lesa_core.trainer.sync` for its semantics).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from lesa_core.assembly import Assembly
from lesa_core.config import TrainingConfig
from lesa_core.errors import TrainingError
from lesa_core.progress import progress_bar
from lesa_core.trainer.checkpoint import (
    TrainState,
    load_checkpoint,
    run_key,
    save_checkpoint,
    stage1_checkpoint,
)
from lesa_core.trainer.losses import (
    GuidedTapLoss,
    LatentSpanLoss,
    ScheduleMix,
    Stage1Loss,
    TapLoss,
    TeacherForcing,
    guidance_weights,
)
from lesa_core.trainer.optim import PredictorOptimizer
from lesa_core.trainer.rollout import ClosedLoopRollout, OnlineRollout, ReplayRollout
from lesa_core.trainer.runner import TrajectoryRunner
from lesa_core.trainer.schedule import STAGE2_PROMPT_ORDER, cosine_lr, data_order, unit_batches
from lesa_core.trainer.schedules import TrainingSchedule, training_schedules
from lesa_core.trainer.selection import BestKeeper, KeptCandidate
from lesa_core.trainer.store import StoreMeta
from lesa_core.trainer.sync import gradient_sync


@dataclass
class TrainReport:
    """What a training run did.

    :ivar seconds: wall time per part: ``collection`` (0 when the store was complete), ``stage1``, ``stage2``
        (each with the validation scorings after its epochs), ``floor`` (scoring the training-free
        candidates), ``closed_form``; ``validation``: the closed-loop sampling of the validation slice within them.
    """

    losses: dict[str, list[float]] = field(default_factory=dict)
    updates: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    resumed_from: tuple[int, int] | None = None
    selection: dict[str, Any] = field(default_factory=dict)
    kept_candidate: KeptCandidate | None = None
    """The candidate returned in place of the trained family (``training.floor: keep``), or ``None``."""


AFTER_TRAINING = ("start", "floor", "refine_policy")
"""Training keys that act only once training is over (the floor, the policy's refinement): a checkpoint of a
run that differs only in them is the same training run and resumes."""


def training_identity(config: dict[str, Any]) -> dict[str, Any]:
    """The run config a checkpoint is keyed on: ``config`` without the keys of :data:`AFTER_TRAINING`."""
    training = {k: v for k, v in (config.get("training") or {}).items() if k not in AFTER_TRAINING}
    return {**config, "training": training}


class Trainer:
    """Fits ``assembly.predictor`` on the trajectories of a store.

    :param assembly: the assembled run (its predictor is trained in place).
    :param meta: the trajectory store's metadata (schedule, token subset, prompts, seed).
    :param taps: ground truth, context → (P, S, N', C) float32.
    :param training: the training section of the run config.
    :param checkpoint_dir: where per-epoch checkpoints go (resumed when they match this run).
    :param keeper: scores the start and every epoch on a validation slice and restores the best weights at
        the end (:mod:`lesa_core.trainer.selection`); ``None``: the last epoch's weights are returned. A resumed
        run scores the weights it resumed from as its start.
    :raises TrainingError: if the store has no schedule, the predictor nothing to train, or
        ``training.loss`` cannot be measured on these trajectories.
    """

    def __init__(self, assembly: Assembly, meta: StoreMeta, taps: dict[str, Tensor], training: TrainingConfig,
                 checkpoint_dir: Path, *, show_progress: bool = True, keeper: BestKeeper | None = None) -> None:
        if meta.schedule is None:
            raise TrainingError("the trajectory store has no schedule; collection did not finish")
        self.assembly = assembly
        self.predictor = assembly.predictor
        self.meta = meta
        self.taps = taps
        self.training = training
        self.checkpoint_dir = checkpoint_dir
        self.schedules = training_schedules(assembly.plugins, training, meta.num_steps)
        self.decisions = self.schedules[0].decisions  # the run's policy
        params = [p for p in self.predictor.parameters() if p.requires_grad]
        if not params:
            raise TrainingError(f"predictor '{assembly.run.predictor.name}' has no trainable parameters")
        self.sync = gradient_sync()
        self.optimizer = PredictorOptimizer(self.predictor, params, training, self.sync)
        self.key = run_key(training_identity(assembly.config.to_dict()), meta.identity(), meta.schedule)
        self.report = TrainReport(losses={"stage1": [], "stage2": []})
        times = torch.tensor(meta.schedule[: meta.num_steps], dtype=torch.float32)
        self.teachers = [TeacherForcing(self.predictor, s.decisions, times) for s in self.schedules]
        self.teacher = self.teachers[0]
        self.latent_losses = ([LatentSpanLoss(t, assembly.adapter, assembly.tap, taps, meta) for t in self.teachers]
                              if training.loss == "latent" else None)  # refused here, before any training
        self.show_progress = show_progress and self.sync.is_main  # one progress bar per run
        self.keeper = keeper

    def _checkpoint(self, state: TrainState, folder: Path | None = None) -> None:
        extra = None
        if self.keeper is not None:
            state.selection, extra = self.keeper.to_state()
        if self.sync.is_main:
            save_checkpoint(folder or self.checkpoint_dir, self.predictor, self.optimizer.adamw, state, extra)
        self.sync.barrier()

    def check_finite(self, stage: str, epoch: int, losses: Sequence[float], *, weights: bool = False) -> None:
        """Stop a diverging run: every loss of ``losses`` (NaN also when an update's gradient was not
        finite) and, with ``weights``, every parameter must be finite.

        :raises TrainingError: naming the stage, the epoch and what to change.
        """
        phase = self.training.stage1 if stage == "stage1" else self.training.stage2
        what = None
        first = next((i for i, value in enumerate(losses) if not math.isfinite(value)), None)
        if first is not None:
            what = f"the loss (or its gradient) became {losses[first]} at update {first + 1} of the epoch"
        elif weights:
            bad = [name for name, p in self.predictor.named_parameters() if not bool(torch.isfinite(p).all())]
            if bad:
                what = f"{len(bad)} weight tensor(s) are no longer finite (e.g. '{bad[0]}')"
        if what is None:
            return
        name = "stage 1 (GT-guided)" if stage == "stage1" else "stage 2 (closed loop)"
        raise TrainingError(
            f"training diverged in {name}, epoch {epoch + 1} of {phase.epochs}: {what}; no checkpoint of this epoch "
            f"and no bundle were written. Lower training.{stage}.lr (now {phase.lr:g}) or "
            "training.clip_grad_norm, and run again"
        )

    def _end_epoch(self, state: TrainState, stage: str, epoch: int, losses: list[float], bar: Any) -> None:
        """Count a finished epoch of ``stage`` (its updates and mean loss), check that the weights are still
        finite, and write the checkpoint."""
        self.check_finite(stage, epoch, losses, weights=True)
        state.epoch = epoch + 1
        state.updates += len(losses)
        state.losses[stage].append(sum(losses) / max(len(losses), 1))
        bar.set_postfix(loss=f"{state.losses[stage][-1]:.4f}")
        if self.keeper is not None:
            self.keeper.consider(f"{stage} epoch {epoch + 1}")
        self._checkpoint(state)

    def stage1(self, state: TrainState) -> None:
        """Teacher forcing: one update per (unit, row batch) of the stage-1 loss, the units of every training
        schedule pooled, in an order drawn from ``(seed, epoch)``; the loss is the mean absolute error of the
        unit."""
        phase = self.training.stage1
        per_schedule: list[Stage1Loss]
        if self.latent_losses is not None:
            per_schedule, measure = list(self.latent_losses), ", latent"
        elif self.training.loss == "guided" and guidance_weights(list(self.taps), self.meta.call) is not None:
            per_schedule, measure = [GuidedTapLoss(t, self.taps, self.meta) for t in self.teachers], ", guided"
        else:  # tap, and guided on trajectories without a cond/uncond pair
            per_schedule, measure = [TapLoss(t, self.taps) for t in self.teachers], ""
        loss = ScheduleMix(per_schedule)

        def batches(epoch: int) -> list[tuple[int, Tensor]]:
            generator = data_order(self.training.seed, loss.order_stream + epoch)
            return unit_batches(len(loss.units), loss.num_rows, phase.batch_size, generator)

        per_epoch = len(batches(0))
        total = per_epoch * phase.epochs
        desc = "stage 1 (GT-guided" + measure + (
            f", {len(self.schedules)} schedules)" if len(self.schedules) > 1 else ")")
        bar = progress_bar(total=total, desc=desc, unit="update", disable=not self.show_progress)
        bar.update(state.epoch * per_epoch)
        start = time.perf_counter()
        self.predictor.train()
        for epoch in range(state.epoch, phase.epochs):
            losses = []
            for i, (index, rows) in enumerate(batches(epoch)):
                unit = loss.units[index]
                if not any(loss.teacher_of(index).can_forecast(step) for step in unit):
                    continue
                local = self.sync.local_rows(rows)
                share = self.sync.loss_share(loss.unit_error(index, local), len(rows)) if local.numel() else None
                lr = cosine_lr(phase.lr, epoch * per_epoch + i, total)
                value = self.optimizer.update(share, lr, step=unit[0])
                assert value is not None  # stage 1 never skips
                losses.append(value)
                if not math.isfinite(value):
                    self.check_finite("stage1", epoch, losses)
                bar.update(1)
            self._end_epoch(state, "stage1", epoch, losses, bar)
        bar.close()
        self.report.seconds["stage1"] = time.perf_counter() - start

    def stage2(self, state: TrainState, runner: TrajectoryRunner) -> None:
        """Closed loop: every epoch, the prompts in an order drawn from ``(seed, epoch)``, one rollout
        per batch of ``stage2.batch_size``, under the training schedules in turn (rollout r under
        :meth:`rollout_schedule`)."""
        phase = self.training.stage2
        prompts = self.meta.prompts
        batches_per_epoch = math.ceil(len(prompts) / phase.batch_size)
        replay = phase.update == "replay"
        # updates per rollout: replay merges a step's contexts; online updates once per step and context
        per_forecast = phase.replay_epochs if replay else len(self.taps)
        total = sum(self.rollout_schedule(r).forecast_steps * per_forecast
                    for r in range(batches_per_epoch * phase.epochs))
        rollout: ClosedLoopRollout = (ReplayRollout if replay else OnlineRollout)(
            self.assembly, self.meta, self.taps, phase, self.training.seed, self.optimizer, self.sync,
            total_updates=max(total, 1),
            updates=state.stage2_updates,  # resumes the learning-rate schedule where it stopped
        )
        bar = progress_bar(total=batches_per_epoch * phase.epochs, desc="stage 2 (closed loop)", unit="batch",
                           disable=not self.show_progress)
        bar.update(state.epoch * batches_per_epoch)
        start = time.perf_counter()
        self.predictor.train()
        for epoch in range(state.epoch, phase.epochs):
            generator = data_order(self.training.seed, STAGE2_PROMPT_ORDER + epoch)
            order = torch.randperm(len(prompts), generator=generator).tolist()
            rollout.start_epoch()
            for b in range(batches_per_epoch):
                rollout.run(runner, sorted(order[b * phase.batch_size:(b + 1) * phase.batch_size]), epoch, b,
                            make_policy=self.rollout_schedule(epoch * batches_per_epoch + b).make_policy)
                self.check_finite("stage2", epoch, rollout.losses)
                bar.update(1)
            state.stage2_updates = rollout.updates
            self._end_epoch(state, "stage2", epoch, rollout.losses, bar)
        bar.close()
        self.report.seconds["stage2"] = time.perf_counter() - start

    def rollout_schedule(self, index: int) -> TrainingSchedule:
        """The schedule stage 2's rollout ``index`` (counted over the phase) runs under: the training
        schedules in turn, the run's first."""
        return self.schedules[index % len(self.schedules)]

    def fit(self, runner: TrajectoryRunner | None, *, stages: Sequence[int] = (1, 2)) -> TrainReport:
        """Run the requested stages, resuming from a matching checkpoint.

        ``stages`` is honoured on resume: asked for stage 1 only after stage 2 has started (a finished
        ``1,2`` run, say), the run resumes from the checkpoint kept when stage 1 ended
        (:func:`~lesa_core.trainer.checkpoint.stage1_checkpoint`), so it returns stage 1's weights.

        :raises TrainingError: if stage 2 is requested without a runner, stage 1 only is asked for and its
            checkpoint is gone, or the ranks of a data-parallel run resumed from different checkpoints.
        """
        state = TrainState(key=self.key)
        extra: dict[str, Tensor] = {}
        restored = load_checkpoint(self.checkpoint_dir, self.predictor, self.optimizer.adamw, self.key, extra)
        if restored is not None and restored.phase == 2 and 2 not in stages:
            snapshot = stage1_checkpoint(self.checkpoint_dir)
            extra = {}
            restored = load_checkpoint(snapshot, self.predictor, self.optimizer.adamw, self.key, extra)
            if restored is None:
                raise TrainingError(
                    f"{self.checkpoint_dir} holds a run that is past stage 1, and the checkpoint of stage 1's end "
                    f"({snapshot}) is missing; run stages 1,2, or delete {self.checkpoint_dir} to train stage 1 "
                    "again"
                )
        if restored is not None:
            state = restored
            self.report.resumed_from = (state.phase, state.epoch)
        self.sync.start_together(self.predictor, state, self.checkpoint_dir)
        if self.keeper is not None and not (restored is not None and self.keeper.load_state(state.selection, extra)):
            self.keeper.consider("start" if restored is None else f"resumed at stage {state.phase} epoch {state.epoch}")
        if 1 in stages and state.phase == 1:
            self.stage1(state)
        if 2 in stages and self.training.stage2.epochs > 0:
            if runner is None:
                raise TrainingError("stage 2 (closed loop) needs the model: pass a runner")
            if state.phase == 1:  # keep where stage 1 ended: `--stages 1` later returns these weights
                self._checkpoint(state, stage1_checkpoint(self.checkpoint_dir))
                state.phase, state.epoch = 2, 0
            self.stage2(state, runner)
        if self.keeper is not None:
            self.keeper.restore()
            self.report.selection["epochs"] = self.keeper.summary()
        self.predictor.eval()
        self.report.losses = state.losses
        self.report.updates = state.updates
        return self.report


def describe_seconds(seconds: dict[str, float]) -> str | None:
    """``time: collection 119 s · stage1 52 s · stage2 31 s · floor 30 s (closed-loop validation 80 s of them)``,
    or ``None`` when nothing was timed."""
    parts = [f"{name} {value:.0f} s" for name, value in seconds.items() if name != "validation"]
    if not parts:
        return None
    validation = seconds.get("validation")
    return "time: " + " · ".join(parts) + (f" (closed-loop validation {validation:.0f} s of them)"
                                           if validation is not None else "")
