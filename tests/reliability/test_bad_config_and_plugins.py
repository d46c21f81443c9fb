"""Bad run configs and plugin names: each refused with a specific error that names the field and
says what to do (in addition to tests/unit/test_config.py)."""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from reliability_support import expect_error

from lesa_core import hookimpl
from lesa_core.config import load_config, resolve_plugins
from lesa_core.errors import ConfigError, InvalidPluginError, PluginLoadError
from lesa_core.interfaces import Predictor
from lesa_core.plugins import PluginHost

# (case id, file name, file content (str or bytes; None = make a folder), error path, words)
CONFIG_FILES: list[tuple[str, str, str | bytes | None, str | None, list[str]]] = [
    ("json-does-not-parse", "run.json", '{"predictor": }', None, ["does not parse"]),
    ("json-top-level-list", "run.json", '["taylor"]', None, ["top level must be a mapping"]),
    ("config-is-a-folder", "run.yaml", None, None, ["folder, not a file"]),
    ("config-not-utf8", "run.yaml", b"\xff\xfepredictor: taylor\n", None, ["not UTF-8"]),
    ("toml-num-steps-not-int", "run.toml", 'training = {num_steps = "fifty"}\n', "training.num_steps",
     ["valid integer", "fifty"]),
    ("kan-taps-not-ints", "run.yaml", "predictor: {name: kan, taps: three}\n", "predictor.taps", ["taps"]),
    ("force-full-negative", "run.yaml", "policy: {name: interval, force_full: [-1]}\n", "policy.force_full",
     [">= 0"]),
    ("change-points-zero-stages", "run.yaml", "router: {name: change_points, num_stages: 0}\n",
     "router.num_stages", ["greater than or equal to 1"]),
    ("change-points-boundary-above-1", "run.yaml", "router: {name: change_points, boundaries: [1.5, 0.5]}\n",
     "router.boundaries", ["between 0 and 1"]),
    ("kan-schedule-ascending", "run.yaml",
     "predictor: {name: kan, time_encoding: schedule, schedule: [0.0, 0.5, 1.0]}\n", "predictor.schedule",
     ["descending"]),
    ("kan-schedule-atol-nan", "run.yaml", "predictor: {name: kan, schedule_atol: .nan}\n",
     "predictor.schedule_atol", ["finite"]),
    ("kan-schedule-without-encoding", "run.yaml", "predictor: {name: kan, schedule: [1.0, 0.5, 0.0]}\n",
     "predictor", ["time_encoding: schedule"]),
    ("training-unknown-section", "run.yaml", "training: {stage3: {epochs: 1}}\n", "training.stage3",
     ["unknown key 'stage3'", "stage2"]),
    ("predictor-empty-name", "run.yaml", "predictor: ''\n", "predictor.name", ["at least 1 character"]),
    ("interval-not-integer", "run.yaml", "policy: {name: interval, interval: 2.5}\n", "policy.interval",
     ["integer"]),
    ("predictor-unknown-name", "run.yaml", "predictor: kann\n", "predictor.name", ["unknown predictor 'kann'", "kan"]),
    ("policy-given-a-router-name", "run.yaml", "policy: threshold\n", "policy.name",
     ["unknown policy 'threshold'", "interval"]),
    ("router-given-a-policy-name", "run.yaml", "router: interval\n", "router.name",
     ["unknown router 'interval'", "change_points"]),
    ("predictor-name-wrong-case", "run.yaml", "predictor: KAN\n", "predictor.name", ["unknown predictor 'KAN'", "kan"]),
    ("adapter-unknown", "run.yaml", "adapter: fluxx\n", "adapter", ["unknown adapter 'fluxx'", "flux"]),
    ("tap-not-a-string", "run.yaml", "tap: [hidden]\n", "tap", ["valid string"]),
]


@pytest.mark.parametrize(("case", "name", "content", "path", "words"), CONFIG_FILES,
                         ids=[c[0] for c in CONFIG_FILES])
def test_bad_config_file(tmp_path: Path, host: PluginHost, case: str, name: str, content: str | bytes | None,
                         path: str | None, words: list[str]) -> None:
    file = tmp_path / name
    if content is None:
        file.mkdir()
    elif isinstance(content, bytes):
        file.write_bytes(content)
    else:
        file.write_text(content)
    exc = expect_error(case, "config", lambda: resolve_plugins(load_config(file), host, source=str(file)),
                       ConfigError, [str(file), *words], folders=[tmp_path])
    assert isinstance(exc, ConfigError) and exc.path == path, (exc.path, str(exc))


def test_config_of_the_wrong_python_type() -> None:
    expect_error("config-wrong-python-type", "config", lambda: load_config(42),  # type: ignore[arg-type]
                 ConfigError, ["RunConfig, a dict or a file path", "int"])


# ----------------------------------------------------------------------------- plugins


def _plugin(name: str, **hooks: Callable[..., Any]) -> types.ModuleType:
    module = types.ModuleType(name)
    for hook_name, fn in hooks.items():
        setattr(module, hook_name, fn)
    return module


class _Dummy(Predictor):
    @property
    def history_size(self) -> int:
        return 1

    def forward(self, inputs: Any) -> Any:
        return inputs.features[-1]


@hookimpl
def _bad_name(registry: Any) -> None:
    registry.add("My Predictor", _Dummy)


@hookimpl
def _not_a_class(registry: Any) -> None:
    registry.add("dummy", _Dummy(_Dummy.Config()))


@hookimpl
def _crashes(registry: Any) -> None:
    raise KeyError("settings")


PLUGINS = [
    ("plugin-registers-invalid-name", _bad_name, ["'My Predictor'", "bad_name_plugin", "lower-case identifier"]),
    ("plugin-registers-an-instance", _not_a_class, ["not_a_class_plugin", "subclass of Predictor"]),
    ("plugin-registration-hook-crashes", _crashes, ["crashes_plugin", "KeyError", "LESA_DISABLED_PLUGINS"]),
]


@pytest.mark.parametrize(("case", "hook", "words"), PLUGINS, ids=[p[0] for p in PLUGINS])
def test_broken_plugin_is_named(case: str, hook: Any, words: list[str]) -> None:
    """A plugin that registers garbage (or crashes) is reported by name, as a PluginLoadError (which the
    CLI prints as one line), not as a bare ValueError/KeyError traceback."""
    name = next(w for w in words if w.endswith("_plugin"))
    module = _plugin(name, lesa_register_predictors=hook)
    exc = expect_error(case, "plugin", lambda: PluginHost.create(autoload=False, plugins=[module]),
                       InvalidPluginError, words)
    assert isinstance(exc, PluginLoadError)


def test_lesa_plugins_env_names_a_missing_module(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LESA_PLUGINS", "no_such_lesa_plugin_module")
    assert "no_such_lesa_plugin_module" not in sys.modules
    expect_error("env-plugin-module-missing", "plugin", lambda: PluginHost.create(autoload=False), PluginLoadError,
                 ["no_such_lesa_plugin_module", "LESA_PLUGINS"])
