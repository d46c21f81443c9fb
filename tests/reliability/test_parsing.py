"""Bounded, strict parsing: YAML aliases bounded, duplicate keys refused in YAML, JSON and TOML, nesting
and size bounded, error messages bounded; cross-field constraints refused by the one resolution (so by
`lesa config validate`, `attach` and `train` before any work); paths that are not config files (a
missing bundle folder, a weights file) answered as what they are; damaged `lesa_call.json`, store and
checkpoint JSON refused with what to do."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from reliability_support import CALL, KAN_CONFIG, expect_behaviour, expect_error, run_cli_case

import lesa_core
from lesa_core.config import load_config, read_config_file
from lesa_core.errors import BundleNotFoundError, ConfigError, TrainingError
from lesa_core.plugins import PluginHost
from lesa_core.run import resolve_run
from lesa_core.sources import PretrainedPipelineSource
from lesa_core.trainer import PipelineRunner, train

ALIAS_BOMB = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
predictor: {name: taylor, order: *h}
"""
"""A 462-byte alias bomb in a plugin parameter: `lesa config validate` once ran 108 s and died of
MemoryError (the error message printed the value's repr)."""


def _resolve_file(host: PluginHost) -> Callable[[Path], Any]:
    return lambda file: resolve_run(file, host=host)


# (case id, file name, content, words)
FILES: list[tuple[str, str, str, list[str]]] = [
    ("yaml-alias-bomb", "run.yaml", ALIAS_BOMB, ["alias", "expanded", "spell out shared values"]),
    ("yaml-recursive-alias", "run.yaml", "a: &a [1, *a]\npredictor: taylor\n", ["contains itself"]),
    ("yaml-duplicate-top-key", "run.yaml", "predictor: taylor\npolicy: interval\npredictor: kan\n",
     ["duplicate key 'predictor'", "line 3", "write each key once"]),
    ("yaml-duplicate-nested-key", "run.yaml", "policy: {name: interval, interval: 7, interval: 9}\n",
     ["duplicate key 'interval'", "write each key once"]),
    ("yaml-duplicate-training-key", "run.yaml", "training:\n  seed: 1\n  stage1: {epochs: 2}\n  seed: 2\n",
     ["duplicate key 'seed'"]),
    ("json-duplicate-key", "run.json", '{"predictor": "taylor", "predictor": "kan"}', ["duplicate key 'predictor'"]),
    ("json-duplicate-nested-key", "run.json", '{"policy": {"name": "interval", "name": "interval"}}',
     ["duplicate key 'name'"]),
    ("toml-duplicate-key", "run.toml", 'tap = "hidden"\ntap = "output"\n', ["does not parse", "TOML"]),
    ("toml-duplicate-table", "run.toml", "[policy]\nname = 'interval'\n[policy]\ninterval = 3\n",
     ["does not parse", "TOML"]),
    ("yaml-nested-too-deep", "run.yaml", "training: " + "[" * 200 + "]" * 200 + "\n", ["nested more than"]),
    ("json-nested-too-deep", "run.json", '{"training": ' + "[" * 5000 + "]" * 5000 + "}", ["nested more than"]),
    ("toml-nested-too-deep", "run.toml", "training = " + "[" * 120 + "]" * 120 + "\n", ["nested more than"]),
    ("yaml-python-tag", "run.yaml", "predictor: !!python/object/apply:os.system ['true']\n",
     ["does not parse", "YAML"]),
    ("yaml-two-documents", "run.yaml", "predictor: taylor\n---\npolicy: interval\n", ["does not parse"]),
    ("tap-empty-string", "run.yaml", "tap: ''\n", ["tap", "at least 1 character"]),
    ("kan-taps-vs-two-stage-router", "run.yaml",
     "predictor: {name: kan, taps: [4, 8, 8]}\nrouter: {name: threshold, boundaries: [0.5]}\n",
     ["predictor.taps", "3 values", "2 stage(s)", "give one value per stage"]),
    ("mlp-taps-vs-one-stage-router", "run.yaml",
     "predictor: {name: mlp, taps: [4, 8]}\nrouter: {name: threshold, boundaries: []}\n",
     ["predictor.taps", "2 values", "1 stage(s)"]),
    ("kan-taps-vs-change-points", "run.yaml",
     "predictor: {name: kan, taps: [4, 8]}\nrouter: {name: change_points, num_stages: 3}\n",
     ["predictor.taps", "3 stage(s)"]),
    ("config-is-a-weights-file", "lesa_predictor.safetensors", "\x00\x01not text", ["safetensors weights file",
                                                                                    "pass the bundle folder"]),
]


