"""``lesa bench --quality --zoo``'s table and checks (the numbers come from real runs; here the arithmetic)."""

from __future__ import annotations

import pytest

from lesa_core.errors import ConfigError
from lesa_core.sources import held_out_samples
from lesa_workflows.bench.zoo import (
    PEERS,
    ZooReport,
    ZooSetting,
    full_passes,
    paired,
    recipe_config,
    schedule_text,
)


def _setting() -> ZooSetting:
    s = ZooSetting("embedded", "default", 50, {"name": "interval", "interval": 7, "warmup": 3}, 10)
    values = {
        "lesa": [40.0, 42.0, 44.0],
        "linear": [39.0, 41.5, 43.0],
        "reuse": [38.0, 39.0, 40.0],
        "taylor1": [36.0, 37.0, 38.0],
        "taylor2": [30.0, 31.0, 32.0],
        "lesa@N10": [38.5, 39.5, 41.0],
        "taylor1@N10": [28.0, 29.0, 30.0],
    }
    for name, per_image in values.items():
        s.rows[name] = {
            "psnr": sum(per_image) / 3,
            "ssim": 0.9,
            "full_passes": 10 if "@" not in name else 8,
            "psnr_per_image": per_image,
        }
    return s


def test_paired_difference_is_mean_and_standard_error() -> None:
    mean, se = paired([2.0, 4.0, 6.0], [1.0, 1.0, 1.0])
    assert mean == pytest.approx(3.0) and se == pytest.approx((4 / 3) ** 0.5)


def test_checks_compare_with_the_best_training_free_method_at_n() -> None:
    s = _setting()
    assert s.best_free() == "reuse" and set(PEERS) == {"reuse", "taylor1", "taylor2"}
    checks = s.checks()
    assert checks["lesa − reuse"][0] == pytest.approx(3.0)
    assert checks["lesa@N10 − reuse@N7"][0] == pytest.approx(2.0 / 3, abs=1e-9)
    assert checks["lesa − linear"][0] == pytest.approx(2.5 / 3)


def test_the_table_states_the_full_step_schedule_with_n() -> None:
    text = ZooReport([_setting()]).markdown()
    assert "N = 7, E = 3, phase E + N − 1, forced [3]" in text
    assert "| embedded | default | lesa − reuse | +3.00 ± 0.58 |" in text
    assert (
        schedule_text({"interval": 5, "warmup": 2, "force_full": [], "phase": 4})
        == "N = 5, E = 2, phase 4, forced none"
    )


def test_the_recipe_is_predictor_kan_with_nothing_else() -> None:
    class Source:
        def default_config(self):
            return {
                "model": "m",
                "tap": "normed",
                "predictor": {"name": "kan", "per_channel": True},
                "policy": {"name": "interval", "interval": 7},
                "training": {"num_prompts": 24, "stage1": {"epochs": 99}},
            }

    config = recipe_config(Source())
    assert config["predictor"] == {"name": "kan"}
    assert "training" not in config  # nothing model-specific: the library's defaults, stage1 99 dropped
    assert recipe_config(Source(), num_steps=30)["training"] == {"num_steps": 30}
    assert config["tap"] == "normed" and config["policy"]["interval"] == 7


def test_a_learned_schedule_row_is_checked_against_the_best_at_n() -> None:
    """The zoo's ``lesa-learned@B`` row (lesa on the learned schedule of the longer N's passes): a table cell
    with its passes and a paired check against the best training-free method at N; a setting without it
    (an older zoo.json) shows a dash and no check."""
    s = _setting()
    assert "lesa-learned" not in " ".join(s.checks()) and " — |" in ZooReport([s]).markdown()
    s.rows["lesa-learned@8"] = {"psnr": 40.0, "ssim": 0.9, "full_passes": 8, "psnr_per_image": [39.0, 40.0, 41.0]}
    assert s.checks()["lesa-learned@8 − reuse@N7"][0] == pytest.approx(1.0)
    text = ZooReport([s]).markdown()
    assert "| 40.00 (8) |" in text and "| embedded | default | lesa-learned@8 − reuse@N7 | +1.00 ± 0.00 |" in text


@pytest.mark.parametrize(("interval", "passes"), [(7, 10), (10, 8)])
def test_full_passes_counts_the_interval_schedule(interval: int, passes: int) -> None:
    """N = 7 and N = 10 with E = 3 and the forced step 3 on 50 steps: 10 and 8 full passes (docs/training.md)."""
    assert full_passes({"name": "interval", "interval": interval, "warmup": 3}, 50) == passes


def test_an_alternating_row_is_checked_and_shown_beside_the_learned_one() -> None:
    """The zoo's ``lesa-alternating@B`` row (a predictor trained for the learned schedule, the schedule refitted):
    its own column and paired check; without it a dash."""
    s = _setting()
    s.rows["lesa-learned@8"] = {"psnr": 40.0, "ssim": 0.9, "full_passes": 8, "psnr_per_image": [39.0, 40.0, 41.0]}
    assert s.alternating_row is None and ZooReport([s]).markdown().count(" — |") == 1
    s.rows["lesa-alternating@8"] = {"psnr": 41.0, "ssim": 0.9, "full_passes": 8,
                                    "psnr_per_image": [40.5, 41.0, 41.5]}
    assert s.checks()["lesa-alternating@8 − reuse@N7"][0] == pytest.approx(2.0)
    text = ZooReport([s]).markdown()
    assert "| 40.00 (8) | 41.00 (8) |" in text and "lesa-alternating@8 − reuse@N7 | +2.00 ± 0.29 |" in text


class _Source:
    def eval_prompts(self) -> list[str]:
        return ["a", "b", "c"]


def test_held_out_samples_repeat_a_short_prompt_list_with_new_seeds() -> None:
    prompts, seeds = held_out_samples(_Source(), 2)  # type: ignore[arg-type]
    assert prompts == ["a", "b"] and seeds == [10_000, 10_001]
    prompts, seeds = held_out_samples(_Source(), 7)  # type: ignore[arg-type]
    assert prompts == ["a", "b", "c", "a", "b", "c", "a"]
    assert seeds == list(range(10_000, 10_007))  # every sample its own seed: no pair is the same sample twice
    with pytest.raises(ConfigError, match="held-out"):
        held_out_samples(_Source(), 0)  # type: ignore[arg-type]
