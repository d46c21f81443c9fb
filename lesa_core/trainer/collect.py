"""Collection: full-compute sampling over a prompt set, the tap captured at every step.

The runtime is attached with a policy that computes every step and an observer that records the tap
and t; each prompt's trajectory is written as one shard (see :mod:`lesa_core.trainer.store`), one tensor
per context, with the prompt's final output in the form validation scores it (uint8 images with a
pipeline: the validation slice's full-compute reference, which the trainer then does not sample
again). A pipeline that batches its guidance branches in one call (SD3: ``[uncond, cond]``) is
reported by the runtime as one context per branch (see ``BackboneAdapter.batched_guidance``), so every
row is kept, as a trajectory of its own; a call recording more rows than it has prompts is refused.

**Prompts are sampled in fixed groups** of ``training.collect_batch`` (B, default 4): group k is the prompts
``[kB, (k + 1)B)``, one pipeline call each. Sampled in a batch, a prompt's floats depend in the last bits
on its batch-mates (the kernels block a batch differently); with groups fixed by the prompt list, every
shard is a function of its group's prompts and seeds and the store's identity only, so a collection
resumed after a kill (which samples again every group with a shard missing), or split over another
number of ranks (rank r collects the groups ``k % world_size == r``), is byte-identical to an
uninterrupted one. The store records B once its first shard is written, and a resumed collection uses
the store's. A batch of 4 costs per prompt 0.78–0.82× of one prompt per call on the FLUX-class embedded
model and 0.43× on the Qwen-class one (one CPU thread per process; docs/training.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from lesa_core import distributed
from lesa_core.assembly import Binding
from lesa_core.errors import TrainingError
from lesa_core.interfaces import (
    AlwaysCompute,
    ForecastInput,
    PluginConfig,
    Predictor,
    RuntimeComponents,
    StepEvent,
)
from lesa_core.interfaces.predictor import PredictorConfig
from lesa_core.progress import progress_bar
from lesa_core.trainer.runner import TrajectoryRunner, sample_scored
from lesa_core.trainer.store import StoreMeta, TrajectoryStore


class _CollectionOnly(Predictor):
    """Stands in for the run's predictor while collecting (every step computes; nothing is forecast); for a
    run whose predictor reads a probe it asks for the same probe point, so that every step records it."""

    def __init__(self, probe_blocks: int | None = None) -> None:
        super().__init__(PredictorConfig())
        self._probe_blocks = probe_blocks

    @property
    def history_size(self) -> int:
        return 1

    @property
    def uses_probe(self) -> bool:
        return self._probe_blocks is not None

    @property
    def probe_blocks(self) -> int | None:
        return self._probe_blocks

    def forward(self, inputs: ForecastInput) -> Tensor:
        raise AssertionError("collection never forecasts")


@dataclass
class _Recorder:
    """Observer that keeps every step's tap and time, per cache context."""

    taps: dict[str, list[Tensor]] = field(default_factory=dict)
    times: dict[str, list[float]] = field(default_factory=dict)
    probes: dict[str, list[Tensor]] = field(default_factory=dict)

    def __call__(self, event: StepEvent) -> None:
        self.taps.setdefault(event.context, []).append(event.tap.detach().to("cpu", torch.float32))
        if event.probe is not None:
            self.probes.setdefault(event.context, []).append(event.probe.detach().to("cpu", torch.float32))
        self.times.setdefault(event.context, []).append(float(event.t.reshape(-1)[0]))


def probe_point(binding: Binding) -> int | None:
    """k, the body blocks whose output a collection records as the probe, when the run's predictor reads
    one (its config's ``probe_blocks``, else the adapter's declared probe point); ``None`` otherwise."""
    plugins = binding.run.plugins
    if not plugins.predictor_cls.reads_probe(plugins.predictor_config):
        return None
    requested = getattr(plugins.predictor_config, "probe_blocks", None)
    return int(requested) if requested is not None else int(binding.adapter.probe_blocks)


