"""Batched guidance (SD3: ``[uncond, cond]`` in one transformer call) in the runtime, collection and both
training stages, and skip-layer guidance's extra calls, on a real tiny ``StableDiffusion3Pipeline``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from lesa_core import attach
from lesa_core.errors import ForwardInputError, TrainingError
from lesa_core.interfaces import StepEvent
from lesa_core.testing.tiny import tiny_sd3_pipeline
from lesa_core.trainer import PipelineRunner, TrajectoryStore, train
from lesa_core.trainer.rollout import ForecastSample, ReplayRollout

pytestmark = pytest.mark.integration

STEPS = 8
SCALE = 4.0
PROMPTS = ["a red square", "a blue circle", "a green cross"]
CONFIG: dict[str, Any] = {
    "predictor": {"name": "kan", "taps": [3, 4, 4], "hidden": [8, 8]},
    "policy": {"name": "interval", "interval": 3, "warmup": 2, "force_full": []},
    "training": {
        "num_steps": STEPS,
        "seed": 1,
        "token_subsample": None,  # every token: the collection is compared with the uncached run's taps
        "stage1": {"epochs": 2, "batch_size": 2, "lr": 0.003},
        "stage2": {"epochs": 1, "batch_size": 2, "lr": 0.001},
    },
}


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test here runs on one torch thread."""


@pytest.fixture(scope="module")
def pipe():
    return tiny_sd3_pipeline()


def _runner(pipe, **extra: Any) -> PipelineRunner:
    return PipelineRunner(
        pipe, height=16, width=16, max_sequence_length=16, guidance_scale=SCALE, negative_prompt="", **extra
    )


def _vanilla_rows(pipe, prompt: str, seed: int) -> list[torch.Tensor]:
    """The real tap input of the transformer's output norm (the ``hidden`` tap) at every step, both rows."""
    taps: list[torch.Tensor] = []
    hook = pipe.transformer.norm_out.register_forward_pre_hook(
        lambda m, args: taps.append(args[0].detach().clone())
    )
    try:
        _runner(pipe).run([prompt], [seed], STEPS)
    finally:
        hook.remove()
    return taps


def test_collection_keeps_both_guidance_rows_as_trajectories(pipe, tmp_path: Path) -> None:
    from lesa_core.trainer import collect_trajectories

    meta = collect_trajectories(
        pipe, CONFIG, PROMPTS[:2], runner=_runner(pipe), data_dir=tmp_path, show_progress=False
    )
    taps = TrajectoryStore(tmp_path / "trajectories").load()
    assert sorted(taps) == ["cond", "uncond"]
    assert taps["cond"].shape[:2] == taps["uncond"].shape[:2] == (2, STEPS)
    for p in range(2):
        vanilla = _vanilla_rows(pipe, PROMPTS[p], meta.seed + p)
        for s in range(STEPS):  # row 0 of the call is uncond, row 1 cond (the pipeline's order)
            torch.testing.assert_close(taps["uncond"][p, s], vanilla[s][0])
            torch.testing.assert_close(taps["cond"][p, s], vanilla[s][1])
        assert not torch.allclose(taps["cond"][p], taps["uncond"][p])


