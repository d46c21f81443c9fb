"""Trainer building blocks: trajectory store, pickle-free checkpoints, history selection."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lesa_core.errors import TrainingError
from lesa_core.interfaces import Decision
from lesa_core.trainer.checkpoint import TrainState, load_checkpoint, run_key, save_checkpoint
from lesa_core.trainer.losses import guidance_weights, guided_error, steps_of
from lesa_core.trainer.schedule import forecast_spans, history_indices
from lesa_core.trainer.store import StoreMeta, TrajectoryStore


def _meta(**kw) -> StoreMeta:
    fields = dict(model_class="m.M", model_fingerprint="f" * 16, tap="hidden", num_steps=4, schedule=None,
                  token_index=None, prompts=["a", "b", "c"], seed=0, call={"height": 64})
    fields.update(kw)
    return StoreMeta(**fields)  # type: ignore[arg-type]


def test_store_round_trip_and_resume(tmp_path: Path) -> None:
    store = TrajectoryStore(tmp_path / "s")
    store.open(_meta())
    taps = {i: torch.randn(4, 5, 3) for i in range(3)}
    store.write(0, {"cond": taps[0]}, "a")
    store.write(2, {"cond": taps[2]}, "c")
    assert [store.has(i) for i in range(3)] == [True, False, True]
    with pytest.raises(TrainingError, match="1 of 3 trajectories are missing"):
        store.load()
    store.write(1, {"cond": taps[1]}, "b")
    loaded = store.load()["cond"]
    assert loaded.shape == (3, 4, 5, 3)
    assert torch.equal(loaded[1], taps[1])
    assert not [p for p in store.root.iterdir() if p.name.startswith(".")], "no temporary files left"


def test_store_keeps_outputs_and_gives_none_for_a_store_without_them(tmp_path: Path) -> None:
    store = TrajectoryStore(tmp_path / "s")
    store.open(_meta())
    images = torch.randint(0, 256, (3, 3, 8, 8), dtype=torch.uint8)
    for i, name in enumerate("abc"):
        store.write(i, {"cond": torch.randn(4, 5, 3)}, name, output=images[i])
    assert torch.equal(store.load_outputs([2, 0]), images[[2, 0]])  # in the order asked
    assert store.load()["cond"].shape == (3, 4, 5, 3)  # the output is not a tap
    store.write(1, {"cond": torch.randn(4, 5, 3)}, "b")  # a shard written without one (an older store)
    assert store.load_outputs([0, 1]) is None and store.load_outputs([0, 2]) is not None
    store.write(2, {"cond": torch.randn(4, 5, 3)}, "c", output=torch.full((3, 8, 8), float("nan")))
    assert store.load_outputs([2]) is None  # not finite: the trainer samples the reference instead


def test_store_refuses_another_collection(tmp_path: Path) -> None:
    store = TrajectoryStore(tmp_path / "s")
    store.open(_meta())
    store.open(_meta())  # same collection: fine
    with pytest.raises(TrainingError, match="differs in: prompts, tap"):
        store.open(_meta(tap="output", prompts=["x"]))


def test_damaged_shard_is_recollected(tmp_path: Path) -> None:
    store = TrajectoryStore(tmp_path / "s")
    store.open(_meta())
    store.write(0, {"cond": torch.zeros(4, 2, 2)}, "a")
    store.shard_path(0).write_bytes(b"\x00garbage")
    assert not store.has(0)
    assert not store.shard_path(0).exists()


def test_checkpoint_round_trip_is_exact(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(4, 3)).pow(2).mean().backward()
        opt.step()
    train_state = TrainState(key=run_key("x"), phase=1, epoch=2, updates=3)
    save_checkpoint(tmp_path / "ckpt", model, opt, train_state)

    clone = torch.nn.Linear(3, 2)
    clone_opt = torch.optim.AdamW(clone.parameters(), lr=1e-2)
    restored = load_checkpoint(tmp_path / "ckpt", clone, clone_opt, run_key("x"))
    assert restored is not None and restored.epoch == 2 and restored.updates == 3
    batch = torch.randn(4, 3)
    for m, o in ((model, opt), (clone, clone_opt)):
        o.zero_grad()
        m(batch).pow(2).mean().backward()
        o.step()
    for a, b in zip(model.parameters(), clone.parameters(), strict=True):
        assert torch.equal(a, b)
    assert load_checkpoint(tmp_path / "ckpt", clone, clone_opt, run_key("other run")) is None


def test_history_indices() -> None:
    c, f = Decision.COMPUTE, Decision.FORECAST
    decisions = [c, c, c, c, f, f, c, f, f]
    assert history_indices(decisions, 5, 3, "full") == [1, 2, 3]
    assert history_indices(decisions, 7, 3, "full") == [2, 3, 6]
    assert history_indices(decisions, 7, 3, "steps") == [4, 5, 6]
    assert history_indices(decisions, 1, 4, "steps") == [0]


def test_forecast_spans() -> None:
    c, f = Decision.COMPUTE, Decision.FORECAST
    assert forecast_spans([c, c, f, f, f, c, f, c, f, f]) == [[2, 3, 4], [6], [8, 9]]
    assert forecast_spans([c, c, c]) == []


def test_guidance_weights() -> None:
    # true CFG: uncond + g (cond - uncond), in the order the contexts come
    assert guidance_weights(["cond", "uncond"], {"true_cfg_scale": 4.0}).tolist() == [4.0, -3.0]
    assert guidance_weights(["uncond", "cond"], {"guidance_scale": 2.5}).tolist() == [-1.5, 2.5]
    assert guidance_weights(["cond", "uncond"], {"true_cfg_scale": 3.0, "guidance_scale": 1.0}).tolist() == [3.0, -2.0]
    assert guidance_weights(["default"], {"true_cfg_scale": 4.0}) is None
    with pytest.raises(TrainingError, match="names no guidance scale"):
        guidance_weights(["cond", "uncond"], {"height": 64})


def test_guided_error_combines_a_cond_uncond_pair_as_the_sampler_does() -> None:
    """An error both branches share counts once (reuse's stale error cancels in cond − uncond); an error of one
    branch alone is scaled by its guidance weight; the row order of the contexts is respected; contexts that are
    not a cond/uncond pair are left as they are."""
    call = {"true_cfg_scale": 4.0}
    shared = torch.randn(3, 5, 2)
    combined, contexts = guided_error(torch.cat([shared, shared]), ["cond", "uncond"], call)
    assert contexts == 1 and torch.allclose(combined, shared)
    only_cond = torch.cat([shared, torch.zeros_like(shared)])
    torch.testing.assert_close(guided_error(only_cond, ["cond", "uncond"], call)[0], 4.0 * shared)
    torch.testing.assert_close(guided_error(only_cond, ["uncond", "cond"], call)[0], -3.0 * shared)
    channels_first = torch.randn(4, 3, 2, 4, 4)  # (x·b, C, F, H, W): a video model's output tap
    expected = channels_first[2:] + 4.0 * (channels_first[:2] - channels_first[2:])
    torch.testing.assert_close(guided_error(channels_first, ["cond", "uncond"], call)[0], expected)
    alone, contexts = guided_error(shared, ["cond"], call)
    assert contexts == 1 and alone is shared
    with pytest.raises(TrainingError, match="guidance scale"):
        guided_error(torch.cat([shared, shared]), ["cond", "uncond"], {})


def test_stage2_loss_is_guided_by_default() -> None:
    from lesa_core.config import ClosedLoopConfig, TrainingConfig

    assert TrainingConfig().stage2.loss == "guided" and TrainingConfig().loss == "tap"
    assert ClosedLoopConfig(update="online").loss == "guided"  # online: contexts one at a time, the tap error


def test_stage2_guided_default_falls_back_to_the_tap_error_without_a_scale(caplog: pytest.LogCaptureFixture) -> None:
    """A cond/uncond pair collected without a guidance scale in the call (a pipeline guiding by its own default)
    must not stop the default recipe: stage 2 then measures the tap error, and says so."""
    from lesa_core.trainer.rollout import ClosedLoopRollout

    pair = {"cond": torch.zeros(1), "uncond": torch.zeros(1)}

    def meta(call: dict) -> StoreMeta:
        return StoreMeta(model_class="", model_fingerprint="", tap="hidden", num_steps=4, schedule=None,
                         token_index=None, prompts=["p"], seed=0, call=call)

    assert ClosedLoopRollout._guidance_known(pair, meta({"true_cfg_scale": 4.0}))
    assert ClosedLoopRollout._guidance_known({"default": torch.zeros(1)}, meta({}))
    with caplog.at_level("WARNING", logger="lesa"):
        assert not ClosedLoopRollout._guidance_known(pair, meta({"height": 64}))
    assert "tap error per branch" in caplog.text


def test_final_output_reads_images_frames_tuples_and_refuses_anything_else() -> None:
    from diffusers.pipelines.flux.pipeline_output import FluxPipelineOutput
    from diffusers.pipelines.hunyuan_video.pipeline_output import HunyuanVideoPipelineOutput

    from lesa_core.trainer.runner import final_output

    images, videos = torch.rand(2, 3, 8, 8), torch.rand(2, 9, 3, 8, 8)
    assert torch.equal(final_output(FluxPipelineOutput(images=images)), images)
    assert torch.equal(final_output(HunyuanVideoPipelineOutput(frames=videos)), videos)  # a video pipeline
    assert torch.equal(final_output((images,)), images) and torch.equal(final_output(images.double()), images)
    with pytest.raises(TrainingError, match="validation_prompts: 0"):
        final_output(FluxPipelineOutput(images=[object()]))


def test_steps_of_reads_the_same_values_as_indexing_whole_trajectories() -> None:
    """Stage 1 gathers only the steps a forecast reads; the values are those of ``truth[rows][:, steps]``."""
    truth = torch.randn(6, 9, 3, 2)
    rows, steps = torch.tensor([4, 0, 2]), [1, 3, 8]
    assert torch.equal(steps_of(truth, steps, rows), truth[rows][:, steps])
    assert torch.equal(steps_of(truth, steps), truth[:, steps])
    assert steps_of(truth, [], rows).shape == (3, 0, 3, 2)


def test_a_checkpoint_is_keyed_without_the_keys_that_act_after_training() -> None:
    """``training.start`` and ``training.floor`` act once training is over: a run differing only in them resumes
    the same checkpoint (the zoo's any-schedule bundle does), any other training key starts afresh."""
    from lesa_core.trainer.checkpoint import run_key
    from lesa_core.trainer.fit import training_identity

    base = {"predictor": {"name": "kan"}, "training": {"floor": "keep", "start": [], "seed": 0}}
    other_floor = {**base, "training": {"floor": "reproduce", "start": [{"name": "linear"}], "seed": 0}}
    other_seed = {**base, "training": {**base["training"], "seed": 1}}
    assert run_key(training_identity(base)) == run_key(training_identity(other_floor))
    assert run_key(training_identity(base)) != run_key(training_identity(other_seed))
