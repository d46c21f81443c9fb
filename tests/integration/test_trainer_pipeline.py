"""The generic trainer on a real (tiny, offline) FluxPipeline: collect, both stages, bundle, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lesa_core import attach
from lesa_core.bundle import BUNDLE_CONFIG_NAME, BUNDLE_WEIGHTS_NAME
from lesa_core.testing.tiny import tiny_flux_pipeline
from lesa_core.trainer import PipelineRunner, TrajectoryStore, collect_trajectories, train

pytestmark = pytest.mark.integration

STEPS = 12
CONFIG = {
    "predictor": {"name": "kan", "taps": [3, 4, 4], "hidden": [8, 8]},
    "policy": {"name": "interval", "interval": 4, "warmup": 2, "force_full": []},
    "training": {"num_steps": STEPS, "seed": 3, "stage1": {"epochs": 3, "batch_size": 4, "lr": 0.003},
                 "stage2": {"epochs": 1, "batch_size": 4, "lr": 0.001}},
}
PROMPTS = [f"a prompt number {i}" for i in range(6)]


@pytest.fixture(scope="module")
def pipe():
    return tiny_flux_pipeline()


def _runner(pipe) -> PipelineRunner:
    return PipelineRunner(pipe, height=32, width=32, max_sequence_length=16)


def test_train_writes_a_bundle_that_attach_accepts(pipe, tmp_path: Path) -> None:
    bundle, report = train(pipe, CONFIG, PROMPTS, runner=_runner(pipe), out=tmp_path / "bundle",
                           data_dir=tmp_path / "data", show_progress=False)
    assert (bundle / BUNDLE_WEIGHTS_NAME).is_file()
    meta = json.loads((bundle / BUNDLE_CONFIG_NAME).read_text())
    assert meta["tap"] == "hidden" and len(meta["schedule"]) == STEPS + 1 and meta["schedule"][-1] == 0.0
    assert meta["plugins"]["predictor"]["distribution"] == "lesa-predictors"
    assert len(report.losses["stage1"]) == 3 and len(report.losses["stage2"]) == 1
    assert report.losses["stage1"][-1] < report.losses["stage1"][0]
    with attach(pipe, str(bundle)) as handle:
        _runner(pipe).run(PROMPTS[:1], [0], STEPS)
        stats = handle.stats()["cond"]
    assert stats["decisions"] == "FFcccFcccFcc"


def test_same_seed_same_bundle_and_resume_from_checkpoint(pipe, tmp_path: Path) -> None:
    first, _ = train(pipe, CONFIG, PROMPTS, runner=_runner(pipe), out=tmp_path / "a", data_dir=tmp_path / "d1",
                     show_progress=False)
    # an interrupted run: stage 1 only, then the full command again (resumes from the checkpoint)
    train(pipe, CONFIG, PROMPTS, runner=_runner(pipe), out=tmp_path / "partial", data_dir=tmp_path / "d2",
          stages=(1,), show_progress=False)
    second, report = train(pipe, CONFIG, PROMPTS, runner=_runner(pipe), out=tmp_path / "b",
                           data_dir=tmp_path / "d2", show_progress=False)
    assert report.resumed_from == (1, 3)
    assert (first / BUNDLE_WEIGHTS_NAME).read_bytes() == (second / BUNDLE_WEIGHTS_NAME).read_bytes()


def test_collection_resumes_without_recomputing(pipe, tmp_path: Path) -> None:
    runner = _runner(pipe)
    collect_trajectories(pipe, CONFIG, PROMPTS[:3], runner=runner, data_dir=tmp_path, show_progress=False)
    store = TrajectoryStore(tmp_path / "trajectories")
    stamps = {i: store.shard_path(i).stat().st_mtime_ns for i in range(3)}
    calls: list[int] = []
    handle = pipe.transformer.register_forward_pre_hook(lambda *a: calls.append(1))
    try:
        meta = collect_trajectories(pipe, CONFIG, PROMPTS[:3], runner=runner, data_dir=tmp_path, show_progress=False)
    finally:
        handle.remove()
    assert calls == [] and len(meta.prompts) == 3
    assert {i: store.shard_path(i).stat().st_mtime_ns for i in range(3)} == stamps
    taps = store.load()["cond"]
    assert taps.shape[:2] == (3, STEPS) and torch.isfinite(taps).all()


def test_from_pretrained_save_pretrained_round_trip(pipe, tmp_path: Path) -> None:
    from lesa_core import BundleNotFoundError, LesaBundle

    bundle, _ = train(pipe, CONFIG, PROMPTS[:2], runner=_runner(pipe), out=tmp_path / "bundle",
                      data_dir=tmp_path / "data", stages=(1,), show_progress=False)
    loaded = LesaBundle.from_pretrained(bundle)
    assert loaded.metadata.tap == "hidden" and loaded.run_config.predictor.name == "kan"
    assert not any(p.requires_grad for p in loaded.predictor.parameters())
    copy = loaded.save_pretrained(tmp_path / "copy")
    for name in (BUNDLE_CONFIG_NAME, BUNDLE_WEIGHTS_NAME):
        assert (copy / name).read_bytes() == (bundle / name).read_bytes()
    with loaded.attach(pipe, policy={"name": "interval", "interval": 3, "warmup": 2, "force_full": []}) as handle:
        _runner(pipe).run(PROMPTS[:1], [0], STEPS)
        assert handle.stats()["cond"]["decisions"] == "FFccFccFccFc"
    with pytest.raises(BundleNotFoundError):
        LesaBundle.from_pretrained(tmp_path / "no-such-bundle")


@pytest.mark.parametrize("update", ["replay", "online"])
def test_stage2_update_modes_count_their_updates(pipe, tmp_path: Path, update: str) -> None:
    config = {**CONFIG, "training": {**CONFIG["training"], "stage1": {"epochs": 1, "batch_size": 4, "lr": 0.003},
                                     "stage2": {"epochs": 1, "batch_size": 4, "lr": 0.001, "update": update,
                                                "replay_epochs": 3}}}
    _, first = train(pipe, config, PROMPTS, runner=_runner(pipe), out=tmp_path / "s1", data_dir=tmp_path / "data",
                     checkpoint_dir=tmp_path / "ck1", stages=(1,), show_progress=False)
    bundle, both = train(pipe, config, PROMPTS, runner=_runner(pipe), out=tmp_path / "s12",
                         data_dir=tmp_path / "data", checkpoint_dir=tmp_path / "ck12", show_progress=False)
    forecasts, rollouts = 8, 2  # FFcccFcccFcc; 6 prompts in batches of 4
    per_rollout = forecasts * 3 if update == "replay" else forecasts  # one context (no CFG)
    assert both.updates - first.updates == rollouts * per_rollout
    assert len(both.losses["stage2"]) == 1 and both.losses["stage2"][0] > 0
    meta = json.loads((bundle / BUNDLE_CONFIG_NAME).read_text())
    assert meta["run_config"]["training"]["stage2"]["update"] == update


def test_every_training_schedule_is_trained_on_in_both_stages(pipe, tmp_path: Path) -> None:
    """``training.schedules: auto`` on interval N = 4 adds N = 6: stage 1 updates on the forecast steps of both,
    stage 2's two rollouts run one under each (the update counts tell the schedules apart), and the bundle keeps
    the run's N = 4."""
    training = {**CONFIG["training"], "stage1": {"epochs": 1, "batch_size": 6, "lr": 0.003},
                "stage2": {"epochs": 1, "batch_size": 4, "lr": 0.001, "replay_epochs": 1}, "schedules": "auto"}
    only_stage1 = {**training, "stage2": {**training["stage2"], "epochs": 0}}
    _, first = train(pipe, {**CONFIG, "training": only_stage1}, PROMPTS, runner=_runner(pipe), out=tmp_path / "s1",
                     data_dir=tmp_path / "data", checkpoint_dir=tmp_path / "ck1", show_progress=False)
    # N = 4: full 0, 1, 5, 9 (8 forecasts); N = 6: full 0, 1, 7 (9); 5 training prompts, one batch per step
    assert first.updates == 8 + 9
    bundle, both = train(pipe, {**CONFIG, "training": training}, PROMPTS, runner=_runner(pipe), out=tmp_path / "s12",
                         data_dir=tmp_path / "data", checkpoint_dir=tmp_path / "ck12", show_progress=False)
    assert both.updates - first.updates == 8 + 9  # rollout 1 under N = 4, rollout 2 under N = 6; one replay pass
    meta = json.loads((bundle / BUNDLE_CONFIG_NAME).read_text())
    assert meta["run_config"]["policy"]["interval"] == 4 and meta["run_config"]["training"]["schedules"] == "auto"
    _, own = train(pipe, {**CONFIG, "training": {**training, "schedules": []}}, PROMPTS, runner=_runner(pipe),
                   out=tmp_path / "own", data_dir=tmp_path / "data", checkpoint_dir=tmp_path / "ck-own",
                   show_progress=False)
    assert own.updates == 8 + 8 + 8  # stage 1 and both rollouts under N = 4 only


