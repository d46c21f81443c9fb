"""A shortened retrain from the training script: both losses fall."""

from __future__ import annotations

import csv
import json

import pytest

from lesa_embedded.flux import EMBEDDED_PIPELINE_DIR


@pytest.mark.slow
def test_shortened_retrain_loss_falls(tmp_path) -> None:
    from tools.embedded.flux.train import main

    out = tmp_path / "weights"
    # the shipped folder doubles as a skeleton: train.py reads only its configs and tokenizers
    meta = main([
        "--skeleton", str(EMBEDDED_PIPELINE_DIR), "--out", str(out), "--device", "cpu", "--seed", "0",
        "--vae-steps", "40", "--steps", "60", "--batch-size", "8", "--vae-batch-size", "8",
        "--warmup", "10", "--lr", "1e-3", "--log-every", "1", "--threads", "2",
    ])  # fmt: skip
    with open(out / "losses.csv") as f:
        rows = list(csv.DictReader(f))
    vae = [float(r["loss"]) for r in rows if r["stage"] == "vae"]
    flow = [float(r["loss"]) for r in rows if r["stage"] == "flow"]
    assert len(vae) == 40 and len(flow) == 60
    assert sum(vae[-5:]) / 5 < 0.6 * sum(vae[:5]) / 5
    assert sum(flow[-10:]) / 10 < 0.7 * sum(flow[:5]) / 5
    assert meta["steps"] == 60 and meta["vae_steps"] == 40
    saved = json.loads((out / "meta.json").read_text())
    assert saved["saved_tag"] == "final" and saved["vae_scaling_factor"] > 0
    for name in ("vae", "transformer", "text_encoder", "text_encoder_2"):
        assert (out / f"{name}.safetensors").stat().st_size > 0