def test_batched_training_trains_each_row_on_its_own_target(pipe, tmp_path: Path, monkeypatch) -> None:
    """Stage 2 with two prompts per rollout (four rows per call): every forecast sample holds the rows of
    one guidance branch, paired with that branch's ground truth; nothing is broadcast."""
    seen: list[tuple[str, int, ForecastSample]] = []
    original = ReplayRollout._sample

    def spy(self: ReplayRollout, event: StepEvent) -> ForecastSample:
        sample = original(self, event)
        seen.append(
            (event.context, event.step_index, ForecastSample(sample.inputs, sample.target))
        )  # replay merges
        return sample

    monkeypatch.setattr(ReplayRollout, "_sample", spy)
    bundle, report = train(
        pipe,
        CONFIG,
        PROMPTS,
        runner=_runner(pipe),
        out=tmp_path / "bundle",
        data_dir=tmp_path / "data",
        show_progress=False,
    )
    taps = TrajectoryStore(tmp_path / "data" / "trajectories").load()
    assert len(report.losses["stage1"]) == 2 and len(report.losses["stage2"]) == 1
    assert {ctx for ctx, _, _ in seen} == {"cond", "uncond"}
    first_forecast = min(step for _, step, _ in seen)
    for ctx, step, sample in seen:
        rows = sample.target.shape[0]
        assert rows in (1, 2) and sample.inputs.features[-1].shape == sample.target.shape
        matches = [p for p in range(len(PROMPTS)) if torch.equal(taps[ctx][p, step], sample.target[0])]
        assert matches, (ctx, step)  # the target is this branch's own ground truth
        other = "uncond" if ctx == "cond" else "cond"
        assert not torch.equal(taps[other][matches[0], step], sample.target[0])
        if step == first_forecast:  # no forecast yet: the history is this branch's real features
            torch.testing.assert_close(
                sample.inputs.features[-1][0], taps[ctx][matches[0], step - 1], rtol=1e-4, atol=1e-4
            )
    runs: list[int] = []  # body runs, counted inside the first block (a passed-through block is still called)
    hook = pipe.transformer.transformer_blocks[0].attn.register_forward_pre_hook(lambda m, a: runs.append(1))
    try:
        with attach(pipe, str(bundle)) as handle:
            _runner(pipe).run(PROMPTS[:1], [0], STEPS)
            stats = handle.stats()
    finally:
        hook.remove()
    assert stats["default"]["row_groups"] == ["uncond", "cond"]
    assert (
        stats["default"]["decisions"] == "FFccFccF" and stats["default"]["full_steps"] == 4 and len(runs) == 4
    )


def test_stage2_batch_of_one_works_without_broadcasting(pipe, tmp_path: Path) -> None:
    config = {
        **CONFIG,
        "training": {
            **CONFIG["training"],
            "stage1": {"epochs": 1, "batch_size": 2, "lr": 0.003},
            "stage2": {"epochs": 1, "batch_size": 1, "lr": 0.001},
        },
    }
    _, report = train(
        pipe,
        config,
        PROMPTS[:2],
        runner=_runner(pipe),
        out=tmp_path / "bundle",
        data_dir=tmp_path / "data",
        show_progress=False,
    )
    assert len(report.losses["stage2"]) == 1 and report.losses["stage2"][0] > 0


def test_inference_with_n_1_is_exact_with_batched_guidance(pipe) -> None:
    runner = _runner(pipe, output_type="latent")
    vanilla = runner.run(PROMPTS[:1], [5], STEPS).images
    config = {"predictor": {"name": "taylor", "order": 1}, "policy": {"name": "interval", "interval": 1}}
    with attach(pipe, config) as handle:
        cached = runner.run(PROMPTS[:1], [5], STEPS).images
        stats = handle.stats()["default"]
    assert (
        torch.equal(vanilla, cached)
        and stats["full_steps"] == STEPS
        and stats["row_groups"] == ["uncond", "cond"]
    )
    assert torch.equal(runner.run(PROMPTS[:1], [5], STEPS).images, vanilla)  # and after remove()


def test_skip_layer_guidance_gets_its_own_context(pipe) -> None:
    runner = _runner(
        pipe, skip_guidance_layers=[0], skip_layer_guidance_start=0.0, skip_layer_guidance_stop=0.5
    )
    vanilla = runner.run(PROMPTS[:1], [2], STEPS).images
    with attach(pipe, {"policy": {"name": "interval", "interval": 1}}) as handle:
        exact = runner.run(PROMPTS[:1], [2], STEPS).images
        stats = handle.stats()
    assert torch.equal(vanilla, exact)
    assert stats["default"]["full_steps"] == STEPS  # the main trajectory counts only its own calls
    assert stats["skip_layers"]["full_steps"] == 3  # steps 1, 2, 3 (0 < i < 0.5 * 8)
    with attach(
        pipe, {"policy": {"name": "interval", "interval": 3, "warmup": 2, "force_full": []}}
    ) as handle:
        runner.run(PROMPTS[:1], [2], STEPS)
        stats = handle.stats()
    assert stats["default"]["decisions"] == "FFccFccF" and stats["skip_layers"]["decisions"] == "FFc"