def test_stage2_replay_is_deterministic(pipe, tmp_path: Path) -> None:
    a, _ = train(pipe, CONFIG, PROMPTS, runner=_runner(pipe), out=tmp_path / "a", data_dir=tmp_path / "data",
                 checkpoint_dir=tmp_path / "ca", show_progress=False)
    b, _ = train(pipe, CONFIG, PROMPTS, runner=_runner(pipe), out=tmp_path / "b", data_dir=tmp_path / "data",
                 checkpoint_dir=tmp_path / "cb", show_progress=False)
    assert (a / BUNDLE_WEIGHTS_NAME).read_bytes() == (b / BUNDLE_WEIGHTS_NAME).read_bytes()


def test_latent_loss_measures_the_guided_output_error(pipe, tmp_path: Path) -> None:
    """``training.loss: latent`` on the normed tap under true CFG: stage 1 learns, the model's own head
    gets no gradient, and the loss is the dσ-weighted, guidance-combined error through ``proj_out``."""
    from einops import rearrange

    from lesa_core.assembly import bind
    from lesa_core.run import resolve_run
    from lesa_core.trainer import Trainer, trainable_assembly

    scale = 3.0
    runner = PipelineRunner(pipe, height=32, width=32, max_sequence_length=16, true_cfg_scale=scale,
                            negative_prompt="")
    config = {**CONFIG, "tap": "normed",
              "training": {**CONFIG["training"], "loss": "latent", "stage1": {"epochs": 8, "batch_size": 2, "lr": 0.01},
                           "stage2": {"epochs": 0}}}
    head_before = pipe.transformer.proj_out.weight.detach().clone()
    _, report = train(pipe, config, PROMPTS, runner=runner, out=tmp_path / "bundle", data_dir=tmp_path / "data",
                      show_progress=False)
    assert pipe.transformer.proj_out.weight.grad is None
    assert torch.equal(pipe.transformer.proj_out.weight, head_before)
    assert report.losses["stage1"][-1] < report.losses["stage1"][0]

    store = TrajectoryStore(tmp_path / "data" / "trajectories")
    meta, taps = store.read_meta(), store.load()
    assert sorted(taps) == ["cond", "uncond"] and meta.call["true_cfg_scale"] == scale
    assembly = trainable_assembly(bind(pipe.transformer, resolve_run(config)), meta.schedule)
    trainer = Trainer(assembly, meta, taps, assembly.config.training, tmp_path / "ck", show_progress=False)
    assert trainer.latent_losses is not None and len(trainer.latent_losses) == 1  # the run's schedule only
    span, rows = trainer.latent_losses[0].units[0], torch.tensor([0, 2])
    with torch.no_grad():
        got = trainer.latent_losses[0].span_error(span, rows)
        proj = pipe.transformer.proj_out
        expected, total = 0.0, 0.0
        for step in span:
            idx = [i for i in range(step) if trainer.decisions[i].name == "COMPUTE"][-3:]  # the last 3 full
            guided = 0.0
            for name, weight in (("cond", scale), ("uncond", 1.0 - scale)):
                gt = taps[name][rows]
                forecast = trainer.predictor(trainer.teacher.forecast_input([gt[:, j] for j in idx], idx, step))
                guided = guided + weight * (proj(forecast) - proj(gt[:, step]))
            size = abs(meta.schedule[step + 1] - meta.schedule[step])
            expected, total = expected + size * guided, total + size
    assert got is not None
    torch.testing.assert_close(rearrange(got, "b 1 n o -> b n o"), expected / total)