def _rows(per_context: dict[str, Tensor], row: int, token_index: list[int] | None) -> dict[str, Tensor]:
    """Row ``row`` of every context's ``(S, B, N, ...)`` stack, restricted to the kept tokens."""
    out = {}
    for ctx, stacked in per_context.items():
        one = stacked[:, row]
        out[ctx] = one if token_index is None else one[:, token_index]
    return out


def _output_row(output: Tensor | None, row: int, rows: int) -> Tensor | None:
    """Row ``row`` of a call's output, or ``None`` when the runner returned none or not one row per prompt."""
    if output is None or output.ndim < 1 or output.shape[0] != rows:
        return None
    return output[row]


def fixed_groups(num_prompts: int, size: int) -> list[list[int]]:
    """The prompts ``[kB, (k + 1)B)`` for every k (the last group may be shorter)."""
    return [list(range(start, min(start + size, num_prompts))) for start in range(0, num_prompts, size)]


def choose_token_index(num_tokens: int, keep: int | None, seed: int) -> list[int] | None:
    """A fixed random subset of ``keep`` token positions (sorted), or ``None`` for all."""
    if keep is None or keep >= num_tokens:
        return None
    gen = torch.Generator().manual_seed(seed)
    return sorted(torch.randperm(num_tokens, generator=gen)[:keep].tolist())


def check_recorded(per_context: dict[str, Tensor], num_steps: int, rows: int) -> None:
    """Every context recorded ``num_steps`` steps of exactly ``rows`` trajectories, ``(S, rows, ...)``.

    :raises TrainingError: for another step count (the pipeline's own ``num_inference_steps``, or extra calls on
        some steps) or batch (a pipeline batching its guidance branches in a way the adapter does not declare).
    """
    for ctx, stacked in per_context.items():
        if stacked.shape[0] != num_steps:
            raise TrainingError(f"context '{ctx}' recorded {stacked.shape[0]} steps, expected {num_steps}; the "
                                "pipeline ran another step count, or extra calls on some steps — remove "
                                "num_inference_steps and options such as skip-layer guidance from its call arguments "
                                "(training.num_steps sets the step count)")
        if stacked.ndim < 2 or stacked.shape[1] != rows:
            batch = stacked.shape[1] if stacked.ndim > 1 else 0
            raise TrainingError(
                f"context '{ctx}' recorded taps of {batch} rows for {rows} prompt(s) per call: the pipeline batches "
                "something the adapter does not declare (guidance branches concatenated along the batch: declare "
                "`batched_guidance` on the adapter; several images per prompt: remove num_images_per_prompt) — no "
                "row is dropped silently")


