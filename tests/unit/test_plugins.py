"""The plugin host: registration, duplicates, unknown names, environment switches."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest

from lesa_core import hookimpl
from lesa_core.errors import DuplicatePluginError, PluginLoadError, UnknownPluginError, UnsupportedModelError
from lesa_core.plugins import PluginHost
from lesa_predictors.taylor import TaylorPredictor


def _module(name: str, **hooks: object) -> types.ModuleType:
    module = types.ModuleType(name)
    for key, value in hooks.items():
        setattr(module, key, value)
    return module


def test_builtins_register(plugin_host: PluginHost) -> None:
    assert plugin_host.predictors.names() == ["taylor"]
    assert plugin_host.policies.names() == ["interval"]
    assert plugin_host.routers.names() == ["threshold"]


def test_registering_a_name_twice_raises(plugin_host: PluginHost) -> None:
    @hookimpl
    def lesa_register_predictors(registry):
        registry.add("taylor", TaylorPredictor)

    with pytest.raises(DuplicatePluginError, match="'taylor' is registered twice"):
        plugin_host.register(_module("dup_plugin", lesa_register_predictors=lesa_register_predictors))


def test_unknown_name_lists_the_registered_ones(plugin_host: PluginHost) -> None:
    with pytest.raises(UnknownPluginError) as info:
        plugin_host.predictors.get("kann")
    assert "unknown predictor 'kann'" in str(info.value)
    assert "Registered predictors: taylor" in str(info.value)


def test_registry_rejects_bad_names_and_types(plugin_host: PluginHost) -> None:
    with pytest.raises(ValueError, match="lower-case identifier"):
        plugin_host.predictors.add("Bad Name", TaylorPredictor)
    with pytest.raises(TypeError, match="subclass of Predictor"):
        plugin_host.predictors.add("not_a_predictor", object)  # type: ignore[arg-type]


def test_unknown_hook_is_reported_by_check_pending() -> None:
    @hookimpl
    def lesa_register_predictorz(registry):  # typo: no such hook
        pass

    with pytest.raises(PluginLoadError, match="does not define"):
        PluginHost.create(autoload=False, plugins=[_module("typo", lesa_register_predictorz=lesa_register_predictorz)])


def test_unclaimed_model_names_class_and_adapters(plugin_host: PluginHost) -> None:
    import torch

    with pytest.raises(UnsupportedModelError, match=r"torch\.nn\.modules\.linear\.Linear.*Registered adapters"):
        plugin_host.resolve_adapter(torch.nn.Linear(2, 2))


def test_registrations_record_their_distribution() -> None:
    host = PluginHost.create()
    entry = host.predictors.entry("taylor")
    assert entry.distribution == "lesa-predictors"
    assert entry.version


def _plugins_in_subprocess(env: dict[str, str]) -> set[str]:
    import json
    import os

    code = "import json; from lesa_core.plugins import PluginHost; " \
           "print(json.dumps([i.name for i in PluginHost.create().plugin_infos()]))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                         env={**os.environ, **env}).stdout
    return set(json.loads(out))


def test_disable_autoload_switch() -> None:
    assert _plugins_in_subprocess({"LESA_DISABLE_PLUGIN_AUTOLOAD": "1"}) == set()
    assert _plugins_in_subprocess({"LESA_DISABLE_PLUGIN_AUTOLOAD": "1",
                                   "LESA_PLUGINS": "lesa_predictors.taylor"}) == {"taylor"}


def test_disabled_plugins_switch_blocks_named_entry_points() -> None:
    names = _plugins_in_subprocess({"LESA_DISABLED_PLUGINS": "taylor,threshold"})
    assert "taylor" not in names and "threshold" not in names and "interval" in names


def test_hosts_are_independent(plugin_host: PluginHost) -> None:
    other = PluginHost.create(autoload=False)
    assert len(other.predictors) == 0 and len(plugin_host.predictors) == 1