def test_stage2_guided_loss_learns_the_guidance_combined_error(pipe, tmp_path: Path) -> None:
    """``training.stage2.loss: guided`` under true CFG: one replayed update per forecast step (the two contexts
    merged), and the loss is not the per-branch tap loss of the same rollouts (the runs are identical up to the
    loss: same stage 1, and a learning rate too small to move the rollouts); the combination itself is checked
    in tests/unit/test_trainer_parts.py."""
    runner = PipelineRunner(pipe, height=32, width=32, max_sequence_length=16, true_cfg_scale=3.0,
                            negative_prompt="")
    losses = {}
    for loss in ("tap", "guided"):
        config = {**CONFIG, "training": {**CONFIG["training"], "validation_prompts": 0,
                                         "stage1": {"epochs": 1, "batch_size": 4, "lr": 0.003},
                                         "stage2": {"epochs": 1, "batch_size": 4, "lr": 1e-6, "replay_epochs": 1,
                                                    "loss": loss}}}
        _, first = train(pipe, config, PROMPTS, runner=runner, out=tmp_path / f"s1-{loss}", data_dir=tmp_path / "data",
                         checkpoint_dir=tmp_path / f"ck1-{loss}", stages=(1,), show_progress=False)
        _, both = train(pipe, config, PROMPTS, runner=runner, out=tmp_path / f"s12-{loss}", data_dir=tmp_path / "data",
                        checkpoint_dir=tmp_path / f"ck12-{loss}", show_progress=False)
        assert both.updates - first.updates == 2 * 8  # 2 rollouts × 8 forecast steps, contexts merged per step
        losses[loss] = both.losses["stage2"][0]
    assert losses["tap"] > 0 and abs(losses["guided"] - losses["tap"]) > 1e-3 * losses["tap"]


