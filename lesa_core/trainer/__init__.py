"""The generic trainer: collect trajectories, fit stage 1 and stage 2, write a bundle.

Generic over whatever adapter, predictor family, router and policy the run config names::

    from lesa_core.trainer import PipelineRunner, train
    bundle_dir, report = train(pipe, "run.yaml", prompts, runner=PipelineRunner(pipe, height=64, width=64),
                               out="my-bundle")

The run is resolved once (:func:`lesa_core.run.resolve_run`) and bound to the model once
(:func:`lesa_core.assembly.bind`). Collection needs only the binding; what it measures completes the
run — a schedule-bound predictor family gets the collected schedule, a data-driven router fits its
boundaries (:meth:`~lesa_core.run.ResolvedRun.derive`) — and then the predictor is built once, seeded.

Under an initialised process group (``torchrun``; see :mod:`lesa_core.distributed`) the same calls
collect the prompts sharded over the ranks and train data parallel; rank 0 writes the bundle.

Before any work, :func:`train` checks where it will write (the bundle folder must be new, empty or a
previous bundle, outside the data folder, and writable; see :mod:`lesa_core.outputs`) and takes the data
folder's lock (:mod:`lesa_core.trainer.lock`); the free disk space is checked during collection (from the
size of the first shard) and before training (from the predictor's size).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from lesa_core import distributed
from lesa_core.assembly import Assembly, Binding, bind, find_transformer, model_device
from lesa_core.bundle import check_bundle_destination, save_bundle
from lesa_core.config import AUTO_TOKEN_SUBSAMPLE
from lesa_core.errors import TrainingError
from lesa_core.interfaces import ClosedFormFit, StageRouter
from lesa_core.outputs import check_free_space, check_not_nested, check_output_folder, check_writable
from lesa_core.plugins import PluginHost, get_plugin_host
from lesa_core.run import ConfigLike, ResolvedRun, resolve_run
from lesa_core.trainer.checkpoint import CHECKPOINT_STATE, CHECKPOINT_TENSORS, stage1_checkpoint
from lesa_core.trainer.collect import collect
from lesa_core.trainer.fit import Trainer, TrainReport
from lesa_core.trainer.lock import data_dir_lock
from lesa_core.trainer.losses import latent_loss_head
from lesa_core.trainer.policy_fit import fit_policy, fits_after_training
from lesa_core.trainer.policy_refine import refine_run_policy
from lesa_core.trainer.runner import PipelineRunner, TrajectoryRunner
from lesa_core.trainer.schedule import history_indices
from lesa_core.trainer.schedules import TrainingSchedule, training_schedules
from lesa_core.trainer.selection import (
    BestKeeper,
    ClosedLoopValidator,
    apply_floor,
    can_start_from_coefficients,
    candidate_run,
    fit_closed_form,
    score_floor,
    training_slice,
    validation_rows,
)
from lesa_core.trainer.store import STORE_META, StoreMeta, TrajectoryStore

__all__ = [
    "PipelineRunner",
    "StoreMeta",
    "TrainReport",
    "Trainer",
    "TrainingSchedule",
    "TrajectoryRunner",
    "TrajectoryStore",
    "check_collectable",
    "check_trainable",
    "collect",
    "collect_trajectories",
    "fit_policy",
    "fit_router",
    "floor_may_keep",
    "history_indices",
    "token_subsample",
    "train",
    "trainable_assembly",
    "training_schedules",
    "with_schedule",
]


def _store(run: ResolvedRun, data_dir: str | Path | None) -> TrajectoryStore:
    return TrajectoryStore(Path(data_dir or run.config.training.data_dir) / "trajectories")


def check_collectable(binding: Binding, runner: TrajectoryRunner | None = None) -> None:
    """Refuse, before anything is collected, a collection that cannot give one trajectory per prompt and
    context: a sampling call that makes extra calls on some steps (an option of the adapter's
    ``extra_call_arguments``, e.g. SD3's ``skip_guidance_layers``), or ``training.token_subsample`` on a tap
    that is not ``(batch, tokens, channels)``.

    :raises TrainingError: saying what to change.
    """
    adapter, tap = binding.adapter, binding.tap
    call = dict(getattr(runner, "call_kwargs", None) or (runner.settings if runner is not None else {}))
    for argument, option in adapter.extra_call_arguments.items():
        if call.get(option) not in (None, [], ()):
            raise TrainingError(
                f"the sampling call sets `{option}`, which makes extra transformer calls (`{argument}`) on some steps "
                "only; their trajectory is not one of the run's. Remove it from the call arguments for collection and "
                "training (the trained bundle still runs with it: the extra calls get a cache context of their own)")
    if isinstance(binding.run.config.training.token_subsample, int) and not adapter.tap_is_token_major(tap):
        raise TrainingError(
            f"training.token_subsample needs a (batch, tokens, channels) tap, and {type(adapter).__name__}'s tap "
            f"'{tap}' is channels first; remove token_subsample or choose a token tap "
            f"({', '.join(t for t in adapter.taps if adapter.tap_is_token_major(t))})")


def check_trainable(binding: Binding, runner: TrajectoryRunner | None = None) -> None:
    """Refuse, before anything is collected, a run that cannot be trained on this model: a training-free
    predictor family, a ``training.schedules`` override the run's policy does not accept, a ``training.loss`` /
    ``training.stage2.loss`` that cannot be measured on the tap, or a collection that :func:`check_collectable`
    refuses.

    :raises TrainingError: saying what to change. :raises ConfigError: for a bad ``training.schedules``.
    """
    run = binding.run
    if not run.plugins.predictor_cls.learnable:
        raise TrainingError(
            f"predictor '{run.predictor.name}' is training-free: it has no parameters to fit; attach it directly "
            "(lesa_core.attach(pipe, config), `lesa sample --config`) or choose a learnable family such as kan"
        )
    training_schedules(run.plugins, run.config.training, run.config.training.num_steps)
    check_collectable(binding, runner)
    if run.config.training.loss == "latent" or run.config.training.stage2.loss == "output":
        latent_loss_head(binding.adapter, binding.tap)
        settings = runner.settings if runner is not None else {}
        if len(binding.adapter.batched_guidance) >= 2 and not {"guidance_scale", "true_cfg_scale"} & set(settings):
            raise TrainingError(
                "training.loss 'latent' combines the guidance branches with the call's guidance scale, and the "
                f"sampling call names none while {type(binding.adapter).__name__}'s pipeline batches guidance by "
                "default; set guidance_scale in the call arguments (lesa_call.json, or the runner's), or use "
                "training.loss: tap")


def collect_trajectories(target: Any, config: ConfigLike | ResolvedRun, prompts: Sequence[str], *,
                         runner: TrajectoryRunner, data_dir: str | Path | None = None, batch_size: int | None = None,
                         host: PluginHost | None = None, rank: int | None = None, world_size: int | None = None,
                         show_progress: bool = True) -> StoreMeta:
    """Collect the full-compute tap trajectories of ``prompts`` (resumable; see :func:`collect`), holding
    the data folder's lock.

    ``rank``/``world_size`` default to the initialised process group's (else 0 and 1): each rank
    collects the fixed groups of ``training.collect_batch`` prompts ``k % world_size == rank``.

    :param batch_size: deprecated and ignored: prompts are sampled in fixed groups of
        ``training.collect_batch``, so that a trajectory does not depend on how the collection was resumed or
        sharded (:mod:`lesa_core.trainer.collect`).
    """
    _deprecated_batch_size(batch_size)
    host = host or get_plugin_host()
    run = resolve_run(config, host=host)
    binding = bind(find_transformer(target), run, host=host)
    _check_prompts(prompts)
    check_collectable(binding, runner)
    root = Path(data_dir or run.config.training.data_dir)
    _check_data_dir(root)
    with data_dir_lock(root, enabled=distributed.is_main_process()):
        return _collect(binding, runner, prompts, data_dir=root, rank=rank, world_size=world_size,
                        show_progress=show_progress)


def _deprecated_batch_size(batch_size: int | None) -> None:
    if batch_size is None:
        return
    if batch_size < 1:
        raise TrainingError(f"batch_size must be at least 1, got {batch_size}; leave it out (it is deprecated: "
                            "collection samples fixed groups of training.collect_batch prompts per call)")
    warnings.warn("batch_size is deprecated and ignored: collection samples fixed groups of training.collect_batch "
                  "prompts per call, so that trajectories do not depend on resuming or sharding; set that instead",
                  DeprecationWarning, stacklevel=3)


def _check_prompts(prompts: Sequence[str]) -> None:
    if not prompts:
        raise TrainingError("no prompts to collect trajectories for; give at least one prompt (training.prompts, "
                            "a prompt file, or a model source with default prompts)")


def _check_data_dir(root: Path) -> None:
    """Refuse a data folder that cannot be written or whose ``trajectories`` folder holds foreign files."""
    check_writable(root, what="data folder")
    store = root / "trajectories"
    check_output_folder(store, markers={STORE_META}, what="trajectory store")


def token_subsample(binding: Binding) -> int | None:
    """The tokens a collection keeps per sample: ``training.token_subsample``, with ``auto`` read as
    :data:`~lesa_core.config.AUTO_TOKEN_SUBSAMPLE` on a (batch, tokens, channels) tap and all tokens on any
    other."""
    value = binding.run.config.training.token_subsample
    if value != "auto":
        return value if isinstance(value, int) else None
    return AUTO_TOKEN_SUBSAMPLE if binding.adapter.tap_is_token_major(binding.tap) else None


def _collect(binding: Binding, runner: TrajectoryRunner, prompts: Sequence[str], *, data_dir: str | Path | None,
             rank: int | None = None, world_size: int | None = None, show_progress: bool = True) -> StoreMeta:
    _check_prompts(prompts)
    training = binding.run.config.training
    store = _store(binding.run, data_dir)
    return collect(binding, runner, store, prompts, num_steps=training.num_steps,
                   seed=training.seed, token_subsample=token_subsample(binding), rank=rank,
                   world_size=world_size, show_progress=show_progress, before_each=_space_check(store),
                   collect_batch=training.collect_batch)


def _space_check(store: TrajectoryStore) -> Callable[[int, int], None]:
    """Before each prompt: refuse to go on when the disk cannot hold the remaining shards (estimated from
    the size of a shard already written)."""
    shard: list[int] = []

    def check(done: int, remaining: int) -> None:
        if not shard:
            written = next(iter(sorted(store.root.glob("traj_*.safetensors"))), None)
            if written is None:
                return
            shard.append(written.stat().st_size)
        check_free_space(store.root, shard[0] * remaining, what=f"trajectory store ({remaining} prompts to go)")

    return check


def with_schedule(run: ResolvedRun, schedule: list[float], *, host: PluginHost | None = None) -> ResolvedRun:
    """Fill the family's ``schedule`` parameter from the collected trajectories when it takes one and the
    run leaves it unset (a schedule-bound time encoding); families or encodings that refuse it are left
    alone."""
    from pydantic import ValidationError

    config_cls = run.plugins.predictor_cls.Config
    if "schedule" not in config_cls.model_fields or run.predictor.params.get("schedule") is not None:
        return run
    try:
        config_cls.model_validate({**run.predictor.params, "schedule": schedule})
    except ValidationError:
        return run
    return run.derive(predictor={**run.predictor.as_dict(), "schedule": schedule}, host=host)


def tap_change_per_step(taps: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean relative change ``||h_s − h_{s−1}|| / ||h_{s−1}||`` of the tap per step (step 0 copies step 1)."""
    gt = torch.cat(list(taps.values())).float()  # (P, S, ...)
    flat = gt.flatten(2)
    change = (flat[:, 1:] - flat[:, :-1]).norm(dim=-1) / flat[:, :-1].norm(dim=-1).clamp_min(1e-12)
    change = change.mean(0)
    return torch.cat([change[:1], change])


def fit_router(run: ResolvedRun, taps: dict[str, torch.Tensor], schedule: list[float], *,
               host: PluginHost | None = None) -> ResolvedRun:
    """Let a data-driven router place its boundaries from the collected trajectories; the fitted
    boundaries go into the returned run (and so into the bundle)."""
    router = run.plugins.router
    if type(router).fit is StageRouter.fit:
        return run
    num_steps = len(schedule) - 1
    router.fit(torch.tensor(schedule[:num_steps]), tap_change_per_step(taps))
    return run.derive(router={"name": run.router.name, **router.state()}, host=host)


def trainable_assembly(binding: Binding, schedule: list[float], *, host: PluginHost | None = None) -> Assembly:
    """The binding's run completed with the collected ``schedule``, with a freshly initialised predictor
    (seeded with ``training.seed``, float32, train mode) ready for training."""
    run = with_schedule(binding.run, schedule, host=host)
    binding = Binding(run, binding.adapter, binding.tap)
    torch.manual_seed(run.config.training.seed)
    return binding.with_predictor(binding.build_predictor().float().train())


def train(target: Any, config: ConfigLike | ResolvedRun, prompts: Sequence[str], *, runner: TrajectoryRunner,
          out: str | Path, data_dir: str | Path | None = None, stages: Sequence[int] = (1, 2),
          checkpoint_dir: str | Path | None = None, batch_size: int | None = None, host: PluginHost | None = None,
          show_progress: bool = True) -> tuple[Path, TrainReport]:
    """Collect (or reuse) trajectories, train both stages and write the bundle to ``out``.

    Under a process group: collection is sharded over the ranks, training is data parallel, and rank 0
    writes the bundle while the others wait; every rank returns the same path.

    :param out: the bundle folder: new, empty, or a previous bundle (replaced once the new one is complete);
        never inside or around ``data_dir``.
    :param data_dir: trajectories go to ``data_dir/trajectories`` (default ``training.data_dir``).
    :param checkpoint_dir: per-epoch checkpoints (default ``data_dir/checkpoint``); give each run that shares
        one ``data_dir`` its own, so that they resume independently.
    :param stages: the stages to run; a finished run asked for stage 1 only returns the weights stage 1
        ended with (see :meth:`Trainer.fit`).
    :param batch_size: deprecated and ignored (see :func:`collect_trajectories`).
    :return: the bundle folder and a :class:`TrainReport` (losses per epoch, timings, resume point).
    :raises OutputError: for a bundle folder that would replace files LESA did not write, lies inside the
        data folder, cannot be written, or would not fit on its disk — before any work.
    :raises TrainingError: for bad inputs, another process on the data folder, or a run that diverges (NaN or
        infinite loss, weights or trajectories; no bundle is written then).
    """
    _deprecated_batch_size(batch_size)
    host = host or get_plugin_host()
    model = find_transformer(target)
    binding = bind(model, resolve_run(config, host=host), host=host)
    check_trainable(binding, runner)
    _check_prompts(prompts)
    root = Path(data_dir or binding.run.config.training.data_dir)
    checkpoints = Path(checkpoint_dir) if checkpoint_dir else root / "checkpoint"
    check_not_nested(out, root)
    check_bundle_destination(out)
    _check_data_dir(root)
    for folder in (checkpoints, stage1_checkpoint(checkpoints)):  # replaced whole by every checkpoint
        check_output_folder(folder, markers={CHECKPOINT_STATE}, owned={CHECKPOINT_STATE, CHECKPOINT_TENSORS},
                            what="checkpoint")
    with data_dir_lock(root, enabled=distributed.is_main_process()):
        collect_start = time.perf_counter()
        meta = _collect(binding, runner, prompts, data_dir=root, show_progress=show_progress)
        collect_seconds = time.perf_counter() - collect_start
        assert meta.schedule is not None
        taps = _store(binding.run, root).load()
        run = fit_router(with_schedule(binding.run, meta.schedule, host=host), taps, meta.schedule, host=host)
        assembly = trainable_assembly(Binding(run, binding.adapter, binding.tap), meta.schedule, host=host)
        _check_space_for_training(assembly, checkpoints, Path(out))
        device = model_device(model)
        assembly.predictor.to(device)
        taps = {k: v.to(device) for k, v in taps.items()}
        probes = _store(binding.run, root).load(what="probes") if meta.probe_blocks is not None else {}
        report = _fit(assembly, meta, taps, runner, checkpoints, stages=stages, host=host,
                      show_progress=show_progress, probes={k: v.to(device) for k, v in probes.items()},
                      references=_store(binding.run, root).load_outputs)
        report.seconds = {"collection": collect_seconds, **report.seconds}
        if report.kept_candidate is not None:  # training.floor: keep — the bundle is that candidate
            kept = report.kept_candidate
            run = candidate_run(assembly, kept.spec, meta.schedule, host)
            assembly = Assembly(run, assembly.adapter, assembly.tap, kept.predictor)
        predictor = assembly.predictor.eval().requires_grad_(False)
        policy_fit: dict[str, Any] | None
        if report.kept_candidate is None:
            run, policy_fit = fit_policy(run, predictor, taps, meta.schedule, host=host)
            if policy_fit is not None:
                refined = Assembly(run, assembly.adapter, assembly.tap, predictor)
                run, closed_loop = refine_run_policy(refined, runner, meta, _store(binding.run, root).load_outputs,
                                                     host=host, show_progress=show_progress)
                if closed_loop is not None:
                    policy_fit["closed_loop"] = closed_loop
                    report.seconds["policy_refinement"] = closed_loop["seconds"]
        else:  # a kept candidate's coefficients belong to the full steps it was fitted and scored for
            policy_fit = None
        assembly = Assembly(run, assembly.adapter, assembly.tap, predictor)
        extra: dict[str, Any] = {"losses": report.losses, "updates": report.updates, "num_prompts": len(meta.prompts)}
        if report.selection:
            extra["selection"] = report.selection
        if policy_fit is not None:
            extra["policy_fit"] = policy_fit
        metadata = assembly.bundle_metadata(host, schedule=meta.schedule, extra=extra)
        path = Path(out)
        if distributed.is_main_process():
            path = save_bundle(out, predictor, metadata)
        distributed.barrier()
    return path, report


def _fit(assembly: Assembly, meta: StoreMeta, taps: dict[str, torch.Tensor], runner: TrajectoryRunner,
         checkpoints: Path, *, stages: Sequence[int], host: PluginHost, show_progress: bool,
         probes: dict[str, torch.Tensor] | None = None,
         references: Callable[[list[int]], torch.Tensor | None] = lambda rows: None) -> TrainReport:
    """Fit the assembled predictor: in closed form when its family can (:class:`ClosedFormFit`), else by the
    two stages; with a validation slice, the start is the best of ``training.start`` and the best epoch is
    kept (:mod:`lesa_core.trainer.selection`), scored against ``references(rows)``, the validation prompts'
    full-compute outputs as collected (sampled when it gives ``None``)."""
    training = assembly.config.training
    assert meta.schedule is not None
    rows = validation_rows(len(meta.prompts), training.validation_prompts)
    num_validation = len(rows)
    train_meta, train_taps = training_slice(meta, taps, num_validation)
    validator = None
    if num_validation:
        validator = ClosedLoopValidator(assembly, runner, meta, rows, references=references(rows))
    decisions = assembly.plugins.make_policy().schedule(meta.num_steps)
    times = torch.tensor(meta.schedule[: meta.num_steps], dtype=torch.float32)
    selection: dict[str, Any] = {"validation_prompts": num_validation}
    predictor = assembly.predictor
    if isinstance(predictor, ClosedFormFit):
        start = time.perf_counter()
        keep = len(meta.prompts) - num_validation
        train_probes = {context: probe[:keep] for context, probe in (probes or {}).items()}
        selection["closed_form"] = fit_closed_form(predictor, decisions, times, train_taps, train_probes)
        report = TrainReport(seconds={"closed_form": time.perf_counter() - start})
        if validator is not None:
            selection["validation_db"] = round(validator.score(predictor), 4)
            report.seconds["validation"] = validator.seconds
        report.selection = selection
        return report
    floor = None
    if validator is not None and training.start and can_start_from_coefficients(predictor):
        start = time.perf_counter()
        floor = score_floor(assembly, validator, training.start, decisions, times, train_taps, meta.schedule,
                            host=host)
        floor[0].seconds = time.perf_counter() - start
    keeper = BestKeeper(validator, predictor) if validator is not None else None
    trainer = Trainer(assembly, train_meta, train_taps, training, checkpoints, show_progress=show_progress,
                      keeper=keeper)
    report = trainer.fit(runner, stages=stages)
    if floor is not None and keeper is not None:
        start = time.perf_counter()
        outcome, kept = apply_floor(assembly, keeper, *floor, decisions, times, keep=floor_may_keep(assembly.run))
        selection["floor"] = {**floor[0].summary(), **outcome}
        report.kept_candidate = kept
        report.seconds["floor"] = floor[0].seconds + time.perf_counter() - start
        report.selection["epochs"] = keeper.summary()
    report.selection = {**selection, **report.selection}
    if validator is not None:
        report.seconds["validation"] = validator.seconds
    return report


def floor_may_keep(run: ResolvedRun) -> bool:
    """Whether the floor may return a candidate itself (``training.floor: keep``): not for a policy fitted after
    training (``learned``, ``adaptive``), which searches its steps for the predictor — the family's weights run
    on any schedule, a kept candidate's coefficients only on the one it was fitted for; the floor reproduces
    the candidate in the family there."""
    return run.config.training.floor == "keep" and not fits_after_training(run.plugins.make_policy())


def _check_space_for_training(assembly: Assembly, checkpoints: Path, out: Path) -> None:
    """Refuse to train when the checkpoints (weights and two AdamW moments, old and new while replaced) or
    the bundle would not fit on their disks."""
    size = sum(p.numel() * 4 for p in assembly.predictor.state_dict().values())
    check_free_space(checkpoints, 6 * size + (1 << 20), what="checkpoint")
    check_free_space(out, 2 * size + (1 << 20), what="bundle")
