"""``lesa bench --frontier`` end to end on a tiny offline FluxPipeline: LESA's fixed, learned and adaptive
schedules and every peer at two budgets, cost counted on the blocks, the report and plot written."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import torch

from lesa_core.bundle import BUNDLE_CONFIG_NAME
from lesa_core.errors import ConfigError
from lesa_core.interfaces.model import ModelSource
from lesa_core.run import resolve_run
from lesa_core.testing.tiny import tiny_flux_pipeline
from lesa_workflows.bench.frontier import (
    FAMILIES,
    diffusers_taylorseer_for_budget,
    interval_for_budget,
    paired,
    run_frontier_bench,
)

pytestmark = pytest.mark.integration

STEPS = 12
CONFIG = {
    "predictor": {"name": "kan", "taps": [2, 3, 3], "hidden": [8, 8]},
    "policy": {"name": "interval", "interval": 3, "warmup": 2, "force_full": [2]},
    "training": {
        "num_steps": STEPS,
        "seed": 3,
        "stage1": {"epochs": 2, "batch_size": 4, "lr": 0.003},
        "stage2": {"epochs": 1, "batch_size": 4, "lr": 0.001},
    },
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


def test_schedules_for_a_budget_make_exactly_that_many_passes() -> None:
    from lesa_schedulers.policies.interval import IntervalConfig, IntervalPolicy

    for budget in range(6, 17):
        fixed = interval_for_budget(50, budget)
        assert fixed is not None
        config = IntervalConfig(**{k: v for k, v in fixed.items() if k != "name"})
        assert IntervalPolicy(config).num_full_passes(50) == budget
        n, e = diffusers_taylorseer_for_budget(50, budget) or (0, 0)
        assert sum(s < e or (s - e - 1) % n == 0 for s in range(50)) == budget
    assert interval_for_budget(50, 10) == {"name": "interval", "interval": 7, "warmup": 3, "force_full": [3]}
    assert paired([3.0, 5.0], [1.0, 2.0]) == (2.5, 0.5)


def test_frontier_end_to_end(tmp_path: Path) -> None:
    report = run_frontier_bench(
        TinySource(),
        resolve_run(CONFIG),
        out=tmp_path / "out",
        budgets=(4, 6),
        eval_prompts=2,
        show_progress=False,
        log=lambda m: None,
        model_name="tiny",
    )
    families = {r.family for r in report.rows}
    assert families == set(FAMILIES)
    for r in report.rows:
        assert r.full_pass_equivalents is not None and len(r.psnr_per_image) == 2
        if r.family in ("lesa", "lesa-learned", "lesa-alternating", "lesa-ts-sched", "reuse", "taylor1", "taylor2",
                        "diffusers-taylorseer"):
            assert r.full_pass_equivalents == pytest.approx(r.budget), r.name  # exact schedules, counted
        if r.family == "lesa-adaptive":
            assert r.full_pass_equivalents <= r.budget + 1e-9  # the cap holds
        if r.family == "diffusers-fbcache":
            assert r.full_pass_equivalents > 0
        if r.family in ("lesa-probe", "lesa-probe-learned"):  # forecast steps run 1 of the 2 blocks
            assert r.full_pass_equivalents == pytest.approx(r.budget + (STEPS - r.budget) / 2), r.name
    for budget in (4, 6):  # a predictor trained for TaylorSeer's full steps, one per budget
        n, e = diffusers_taylorseer_for_budget(STEPS, budget) or (0, 0)
        meta = json.loads((tmp_path / "out" / f"bundle-ts-sched-{budget}" / BUNDLE_CONFIG_NAME).read_text())
        assert meta["run_config"]["policy"] == {"name": "interval", "interval": n, "warmup": e, "force_full": [],
                                                "phase": e + 1}
    for budget in (4, 6):  # trained for lesa-learned's steps, which are then refitted for it: both in the bundle
        learned = next(r for r in report.rows if r.name == f"lesa-learned@{budget}")
        alternated = next(r for r in report.rows if r.name == f"lesa-alternating@{budget}")
        meta = json.loads((tmp_path / "out" / f"bundle-alternating-{budget}" / BUNDLE_CONFIG_NAME).read_text())
        policy = meta["run_config"]["policy"]
        assert policy["name"] == "learned" and len(policy["steps"]) == budget and policy["num_steps"] == STEPS
        if meta["extra"]["selection"].get("floor", {}).get("kept_candidate"):  # bound to its steps: not refitted
            assert "policy_fit" not in meta["extra"]
            trained_for = policy["steps"]
        else:
            trained_for = [s for s, d in enumerate(meta["extra"]["policy_fit"]["decisions_before"]) if d == "F"]
        assert f"steps {trained_for}" == learned.setting  # lesa-learned's steps, fitted for the run's predictor
        assert f"refitted to steps {policy['steps']}" in alternated.setting
        # the pair kept is the better on the validation slice: the new one, or lesa-learned itself
        scores = dict(re.findall(r"(alternated|start) (-?[\d.]+) dB", alternated.setting))
        kept = "start" if "kept start" in alternated.setting else "alternated"
        assert set(scores) == {"alternated", "start"} and scores[kept] == max(scores.values(), key=float)
        if kept == "start":
            assert alternated.psnr_per_image == learned.psnr_per_image
    written = json.loads((tmp_path / "out" / "frontier.json").read_text())
    assert set(written["comparisons"]["per_budget"]) == {"4", "6"}
    assert all(
        c["best_lesa"] not in ("lesa-probe", "lesa-probe-learned")  # more FPE: compared net of cost
        for c in written["comparisons"]["per_budget"].values()
    )
    net = written["comparisons"]["probe_net_of_cost"]
    assert {p["name"] for p in net} == {
        "lesa-probe@4",
        "lesa-probe@6",
        "lesa-probe-learned@4",
        "lesa-probe-learned@6",
    }
    at4 = next(p for p in net if p["name"] == "lesa-probe@4")  # 8 FPE: more than B = 6 rows spend
    assert at4["full_pass_equivalents"] == pytest.approx(8.0) and "lesa" not in at4 and "peer" not in at4
    assert "net of their cost" in (tmp_path / "out" / "frontier.md").read_text()
    assert (tmp_path / "out" / "frontier.png").stat().st_size > 1000
    assert "Best LESA variant" in (tmp_path / "out" / "frontier.md").read_text()


def test_unknown_method_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="diffusers-fbcache"):
        run_frontier_bench(
            TinySource(),
            resolve_run(CONFIG),
            out=tmp_path / "o",
            families=("nope",),
            show_progress=False,
            log=lambda m: None,
        )
