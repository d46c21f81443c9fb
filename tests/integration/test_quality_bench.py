"""``lesa bench --quality`` end to end on a tiny offline FluxPipeline: every ablation variant trained,
every section evaluated, the report written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from lesa_core.errors import ConfigError
from lesa_core.interfaces.model import ModelSource
from lesa_core.run import resolve_run
from lesa_core.testing.tiny import tiny_flux_pipeline
from lesa_workflows.bench.quality import ablation_variants, paired_difference, run_quality_bench

pytestmark = pytest.mark.integration

STEPS = 12
CONFIG = {
    "predictor": {"name": "kan", "taps": [3, 4, 4], "hidden": [8, 8], "per_channel": True},
    "policy": {"name": "interval", "interval": 4, "warmup": 2, "force_full": []},
    "training": {"num_steps": STEPS, "seed": 3, "stage1": {"epochs": 2, "batch_size": 4, "lr": 0.003},
                 "stage2": {"epochs": 1, "batch_size": 4, "lr": 0.001},
                 # no validation slice: selection scores ~9 rollouts per variant, which multiplies this test's
                 # time; selection is tested in tests/integration/test_selection_pipeline.py
                 "validation_prompts": 0},
}


class TinySource(ModelSource):
    description = "tiny offline FluxPipeline"

    def load(self, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> Any:
        return tiny_flux_pipeline().to(device)

    def default_config(self) -> dict[str, Any]:
        return CONFIG

    def call_defaults(self) -> dict[str, Any]:
        return {"height": 32, "width": 32, "max_sequence_length": 16}

    def train_prompts(self) -> list[str]:
        return [f"a training prompt {i}" for i in range(4)]

    def eval_prompts(self) -> list[str]:
        return ["a held-out prompt", "another held-out prompt"]


def test_variants_are_the_papers_ablation_plus_history_and_training_stages() -> None:
    variants = {v.name: v for v in ablation_variants(resolve_run(CONFIG), compare_taps=("output",))}
    assert list(variants) == ["lesa", "kan-one-stage", "mlp", "mlp-one-stage", "lesa-stage1-only",
                              "lesa-history-steps", "lesa-history-steps-stage1-only", "lesa-shared-weights",
                              "lesa-units-spacing", "lesa-tap-output"]
    assert variants["lesa-shared-weights"].predictor["per_channel"] is False
    assert variants["lesa-units-spacing"].predictor["relative_units"] == "spacing"
    assert variants["lesa-tap-output"].tap == "output" and variants["lesa"].tap is None
    assert variants["kan-one-stage"].router == {"name": "threshold", "boundaries": []}
    assert variants["kan-one-stage"].predictor["taps"] == 4  # the largest per-stage K
    assert variants["mlp"].predictor["name"] == "mlp" and variants["mlp"].predictor["per_channel"] is True
    assert variants["lesa-stage1-only"].stages == (1,)
    assert variants["lesa-history-steps"].predictor["history"] == "steps"


def test_a_training_free_predictor_is_refused_with_the_families_named() -> None:
    with pytest.raises(ConfigError, match="kan, mlp"):
        ablation_variants(resolve_run({"predictor": {"name": "taylor", "order": 1}}))


def test_paired_difference_is_mean_and_standard_error() -> None:
    assert paired_difference([3.0, 5.0], [1.0, 1.0]) == "+3.00 ± 1.00"
    assert paired_difference([1.0], [2.0]) == "-1.00"


def test_quality_bench_end_to_end(tmp_path: Path) -> None:
    source = TinySource()
    report = run_quality_bench(source, resolve_run(CONFIG), out=tmp_path, eval_prompts=2, steps_sweep=(8,),
                               compare_taps=("output",), extra_interval=5, model_name="tiny", show_progress=False,
                               log=lambda _: None)
    sections = list(dict.fromkeys(r.section for r in report.rows))
    assert sections == ["12 steps, N = 4: the ablation", "12 steps, N = 5 (fewer full passes)",
                        "8 steps, N = 4 (predictor trained at 12 steps)"]
    main = {r.name: r for r in report.rows if r.section == sections[0]}
    assert set(main) == {"full", "lesa", "kan-one-stage", "mlp", "mlp-one-stage", "lesa-stage1-only",
                         "lesa-history-steps", "lesa-history-steps-stage1-only", "lesa-shared-weights",
                         "lesa-units-spacing", "lesa-tap-output", "reuse", "taylor1", "taylor2",
                         "reuse-tap-output", "taylor1-tap-output", "taylor2-tap-output"}
    assert main["reuse-tap-output"].description == "FORA (Taylor order 0), tap output"
    assert main["full"].full_passes == STEPS and main["lesa"].full_passes == 4  # FFcccFcccFcc
    assert all(len(r.psnr_per_image) == 2 for r in report.rows)
    longer = {r.name: r for r in report.rows if r.section == sections[1]}
    # the Taylor peers at the run's N = 4 sit beside lesa at N = 5 (the "still beats Taylor")
    assert set(longer) == {"full", "lesa@N5", "reuse@N5", "taylor1@N5", "taylor1", "taylor2", "taylor1-tap-output",
                           "taylor2-tap-output"}
    assert longer["lesa@N5"].interval == 5 and longer["taylor1"].interval == 4
    assert longer["taylor1"].psnr_per_image == main["taylor1"].psnr_per_image
    sweep = {r.name: r for r in report.rows if r.section == sections[2]}
    assert set(sweep) == {"full", "lesa", "reuse", "taylor1", "taylor2"} and sweep["lesa"].steps == 8
    # stage 1 only really skipped stage 2; the history variants really changed the history mode
    stage1_only = json.loads((tmp_path / "bundles" / "lesa-stage1-only" / "lesa_bundle.json").read_text())
    assert stage1_only["extra"]["losses"]["stage2"] == []
    steps = json.loads((tmp_path / "bundles" / "lesa-history-steps" / "lesa_bundle.json").read_text())
    assert steps["run_config"]["predictor"]["history"] == "steps"
    tapped = json.loads((tmp_path / "bundles" / "lesa-tap-output" / "lesa_bundle.json").read_text())
    assert tapped["tap"] == "output" and (tmp_path / "data" / "tap-output" / "trajectories").is_dir()
    assert json.loads((tmp_path / "quality.json").read_text())["model"] == "tiny"
    text = (tmp_path / "quality.md").read_text()
    assert "| lesa-stage1-only |" in text and "±" in text
    assert (tmp_path / "error_per_step.png").stat().st_size > 0


def test_an_unknown_tap_fails_before_any_training(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nope"):
        run_quality_bench(TinySource(), resolve_run(CONFIG), out=tmp_path, eval_prompts=1, steps_sweep=(),
                          compare_taps=("nope",), extra_interval=None, show_progress=False, log=lambda _: None)
    assert not (tmp_path / "data").exists() and not (tmp_path / "bundles").exists()