@pytest.mark.parametrize(("case", "name", "content", "words"), FILES, ids=[c[0] for c in FILES])
def test_bad_file(case: str, name: str, content: str, words: list[str], tmp_path: Path, host: PluginHost) -> None:
    file = tmp_path / name
    file.write_text(content)
    began = time.perf_counter()
    exc = expect_error(case, "parsing", lambda: _resolve_file(host)(file), ConfigError, words, folders=[tmp_path])
    assert time.perf_counter() - began < 10, "parsing was not bounded"
    assert len(str(exc)) < 2000, f"message of {len(str(exc))} characters"


def test_alias_bomb_through_config_validate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = tmp_path / "run.yaml"
    file.write_text(ALIAS_BOMB)
    assert len(ALIAS_BOMB.encode()) < 600
    began = time.perf_counter()
    err = run_cli_case("cli-validate-alias-bomb", ["config", "validate", str(file)], ["expanded"], capsys, [tmp_path],
                       category="parsing")
    assert time.perf_counter() - began < 10 and len(err) < 2000


def test_validate_refuses_taps_against_router(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`lesa config validate` once said OK to this run, which `attach` refuses."""
    file = tmp_path / "run.yaml"
    file.write_text("predictor: {name: kan, taps: [4, 8, 8]}\nrouter: {name: threshold, boundaries: [0.5]}\n")
    run_cli_case("cli-validate-taps-vs-router", ["config", "validate", str(file)],
                 ["predictor.taps", "2 stage(s)"], capsys, [tmp_path], category="parsing")


def test_attach_refuses_taps_against_router(flux_pipe: Any, flux_inputs: dict[str, Any], host: PluginHost) -> None:
    config = {"predictor": {"name": "kan", "taps": [4, 8, 8]}, "router": {"name": "threshold", "boundaries": [0.5]}}
    expect_error("attach-taps-vs-router", "parsing", lambda: lesa_core.attach(flux_pipe, config, host=host),
                 ConfigError, ["predictor.taps", "2 stage(s)"], model=flux_pipe.transformer, inputs=flux_inputs)


class _Counting(PipelineRunner):
    calls = 0

    def run(self, *args: Any, **kwargs: Any) -> Any:
        _Counting.calls += 1
        return super().run(*args, **kwargs)


def test_train_refuses_taps_against_router_before_collecting(flux_pipe: Any, flux_inputs: dict[str, Any],
                                                             host: PluginHost, tmp_path: Path) -> None:
    """`train` once refused it only after collecting everything."""
    config = {**KAN_CONFIG, "predictor": {"name": "kan", "taps": [3, 4, 4]},
              "router": {"name": "threshold", "boundaries": [0.5]}}
    _Counting.calls = 0
    expect_error("train-taps-vs-router", "parsing",
                 lambda: train(flux_pipe, config, ["a red circle"], runner=_Counting(flux_pipe, **CALL),
                               out=tmp_path / "b", data_dir=tmp_path / "d", host=host, show_progress=False),
                 ConfigError, ["predictor.taps", "2 stage(s)"], folders=[tmp_path], model=flux_pipe.transformer,
                 inputs=flux_inputs)
    assert _Counting.calls == 0


def test_yaml_merge_keys_and_small_aliases_still_work(tmp_path: Path, host: PluginHost) -> None:
    """Bounded, not banned: a config may share values with anchors and override them with merge keys."""
    file = tmp_path / "run.yaml"
    file.write_text("defaults: &base {epochs: 2, lr: 0.001}\n"
                    "training:\n  stage1: {<<: *base, lr: 0.003}\n  stage2: *base\n"
                    "predictor: {name: kan, taps: [4, 8, 8]}\n")

    def check() -> list[str]:
        data = read_config_file(file)
        data.pop("defaults")
        config = load_config(data)
        got = (config.training.stage1.epochs, config.training.stage1.lr, config.training.stage2.lr)
        return [] if got == (2, 0.003, 0.001) else [f"got {got}"]

    expect_behaviour("yaml-merge-keys-and-aliases", "parsing", check)


def test_error_messages_are_bounded(host: PluginHost) -> None:
    """A huge value in the wrong place is quoted in a few lines, not in full."""
    huge = {"predictor": {"name": "taylor", "order": "x" * 1_000_000}}
    exc = expect_error("message-huge-value", "parsing", lambda: resolve_run(huge, host=host), ConfigError,
                       ["predictor.order", "..."])
    assert len(str(exc)) < 1000


def test_many_problems_are_counted_not_listed(host: PluginHost) -> None:
    many = {f"key_{i}": i for i in range(500)}
    exc = expect_error("message-many-problems", "parsing", lambda: resolve_run(many, host=host), ConfigError,
                       ["unknown key", "more problems"])
    assert len(str(exc)) < 3000


def test_huge_unknown_plugin_name(host: PluginHost) -> None:
    exc = expect_error("message-huge-plugin-name", "parsing",
                       lambda: resolve_run({"predictor": "k" * 100_000}, host=host), ConfigError,
                       ["unknown predictor", "Registered predictors"])
    assert len(str(exc)) < 1000


def test_config_file_too_large(tmp_path: Path, host: PluginHost) -> None:
    file = tmp_path / "run.yaml"
    file.write_text("# " + "x" * (17 * 2**20) + "\npredictor: taylor\n")
    expect_error("config-file-too-large", "parsing", lambda: resolve_run(file, host=host), ConfigError,
                 ["MiB", "pass a run config"], folders=[tmp_path])


def test_dict_config_nested_too_deep(host: PluginHost) -> None:
    deep: Any = 1
    for _ in range(500):
        deep = [deep]
    expect_error("dict-config-too-deep", "parsing", lambda: resolve_run({"training": {"prompts": deep}}, host=host),
                 ConfigError, ["nested more than"])


def test_dict_config_that_contains_itself(host: PluginHost) -> None:
    loop: list[Any] = []
    loop.append(loop)
    expect_error("dict-config-contains-itself", "parsing",
                 lambda: resolve_run({"training": {"prompts": loop}}, host=host), ConfigError, ["contains itself"])


# ----------------------------------------------------------------------------- paths that are not config files


def test_missing_bundle_folder_with_a_dot(tmp_path: Path, host: PluginHost) -> None:
    """A missing bundle folder named `kan-v1.2` was read as a config file with the extension '.2'."""
    expect_error("missing-bundle-kan-v1.2", "parsing", lambda: resolve_run(tmp_path / "kan-v1.2", host=host),
                 BundleNotFoundError, ["kan-v1.2", "not found", "pass a folder containing lesa_bundle.json"],
                 folders=[tmp_path])


def test_weights_file_given_to_attach(flux_pipe: Any, flux_inputs: dict[str, Any], kan_bundle: Path,
                                      host: PluginHost) -> None:
    """A `.safetensors` file passed to `attach` was answered with "not UTF-8"."""
    weights = kan_bundle / "lesa_predictor.safetensors"
    expect_error("attach-weights-file", "parsing", lambda: lesa_core.attach(flux_pipe, weights, host=host),
                 ConfigError, ["safetensors weights file", "pass the bundle folder"], model=flux_pipe.transformer,
                 inputs=flux_inputs)


def test_existing_file_with_another_extension(tmp_path: Path, host: PluginHost) -> None:
    file = tmp_path / "run.cfg"
    file.write_text("predictor = taylor\n")
    expect_error("config-cfg-extension", "parsing", lambda: resolve_run(file, host=host), ConfigError,
                 ["unsupported extension '.cfg'", "use .yaml"], folders=[tmp_path])


# ----------------------------------------------------------------------------- lesa_call.json


CALL_FILES: list[tuple[str, bytes, list[str]]] = [
    ("call-json-malformed", b'{"height": 32,', ["not valid JSON", "write it as a JSON object"]),
    ("call-json-a-list", b"[32, 32]", ["expected a JSON object", "got list"]),
    ("call-json-not-utf8", b'{"height": 32, "x": "\xff"}', ["not valid JSON"]),
    ("call-json-duplicate-key", b'{"height": 32, "height": 64}', ["duplicate key 'height'"]),
    ("call-json-bad-key", b'{"height width": 32}', ["not a call argument name"]),
    ("call-json-sets-steps", b'{"num_inference_steps": 20}', ["set by LESA", "remove them"]),
    ("call-json-too-deep", b'{"x": ' + b"[" * 3000 + b"]" * 3000 + b"}", ["nested more than"]),
]


@pytest.mark.parametrize(("case", "content", "words"), CALL_FILES, ids=[c[0] for c in CALL_FILES])
def test_malformed_call_file(case: str, content: bytes, words: list[str], tmp_path: Path) -> None:
    (tmp_path / "lesa_call.json").write_bytes(content)
    expect_error(case, "parsing", lambda: PretrainedPipelineSource(str(tmp_path)).call_defaults(), ConfigError,
                 ["lesa_call.json", *words], folders=[tmp_path])


def test_malformed_call_file_through_the_cli(tmp_path: Path, pipeline_folder: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "model"
    shutil.copytree(pipeline_folder, folder)
    (folder / "lesa_call.json").write_text('{"height": 32, "width": ')
    run_cli_case("cli-malformed-call-json", ["sample", "--model", str(folder), "--prompt", "a", "--out",
                                             str(tmp_path / "out"), "--quiet"],
                 ["lesa_call.json", "not valid JSON"], capsys, [tmp_path], category="parsing")


# ----------------------------------------------------------------------------- store and checkpoint JSON


def _edit_json(relative: str, edit: Callable[[Any], Any]) -> Callable[[Path], None]:
    def apply(data: Path) -> None:
        file = data / relative
        value = json.loads(file.read_text())
        file.write_text(json.dumps(edit(value)))

    return apply


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda d: {**d, key: value}


def _progress(key: str, value: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda d: {**d, "progress": {**d["progress"], key: value}}


STORE = "trajectories/store.json"
CHECKPOINT = "checkpoint/checkpoint.json"
DAMAGE: list[tuple[str, Callable[[Path], None], list[str]]] = [
    ("store-json-a-list", _edit_json(STORE, lambda d: [d]), ["store.json is damaged", "not a JSON object"]),
    ("store-json-num-steps-string", _edit_json(STORE, _set("num_steps", "six")), ["wrong type of num_steps"]),
    ("store-json-prompts-not-strings", _edit_json(STORE, _set("prompts", [1, 2])), ["wrong type of prompts"]),
    ("store-json-missing-key", _edit_json(STORE, lambda d: {k: v for k, v in d.items() if k != "tap"}),
     ["missing keys ['tap']"]),
    ("store-json-unknown-key", _edit_json(STORE, _set("colour", "red")), ["unknown keys ['colour']"]),
    ("store-json-schedule-length", _edit_json(STORE, lambda d: {**d, "schedule": d["schedule"][:3]}),
     ["schedule has 3 times"]),
    ("store-json-token-index-negative", _edit_json(STORE, _set("token_index", [-1, 2])), ["token_index"]),
    ("store-json-duplicate-key", lambda d: (d / STORE).write_text((d / STORE).read_text()[:-1] + ', "seed": 4}'),
     ["duplicate key 'seed'"]),
    ("checkpoint-progress-a-list", _edit_json(CHECKPOINT, _set("progress", [1, 2])), ["checkpoint.json is damaged"]),
    ("checkpoint-epoch-negative", _edit_json(CHECKPOINT, _progress("epoch", -3)), ["checkpoint.json is damaged"]),
    ("checkpoint-phase-7", _edit_json(CHECKPOINT, _progress("phase", 7)), ["checkpoint.json is damaged"]),
    ("checkpoint-losses-strings", _edit_json(CHECKPOINT, _progress("losses", {"stage1": ["low"]})),
     ["checkpoint.json is damaged"]),
    ("checkpoint-param-groups-garbage", _edit_json(CHECKPOINT, _set("param_groups", [{"lr": "x"}])),
     ["is damaged", "delete the folder"]),
    ("checkpoint-scalars-garbage", _edit_json(CHECKPOINT, _set("scalars", {"nonsense": 1})),
     ["is damaged", "delete the folder"]),
]


@pytest.mark.parametrize(("case", "damage", "words"), DAMAGE, ids=[c[0] for c in DAMAGE])
def test_damaged_store_or_checkpoint_json(case: str, damage: Callable[[Path], None], words: list[str],
                                          flux_pipe: Any, flux_inputs: dict[str, Any], host: PluginHost,
                                          kan_bundle: Path, tmp_path: Path) -> None:
    """A damaged store or checkpoint JSON once ended in a bare AssertionError or ValueError."""
    data = tmp_path / "data"
    shutil.copytree(kan_bundle.parent / "data", data)
    damage(data)
    expect_error(case, "parsing",
                 lambda: train(flux_pipe, KAN_CONFIG, ["a red circle", "a blue square"],
                               runner=PipelineRunner(flux_pipe, **CALL), out=tmp_path / "bundle", data_dir=data,
                               host=host, show_progress=False),
                 TrainingError, [*words, "delete the folder"], folders=[tmp_path], model=flux_pipe.transformer,
                 inputs=flux_inputs)
