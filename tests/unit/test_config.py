"""Run configs: the happy path and at least ten malformed configs, each with a clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

from lesa_core.config import RunConfig, load_config, resolve_plugins
from lesa_core.errors import ConfigError

GOOD_YAML = """\
adapter: auto
tap: hidden
predictor: {name: taylor, order: 2}
router: {name: threshold, boundaries: [0.9, 0.5]}
policy: {name: interval, interval: 7, warmup: 3}
training: {num_steps: 50, stage1: {epochs: 2}}
"""


def test_yaml_toml_and_dict_give_the_same_config(tmp_path: Path, plugin_host) -> None:
    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text(GOOD_YAML)
    toml_file = tmp_path / "run.toml"
    toml_file.write_text(
        'adapter = "auto"\ntap = "hidden"\n[predictor]\nname = "taylor"\norder = 2\n'
        '[router]\nname = "threshold"\nboundaries = [0.9, 0.5]\n[policy]\nname = "interval"\ninterval = 7\n'
        'warmup = 3\n[training]\nnum_steps = 50\n[training.stage1]\nepochs = 2\n'
    )
    from_yaml = load_config(yaml_file)
    assert load_config(toml_file) == from_yaml
    assert load_config(from_yaml.to_dict()) == from_yaml
    resolved = resolve_plugins(from_yaml, plugin_host)
    assert resolved.predictor_config.order == 2  # type: ignore[attr-defined]
    assert resolved.router.boundaries == (0.9, 0.5)


def test_string_shorthand_means_default_params(plugin_host) -> None:
    config = load_config({"predictor": "taylor", "policy": "interval"})
    assert resolve_plugins(config, plugin_host).predictor_config.order == 1  # type: ignore[attr-defined]


def test_defaults_are_a_valid_training_free_run(plugin_host) -> None:
    resolved = resolve_plugins(RunConfig(), plugin_host)
    assert resolved.make_policy().num_full_passes(50) == 10


MALFORMED = [
    # (yaml text, error path, words the message must contain)
    ("polciy: {name: interval}\n", "polciy", ["unknown key 'polciy'", "policy"]),
    ("predictor: {name: taylr}\n", "predictor.name", ["unknown predictor 'taylr'", "taylor"]),
    ("router: {name: nope}\n", "router.name", ["unknown router 'nope'", "threshold"]),
    ("policy: {name: sometimes}\n", "policy.name", ["unknown policy 'sometimes'", "interval"]),
    ("predictor: {name: taylor, ordr: 1}\n", "predictor.ordr", ["unknown key 'ordr'", "order"]),
    ("predictor: {name: taylor, order: 7}\n", "predictor.order", ["less than or equal to 2"]),
    ("policy: {name: interval, interval: 0}\n", "policy.interval", ["greater than or equal to 1"]),
    ("policy: {name: interval, warmup: -1}\n", "policy.warmup", ["greater than or equal to 0"]),
    ("router: {name: threshold, boundaries: [0.5, 0.9]}\n", "router.boundaries", ["descending"]),
    ("router: {name: threshold, boundaries: [1.5]}\n", "router.boundaries", ["between 0 and 1"]),
    ("training: {num_steps: 1}\n", "training.num_steps", ["greater than or equal to 2"]),
    ("training: {stage1: {epochs: 1, lrr: 0.1}}\n", "training.stage1.lrr", ["unknown key 'lrr'", "lr"]),
    ("predictor: {order: 2}\n", "predictor.name", ["Field required"]),
    ("guard_non_finite: maybe\n", "guard_non_finite", ["valid boolean"]),
    ("predictor: [taylor]\n", "predictor", []),
]


@pytest.mark.parametrize(("text", "path", "words"), MALFORMED, ids=[m[1] for m in MALFORMED])
def test_malformed_configs_name_file_path_and_what_is_allowed(tmp_path: Path, plugin_host, text, path, words) -> None:
    file = tmp_path / "bad.yaml"
    file.write_text(text)
    with pytest.raises(ConfigError) as info:
        resolve_plugins(load_config(file), plugin_host, source=str(file))
    message = str(info.value)
    assert str(file) in message
    assert info.value.path == path, message
    for word in words:
        assert word in message


@pytest.mark.parametrize(
    ("name", "content", "words"),
    [
        ("missing.yaml", None, ["file not found"]),
        ("broken.yaml", "predictor: {name: taylor\n", ["does not parse"]),
        ("broken.toml", "[predictor\nname='x'", ["does not parse"]),
        ("list.yaml", "- a\n- b\n", ["top level must be a mapping"]),
        ("run.ini", "[x]", ["unsupported extension"]),
    ],
)
def test_unreadable_files(tmp_path: Path, name: str, content: str | None, words: list[str]) -> None:
    file = tmp_path / name
    if content is not None:
        file.write_text(content)
    with pytest.raises(ConfigError) as info:
        load_config(file)
    assert str(file) in str(info.value)
    for word in words:
        assert word in str(info.value)


def test_configs_are_immutable() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        RunConfig().tap = "output"  # type: ignore[misc]


def test_a_partial_stage_block_changes_only_the_keys_it_names() -> None:
    """``stage1: {epochs: 3}`` once also reset the learning rate and batch size to the phase class's generic
    values (lr 1e-3, batch 64) instead of the recipe's: the variants that set part of a stage trained on a
    different recipe than they said."""
    from lesa_core.config import STAGE1_RECIPE, STAGE2_RECIPE, TrainingConfig

    training = TrainingConfig.model_validate({"stage1": {"epochs": 3}, "stage2": {"loss": "tap"}})
    assert training.stage1 == STAGE1_RECIPE.model_copy(update={"epochs": 3})
    assert training.stage2 == STAGE2_RECIPE.model_copy(update={"loss": "tap"})
    assert TrainingConfig().stage1 == STAGE1_RECIPE and TrainingConfig().stage2 == STAGE2_RECIPE
    dumped = TrainingConfig.model_validate({"stage2": {"lr": 5e-4}}).model_dump()
    assert TrainingConfig.model_validate(dumped).stage2.lr == 5e-4  # a full block (a bundle's) round-trips
