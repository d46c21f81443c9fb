"""``lesa bench --quality --zoo``'s per-model run, :func:`check_recipe`, end to end on a tiny offline FluxPipeline:
the one recipe, the ``linear`` peer, the learned schedule and its alternation with training, every row measured."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from lesa_core.bundle import BUNDLE_CONFIG_NAME
from lesa_core.interfaces.model import ModelSource
from lesa_core.testing.tiny import tiny_flux_pipeline
from lesa_workflows.bench.zoo import ZooReport, check_recipe

pytestmark = pytest.mark.integration

STEPS = 12


class TinySource(ModelSource):
    description = "tiny offline FluxPipeline"

    def load(self, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> Any:
        return tiny_flux_pipeline().to(device)

    def default_config(self) -> dict[str, Any]:
        return {"policy": {"name": "interval", "interval": 3, "warmup": 2, "force_full": [2]},
                "training": {"stage1": {"epochs": 99}}}  # model-specific training: the recipe drops it

    def call_defaults(self) -> dict[str, Any]:
        return {"height": 32, "width": 32, "max_sequence_length": 16}

    def train_prompts(self) -> list[str]:
        return [f"a training prompt {i}" for i in range(6)]

    def eval_prompts(self) -> list[str]:
        return ["a held-out prompt", "another held-out prompt", "a third held-out prompt"]


def test_check_recipe_measures_every_row_on_the_same_prompts(tmp_path: Path) -> None:
    result = check_recipe(TinySource(), "tiny", out=tmp_path, num_steps=STEPS, eval_prompts=2, long_interval=4,
                          show_progress=False, log=lambda m: None)
    learned, alternating = result.learned_row, result.alternating_row
    assert learned is not None and alternating is not None
    budget = int(result.rows["lesa@N4"]["full_passes"])
    assert learned == f"lesa-learned@{budget}" and alternating == f"lesa-alternating@{budget}"
    for name, row in result.rows.items():
        assert len(row["psnr_per_image"]) == 2 and all(v == v for v in row["psnr_per_image"]), name
    assert result.rows[alternating]["full_passes"] == budget == result.rows[learned]["full_passes"]
    meta = json.loads((tmp_path / "alternating" / BUNDLE_CONFIG_NAME).read_text())
    alternation = result.selection["alternating"]
    kept_candidate = meta["extra"]["selection"].get("floor", {}).get("kept_candidate")
    if kept_candidate:  # a kept closed-form candidate belongs to the steps it was fitted for: no refit
        assert "policy_fit" not in meta["extra"]
        assert result.selection["learned_schedule"] == alternation["trained_for"] == alternation["refitted"]
    else:
        trained_for = [s for s, d in enumerate(meta["extra"]["policy_fit"]["decisions_before"]) if d == "F"]
        assert trained_for == result.selection["learned_schedule"] == alternation["trained_for"]  # lesa-learned's
        assert list(meta["run_config"]["policy"]["steps"]) == alternation["refitted"]  # ...refitted for the new one
    trained_for = alternation["trained_for"]
    scores = alternation["validation"]  # the better pair on the validation slice is kept
    assert set(scores) == {"alternated", "start"} and scores[alternation["kept"]] == max(scores.values())
    if alternation["kept"] == "start":
        assert alternation["method"]["policy"]["steps"] == trained_for
        assert result.rows[alternating]["psnr_per_image"] == result.rows[learned]["psnr_per_image"]
    floor = meta["extra"]["selection"].get("floor", {})
    if floor.get("kept_candidate"):  # training.floor: keep — the bundle is the candidate that training fell short of
        chosen = floor["chosen"]
        family = ("linear" if "·" in chosen  # a blend, carried by the closed-form family
                  else "taylor" if chosen == "reuse" or chosen.startswith("taylor") else chosen.split("(")[0])
        assert meta["run_config"]["predictor"]["name"] == family
    else:
        assert meta["run_config"]["predictor"]["name"] == "kan"
    lesa_meta = json.loads((tmp_path / "lesa" / BUNDLE_CONFIG_NAME).read_text())
    if lesa_meta["extra"]["selection"]["floor"].get("kept_candidate"):  # other schedules get the trained family
        anywhere = json.loads((tmp_path / "lesa-any-schedule" / BUNDLE_CONFIG_NAME).read_text())
        assert anywhere["run_config"]["predictor"]["name"] == "kan"
        assert anywhere["extra"]["selection"]["epochs"] == lesa_meta["extra"]["selection"]["epochs"]  # resumed
    assert json.loads((tmp_path / "setting.json").read_text())["rows"].keys() == result.rows.keys()
    text = ZooReport([result]).markdown()
    assert f"{alternating} − " in text and f"{learned} − " in text
