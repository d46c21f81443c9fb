"""A shortened retrain of the Qwen-Image-class model with its training script: both losses fall, and the
assembled folder loads as a QwenImagePipeline."""

from __future__ import annotations

import csv
import json

import pytest

from lesa_embedded.qwen import QWEN_PIPELINE_DIR


@pytest.mark.slow
def test_shortened_retrain_loss_falls_and_assembles(tmp_path) -> None:
    from tools.embedded.qwen.build import assemble
    from tools.embedded.qwen.train import main

    out = tmp_path / "weights"
    # the shipped folder doubles as a skeleton: train.py reads only its configs and tokenizer
    meta = main([
        "--skeleton", str(QWEN_PIPELINE_DIR), "--out", str(out), "--device", "cpu", "--seed", "0",
        "--vae-steps", "30", "--steps", "40", "--batch-size", "8", "--vae-batch-size", "8",
        "--latent-bank", "256", "--warmup", "10", "--log-every", "1", "--threads", "1",
    ])  # fmt: skip
    with open(out / "losses.csv") as f:
        rows = list(csv.DictReader(f))
    vae = [float(r["loss"]) for r in rows if r["stage"] == "vae"]
    flow = [float(r["loss"]) for r in rows if r["stage"] == "flow"]
    assert len(vae) == 30 and len(flow) == 40
    assert sum(vae[-5:]) / 5 < 0.6 * sum(vae[:5]) / 5
    assert sum(flow[-10:]) / 10 < 0.7 * sum(flow[:5]) / 5
    assert meta["steps"] == 40 and meta["vae_steps"] == 30
    saved = json.loads((out / "meta.json").read_text())
    assert saved["saved_tag"] == "final" and len(saved["latents_std"]) == 4

    from diffusers import QwenImagePipeline

    folder = assemble(QWEN_PIPELINE_DIR, out, tmp_path / "pipeline")
    pipe = QwenImagePipeline.from_pretrained(folder, local_files_only=True)
    assert pipe.vae.config.latents_std == pytest.approx(saved["latents_std"])
