"""One resolution per run: layers, precedence, deep merge, plugin replacement, defaults, bundles."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lesa_core.bundle import BundleMetadata, save_bundle
from lesa_core.composite import build_predictor
from lesa_core.errors import ConfigError
from lesa_core.plugins import PluginHost
from lesa_core.run import ResolvedRun, deep_merge, resolve_run

MODEL_DEFAULTS = {
    "tap": "normed",
    "predictor": {"name": "taylor", "order": 2, "spacing": "time"},
    "policy": {"name": "interval", "interval": 7, "warmup": 3},
    "training": {"num_prompts": 24, "stage1": {"epochs": 5, "lr": 0.003}, "stage2": {"epochs": 1}},
}


def test_precedence_is_model_defaults_then_config_then_flags(plugin_host: PluginHost, tmp_path: Path) -> None:
    config = tmp_path / "run.json"
    config.write_text(json.dumps({"policy": {"interval": 10}, "training": {"stage1": {"epochs": 2}}}))
    run = resolve_run(config, model_defaults=MODEL_DEFAULTS, overrides={"training": {"stage1": {"lr": 0.1}}},
                      host=plugin_host)
    training = run.config.training
    assert (training.num_prompts, training.stage1.epochs, training.stage1.lr, training.stage2.epochs) == (24, 2, 0.1, 1)
    assert run.policy.as_dict() == {"name": "interval", "interval": 10, "warmup": 3}  # merged, same plugin
    assert run.predictor.as_dict() == MODEL_DEFAULTS["predictor"] and run.config.tap == "normed"
    assert run.origin == str(config)


def test_a_training_block_changes_only_the_keys_it_names(plugin_host: PluginHost) -> None:
    run = resolve_run({"training": {"num_steps": 20}}, model_defaults=MODEL_DEFAULTS, host=plugin_host)
    assert run.config.training.num_steps == 20
    assert run.config.training.num_prompts == 24 and run.config.training.stage1.epochs == 5


def test_naming_another_plugin_replaces_the_spec_below() -> None:
    base = {"predictor": {"name": "kan", "taps": [4, 8, 8], "per_channel": True}}
    assert deep_merge(base, {"predictor": {"name": "taylor"}})["predictor"] == {"name": "taylor"}
    assert deep_merge(base, {"predictor": "taylor"})["predictor"] == {"name": "taylor"}
    assert deep_merge(base, {"predictor": {"taps": 8}})["predictor"] == {"name": "kan", "taps": 8, "per_channel": True}
    assert deep_merge(base, {"predictor": {"name": "kan", "per_channel": False}})["predictor"]["taps"] == [4, 8, 8]
    assert deep_merge({"training": {"prompts": ["a", "b"]}}, {"training": {"prompts": ["c"]}}) == {
        "training": {"prompts": ["c"]}}  # lists replace
    assert base == {"predictor": {"name": "kan", "taps": [4, 8, 8], "per_channel": True}}  # inputs untouched


def test_left_out_kinds_get_the_registered_defaults(plugin_host: PluginHost) -> None:
    run = resolve_run(host=plugin_host)
    assert (run.predictor.name, run.router.name, run.policy.name) == ("taylor", "threshold", "interval")
    assert run.plugins.make_policy().num_full_passes(50) == 10
    assert run.plugins.router.boundaries == (0.9, 0.5)


def test_no_default_and_no_name_is_a_clear_error() -> None:
    import lesa_schedulers.policies.interval
    import lesa_schedulers.routers.threshold

    host = PluginHost.create(autoload=False, plugins=[lesa_schedulers.policies.interval,
                                                      lesa_schedulers.routers.threshold])
    with pytest.raises(ConfigError, match=r"no predictor is named and no installed plugin is the default") as info:
        resolve_run(host=host)
    assert info.value.path == "predictor"


def test_a_resolved_run_is_frozen_and_passes_through(plugin_host: PluginHost) -> None:
    run = resolve_run({"policy": {"name": "interval", "interval": 5}}, host=plugin_host)
    assert resolve_run(run, host=plugin_host) is run
    with pytest.raises(AttributeError):
        run.config = run.config  # type: ignore[misc]
    derived = run.derive(policy={"name": "interval", "interval": 9}, host=plugin_host)
    assert isinstance(derived, ResolvedRun) and derived.policy.params == {"interval": 9}
    assert run.policy.params == {"interval": 5}


def _bundle(tmp_path: Path, host: PluginHost) -> Path:
    run = resolve_run({"predictor": {"name": "taylor", "order": 2}, "router": {"name": "threshold"},
                       "policy": {"name": "interval", "interval": 7}}, host=host)
    predictor = build_predictor(run.plugins.predictor_cls, run.plugins.predictor_config, run.plugins.router, 4)
    meta = BundleMetadata(run_config=run.to_dict(), plugins={}, model_class="m", model_fingerprint="f",
                          tap="hidden", schedule=None, stage_boundaries=[0.9, 0.5], channels=4)
    return save_bundle(tmp_path / "bundle", predictor.to(torch.float32), meta)


def test_a_bundle_is_a_layer_below_the_config(plugin_host: PluginHost, tmp_path: Path) -> None:
    bundle = _bundle(tmp_path, plugin_host)
    run = resolve_run({"bundle": str(bundle), "policy": {"interval": 10}}, model_defaults=MODEL_DEFAULTS,
                      host=plugin_host)
    assert run.bundle is not None and run.bundle.path == bundle
    assert run.predictor.as_dict() == {"name": "taylor", "order": 2}  # the bundle's, over the model's defaults
    assert run.policy.params["interval"] == 10  # the config's, over the bundle's
    same = resolve_run(bundle, host=plugin_host)  # a bundle folder as the config is the bundle layer
    assert same.bundle is not None and same.predictor == run.predictor


def test_a_config_cannot_change_the_bundles_predictor(plugin_host: PluginHost, tmp_path: Path) -> None:
    bundle = _bundle(tmp_path, plugin_host)
    with pytest.raises(ConfigError, match="the bundle's predictor") as info:
        resolve_run({"bundle": str(bundle), "predictor": {"name": "taylor", "order": 1}}, host=plugin_host)
    assert info.value.path == "predictor"
    with pytest.raises(ConfigError, match="the bundle's router"):
        resolve_run(bundle=bundle, overrides={"router": {"name": "threshold", "boundaries": [0.5]}},
                    host=plugin_host)