def test_guided_stage1_loss_combines_each_prompts_branches(pipe, tmp_path: Path) -> None:
    """``training.loss: guided`` under true CFG: a row is a prompt (not a prompt × context), and a unit's error is
    ``uncond + g (cond − uncond)`` of the two branches' teacher-forced errors; without CFG it is the tap loss."""
    from lesa_core.assembly import bind
    from lesa_core.errors import TrainingError
    from lesa_core.run import resolve_run
    from lesa_core.trainer import Trainer, trainable_assembly
    from lesa_core.trainer.losses import GuidedTapLoss

    scale = 3.0
    runner = PipelineRunner(pipe, height=32, width=32, max_sequence_length=16, true_cfg_scale=scale,
                            negative_prompt="")
    config = {**CONFIG, "training": {**CONFIG["training"], "loss": "guided", "validation_prompts": 0,
                                     "stage1": {"epochs": 1, "batch_size": 4, "lr": 0.003}, "stage2": {"epochs": 0}}}
    _, report = train(pipe, config, PROMPTS, runner=runner, out=tmp_path / "bundle", data_dir=tmp_path / "data",
                      show_progress=False)
    assert report.updates == 8 * 2  # 8 forecast steps × 6 prompts in batches of 4 (not 12 prompt-contexts: 3)
    store = TrajectoryStore(tmp_path / "data" / "trajectories")
    meta, taps = store.read_meta(), store.load()
    assembly = trainable_assembly(bind(pipe.transformer, resolve_run(config)), meta.schedule)
    trainer = Trainer(assembly, meta, taps, assembly.config.training, tmp_path / "ck", show_progress=False)
    loss = GuidedTapLoss(trainer.teacher, taps, meta)
    assert loss.num_rows == len(PROMPTS)
    step, rows = loss.units[0][0], torch.tensor([1, 4])
    with torch.no_grad():
        got = loss.error([step], rows)
        branch = {name: trainer.teacher.forecast(truth[rows], step) - truth[rows][:, step] for name, truth in taps.items()}
    torch.testing.assert_close(got, branch["uncond"] + scale * (branch["cond"] - branch["uncond"]))
    with pytest.raises(TrainingError, match="cond/uncond pair"):
        GuidedTapLoss(trainer.teacher, {"cond": taps["cond"]}, meta)
    # without CFG (one context) the guided run trains exactly as the tap run
    tap_config = {**config, "training": {**config["training"], "loss": "tap"}}
    a, _ = train(pipe, config, PROMPTS, runner=_runner(pipe), out=tmp_path / "g1", data_dir=tmp_path / "plain",
                 checkpoint_dir=tmp_path / "ck-g", show_progress=False)
    b, _ = train(pipe, tap_config, PROMPTS, runner=_runner(pipe), out=tmp_path / "t1", data_dir=tmp_path / "plain",
                 checkpoint_dir=tmp_path / "ck-t", show_progress=False)
    assert (a / BUNDLE_WEIGHTS_NAME).read_bytes() == (b / BUNDLE_WEIGHTS_NAME).read_bytes()


def test_latent_loss_refuses_a_tap_without_an_output_head(pipe, tmp_path: Path) -> None:
    from lesa_core.errors import TrainingError

    config = {**CONFIG, "tap": "hidden", "training": {**CONFIG["training"], "loss": "latent"}}
    with pytest.raises(TrainingError, match=r"tap 'hidden' has no such head\. Use one that has: normed, output"):
        train(pipe, config, PROMPTS, runner=_runner(pipe), out=tmp_path / "bundle", data_dir=tmp_path / "data",
              show_progress=False)
    assert not (tmp_path / "data").exists()  # refused before collecting
