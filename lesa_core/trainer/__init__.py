"""The generic trainer: collect trajectories, fit stage 1 and stage 2, write a bundle.

Generic over whatever adapter, predictor family, router and policy the run config names::

    from lesa_core.trainer import PipelineRunner, train
    bundle_dir, report = train(pipe, "run.yaml", prompts, runner=PipelineRunner(pipe, height=64, width=64),
                               out="my-bundle")

Under an initialised process group (``torchrun``; see :mod:`lesa_core.distributed`) the same calls
collect the prompts sharded over the ranks and train data parallel; rank 0 writes the bundle.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from lesa_core import distributed
from lesa_core.assembly import Assembly, ConfigLike, assemble, find_transformer
from lesa_core.bundle import save_bundle
from lesa_core.composite import build_predictor
from lesa_core.config import RunConfig, load_config
from lesa_core.errors import TrainingError
from lesa_core.interfaces import ForecastInput, Predictor
from lesa_core.interfaces.predictor import PredictorConfig
from lesa_core.plugins import PluginHost, get_plugin_host
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
    "collect",
    "collect_trajectories",
    "history_indices",
    "train",
]


def _store(config: RunConfig, data_dir: str | Path | None) -> TrajectoryStore:
    return TrajectoryStore(Path(data_dir or config.training.data_dir) / "trajectories")


def collect_trajectories(target: Any, config: ConfigLike, prompts: Sequence[str], *, runner: TrajectoryRunner,
                         data_dir: str | Path | None = None, batch_size: int = 8, host: PluginHost | None = None,
                         rank: int | None = None, world_size: int | None = None, show_progress: bool = True,
                         ) -> StoreMeta:
    """Collect the full-compute tap trajectories of ``prompts`` (resumable; see :func:`collect`).

    ``rank``/``world_size`` default to the initialised process group's (else 0 and 1): each rank
    collects the prompts ``i % world_size == rank``.
    """
    if not prompts:
        raise TrainingError("no prompts to collect trajectories for; give at least one prompt (training.prompts, "
                            "a prompt file, or a model source with default prompts)")
    if batch_size < 1:
        raise TrainingError(f"batch_size must be at least 1, got {batch_size}; pass e.g. --batch-size 8")
    host = host or get_plugin_host()
    model = find_transformer(target)
    run = load_config(config)
    assembly = _collection_assembly(model, run, host)
    return collect(assembly, runner, _store(run, data_dir), prompts, num_steps=run.training.num_steps,
                   seed=run.training.seed, token_subsample=run.training.token_subsample, batch_size=batch_size,
                   rank=rank, world_size=world_size, show_progress=show_progress)


class _CollectionOnly(Predictor):
    """Stands in for the run's predictor while collecting (every step computes; nothing is forecast)."""

    @property
    def history_size(self) -> int:
        return 1

    def forward(self, inputs: ForecastInput) -> torch.Tensor:
        raise AssertionError("collection never forecasts")


def _predictor_class(run: RunConfig, host: PluginHost) -> type[Predictor] | None:
    """The run's predictor class, or ``None`` for an unknown name (``assemble`` reports it)."""
    return host.predictors.get(run.predictor.name) if run.predictor.name in host.predictors else None


def _with_schedule(run: RunConfig, cls: type[Predictor] | None, schedule: list[float]) -> RunConfig:
    """Fill the family's ``schedule`` parameter from the collected trajectories when it takes one
    (a schedule-bound time encoding); families or encodings that refuse it are left alone."""
    from pydantic import ValidationError

    if cls is None:
        return run
    fields = getattr(cls.Config, "model_fields", {})
    if "schedule" not in fields or run.predictor.params.get("schedule") is not None:
        return run
    try:
        cls.Config.model_validate({**run.predictor.params, "schedule": schedule})
    except ValidationError:
        return run
    data = run.to_dict()
    data["predictor"] = {**data["predictor"], "schedule": schedule}
    return load_config(data)


