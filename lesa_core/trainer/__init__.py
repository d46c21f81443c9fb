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
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from lesa_core import distributed
from lesa_core.assembly import Assembly, Binding, bind, find_transformer, model_device
from lesa_core.bundle import save_bundle
from lesa_core.errors import TrainingError
from lesa_core.interfaces import StageRouter
from lesa_core.plugins import PluginHost, get_plugin_host
from lesa_core.run import ConfigLike, ResolvedRun, resolve_run
from lesa_core.trainer.collect import collect
from lesa_core.trainer.fit import Trainer, TrainReport
from lesa_core.trainer.losses import latent_loss_head
from lesa_core.trainer.runner import PipelineRunner, TrajectoryRunner
from lesa_core.trainer.schedule import history_indices
from lesa_core.trainer.store import StoreMeta, TrajectoryStore

__all__ = [
    "PipelineRunner",
    "StoreMeta",
    "TrainReport",
    "Trainer",
    "TrajectoryRunner",
    "TrajectoryStore",
    "check_trainable",
    "collect",
    "collect_trajectories",
    "fit_router",
    "history_indices",
    "train",
    "trainable_assembly",
    "with_schedule",
]


def _store(run: ResolvedRun, data_dir: str | Path | None) -> TrajectoryStore:
    return TrajectoryStore(Path(data_dir or run.config.training.data_dir) / "trajectories")


def check_trainable(binding: Binding) -> None:
    """Refuse, before anything is collected, a run that cannot be trained on this model: a training-free
    predictor family, or a ``training.loss`` that cannot be measured on the tap.

    :raises TrainingError: saying what to change.
    """
    run = binding.run
    if not run.plugins.predictor_cls.learnable:
        raise TrainingError(
            f"predictor '{run.predictor.name}' is training-free: it has no parameters to fit; attach it directly "
            "(lesa_core.attach(pipe, config), `lesa sample --config`) or choose a learnable family such as kan"
        )
    if run.config.training.loss == "latent":
        latent_loss_head(binding.adapter, binding.tap)


def collect_trajectories(target: Any, config: ConfigLike | ResolvedRun, prompts: Sequence[str], *,
                         runner: TrajectoryRunner, data_dir: str | Path | None = None, batch_size: int = 8,
                         host: PluginHost | None = None, rank: int | None = None, world_size: int | None = None,
                         show_progress: bool = True) -> StoreMeta:
    """Collect the full-compute tap trajectories of ``prompts`` (resumable; see :func:`collect`).

    ``rank``/``world_size`` default to the initialised process group's (else 0 and 1): each rank
    collects the prompts ``i % world_size == rank``.
    """
    host = host or get_plugin_host()
    run = resolve_run(config, host=host)
    binding = bind(find_transformer(target), run, host=host)
    return _collect(binding, runner, prompts, data_dir=data_dir, batch_size=batch_size, rank=rank,
                    world_size=world_size, show_progress=show_progress)


def _collect(binding: Binding, runner: TrajectoryRunner, prompts: Sequence[str], *, data_dir: str | Path | None,
             batch_size: int, rank: int | None = None, world_size: int | None = None,
             show_progress: bool = True) -> StoreMeta:
    if not prompts:
        raise TrainingError("no prompts to collect trajectories for; give at least one prompt (training.prompts, "
                            "a prompt file, or a model source with default prompts)")
    if batch_size < 1:
        raise TrainingError(f"batch_size must be at least 1, got {batch_size}; pass e.g. --batch-size 8")
    training = binding.run.config.training
    return collect(binding, runner, _store(binding.run, data_dir), prompts, num_steps=training.num_steps,
                   seed=training.seed, token_subsample=training.token_subsample, batch_size=batch_size,
                   rank=rank, world_size=world_size, show_progress=show_progress)


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
          checkpoint_dir: str | Path | None = None, batch_size: int = 8, host: PluginHost | None = None,
          show_progress: bool = True) -> tuple[Path, TrainReport]:
    """Collect (or reuse) trajectories, train both stages and write the bundle to ``out``.

    Under a process group: collection is sharded over the ranks, training is data parallel, and rank 0
    writes the bundle while the others wait; every rank returns the same path.

    :param data_dir: trajectories go to ``data_dir/trajectories`` (default ``training.data_dir``).
    :param checkpoint_dir: per-epoch checkpoints (default ``data_dir/checkpoint``); give each run that shares
        one ``data_dir`` its own, so that they resume independently.
    :return: the bundle folder and a :class:`TrainReport` (losses per epoch, timings, resume point).
    """
    host = host or get_plugin_host()
    model = find_transformer(target)
    binding = bind(model, resolve_run(config, host=host), host=host)
    check_trainable(binding)
    root = Path(data_dir or binding.run.config.training.data_dir)
    meta = _collect(binding, runner, prompts, data_dir=root, batch_size=batch_size, show_progress=show_progress)
    assert meta.schedule is not None
    taps = _store(binding.run, root).load()
    run = fit_router(with_schedule(binding.run, meta.schedule, host=host), taps, meta.schedule, host=host)
    assembly = trainable_assembly(Binding(run, binding.adapter, binding.tap), meta.schedule, host=host)
    device = model_device(model)
    assembly.predictor.to(device)
    checkpoints = Path(checkpoint_dir) if checkpoint_dir else root / "checkpoint"
    trainer = Trainer(assembly, meta, {k: v.to(device) for k, v in taps.items()}, run.config.training, checkpoints,
                      show_progress=show_progress)
    report = trainer.fit(runner, stages=stages)
    predictor = assembly.predictor.eval().requires_grad_(False)
    metadata = assembly.bundle_metadata(
        host, schedule=meta.schedule,
        extra={"losses": report.losses, "updates": report.updates, "num_prompts": len(meta.prompts)},
    )
    path = Path(out)
    if distributed.is_main_process():
        path = save_bundle(out, predictor, metadata)
    distributed.barrier()
    return path, report
