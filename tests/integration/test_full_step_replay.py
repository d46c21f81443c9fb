"""Full steps handed back by input (``RuntimeComponents.replay``), on a real (tiny, offline) FluxPipeline with
true CFG: runs that differ only in the predictor compute their shared warm-up once, and every output stays
bit-identical to a run without the replay."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest
import torch

from lesa_core.assembly import assemble
from lesa_core.plugins import PluginHost
from lesa_core.replay import FullStepReplay, RecordedStep
from lesa_core.trainer import PipelineRunner
from lesa_core.trainer.selection import ClosedLoopValidator
from lesa_core.trainer.store import StoreMeta
from lesa_workflows.evaluate import evaluate

pytestmark = pytest.mark.integration

STEPS = 12
POLICY = {"name": "interval", "interval": 4, "warmup": 2, "force_full": []}  # FFcccFcccFcc: 2 steps before a forecast
CALL = {"height": 32, "width": 32, "max_sequence_length": 16, "true_cfg_scale": 3.0, "negative_prompt": ""}
PROMPTS = ["a red circle", "a blue square"]


@pytest.fixture
def pipe(four_block_pipe: Any, one_thread: None) -> Any:
    """The four-block tiny FLUX pipeline, on one torch thread (tiny models)."""
    return four_block_pipe


@pytest.fixture
def host(probe_plugin_host: PluginHost) -> PluginHost:
    return probe_plugin_host


def _run(predictor: dict[str, Any], tap: str = "normed") -> dict[str, Any]:
    return {"predictor": predictor, "tap": tap, "router": {"name": "threshold", "boundaries": []}, "policy": POLICY}


class BodyCalls:
    """How many times the transformer's first body block ran."""

    def __init__(self, pipe: Any) -> None:
        self.count = 0
        self.handle = pipe.transformer.transformer_blocks[0].register_forward_pre_hook(self._count)

    def _count(self, *_: Any) -> None:
        self.count += 1


def _sample(pipe: Any, host: PluginHost, run: dict[str, Any], replay: FullStepReplay | None,
            prompts: list[str] = PROMPTS, seed: int = 0) -> tuple[torch.Tensor, int, dict[str, Any]]:
    """The images of ``prompts`` with ``run`` attached (and ``replay``), how often the body ran, and the stats."""
    assembly = assemble(pipe.transformer, run, host=host)
    attachment = assembly.adapter.attach(dataclasses.replace(assembly.components(), replay=replay))
    calls = BodyCalls(pipe)
    try:
        generators = [torch.Generator().manual_seed(seed + i) for i in range(len(prompts))]
        images = pipe(prompts, num_inference_steps=STEPS, generator=generators, output_type="pt", **CALL).images
        stats = attachment.stats()
    finally:
        calls.handle.remove()
        attachment.remove()
    return images, calls.count, stats


@pytest.mark.parametrize("tap", ["normed", "output"])
def test_a_second_predictor_reuses_the_warm_up_and_samples_the_same_bits(pipe: Any, host: PluginHost,
                                                                         tap: str) -> None:
    replay = FullStepReplay()
    reuse, taylor = _run({"name": "taylor", "order": 0}, tap), _run({"name": "taylor", "order": 1}, tap)
    _sample(pipe, host, reuse, replay)  # records: 2 warm-up steps × 2 contexts
    assert (replay.hits, replay.misses, len(replay)) == (0, 4, 4)

    alone, alone_calls, alone_stats = _sample(pipe, host, taylor, None)
    replayed, replayed_calls, replayed_stats = _sample(pipe, host, taylor, replay)

    assert torch.equal(replayed, alone)
    assert replay.hits == 4 and alone_calls - replayed_calls == 4  # the warm-up of both contexts ran once
    assert replayed_stats["cond"]["decisions"] == alone_stats["cond"]["decisions"] == "FFcccFcccFcc"


@pytest.mark.parametrize(("prompts", "seed", "hits"), [
    (PROMPTS, 7, 0),  # other noise
    (PROMPTS[:1], 0, 0),  # another batch
    (["a green triangle", "a blue square"], 0, 1),  # other prompts: only uncond's first step has the same inputs
])
def test_only_exactly_the_same_inputs_are_matched(pipe: Any, host: PluginHost, prompts: list[str], seed: int,
                                                  hits: int) -> None:
    """Another seed, batch or prompt: only a step whose inputs are the same bytes is handed back, and the images
    are those of a run without replay."""
    replay = FullStepReplay()
    run = _run({"name": "taylor", "order": 1})
    _sample(pipe, host, run, replay)
    images, _, _ = _sample(pipe, host, run, replay, prompts, seed)
    assert torch.equal(images, _sample(pipe, host, run, None, prompts, seed)[0])
    assert replay.hits == hits


def test_a_probe_predictor_gets_the_recorded_probe(pipe: Any, host: PluginHost) -> None:
    """A probe forecaster reads the last full pass's probe: a replayed full step must hand it back too."""
    replay = FullStepReplay()
    run = _run({"name": "probe"}, tap="hidden")
    _sample(pipe, host, run, replay)
    alone, _, _ = _sample(pipe, host, run, None)
    replayed, _, _ = _sample(pipe, host, run, replay)
    assert replay.hits == 4 and torch.equal(replayed, alone)


