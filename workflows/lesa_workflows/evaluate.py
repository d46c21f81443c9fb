"""Side-by-side evaluation of caching methods on one pipeline, against its own full compute.

Every method samples the same prompts with the same seeds. ``full`` runs the real model at every
step (its taps are recorded as the ground truth of the per-step error); every other method runs with
LESA attached. Reported per method: full passes, seconds (wall clock of the whole sampling loop),
speed-up over ``full``, PSNR and SSIM of the decoded images against ``full``'s (for a video pipeline's
``.frames``: over all frames, and PSNR per frame), prompt adherence
(when the model source has a scorer), and the per-step relative error of the tap.

**Timing is interleaved**, as in ``lesa bench --speed``: batch after batch, every method samples that
batch in turn (the order rotated from batch to batch), after one untimed warm-up call. A method's seconds
are thus measured under the same machine load as the others' — timed one method after another, a load
that comes or goes in between once made ``lesa`` look 8.98× faster at 10 of 50 full passes, where at
most 5× is possible.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from lesa_core.assembly import assemble, find_transformer
from lesa_core.interfaces import AlwaysCompute, Decision, PluginConfig, StepEvent
from lesa_core.interfaces.model import ModelSource
from lesa_core.metrics import to_uint8
from lesa_core.progress import progress_bar
from lesa_core.replay import EVALUATION_REPLAY_BYTES, FullStepReplay
from lesa_core.run import ConfigLike, ResolvedRun
from lesa_core.trainer.runner import PipelineRunner
from lesa_workflows.video import output_pixels, per_sample_quality


@runtime_checkable
class ExternalMethod(Protocol):
    """A method that is not LESA (a diffusers or cache-dit cache): :func:`evaluate` calls ``attach`` on the
    transformer before each batch and the returned function after it. It has no per-step tap error, and
    its ``full_passes`` are its full-pass equivalents."""

    def attach(self, transformer: Any) -> Callable[[], None]: ...


@dataclass
class EvaluatedMethod:
    """One method's numbers and outputs.

    :ivar full_passes: full steps per trajectory as LESA counts them (for an :class:`ExternalMethod`, its
        full-pass equivalents).
    :ivar full_pass_equivalents: the body blocks the method really ran, in full passes per trajectory:
        ``steps × (block computations) / (the reference's)`` — counted on each body block's first linear
        layer (attention ``to_q`` where there is one), so a block that a cache skips or passes through is not
        counted and one that always runs (FirstBlockCache's first block) is. ``None`` when the adapter does
        not list its blocks.
    :ivar images: the decoded outputs in [0, 1]: images ``(B, C, H, W)`` or videos ``(B, F, C, H, W)``.
    :ivar psnr_per_frame: for videos, the PSNR of each frame index against ``full``, averaged over the videos.
    """

    name: str
    full_passes: float
    seconds: float
    images: Tensor
    step_error: list[float] = field(default_factory=list)
    psnr_per_image: list[float] = field(default_factory=list)
    psnr_per_frame: list[float] = field(default_factory=list)
    psnr: float = float("nan")
    ssim: float = float("nan")
    adherence: float | None = None
    speedup: float = 1.0
    full_pass_equivalents: float | None = None

    def row(self) -> dict[str, Any]:
        return {"name": self.name, "full_passes": self.full_passes, "psnr": round(self.psnr, 3),
                "ssim": round(self.ssim, 4), "adherence": None if self.adherence is None else round(self.adherence, 4),
                "seconds": round(self.seconds, 3), "speedup": round(self.speedup, 3),
                "full_pass_equivalents": None if self.full_pass_equivalents is None
                else round(self.full_pass_equivalents, 3)}

    @property
    def cost(self) -> float:
        """The method's compute in full passes per trajectory: the blocks counted when they were (a probe's
        blocks on forecast steps included), else the full steps."""
        return self.full_passes if self.full_pass_equivalents is None else self.full_pass_equivalents


class _TapRecorder:
    def __init__(self) -> None:
        self.taps: dict[int, Tensor] = {}
        self.decisions: list[Decision] = []

    def __call__(self, event: StepEvent) -> None:
        if event.context not in ("cond", "default"):
            return
        self.taps[event.step_index] = event.tap.detach().float().cpu()
        self.decisions.append(event.decision)


def _step_errors(taps: dict[int, Tensor], ref: dict[int, Tensor]) -> list[float]:
    """Relative error ``||tap - ref|| / ||ref||`` at every step."""
    return [float((taps[s] - ref[s]).norm() / ref[s].norm().clamp_min(1e-12)) for s in sorted(taps)]


class BlockCounter:
    """Counts the body blocks' real computations (module docstring of :class:`EvaluatedMethod`)."""

    def __init__(self, blocks: Sequence[Any]) -> None:
        self.calls = 0
        self._handles = []
        for block in blocks:
            attn = getattr(block, "attn", None)
            probe = getattr(attn, "to_q", None) if attn is not None else None
            if probe is None:
                probe = next((m for m in block.modules() if isinstance(m, torch.nn.Linear)), None)
            if probe is not None:
                self._handles.append(probe.register_forward_hook(self._count))

    def _count(self, *args: Any) -> None:
        self.calls += 1

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


def _images(output: Any) -> Tensor:
    """The output's pixels as floats in [0, 1]: images ``(B, C, H, W)`` or video frames ``(B, F, C, H, W)``."""
    images = output_pixels(output)
    if isinstance(images, Tensor):
        return images.float().cpu()
    import numpy as np

    return torch.from_numpy(np.stack([np.asarray(img) for img in images])).permute(0, 3, 1, 2).float() / 255


def evaluate(
    pipe: Any,
    methods: dict[str, ConfigLike | ResolvedRun | ExternalMethod | None],
    prompts: Sequence[str],
    seeds: Sequence[int],
    *,
    num_steps: int,
    call_kwargs: dict[str, Any] | None = None,
    source: ModelSource | None = None,
    batch_size: int = 8,
    show_progress: bool = True,
    reference_tap: str | None = None,
    quality_only: bool = False,
) -> list[EvaluatedMethod]:
    """Sample ``prompts`` with every method, interleaved batch by batch (module docstring), and compare
    against ``full`` (a ``None`` config).

    :param methods: name → run config / bundle, or an :class:`ExternalMethod`; ``None`` means full compute
        (the reference).
    :param reference_tap: the tap the full-compute run records for the per-step error (default: the
        adapter's); methods forecasting another tap get no per-step error.
    :param quality_only: the LESA methods share one :class:`~lesa_core.replay.FullStepReplay`, so the full
        steps before a trajectory's first forecast — the same for every method on a batch — are computed
        once; the images are the same bits, and the cost is not measured: every method but the reference
        reports ``seconds`` and ``speedup`` NaN and no ``full_pass_equivalents``.
    """
    transformer = find_transformer(pipe)
    runner = PipelineRunner(pipe, **{**(call_kwargs or {}), "output_type": "pt"})
    reference_name = next((n for n, c in methods.items() if c is None), None)
    if reference_name is None:
        raise ValueError("evaluate() needs a full-compute method (a None config) as the reference")
    order = [reference_name, *[n for n in methods if n != reference_name]]
    external = {name: m for name, m in methods.items() if isinstance(m, ExternalMethod)}
    bases = {name: assemble(transformer, methods[name] if methods[name] is not None else {"tap": reference_tap})
             for name in order if name not in external}
    ref_tap = bases[reference_name].tap
    body_blocks = getattr(bases[reference_name].adapter, "body_blocks", None)
    counter = BlockCounter(body_blocks()) if callable(body_blocks) else None
    block_calls = dict.fromkeys(order, 0)
    images: dict[str, list[Tensor]] = {name: [] for name in order}
    seconds = dict.fromkeys(order, 0.0)
    passes: dict[str, list[int]] = {name: [] for name in order}
    errors: dict[str, list[list[float]]] = {name: [] for name in order}
    replay = FullStepReplay(max_bytes=EVALUATION_REPLAY_BYTES) if quality_only else None
    if prompts:  # warm-up (untimed): the first call pays one-time costs no method should be charged
        runner.run([prompts[0]], [seeds[0]], min(num_steps, 2))
    bar = progress_bar(total=len(order) * len(prompts), desc="evaluate", unit="image", disable=not show_progress)
    for b, start in enumerate(range(0, len(prompts), batch_size)):
        batch = list(prompts[start:start + batch_size])
        batch_seeds = list(seeds[start:start + batch_size])
        rotation = order[b % len(order):] + order[:b % len(order)]
        waiting: dict[str, dict[int, Tensor]] = {}  # taps of methods that ran before this batch's reference
        ref: dict[int, Tensor] | None = None
        for name in rotation:
            config = methods[name]
            recorder = _TapRecorder()
            if name in external:
                detach = external[name].attach(transformer)
            else:
                base = bases[name]
                full = (lambda: AlwaysCompute(PluginConfig())) if config is None else None
                components = base.components(recorder, make_policy=full)
                if config is not None:  # the reference never forecasts: it would record every step
                    components = dataclasses.replace(components, replay=replay)
                detach = base.adapter.attach(components).remove
            calls_before = counter.calls if counter is not None else 0
            try:
                began = time.perf_counter()
                output = runner.run(batch, batch_seeds, num_steps)
                seconds[name] += time.perf_counter() - began
            finally:
                detach()
            if counter is not None:
                block_calls[name] += counter.calls - calls_before
            images[name].append(_images(output))
            passes[name].append(sum(d is Decision.COMPUTE for d in recorder.decisions))
            bar.update(len(batch))
            if name in external:
                continue
            if name == reference_name:
                ref = recorder.taps
                for other, taps in waiting.items():
                    errors[other].append(_step_errors(taps, ref))
                waiting.clear()
            elif bases[name].tap == ref_tap:  # a method forecasting another tap has no per-step error
                if ref is None:
                    waiting[name] = recorder.taps
                else:
                    errors[name].append(_step_errors(recorder.taps, ref))
    bar.close()
    if counter is not None:
        counter.remove()
    results: dict[str, EvaluatedMethod] = {}
    for name in order:
        result = EvaluatedMethod(name, sum(passes[name]) / max(len(passes[name]), 1), seconds[name],
                                 torch.cat(images[name]))
        if counter is not None and block_calls[reference_name]:
            result.full_pass_equivalents = num_steps * block_calls[name] / block_calls[reference_name]
            if name in external:
                result.full_passes = result.full_pass_equivalents
        if name == reference_name:
            result.step_error = [0.0] * num_steps
        elif errors[name]:
            result.step_error = [sum(col) / len(col) for col in zip(*errors[name], strict=True)]
        results[name] = result
    reference = results[reference_name]
    ref_u8 = to_uint8(reference.images)
    for result in results.values():
        test_u8 = to_uint8(result.images)
        per_image, per_image_ssim, per_frame = per_sample_quality(ref_u8, test_u8)
        result.psnr_per_image = [float(v) for v in per_image]
        result.psnr = float(per_image.mean())
        result.ssim = float(per_image_ssim.mean())
        result.psnr_per_frame = [] if per_frame is None else [float(v) for v in per_frame]
        result.speedup = reference.seconds / max(result.seconds, 1e-9)
        if quality_only and result is not reference:  # replayed steps cost nothing: no cost is measured
            result.seconds = result.speedup = math.nan
            result.full_pass_equivalents = None
        if source is not None:
            scores = source.score_adherence(result.images, list(prompts))
            result.adherence = None if scores is None else float(scores.float().mean())
    return [results[n] for n in order]
