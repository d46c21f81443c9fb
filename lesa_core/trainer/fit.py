"""The two training stages of LESA, generic over adapter, predictor family, router and policy.

* **Stage 1, GT-guided** (teacher forcing): for every forecast step of the policy's schedule, the
  history is the ground-truth taps (of the last K full steps, or the last K steps, by history mode)
  and the target is the ground-truth tap of that step. Batched: one update per (step, prompt batch).
* **Stage 2, closed loop**: the real model runs with the predictor attached on the drifting
  trajectory of a batch of prompts; the predictor learns from the runtime's own history at each
  forecast step (real features of the drifting trajectory, and its own forecasts in ``steps`` mode),
  by L1 against the uncached ground truth of that step. Gradients flow through the current forecast
  only. ``update: replay`` (default) records those histories during the rollout and then takes
  ``replay_epochs`` shuffled passes over the forecast steps, one batched update each (the contexts of
  a step merged); ``update: online`` (the reference release's) updates at each forecast step during
  the rollout, in step order.

Stage 1's error measure is ``training.loss``: ``tap`` (the paper's L1 on the tap at each forecast step)
or ``latent`` — per forecast span (the run of forecast steps between two full passes) and prompt
batch, L1 of the latent error the span leaves at the next full pass: each forecast's error through the
adapter's :meth:`~lesa_core.interfaces.BackboneAdapter.tap_head`, the contexts combined with the
guidance weights of the collection's call, summed over the span with the sampler's step sizes |Δσ|.

Both use AdamW with gradient clipping and a cosine learning-rate decay to 10 % over the phase. The
data order is a function of ``(seed, phase, epoch)``, so a resumed run matches an uninterrupted one.

**Data parallel** (a process group of P > 1 ranks, e.g. under ``torchrun``; see
:mod:`lesa_core.distributed`): every rank walks the same global batches in the same order and takes
its contiguous slice of each batch's rows (``torch.tensor_split``: uneven splits and empty slices are
fine). A rank's loss is the *sum* of its absolute errors divided by the global batch's element count;
:func:`all_reduce_gradients` sums the gradients (and the loss) over ranks, so every rank applies the
update the single-process run would (the gradient of the global mean), up to float summation order.
In stage 2 each rank samples its slice of the prompt batch (a rank whose slice is empty samples the
batch's first prompt as a ghost that contributes nothing), and the forecast steps — the policy's
decision depends only on the step index — are taken by every rank in lockstep, one all-reduce each.
Rank 0 alone writes checkpoints (the others wait at a barrier); every rank resumes from the same one.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from einops import einsum, rearrange
from torch import Tensor, nn

from lesa_core import distributed
from lesa_core.assembly import Assembly
from lesa_core.config import PhaseConfig, TrainingConfig
from lesa_core.errors import TrainingError
from lesa_core.interfaces import (
    BackboneAdapter,
    Decision,
    ForecastInput,
    Predictor,
    RuntimeComponents,
    StepEvent,
)
from lesa_core.progress import progress_bar
from lesa_core.trainer.checkpoint import TrainState, load_checkpoint, run_key, save_checkpoint
from lesa_core.trainer.runner import TrajectoryRunner
from lesa_core.trainer.store import StoreMeta


@dataclass
class TrainReport:
    """What a training run did."""

    losses: dict[str, list[float]] = field(default_factory=dict)
    updates: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    resumed_from: tuple[int, int] | None = None


def history_indices(decisions: Sequence[Decision], step: int, size: int, mode: str) -> list[int]:
    """The step indices a forecast at ``step`` reads: the last ``size`` full steps (``full``) or the
    last ``size`` steps (``steps``), oldest first."""
    if mode == "full":
        full = [i for i in range(step) if decisions[i] is Decision.COMPUTE]
        return full[-size:]
    return list(range(max(0, step - size), step))


def forecast_spans(decisions: Sequence[Decision]) -> list[list[int]]:
    """The runs of consecutive forecast steps (each ends at a full step or at the trajectory's end)."""
    spans: list[list[int]] = []
    for step, decision in enumerate(decisions):
        if decision is not Decision.FORECAST:
            continue
        if spans and spans[-1][-1] == step - 1:
            spans[-1].append(step)
        else:
            spans.append([step])
    return spans


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


def latent_loss_head(adapter: BackboneAdapter, tap: str) -> Callable[[Tensor], Tensor]:
    """The head ``training.loss: latent`` measures errors through (:meth:`BackboneAdapter.tap_head`).

    :raises TrainingError: if the adapter has none for ``tap``, saying which taps to use instead.
    """
    head = adapter.tap_head(tap)
    if head is None:
        usable = [name for name in adapter.taps if adapter.tap_head(name) is not None]
        raise TrainingError(
            f"training.loss 'latent' needs a tap the adapter can map to the model output without the step's "
            f"conditioning; {type(adapter).__name__}'s tap '{tap}' has no such head. Use one that has: "
            f"{', '.join(usable) or 'none on this adapter'}, or training.loss: tap"
        )
    return head


def _lr_at(phase: PhaseConfig, update: int, total: int) -> float:
    progress = min(update / max(total, 1), 1.0)
    return phase.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def all_reduce_gradients(predictor: Predictor, loss: Tensor | None, *, step: int = 0, skip: bool = False,
                         ) -> tuple[float, bool]:
    """Sum the gradients and the loss of every rank (data parallel), in one all-reduce.

    Each rank's ``loss`` must already be scaled by the *global* element count (a sum of its errors
    divided by the whole batch's size), so the sums are the single-process gradient and loss. A rank
    with nothing to contribute passes ``loss=None`` (its gradients are left unset). A parameter gets a
    gradient if any rank produced one — exactly the parameters the single-process run would update.

    :param step: the forecast step of this update; the ranks must agree on it (lockstep check).
    :param skip: this rank wants the update skipped (a non-finite forecast fell back to a full step);
        if any rank does, every rank skips it, as the single-process run would.
    :return: the global loss, and whether the update must be skipped.
    :raises TrainingError: if the ranks are not at the same step.
    """
    import torch.distributed as dist

    params = [p for p in predictor.parameters() if p.requires_grad]
    device = params[0].device
    has = [p.grad is not None for p in params]
    pieces = [p.grad.reshape(-1).float() if p.grad is not None else p.new_zeros(p.numel(), dtype=torch.float32)
              for p in params]
    tail = torch.tensor([*map(float, has), float(skip), float(step), 1.0,
                         0.0 if loss is None else float(loss.detach())], dtype=torch.float32, device=device)
    flat = torch.cat([*pieces, tail])
    dist.all_reduce(flat)
    flags = flat[-len(tail):].tolist()
    world = round(flags[-2])
    if abs(flags[-3] - world * step) > 0.5:
        raise TrainingError(
            f"data-parallel ranks are out of lockstep (this rank is at step {step}); every rank must take "
            "the same forecast steps — check that all ranks run the same config and policy"
        )
    skipped = flags[-4] > 0.5
    offset = 0
    for p, any_grad in zip(params, flags[: len(params)], strict=True):
        n = p.numel()
        if any_grad > 0.5 and not skipped:
            p.grad = flat[offset:offset + n].view_as(p).to(p.dtype)
        else:
            p.grad = None
        offset += n
    return flags[-1], skipped


class Trainer:
    """Fits ``assembly.predictor`` on the trajectories of a store.

    :param assembly: the assembled run (its predictor is trained in place).
    :param meta: the trajectory store's metadata (schedule, token subset, prompts, seed).
    :param taps: ground truth, context → (P, S, N', C) float32.
    :param training: the training section of the run config.
    :param checkpoint_dir: where per-epoch checkpoints go (resumed when they match this run).
    """

    def __init__(self, assembly: Assembly, meta: StoreMeta, taps: dict[str, Tensor], training: TrainingConfig,
                 checkpoint_dir: Path, *, show_progress: bool = True) -> None:
        if meta.schedule is None:
            raise TrainingError("the trajectory store has no schedule; collection did not finish")
        self.assembly = assembly
        self.predictor = assembly.predictor
        self.meta = meta
        self.taps = taps
        self.training = training
        self.checkpoint_dir = checkpoint_dir
        self.show_progress = show_progress
        self.num_steps = meta.num_steps
        self.times = torch.tensor(meta.schedule[: meta.num_steps], dtype=torch.float32)
        self.decisions = assembly.plugins.make_policy().schedule(meta.num_steps)
        self.forecast_steps = [s for s, d in enumerate(self.decisions) if d is Decision.FORECAST]
        params = [p for p in self.predictor.parameters() if p.requires_grad]
        if not params:
            raise TrainingError(f"predictor '{assembly.config.predictor.name}' has no trainable parameters")
        self.optimizer = torch.optim.AdamW(params, lr=training.stage1.lr, weight_decay=training.weight_decay)
        self.key = run_key(assembly.config.to_dict(), meta.identity(), meta.schedule)
        self.report = TrainReport(losses={"stage1": [], "stage2": []})
        self.spans = forecast_spans(self.decisions)
        self.head: Callable[[Tensor], Tensor] | None = None
        if training.loss == "latent":
            self._prepare_latent_loss()
        self.rank = distributed.rank()
        self.world = distributed.world_size()
        if self.rank != 0:
            self.show_progress = False  # one progress bar per run: rank 0's

    def _prepare_latent_loss(self) -> None:
        """Check that ``training.loss: latent`` can be measured here and set up what it needs: the tap's
        output head (a frozen float32 copy, so that the model's own weights never get gradients), the
        guidance weights of the contexts, the per-prompt ground truth and the sampler's step sizes."""
        head = latent_loss_head(self.assembly.adapter, self.assembly.tap)
        device = next(iter(self.taps.values())).device
        if isinstance(head, nn.Module):
            head = copy.deepcopy(head).float().to(device).requires_grad_(False)
        self.head = head
        counts = {name: tap.shape[0] for name, tap in self.taps.items()}
        if len(set(counts.values())) != 1:
            raise TrainingError(f"training.loss 'latent' pairs the contexts of each prompt, but the trajectory store "
                                f"holds different prompt counts per context: {counts}; collect again")
        self.context_weights = guidance_weights(list(self.taps), self.meta.call)
        if self.context_weights is not None:
            self.context_weights = self.context_weights.to(device)
        self.num_prompts = next(iter(counts.values()))
        assert self.meta.schedule is not None
        schedule = torch.tensor(self.meta.schedule, dtype=torch.float32)
        self.step_sizes = (schedule[1:] - schedule[:-1]).abs()

    # -- helpers ----------------------------------------------------------------------------
    def _forecast_input(self, features: list[Tensor], idx: list[int], step: int) -> ForecastInput:
        return ForecastInput(
            features=features,
            times=self.times[idx],
            steps=torch.tensor(idx, dtype=torch.float32),
            t=self.times[step].clone(),
            step=torch.tensor(float(step)),
        )

    def _update(self, loss: Tensor, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.predictor.parameters(), self.training.clip_grad_norm)
        self.optimizer.step()

    def _update_parallel(self, loss: Tensor | None, lr: float, step: int, skip: bool = False) -> float | None:
        """One data-parallel update: ``loss`` is this rank's share (``None``: no rows here); returns the
        global loss, or ``None`` if the update was skipped on every rank."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        if loss is not None and not skip:
            loss.backward()
        total, skipped = all_reduce_gradients(self.predictor, None if skip else loss, step=step, skip=skip)
        if skipped:
            return None
        torch.nn.utils.clip_grad_norm_(self.predictor.parameters(), self.training.clip_grad_norm)
        self.optimizer.step()
        return total

    def _local_rows(self, rows: Tensor) -> Tensor:
        """This rank's contiguous slice of a global batch's rows."""
        return torch.tensor_split(rows, self.world)[self.rank]

    def _checkpoint(self, progress: TrainState) -> None:
        if self.rank == 0:
            save_checkpoint(self.checkpoint_dir, self.predictor, self.optimizer, progress)
        distributed.barrier()

    # -- stage 1 ----------------------------------------------------------------------------
    def _stage1_units(self) -> list[list[int]]:
        """What one stage-1 update covers: a forecast step (``loss: tap``) or a forecast span (``latent``)."""
        return self.spans if self.training.loss == "latent" else [[s] for s in self.forecast_steps]

    def _stage1_batches(self, epoch: int) -> list[tuple[int, Tensor]]:
        """(unit index, rows) for every unit and row batch, shuffled by ``(seed, epoch)``. The rows are
        the contexts' trajectories pooled (``tap``) or the prompts, each with all its contexts (``latent``)."""
        latent = self.training.loss == "latent"
        gen = torch.Generator().manual_seed(self.training.seed * 1_000_003 + (1_500 if latent else 1_000) + epoch)
        rows = self.num_prompts if latent else sum(tap.shape[0] for tap in self.taps.values())
        batches = []
        for unit in range(len(self._stage1_units())):
            order = torch.randperm(rows, generator=gen)
            for start in range(0, rows, self.training.stage1.batch_size):
                batches.append((unit, order[start:start + self.training.stage1.batch_size]))
        shuffle = torch.randperm(len(batches), generator=gen).tolist()
        return [batches[i] for i in shuffle]

    def _forecastable(self, steps: Sequence[int]) -> bool:
        """Whether some step of ``steps`` has the predictor's minimum history."""
        size, mode = self.predictor.history_size, self.predictor.history_mode
        return any(len(history_indices(self.decisions, s, size, mode)) >= self.predictor.min_history for s in steps)

    def _tap_error(self, pooled: Tensor, step: int, rows: Tensor) -> Tensor:
        """Forecast minus truth at ``step`` for ``rows`` of the pooled trajectories, teacher forced."""
        idx = history_indices(self.decisions, step, self.predictor.history_size, self.predictor.history_mode)
        batch = pooled[rows]
        return self.predictor(self._forecast_input([batch[:, j] for j in idx], idx, step)) - batch[:, step]

    def latent_error(self, span: Sequence[int], rows: Tensor) -> Tensor | None:
        """The latent error the teacher-forced forecasts of ``span`` leave at the next full pass, per
        unit of flow time: ``Σ_s |Δσ_s| · head(forecast_s − truth_s) / Σ_s |Δσ_s|`` over the span's
        steps, with the contexts' output errors combined by the guidance weights (or kept apart when
        the contexts are not a guidance pair). ``(B, X', N', C_out)``; ``None`` if no step of the span
        has enough history to forecast.
        """
        assert self.head is not None
        gt = torch.cat([tap[rows] for tap in self.taps.values()])  # contexts stacked: (x b) s n c
        contexts = len(self.taps)
        drift: Tensor | None = None
        total = 0.0
        for step in span:
            idx = history_indices(self.decisions, step, self.predictor.history_size, self.predictor.history_mode)
            if len(idx) < self.predictor.min_history:
                continue
            forecast = self.predictor(self._forecast_input([gt[:, j] for j in idx], idx, step))
            error = rearrange(self.head(forecast) - self.head(gt[:, step]), "(x b) n o -> b x n o", x=contexts)
            if self.context_weights is not None:
                error = einsum(error, self.context_weights, "b x n o, x -> b n o").unsqueeze(1)
            size = float(self.step_sizes[step])
            drift = error * size if drift is None else drift + error * size
            total += size
        return None if drift is None else drift / max(total, 1e-12)

    def stage1(self, progress: TrainState) -> None:
        """Teacher forcing: one update per (unit, row batch) — see :meth:`_stage1_batches`; the loss is
        the mean absolute error of the unit (the tap's, or the span's latent error)."""
        phase = self.training.stage1
        latent = self.training.loss == "latent"
        units = self._stage1_units()
        pooled = None if latent else torch.cat(list(self.taps.values()))

        def error_of(unit: list[int], rows: Tensor) -> Tensor:
            if pooled is not None:
                return self._tap_error(pooled, unit[0], rows)
            error = self.latent_error(unit, rows)
            assert error is not None  # the unit is forecastable
            return error

        per_epoch = len(self._stage1_batches(0))
        total = per_epoch * phase.epochs
        bar = progress_bar(total=total, desc="stage 1 (GT-guided" + (", latent)" if latent else ")"), unit="update",
                           disable=not self.show_progress)
        bar.update(progress.epoch * per_epoch)
        start = time.perf_counter()
        self.predictor.train()
        for epoch in range(progress.epoch, phase.epochs):
            losses = []
            for i, (index, rows) in enumerate(self._stage1_batches(epoch)):
                unit = units[index]
                if not self._forecastable(unit):
                    continue
                lr = _lr_at(phase, epoch * per_epoch + i, total)
                if self.world == 1:
                    loss = error_of(unit, rows).abs().mean()
                    self._update(loss, lr)
                    losses.append(float(loss.detach()))
                else:
                    local = self._local_rows(rows)
                    share = None
                    if local.numel():
                        error = error_of(unit, local)
                        share = error.abs().sum() / (len(rows) * error[0].numel())
                    global_loss = self._update_parallel(share, lr, unit[0])
                    assert global_loss is not None
                    losses.append(global_loss)
                bar.update(1)
            progress.epoch = epoch + 1
            progress.updates += len(losses)
            progress.losses["stage1"].append(sum(losses) / max(len(losses), 1))
            bar.set_postfix(loss=f"{progress.losses['stage1'][-1]:.4f}")
            self._checkpoint(progress)
        bar.close()
        self.report.seconds["stage1"] = time.perf_counter() - start

    # -- stage 2 ----------------------------------------------------------------------------
    def stage2(self, progress: TrainState, runner: TrajectoryRunner) -> None:
        phase = self.training.stage2
        prompts = self.meta.prompts
        token_index = (torch.tensor(self.meta.token_index) if self.meta.token_index is not None else None)
        batches_per_epoch = math.ceil(len(prompts) / phase.batch_size)
        replay = phase.update == "replay"
        # updates per rollout: replay merges a step's contexts; online updates once per step and context
        per_rollout = len(self.forecast_steps) * (phase.replay_epochs if replay else len(self.taps))
        total = batches_per_epoch * phase.epochs * max(per_rollout, 1)
        bar = progress_bar(total=batches_per_epoch * phase.epochs, desc="stage 2 (closed loop)", unit="batch",
                           disable=not self.show_progress)
        bar.update(progress.epoch * batches_per_epoch)
        start = time.perf_counter()
        state: dict[str, Any] = {"rows": None, "losses": [], "update": 0, "global_rows": 0, "ghost": False,
                                 "samples": {}}
        self.predictor.train()

        def sample(event: StepEvent) -> tuple[ForecastInput, Tensor]:
            """A forecast event's input, detached, float32 and token-subsampled like the ground truth
            (which it is returned with)."""
            inputs = event.inputs
            assert inputs is not None
            device = inputs.features[-1].device
            features = [f.detach().float() for f in inputs.features]
            if token_index is not None:
                features = [f[:, token_index.to(device)] for f in features]
            local = ForecastInput(features, inputs.times.detach().float(), inputs.steps.detach().float(),
                                  inputs.t.detach().float().reshape(()), inputs.step.detach().float().reshape(()))
            return local, self.taps[event.context][state["rows"], event.step_index].to(device)

        def observe(event: StepEvent) -> None:
            if replay:
                return record(event)
            if self.world > 1:
                return observe_parallel(event)
            if event.decision is not Decision.FORECAST or event.inputs is None or event.context not in self.taps:
                return
            local, target = sample(event)
            with torch.enable_grad():
                loss = F.l1_loss(self.predictor(local), target)
                self._update(loss, _lr_at(phase, state["update"], total))
            state["update"] += 1
            state["losses"].append(float(loss.detach()))

        def observe_parallel(event: StepEvent) -> None:
            # every rank sees the same events in the same order (the decision depends on the step only);
            # a forecast that fell back to a full step on any rank skips the update on all of them
            forecast = event.decision is Decision.FORECAST and event.inputs is not None
            if not (forecast or event.fallback) or event.context not in self.taps:
                return
            share = None
            if forecast and not state["ghost"]:
                local, target = sample(event)
                with torch.enable_grad():
                    share = (self.predictor(local) - target).abs().sum() / (state["global_rows"] * target[0].numel())
            with torch.enable_grad():
                global_loss = self._update_parallel(share, _lr_at(phase, state["update"], total), event.step_index,
                                                    skip=not forecast)
            if global_loss is not None:
                state["update"] += 1
                state["losses"].append(global_loss)

        def record(event: StepEvent) -> None:
            # replay: keep what the runtime really forecast from (token-subsampled) and the ground truth;
            # the contexts of one step are merged into one batch (they share the step's history layout)
            if event.decision is not Decision.FORECAST or event.inputs is None or event.context not in self.taps:
                return
            local, target = sample(event)
            key = (event.step_index, tuple(local.steps.tolist()))
            entry = state["samples"].get(key)
            if entry is None:
                state["samples"][key] = {"inputs": local, "target": target, "contexts": 1}
            else:
                merged = [torch.cat([a, b]) for a, b in zip(entry["inputs"].features, local.features, strict=True)]
                entry["inputs"] = dataclasses.replace(entry["inputs"], features=merged)
                entry["target"] = torch.cat([entry["target"], target])
                entry["contexts"] += 1

        def replay_rollout(epoch: int, batch: int) -> None:
            samples, state["samples"] = state["samples"], {}
            keys = sorted(samples)
            gen = torch.Generator().manual_seed(self.training.seed * 1_000_003 + 3_000 + epoch * 10_007 + batch)
            with torch.enable_grad():
                for _ in range(phase.replay_epochs):
                    for i in torch.randperm(len(keys), generator=gen).tolist():
                        (step, _), entry = keys[i], samples[keys[i]]
                        inputs = entry["inputs"]
                        lr = _lr_at(phase, state["update"], total)
                        if self.world == 1:
                            loss = F.l1_loss(self.predictor(inputs), entry["target"])
                            self._update(loss, lr)
                            state["losses"].append(float(loss.detach()))
                        else:
                            share = None
                            if not state["ghost"]:
                                target = entry["target"]
                                share = (self.predictor(inputs) - target).abs().sum() / (
                                    state["global_rows"] * entry["contexts"] * target[0].numel())
                            global_loss = self._update_parallel(share, lr, step)
                            assert global_loss is not None
                            state["losses"].append(global_loss)
                        state["update"] += 1

        components = RuntimeComponents(
            predictor=self.predictor, make_policy=self.assembly.plugins.make_policy,
            router=self.assembly.plugins.router, tap=self.assembly.tap, guard_non_finite=True, observer=observe,
        )
        state["update"] = progress.stage2_updates  # resumes the learning-rate schedule where it stopped
        for epoch in range(progress.epoch, phase.epochs):
            gen = torch.Generator().manual_seed(self.training.seed * 1_000_003 + 2_000 + epoch)
            order = torch.randperm(len(prompts), generator=gen).tolist()
            state["losses"] = []
            for b in range(batches_per_epoch):
                rows = sorted(order[b * phase.batch_size:(b + 1) * phase.batch_size])
                state["rows"] = torch.tensor(rows)
                if self.world > 1:
                    state["global_rows"] = len(rows)
                    local = self._local_rows(state["rows"])
                    state["ghost"] = local.numel() == 0
                    state["rows"] = local if local.numel() else state["rows"][:1]  # a ghost keeps lockstep
                    rows = state["rows"].tolist()
                attachment = self.assembly.adapter.attach(components)
                try:
                    with torch.no_grad():
                        runner.run([prompts[r] for r in rows], [self.meta.seed + r for r in rows], self.num_steps)
                finally:
                    attachment.remove()
                if replay:
                    replay_rollout(epoch, b)
                bar.update(1)
            progress.epoch = epoch + 1
            progress.updates += len(state["losses"])
            progress.stage2_updates = state["update"]
            progress.losses["stage2"].append(sum(state["losses"]) / max(len(state["losses"]), 1))
            bar.set_postfix(loss=f"{progress.losses['stage2'][-1]:.4f}")
            self._checkpoint(progress)
        bar.close()
        self.report.seconds["stage2"] = time.perf_counter() - start

    def _check_same_start(self, progress: TrainState) -> None:
        """Every rank must start from the same checkpoint (also a barrier: rank 0 writes none before);
        the parameters are then broadcast from rank 0, as DDP does, so the replicas start identical."""
        import torch.distributed as dist

        device = next(iter(self.predictor.parameters())).device
        mine = torch.tensor([progress.phase, progress.epoch, progress.updates], dtype=torch.float64, device=device)
        low, high = mine.clone(), mine.clone()
        dist.all_reduce(low, op=dist.ReduceOp.MIN)
        dist.all_reduce(high, op=dist.ReduceOp.MAX)
        if not torch.equal(low, high):
            raise TrainingError(
                f"ranks resumed from different checkpoints (phase/epoch/updates from {low.tolist()} to "
                f"{high.tolist()}); {self.checkpoint_dir} must be one folder every rank sees (a shared filesystem)"
            )
        with torch.no_grad():
            for p in self.predictor.parameters():
                dist.broadcast(p.data, src=0)

    # -- both ---------------------------------------------------------------------------------
    def fit(self, runner: TrajectoryRunner | None, *, stages: Sequence[int] = (1, 2)) -> TrainReport:
        """Run the requested stages, resuming from a matching checkpoint."""
        progress = TrainState(key=self.key)
        restored = load_checkpoint(self.checkpoint_dir, self.predictor, self.optimizer, self.key)
        if restored is not None:
            progress = restored
            self.report.resumed_from = (progress.phase, progress.epoch)
        if self.world > 1:
            self._check_same_start(progress)
        if 1 in stages and progress.phase == 1:
            self.stage1(progress)
        if 2 in stages and self.training.stage2.epochs > 0:
            if runner is None:
                raise TrainingError("stage 2 (closed loop) needs the model: pass a runner")
            if progress.phase == 1:
                progress.phase, progress.epoch = 2, 0
            self.stage2(progress, runner)
        self.predictor.eval()
        self.report.losses = progress.losses
        self.report.updates = progress.updates
        return self.report