def test_the_validator_scores_the_same_with_the_warm_up_computed_once(pipe: Any, host: PluginHost) -> None:
    """Closed-loop validation: every scoring after the first skips the warm-up, and each score is the one a
    fresh validator (nothing recorded) gives."""
    runner = PipelineRunner(pipe, **CALL)
    meta = StoreMeta(model_class="FluxTransformer2DModel", model_fingerprint="", tap="normed", num_steps=STEPS,
                     schedule=None, token_index=None, prompts=PROMPTS, seed=0, call=runner.settings)
    scores = {}
    for order in (0, 1, 2):
        assembly = assemble(pipe.transformer, _run({"name": "taylor", "order": order}), host=host)
        shared_validator = scores.setdefault("validator", ClosedLoopValidator(assembly, runner, meta, [0, 1]))
        fresh = ClosedLoopValidator(assembly, runner, meta, [0, 1])
        assert shared_validator.score(assembly.predictor) == fresh.score(assembly.predictor)
    assert scores["validator"].replay.hits == 2 * 4  # the second and third scorings: 2 steps × 2 contexts each


def test_validators_of_other_policies_may_share_one_replay(pipe: Any, host: PluginHost) -> None:
    """Two validators of one slice whose policies differ (the alternation's two pairs) share a replay: the
    second skips the steps both compute before a forecast, and each scores as a validator of its own does."""
    runner = PipelineRunner(pipe, **CALL)
    meta = StoreMeta(model_class="FluxTransformer2DModel", model_fingerprint="", tap="normed", num_steps=STEPS,
                     schedule=None, token_index=None, prompts=PROMPTS, seed=0, call=runner.settings)
    replay = FullStepReplay()
    later = {**POLICY, "warmup": 3}  # FFFcccFccc…: its first two steps are the other policy's warm-up
    for policy in (POLICY, later):
        assembly = assemble(pipe.transformer, {**_run({"name": "taylor", "order": 1}), "policy": policy}, host=host)
        shared = ClosedLoopValidator(assembly, runner, meta, [0, 1], replay=replay)
        assert shared.replay is replay
        assert shared.score(assembly.predictor) == ClosedLoopValidator(assembly, runner, meta, [0, 1]).score(
            assembly.predictor)
    assert replay.hits == 2 * 2  # the second validator: steps 0 and 1, 2 contexts each


def test_the_fingerprint_tells_every_input_apart() -> None:
    x = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    key = FullStepReplay.key(("cond", 0), (x,), {"t": torch.tensor(1.0), "flag": True})
    assert key == FullStepReplay.key(("cond", 0), (x.clone(),), {"flag": True, "t": torch.tensor(1.0)})
    flipped = x.clone()
    flipped.view(torch.int32)[1, 2] ^= 1  # one bit
    others = [
        (("cond", 0), (flipped,), {"t": torch.tensor(1.0), "flag": True}),
        (("uncond", 0), (x,), {"t": torch.tensor(1.0), "flag": True}),
        (("cond", 1), (x,), {"t": torch.tensor(1.0), "flag": True}),
        (("cond", 0), (x.double(),), {"t": torch.tensor(1.0), "flag": True}),
        (("cond", 0), (x.reshape(4, 3),), {"t": torch.tensor(1.0), "flag": True}),
        (("cond", 0), (x,), {"t": torch.tensor(1.0), "flag": False}),
        (("cond", 0), (x,), {"t": torch.tensor(1.0)}),
        (("cond", 0), (x.t(),), {"t": torch.tensor(1.0), "flag": True}),
    ]
    assert len({key, *(FullStepReplay.key(*o) for o in others)}) == len(others) + 1
    # views of any stride (a pipeline passes expanded timesteps) fingerprint as their values
    for view, value in ((torch.tensor(2.0).expand(1), torch.tensor([2.0])), (x[:, ::2], x[:, ::2].clone()),
                        (torch.tensor(3.0).expand(4), torch.full((4,), 3.0)), (torch.zeros(()), torch.zeros(()))):
        assert FullStepReplay.key((), (view,), {}) == FullStepReplay.key((), (value,), {})


def test_recording_stops_at_the_byte_limit() -> None:
    step = RecordedStep(torch.zeros(10), torch.zeros(5))  # 60 bytes
    replay = FullStepReplay(max_bytes=100)
    replay.put("a", step)
    replay.put("b", step)  # would hold 120 bytes
    assert len(replay) == 1 and replay.nbytes == 60
    assert replay.get("a") is step and replay.get("b") is None and (replay.hits, replay.misses) == (1, 1)


def test_a_quality_only_evaluation_gives_the_same_images_and_no_cost(pipe: Any) -> None:
    """``evaluate(quality_only=True)`` (the zoo bench): the LESA methods share their warm-up, every image is the
    one the timed evaluation samples, and no seconds, speed-up or full-pass equivalents are claimed."""
    methods = {"full": None, **{f"taylor{o}": _run({"name": "taylor", "order": o}) for o in (0, 1)}}
    kwargs = {"num_steps": STEPS, "call_kwargs": CALL, "show_progress": False, "batch_size": 2}
    calls = BodyCalls(pipe)
    try:
        timed = {r.name: r for r in evaluate(pipe, methods, PROMPTS * 2, [0, 1, 2, 3], **kwargs)}
        timed_calls = calls.count
        shared = {r.name: r for r in evaluate(pipe, methods, PROMPTS * 2, [0, 1, 2, 3], quality_only=True, **kwargs)}
    finally:
        calls.handle.remove()
    # per batch of 2 prompts, the second LESA method gets the first's 2 warm-up steps × 2 contexts: 2 batches
    assert timed_calls - (calls.count - timed_calls) == 2 * 4
    for name in methods:
        assert torch.equal(shared[name].images, timed[name].images), name
        assert shared[name].psnr_per_image == timed[name].psnr_per_image
        assert shared[name].full_passes == timed[name].full_passes
    assert shared["full"].seconds > 0 and shared["full"].full_pass_equivalents == timed["full"].full_pass_equivalents
    assert all(math.isnan(shared[n].seconds) and shared[n].full_pass_equivalents is None for n in ("taylor0", "taylor1"))
