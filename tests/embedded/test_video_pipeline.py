"""The shipped HunyuanVideo-class pipeline: loads offline, is small, follows captions, runs LESA's schedule."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from lesa_embedded.video import (
    VIDEO_CALL_DEFAULTS,
    VIDEO_PIPELINE_DIR,
    heldout_prompts,
    load_video_pipeline,
    score_adherence,
)

MAX_BYTES = 25 * 1024 * 1024
SCHEDULED_FULL = [0, 1, 2, 3, 9, 16, 23, 30, 37, 44]  # N = 7, E = 3, step 3 forced, 50 steps
#: Held-out adherence of the shipped (GPU-trained) weights at true CFG 1.5 is 82.8 % of 64 videos
#: (docs/embedded-model.md); on 8 videos the fast test asks for at least half.
MIN_MATCH = 0.5


@pytest.fixture(scope="module")
def pipe():
    return load_video_pipeline()


def test_folder_is_fp16_safetensors_under_25_mb() -> None:
    from safetensors import safe_open

    files = [p for p in VIDEO_PIPELINE_DIR.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) <= MAX_BYTES
    weights = [p for p in files if p.suffix == ".safetensors"]
    assert {p.parent.name for p in weights} == {"transformer", "vae", "text_encoder", "text_encoder_2"}
    assert not [p for p in files if p.suffix in (".bin", ".pt", ".pth", ".ckpt")]
    for p in weights:
        with safe_open(str(p), "pt") as f:
            assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"F16"}, p  # noqa: SIM118
    index = json.loads((VIDEO_PIPELINE_DIR / "model_index.json").read_text())
    assert index["_class_name"] == "HunyuanVideoPipeline"
    assert index["transformer"] == ["diffusers", "HunyuanVideoTransformer3DModel"]
    assert index["vae"] == ["diffusers", "AutoencoderKLHunyuanVideo"]
    assert index["text_encoder"] == ["transformers", "LlamaModel"]
    assert index["text_encoder_2"] == ["transformers", "CLIPTextModel"]


def test_plain_from_pretrained_loads_offline_and_generates_a_video() -> None:
    """A fresh process with the hub offline and no arguments beyond the path and the call defaults."""
    code = f"""
import json, torch
from diffusers import HunyuanVideoPipeline
from lesa_embedded.video import PROMPT_TEMPLATE
pipe = HunyuanVideoPipeline.from_pretrained({str(VIDEO_PIPELINE_DIR)!r})
pipe.set_progress_bar_config(disable=True)
frames = pipe("a red square moving right", height=32, width=32, num_frames=9, num_inference_steps=4,
              true_cfg_scale=4.0, negative_prompt="", prompt_template=PROMPT_TEMPLATE, max_sequence_length=16,
              output_type="pt", generator=torch.Generator().manual_seed(0)).frames