def test_skip_layer_guidance_skipping_the_tapped_block_is_a_clear_error(pipe) -> None:
    runner = _runner(
        pipe, skip_guidance_layers=[1], skip_layer_guidance_start=0.0, skip_layer_guidance_stop=0.5
    )
    with (
        attach(pipe, {"policy": {"name": "interval", "interval": 3}}),
        pytest.raises(ForwardInputError, match=r"skip_guidance_layers.*choose a tap after the body"),
    ):
        runner.run(PROMPTS[:1], [2], STEPS)
    with attach(pipe, {"tap": "normed", "policy": {"name": "interval", "interval": 3}}) as handle:
        runner.run(PROMPTS[:1], [2], STEPS)
    assert handle.stats()["skip_layers"]["full_steps"] >= 1


def test_training_refuses_before_collection(pipe, tmp_path: Path) -> None:
    unscaled = PipelineRunner(pipe, height=16, width=16, max_sequence_length=16)  # SD3 guides by default
    cases = [
        (_runner(pipe, skip_guidance_layers=[0]), {}, r"skip_guidance_layers"),
        (
            unscaled,
            {"tap": "normed", "training": {**CONFIG["training"], "loss": "latent"}},
            r"the sampling call names none .* set guidance_scale",
        ),
        (
            _runner(pipe),
            {"tap": "output", "training": {**CONFIG["training"], "loss": "latent"}},
            r"channels-first model output; use a token tap with an output head \(normed\)",
        ),
        (
            _runner(pipe),
            {"tap": "output", "training": {**CONFIG["training"], "token_subsample": 8}},
            r"token_subsample needs a \(batch, tokens, channels\) tap",
        ),
    ]
    for i, (runner, change, message) in enumerate(cases):
        with pytest.raises(TrainingError, match=message):
            train(
                pipe,
                {**CONFIG, **change},
                PROMPTS,
                runner=runner,
                out=tmp_path / f"b{i}",
                data_dir=tmp_path / f"d{i}",
                show_progress=False,
            )
        assert not (tmp_path / f"d{i}").exists()


def test_latent_loss_trains_on_batched_guidance(pipe, tmp_path: Path) -> None:
    config = {
        **CONFIG,
        "tap": "normed",
        "training": {
            **CONFIG["training"],
            "loss": "latent",
            "token_subsample": 64,
            "stage2": {"epochs": 1, "batch_size": 2, "lr": 0.001},
        },
    }
    _, report = train(
        pipe,
        config,
        PROMPTS[:2],
        runner=_runner(pipe),
        out=tmp_path / "bundle",
        data_dir=tmp_path / "data",
        show_progress=False,
    )
    assert len(report.losses["stage1"]) == 2 and all(torch.isfinite(torch.tensor(report.losses["stage2"])))


def test_two_calls_per_step_in_one_context_are_a_clear_error() -> None:
    """A pipeline calling the transformer twice per step in one context (a second pass the adapter does not
    declare) would mix two trajectories; the runtime says so instead of counting 2 S steps."""
    from lesa_core.testing.tiny import tiny_sd3_transformer, transformer_inputs

    model = tiny_sd3_transformer()
    inputs = transformer_inputs(model, batch=1, height=8, width=8)
    with (
        attach(model, {"policy": {"name": "interval", "interval": 3}}),
        torch.no_grad(),
        pytest.raises(ForwardInputError, match=r"more than once per step in one context"),
    ):
        for i in range(4):
            timestep = torch.full((1,), 1000.0 * (1 - i / 4))
            model(**{**inputs, "timestep": timestep})
            model(**{**inputs, "timestep": timestep})  # the undeclared second pass