def _collection_assembly(model: torch.nn.Module, run: RunConfig, host: PluginHost) -> Assembly:
    """``run`` assembled before any trajectory exists: collection never forecasts, so the predictor is a
    stand-in, and a schedule-bound family's schedule (known only after collection) is filled with a
    placeholder so that its config validates."""
    steps = run.training.num_steps
    validated = _with_schedule(run, _predictor_class(run, host), [1.0 - i / steps for i in range(steps + 1)])
    return assemble(model, validated, host=host, predictor=_CollectionOnly(PredictorConfig()))


def _check_loss(model: torch.nn.Module, run: RunConfig, host: PluginHost) -> None:
    """Refuse, before anything is collected, a ``training.loss`` that cannot be measured on this model's
    tap."""
    if run.training.loss != "latent":
        return
    assembly = _collection_assembly(model, run, host)
    latent_loss_head(assembly.adapter, assembly.tap)


def tap_change_per_step(taps: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean relative change ``||h_s − h_{s−1}|| / ||h_{s−1}||`` of the tap per step (step 0 copies step 1)."""
    gt = torch.cat(list(taps.values())).float()  # (P, S, ...)
    flat = gt.flatten(2)
    change = (flat[:, 1:] - flat[:, :-1]).norm(dim=-1) / flat[:, :-1].norm(dim=-1).clamp_min(1e-12)
    change = change.mean(0)
    return torch.cat([change[:1], change])


def fit_router(run: RunConfig, taps: dict[str, torch.Tensor], schedule: list[float], *,
               host: PluginHost | None = None) -> RunConfig:
    """Let a data-driven router place its boundaries from the collected trajectories; the fitted
    boundaries go into the returned config (and so into the bundle)."""
    from lesa_core.config import resolve_plugins
    from lesa_core.interfaces import StageRouter

    router = resolve_plugins(run, host or get_plugin_host()).router
    if type(router).fit is StageRouter.fit:
        return run
    num_steps = len(schedule) - 1
    router.fit(torch.tensor(schedule[:num_steps]), tap_change_per_step(taps))
    data = run.to_dict()
    data["router"] = {"name": run.router.name, **router.state()}
    return load_config(data)


def trainable_assembly(model: torch.nn.Module, run: RunConfig, schedule: list[float], *,
                       host: PluginHost | None = None) -> Assembly:
    """Assemble ``run`` with a freshly initialised (seeded) predictor ready for training."""
    host = host or get_plugin_host()
    run = _with_schedule(run, _predictor_class(run, host), schedule)
    base = assemble(model, run, host=host)
    torch.manual_seed(run.training.seed)
    predictor = build_predictor(base.plugins.predictor_cls, base.plugins.predictor_config, base.plugins.router,
                                base.adapter.tap_channels(base.tap))
    return assemble(model, run, host=host, predictor=predictor.float().train())


def train(target: Any, config: ConfigLike, prompts: Sequence[str], *, runner: TrajectoryRunner,
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
    run = load_config(config)
    cls = _predictor_class(run, host)
    if cls is not None and not cls.learnable:
        raise TrainingError(
            f"predictor '{run.predictor.name}' is training-free: it has no parameters to fit; attach it directly "
            "(lesa_core.attach(pipe, config), `lesa sample --config`) or choose a learnable family such as kan"
        )
    _check_loss(model, run, host)
    root = Path(data_dir or run.training.data_dir)
    meta = collect_trajectories(model if runner is None else target, run, prompts, runner=runner,
                                data_dir=root, batch_size=batch_size, host=host, show_progress=show_progress)
    assert meta.schedule is not None
    taps = _store(run, root).load()
    run = _with_schedule(run, _predictor_class(run, host), meta.schedule)
    run = fit_router(run, taps, meta.schedule, host=host)
    assembly = trainable_assembly(model, run, meta.schedule, host=host)
    device = next(iter(model.parameters())).device
    assembly.predictor.to(device)
    checkpoints = Path(checkpoint_dir) if checkpoint_dir else root / "checkpoint"
    trainer = Trainer(assembly, meta, {k: v.to(device) for k, v in taps.items()}, run.training, checkpoints,
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