dtypes = sorted({{str(c.dtype) for c in pipe.components.values() if isinstance(c, torch.nn.Module)}})
print(json.dumps({{"shape": list(frames.shape), "finite": bool(frames.isfinite().all()), "dtypes": dtypes}}))
"""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "DIFFUSERS_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res == {"shape": [1, 9, 3, 32, 32], "finite": True, "dtypes": ["torch.float32"]}


def test_helper_loads_eval_mode_and_architecture(pipe) -> None:
    mods = [c for c in pipe.components.values() if isinstance(c, torch.nn.Module)]
    assert len(mods) == 4 and not any(m.training for m in mods)
    cfg = pipe.transformer.config
    assert type(pipe).__name__ == "HunyuanVideoPipeline" and not cfg.guidance_embeds
    assert (pipe.vae_scale_factor_temporal, pipe.vae_scale_factor_spatial) == (4, 4)
    assert (len(pipe.transformer.transformer_blocks), len(pipe.transformer.single_transformer_blocks)) == (
        2,
        4,
    )
    latent_frames = (VIDEO_CALL_DEFAULTS["num_frames"] - 1) // 4 + 1
    assert latent_frames == 3 and latent_frames * (32 // 4 // cfg.patch_size) ** 2 == 48  # video tokens
    assert VIDEO_CALL_DEFAULTS["true_cfg_scale"] > 1 and VIDEO_CALL_DEFAULTS["negative_prompt"] == ""
    n_params = sum(p.numel() for p in pipe.transformer.parameters())
    assert 1_000_000 < n_params < 3_000_000


def test_heldout_captions_at_50_steps_follow_the_prompt(pipe) -> None:
    """Eight held-out captions (spread over the 16), 50 full-compute steps with true CFG."""
    caps = heldout_prompts(8)
    gens = [torch.Generator().manual_seed(i) for i in range(len(caps))]
    with torch.no_grad():
        videos = pipe(caps, generator=gens, output_type="pt", **VIDEO_CALL_DEFAULTS).frames
    assert videos.shape == (8, 9, 3, 32, 32)
    res = score_adherence(videos, caps)
    verdicts = {c: bool(m) for c, m in zip(caps, res.match, strict=True)}
    assert res.colour.all(), verdicts
    assert res.match.float().mean() >= MIN_MATCH, verdicts  # 83 % on 64 held-out videos (slow test below)
    assert torch.isfinite(videos).all() and videos.std() > 0.05  # not a blank video


def test_lesa_schedule_runs_the_body_on_exactly_the_scheduled_steps_with_real_weights(pipe) -> None:
    """The hunyuan_video adapter on the trained model: N = 7, E = 3, 50 steps → 10 full passes per context."""
    import lesa_core
    from lesa_core.plugins import PluginHost

    host = PluginHost.create()
    config = {"tap": None, "predictor": {"name": "taylor", "order": 1},
              "router": {"name": "threshold", "boundaries": []},
              "policy": {"name": "interval", "interval": 7, "warmup": 3, "force_full": [3]}}  # fmt: skip
    # plain torch hooks, independent of LESA's statistics: transformer call c is step c // 2 of context
    # c % 2 (cond, then uncond); a block really computes when its attention runs
    call = [-1]
    executed: dict[str, list[int]] = {"first": [], "last": []}
    first, last = pipe.transformer.transformer_blocks[0], pipe.transformer.single_transformer_blocks[-1]
    handles = [pipe.transformer.register_forward_pre_hook(lambda *_: call.__setitem__(0, call[0] + 1))]
    for key, block in (("first", first), ("last", last)):
        handles.append(block.attn.register_forward_hook(lambda *_, key=key: executed[key].append(call[0])))
    gens = [torch.Generator().manual_seed(0)]
    try:
        with torch.no_grad(), lesa_core.attach(pipe, config, host=host) as handle:
            cached = pipe(heldout_prompts(1), generator=gens, output_type="pt", **VIDEO_CALL_DEFAULTS).frames
            stats = handle.stats()
    finally:
        for h in handles:
            h.remove()
    assert set(stats) == {"cond", "uncond"}
    for name in ("cond", "uncond"):
        assert stats[name]["full_steps"] == 10 and stats[name]["forecast_steps"] == 40, name
        assert [i for i, c in enumerate(stats[name]["decisions"]) if c == "F"] == SCHEDULED_FULL
    for key in ("first", "last"):
        for j in (0, 1):
            assert [c // 2 for c in executed[key] if c % 2 == j] == SCHEDULED_FULL, (key, j)
    assert cached.shape == (1, 9, 3, 32, 32) and torch.isfinite(cached).all()


def test_output_tap_trajectory_varies_by_stage(pipe) -> None:
    from tools.embedded.video.evaluate import trajectory

    traj = trajectory(pipe, heldout_prompts(2))
    t, rc = traj["t"], traj["rel_change"][1:]
    assert len(t) == 50 and t[0] == 1.0 and t[-1] < 0.1
    assert all(torch.isfinite(torch.tensor(rc))) and "uncond_rel_change" in traj
    assert max(rc) > 3 * min(rc)


def test_model_source_is_registered_and_scores_only_its_captions() -> None:
    from lesa_core.plugins import PluginHost

    host = PluginHost.create()
    source = host.models.get("embedded-video")()
    assert set(source.eval_prompts()) == set(heldout_prompts())
    assert not set(source.train_prompts()) & set(source.eval_prompts())
    call = source.call_defaults()
    assert call["true_cfg_scale"] == 1.5 and call["num_frames"] == 9 and "num_inference_steps" not in call
    assert call["prompt_template"]["crop_start"] == 95
    assert source.score_adherence(torch.zeros(1, 9, 3, 32, 32), ["a photo of a cat"]) is None
    assert source.score_adherence(torch.zeros(1, 3, 32, 32), [heldout_prompts(1)[0]]) is None  # not a video
    blank = torch.zeros(1, 9, 3, 32, 32)
    assert source.score_adherence(blank, [heldout_prompts(1)[0]]).tolist() == [0.0]


@pytest.fixture(scope="module")
def heldout_64(pipe):
    from tools.embedded.video.evaluate import captions_and_seeds, sample

    caps, seeds = captions_and_seeds(64)
    return score_adherence(sample(pipe, caps, seeds), caps)


@pytest.mark.slow
def test_heldout_adherence_on_64_videos_reaches_the_issues_80_percent(heldout_64) -> None:
    """Issue #14's target on the 16 held-out captions × 4 seeds with the shipped call defaults (true CFG 1.5):
    the GPU-trained weights score 53 / 64 (colour 100 %, shape 87.5 %, motion 92.2 %)."""
    assert heldout_64.colour.all()
    assert heldout_64.match.float().mean() >= 0.8


def test_lesa_train_with_the_default_recipe_runs_on_the_video_model(tmp_path) -> None:
    """Collection, the validation slice (closed-loop samples come back as ``.frames``), both stages and the
    bundle, with the library's default recipe cut to a few prompts and steps."""
    from lesa_core.bundle import read_metadata
    from lesa_core.cli import main as lesa

    config = tmp_path / "run.yaml"
    config.write_text(
        "model: embedded-video\n"
        "policy: {name: interval, interval: 4, warmup: 2}\n"
        "training: {num_prompts: 3, validation_prompts: 1, num_steps: 10,\n"
        "           stage1: {epochs: 1}, stage2: {epochs: 1}}\n"
    )
    data, out = tmp_path / "data", tmp_path / "bundle"
    assert lesa(["train", "--config", str(config), "--data-dir", str(data), "--out", str(out), "--quiet"]) == 0
    meta = read_metadata(out)
    assert meta.run_config["model"] == "embedded-video" and meta.model_class.endswith("HunyuanVideoTransformer3DModel")
    assert meta.run_config["training"]["validation_prompts"] == 1
