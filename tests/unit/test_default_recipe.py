"""The one default training recipe (issue #15): sizes are the library's, the validation slice is collected in
addition to the training prompts of a model source, ``token_subsample: auto`` follows the tap's layout."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from lesa_core.config import AUTO_TOKEN_SUBSAMPLE, DEFAULT_SOURCE_PROMPTS, TrainingConfig, load_config
from lesa_core.errors import ConfigError
from lesa_core.sources import training_prompts
from lesa_core.trainer import token_subsample
from lesa_core.trainer.selection import validation_count


class Source:
    def train_prompts(self) -> list[str]:
        return [f"prompt {i}" for i in range(100)]


def test_selection_is_on_and_the_stage_sizes_are_the_library_ones() -> None:
    training = TrainingConfig()
    assert training.validation_prompts == 8
    assert [(s.name, s.params) for s in training.start] == [
        ("taylor", {"order": 0}),
        ("taylor", {"order": 1}),
        ("taylor", {"order": 2}),
        ("linear", {}),
        ("linear", {"taps": 2}),
        ("linear", {"taps": 8}),
    ]
    assert training.floor == "keep"
    assert (training.stage1.epochs, training.stage1.lr, training.stage1.batch_size) == (6, 3e-3, 24)
    assert (training.stage2.epochs, training.stage2.lr, training.stage2.batch_size) == (1, 1e-3, 12)
    assert training.token_subsample == "auto"
    assert training.collect_batch == 4 and training.stage2.loss == "guided"


@pytest.mark.parametrize(
    ("training", "collected", "trained"),
    [
        ({}, DEFAULT_SOURCE_PROMPTS + 8, DEFAULT_SOURCE_PROMPTS),  # 24 trained + 8 validation
        ({"num_prompts": 40}, 48, 40),
        ({"num_prompts": 9}, 12, 9),  # the slice is at most a third of the trained prompts
        ({"num_prompts": 24, "validation_prompts": 0}, 24, 24),
    ],
)
def test_a_model_source_gives_the_training_prompts_plus_the_validation_slice(
    training: dict[str, Any], collected: int, trained: int
) -> None:
    config = TrainingConfig.model_validate(training)
    prompts = training_prompts(config, Source())  # type: ignore[arg-type]
    assert len(prompts) == collected
    assert len(prompts) - validation_count(len(prompts), config.validation_prompts) == trained


def test_a_prompt_list_is_used_as_given_and_the_slice_comes_out_of_it() -> None:
    config = TrainingConfig.model_validate({"prompts": [f"p{i}" for i in range(12)]})
    prompts = training_prompts(config, Source())  # type: ignore[arg-type]
    assert prompts == [f"p{i}" for i in range(12)]
    assert validation_count(len(prompts), config.validation_prompts) == 3


def _binding(value: Any, token_major: bool) -> Any:
    training = TrainingConfig.model_validate({"token_subsample": value})
    return SimpleNamespace(
        run=SimpleNamespace(config=SimpleNamespace(training=training)),
        adapter=SimpleNamespace(tap_is_token_major=lambda tap: token_major),
        tap="hidden",
    )


@pytest.mark.parametrize(
    ("value", "token_major", "kept"),
    [("auto", True, AUTO_TOKEN_SUBSAMPLE), ("auto", False, None), (None, True, None), (7, True, 7)],
)
def test_token_subsample_auto_keeps_a_fixed_count_of_a_token_tap_and_all_of_any_other(
    value: Any, token_major: bool, kept: int | None
) -> None:
    assert token_subsample(_binding(value, token_major)) == kept


def test_a_bad_token_subsample_is_refused_with_the_allowed_values(tmp_path) -> None:
    path = tmp_path / "run.json"
    path.write_text('{"training": {"token_subsample": 0}}')
    with pytest.raises(ConfigError, match="'auto' or null"):
        load_config(str(path))


def test_lesa_train_states_the_full_step_schedule_it_trained_for() -> None:
    from lesa_core.cli.train_cmd import full_step_schedule
    from lesa_core.run import resolve_run

    run = resolve_run({"predictor": "kan", "policy": {"name": "interval", "interval": 10, "warmup": 3}})
    assert full_step_schedule(run).endswith("full steps 0, 1, 2, 3, 12, 22, 32, 42 (8 of 50)")
    mixed = resolve_run({"predictor": "kan", "policy": {"name": "interval", "interval": 10},
                         "training": {"schedules": "auto"}})
    assert full_step_schedule(mixed).endswith(
        "full steps 0, 1, 2, 3, 12, 22, 32, 42 (8 of 50); also trained on interval=15: full steps 0, 1, 2, 3, 17, "
        "32, 47 (7 of 50)")