def collect(
    binding: Binding,
    runner: TrajectoryRunner,
    store: TrajectoryStore,
    prompts: Sequence[str],
    *,
    num_steps: int,
    seed: int = 0,
    token_subsample: int | None = None,
    rank: int | None = None,
    world_size: int | None = None,
    show_progress: bool = True,
    before_each: Callable[[int, int], None] | None = None,
    collect_batch: int = 1,
) -> StoreMeta:
    """Collect the full-compute trajectory of every prompt not yet in ``store``, ``collect_batch`` prompts per
    pipeline call in fixed groups (see the module docstring; a store begun with another group size keeps its own).

    Prompt ``i`` uses seed ``seed + i``. ``before_each(done, remaining)`` is called before each group, with
    prompt counts (the trainer checks the free disk space there). With ``world_size > 1`` this process
    collects the groups ``k % world_size == rank``; ``rank`` and ``world_size`` default to the initialised
    process group's (see :mod:`lesa_core.distributed`), else 0 and 1. Under a process group, rank 0 creates
    the store before the others open it, and every rank waits at a barrier for the whole collection before
    the store's metadata (with the schedule filled in) is read and returned.
    """
    rank = distributed.rank() if rank is None else rank
    world_size = distributed.world_size() if world_size is None else world_size
    group = distributed.is_distributed()
    probe_blocks = probe_point(binding)
    meta = StoreMeta(
        model_class=binding.adapter.model_class(), model_fingerprint=binding.adapter.fingerprint(),
        tap=binding.tap, num_steps=num_steps, schedule=None, token_index=None, prompts=list(prompts),
        seed=seed, call=runner.settings, token_subsample=token_subsample, probe_blocks=probe_blocks,
        collect_batch=collect_batch,
    )
    if group and rank != 0:
        distributed.barrier()  # rank 0 creates store.json first: no two ranks race to create it
    store.open(meta)
    if group and rank == 0:
        distributed.barrier()
    current = store.read_meta()
    assert current is not None
    if current.collect_batch != collect_batch and not any(store.has(i) for i in range(len(prompts))):
        if group:
            distributed.barrier()  # every rank has looked before rank 0 changes it
        if rank == 0:  # nothing collected yet (e.g. the first group ran out of memory): the new size applies
            store.update_meta(collect_batch=collect_batch)
        if group:
            distributed.barrier()
        current = store.read_meta()
        assert current is not None
    groups = fixed_groups(len(prompts), current.collect_batch)
    mine = [group for k, group in enumerate(groups) if k % world_size == rank]
    missing = {i for group in mine for i in group if not store.has(i)}  # each shard checked once
    todo_groups = [group for group in mine if missing.intersection(group)]
    components = RuntimeComponents(
        predictor=_CollectionOnly(probe_blocks), make_policy=lambda: AlwaysCompute(PluginConfig()),
        router=binding.run.plugins.router, tap=binding.tap, guard_non_finite=False,
    )
    token_index = current.token_index
    schedule = current.schedule
    total = sum(len(group) for group in todo_groups)
    bar = progress_bar(total=total, desc="collect", unit="prompt", disable=not show_progress or rank != 0)
    done = 0
    for batch in todo_groups:  # a whole fixed group per call: a trajectory depends on its group only
        if before_each is not None:
            before_each(done, total - done)
        recorder = _Recorder()
        attachment = binding.adapter.attach(RuntimeComponents(**{**components.__dict__, "observer": recorder}))
        try:
            with torch.no_grad():
                output = sample_scored(runner, [prompts[i] for i in batch], [seed + i for i in batch], num_steps,
                                       required=False)
        except torch.OutOfMemoryError:
            if len(batch) == 1:
                raise
            raise TrainingError(
                f"out of memory sampling {len(batch)} prompts in one call during collection; set "
                "training.collect_batch lower (e.g. 1) — shards already written are kept, and a store that holds "
                "none yet takes the new size (one that does keeps its own: collect into a new data_dir)") from None
        finally:
            attachment.remove()
        per_context = {ctx: torch.stack(taps) for ctx, taps in recorder.taps.items()}  # (S, B, ...)
        check_recorded(per_context, num_steps, len(batch))
        probes = {ctx: torch.stack(probe) for ctx, probe in recorder.probes.items()}  # (S, B, ...)
        if probe_blocks is not None:
            check_recorded(probes, num_steps, len(batch))
        if schedule is None:
            times = next(iter(recorder.times.values()))
            schedule = [*times, 0.0]
            if token_subsample is not None:
                sample = next(iter(per_context.values()))
                if sample.ndim != 4:
                    raise TrainingError(f"training.token_subsample needs a (batch, tokens, channels) tap, and tap "
                                        f"'{binding.tap}' is {tuple(sample.shape[1:])}; remove token_subsample "
                                        "or choose a token tap")
                token_index = choose_token_index(sample.shape[2], token_subsample, seed)
            store.update_meta(schedule=schedule, token_index=token_index)
        for b, i in enumerate(batch):
            if i in missing:  # a shard of the group that a killed run already wrote is the same bytes
                store.write(i, _rows(per_context, b, token_index), prompts[i], _rows(probes, b, token_index),
                            output=_output_row(output, b, len(batch)))
        done += len(batch)
        bar.update(len(batch))
    bar.close()
    if group:
        distributed.barrier()  # every rank's shards (and the schedule) are on disk
    final = store.read_meta()
    assert final is not None
    return final

