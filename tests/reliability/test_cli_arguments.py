"""Every command-line argument and environment variable is validated: a value LESA cannot use is the one
line ``lesa: error: ...`` with exit status 2, before any work (never a ``ZeroDivisionError`` for
``--num-prompts 0``, 50 steps for ``--steps 0``, an ``AssertionError`` for ``--device cuda`` without a
GPU, or a ``TypeError`` for ``LESA_PLUGINS=.evil``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from reliability_support import KAN_CONFIG, expect_behaviour, expect_error, run_cli_case

import lesa_core.plugins
from lesa_core.errors import PluginLoadError, UsageError

pytestmark = pytest.mark.integration

NO_CUDA = not torch.cuda.is_available()

# (case id, argv after `lesa`, words); MODEL / CONFIG / OUT are replaced by real paths
ARGUMENTS: list[tuple[str, list[str], list[str]]] = [
    ("cli-sample-num-prompts-0", ["sample", "--model", "MODEL", "--num-prompts", "0", "--out", "OUT"],
     ["--num-prompts", "must be an integer >= 1, got 0"]),
    ("cli-sample-num-prompts-negative", ["sample", "--num-prompts", "-2"], ["--num-prompts", "got -2"]),
    ("cli-sample-steps-0", ["sample", "--model", "MODEL", "--steps", "0", "--prompt", "a", "--out", "OUT"],
     ["--steps", "must be an integer >= 1, got 0"]),
    ("cli-sample-steps-negative", ["sample", "--steps", "-5"], ["--steps", "got -5"]),
    ("cli-sample-seed-negative", ["sample", "--seed", "-1"], ["--seed", "from 0 to 2**63 - 1"]),
    ("cli-sample-seed-too-large", ["sample", "--seed", str(2**64)], ["--seed", "from 0 to 2**63 - 1"]),
    ("cli-sample-seed-not-int", ["sample", "--seed", "lucky"], ["--seed", "'lucky'"]),
    ("cli-sample-prompt-without-value", ["sample", "--prompt"], ["--prompt", "expected one argument"]),
    ("cli-sample-device-unknown-type", ["sample", "--device", "tpu"], ["--device", "'tpu'", "use one of"]),
    ("cli-sample-device-garbage", ["sample", "--device", "gpu please"], ["--device", "not a torch device"]),
    ("cli-sample-device-meta", ["sample", "--device", "meta"], ["--device", "LESA runs on"]),
    ("cli-demo-eval-prompts-0", ["demo", "--eval-prompts", "0"], ["--eval-prompts", "got 0"]),
    ("cli-demo-extra-interval-negative", ["demo", "--extra-interval", "-1"], ["--extra-interval",
                                                                            "must be an integer >= 0"]),
    ("cli-demo-threads-0", ["demo", "--threads", "0"], ["--threads", "must be an integer >= 1"]),
    ("cli-train-threads-not-int", ["train", "--out", "OUT", "--threads", "two"], ["--threads", "'two'"]),
    ("cli-train-stages-empty", ["train", "--out", "OUT", "--stages", ""], ["--stages", "use '1', '2' or '1,2'"]),
    ("cli-train-stages-1-3", ["train", "--out", "OUT", "--stages", "1,3"], ["--stages '1,3'"]),
    ("cli-train-stages-words", ["train", "--out", "OUT", "--stages", "first"], ["--stages 'first'"]),
    ("cli-train-batch-size-negative", ["train", "--out", "OUT", "--batch-size", "-3"], ["--batch-size", "got -3"]),
    ("cli-collect-threads-negative", ["collect", "--threads", "-4"], ["--threads", "got -4"]),
    ("cli-bench-threads-0", ["bench", "--speed", "--threads", "0"], ["--threads", "got 0"]),
    ("cli-bench-repeats-0", ["bench", "--speed", "--repeats", "0"], ["--repeats", "got 0"]),
    ("cli-bench-steps-0", ["bench", "--speed", "--steps", "0"], ["--steps", "got 0"]),
    ("cli-bench-interval-0", ["bench", "--speed", "--interval", "0"], ["--interval", "got 0"]),
    ("cli-bench-warmup-negative", ["bench", "--speed", "--warmup", "-1"], ["--warmup", "got -1"]),
    ("cli-bench-unknown-method", ["bench", "--speed", "--methods", "full,turbo"], ["unknown method(s) turbo",
                                                                                  "choose from"]),
    ("cli-bench-unknown-model", ["bench", "--speed", "--model", "flux-pro"], ["unknown bench model 'flux-pro'"]),
    ("cli-bench-no-kind", ["bench"], ["pass --speed, --quality or --frontier"]),
    ("cli-bench-both-kinds", ["bench", "--speed", "--quality"], ["not allowed with argument"]),
    ("cli-bench-steps-sweep-words", ["bench", "--quality", "--steps-sweep", "a,b"], ["--steps-sweep", "30,40"]),
    ("cli-bench-steps-sweep-1", ["bench", "--quality", "--steps-sweep", "1", "--model", "MODEL", "--out", "OUT"],
     ["--steps-sweep", "at least 2"]),
    ("cli-config-without-action", ["config"], ["required: ACTION"]),
    ("cli-config-validate-without-file", ["config", "validate"], ["required: file"]),
    ("cli-plugins-extra-argument", ["plugins", "extra"], ["unrecognized arguments: extra"]),
    ("cli-train-config-missing", ["train", "--out", "OUT", "--config", "CONFIG-MISSING"], ["file not found"]),
]


@pytest.mark.parametrize(("case", "argv", "words"), ARGUMENTS, ids=[a[0] for a in ARGUMENTS])
def test_bad_argument(case: str, argv: list[str], words: list[str], tmp_path: Path, pipeline_folder: Path,
                      capsys: pytest.CaptureFixture[str]) -> None:
    paths = {"MODEL": str(pipeline_folder), "OUT": str(tmp_path / "out"),
             "CONFIG-MISSING": str(tmp_path / "missing.yaml")}
    run_cli_case(case, [paths.get(a, a) for a in argv], words, capsys, [tmp_path], category="cli")


@pytest.mark.skipif(not NO_CUDA, reason="this machine has a CUDA device")
@pytest.mark.parametrize(("case", "argv"), [
    ("cli-sample-device-cuda-without-gpu", ["sample", "--device", "cuda", "--model", "MODEL", "--out", "OUT"]),
    ("cli-train-device-cuda-without-gpu", ["train", "--device", "cuda:0", "--out", "OUT"]),
    ("cli-bench-device-cuda-without-gpu", ["bench", "--speed", "--device", "cuda"]),
], ids=lambda v: v if isinstance(v, str) else None)
def test_cuda_without_a_gpu(case: str, argv: list[str], tmp_path: Path, pipeline_folder: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    """`--device cuda` without a GPU once ended in torch's AssertionError after loading the model."""
    paths = {"MODEL": str(pipeline_folder), "OUT": str(tmp_path / "out")}
    run_cli_case(case, [paths.get(a, a) for a in argv], ["no CUDA device", "use --device cpu"], capsys, [tmp_path],
                 category="cli")


def test_cuda_index_beyond_the_devices(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    index = torch.cuda.device_count() + 3
    words = ["no CUDA device"] if NO_CUDA else [f"cuda:{index}", "numbered from 0"]
    run_cli_case("cli-device-cuda-index-too-large", ["sample", "--device", f"cuda:{index}"], words, capsys,
                 [tmp_path], category="cli")


def test_train_with_no_prompts_left(tmp_path: Path, pipeline_folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "run.json"
    config.write_text(json.dumps({**KAN_CONFIG, "training": {**KAN_CONFIG["training"], "prompts": "EMPTY"}}))
    (tmp_path / "EMPTY").write_text("\n\n")
    config.write_text(config.read_text().replace('"EMPTY"', json.dumps(str(tmp_path / "EMPTY"))))
    run_cli_case("cli-train-prompt-file-empty", ["train", "--model", str(pipeline_folder), "--config", str(config),
                                                 "--out", str(tmp_path / "out"), "--quiet"],
                 ["no prompts", "give at least one prompt"], capsys, [tmp_path], category="cli")


# ----------------------------------------------------------------------------- environment variables


ENVIRONMENT: list[tuple[str, str, str, list[str]]] = [
    ("env-lesa-plugins-relative", "LESA_PLUGINS", ".evil", ["LESA_PLUGINS", "'.evil'", "absolute module path"]),
    ("env-lesa-plugins-a-file-path", "LESA_PLUGINS", "plugins/mine.py", ["LESA_PLUGINS", "'plugins/mine.py'"]),
    ("env-lesa-plugins-missing-module", "LESA_PLUGINS", "lesa_no_such_plugin_module",
     ["LESA_PLUGINS names 'lesa_no_such_plugin_module'", "cannot be imported", "Fix the module path"]),
    ("env-autoload-not-a-flag", "LESA_DISABLE_PLUGIN_AUTOLOAD", "maybe",
     ["LESA_DISABLE_PLUGIN_AUTOLOAD='maybe'", "set it to 1 or 0"]),
    ("env-trace-not-a-flag", "LESA_TRACE_PLUGINS", "2", ["LESA_TRACE_PLUGINS='2'", "set it to 1 or 0"]),
    ("env-disabled-plugins-bad-name", "LESA_DISABLED_PLUGINS", "flux, bad name!",
     ["LESA_DISABLED_PLUGINS", "'bad name!'", "entry-point names"]),
]


@pytest.mark.parametrize(("case", "name", "value", "words"), ENVIRONMENT, ids=[e[0] for e in ENVIRONMENT])
def test_bad_environment_variable(case: str, name: str, value: str, words: list[str], tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The plugin host is created afresh (as in a new process) with the variable set."""
    monkeypatch.setenv(name, value)
    monkeypatch.setattr(lesa_core.plugins, "_HOST", None)
    run_cli_case(case, ["plugins"], words, capsys, [tmp_path], category="env")


def test_plugin_module_that_raises_while_imported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "lesa_broken_plugin.py").write_text("raise RuntimeError('half-installed')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("LESA_PLUGINS", "lesa_broken_plugin")
    monkeypatch.setattr(lesa_core.plugins, "_HOST", None)
    run_cli_case("env-lesa-plugins-module-raises", ["plugins"],
                 ["lesa_broken_plugin", "RuntimeError: 'half-installed'", "remove it from LESA_PLUGINS"], capsys,
                 [tmp_path], category="env")


@pytest.mark.parametrize(("case", "name", "value"), [
    ("env-world-size-not-int", "WORLD_SIZE", "two"),
    ("env-local-rank-negative", "LOCAL_RANK", "-1"),
], ids=lambda v: v if v.startswith("env-") else None)
def test_bad_torchrun_variable(case: str, name: str, value: str, tmp_path: Path, pipeline_folder: Path,
                               monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "run.json"
    config.write_text(json.dumps({**KAN_CONFIG, "training": {**KAN_CONFIG["training"], "prompts": ["a"]}}))
    monkeypatch.setenv(name, value)
    run_cli_case(case, ["collect", "--model", str(pipeline_folder), "--config", str(config), "--data-dir",
                        str(tmp_path / "data"), "--quiet"], [name, "fix or unset it"], capsys, [tmp_path],
                 category="env")


def test_cuda_graphs_variable_not_a_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    from lesa_core.interfaces import coefficients

    monkeypatch.setenv("LESA_CUDA_GRAPHS", "perhaps")
    monkeypatch.setattr(coefficients, "_ENV_CUDA_GRAPHS", [])
    expect_error("env-cuda-graphs-not-a-flag", "env", coefficients.cuda_graphs_enabled, UsageError,
                 ["LESA_CUDA_GRAPHS='perhaps'", "set it to 1 or 0"])


def test_plugin_host_in_python_raises_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    """The library (not only the CLI) refuses the variable with a LesaError, not a TypeError."""
    monkeypatch.setenv("LESA_PLUGINS", ".evil")
    expect_error("env-lesa-plugins-relative-in-python", "env", lambda: lesa_core.plugins.PluginHost.create(),
                 UsageError, ["absolute module path"])
    monkeypatch.setenv("LESA_PLUGINS", "lesa_no_such_plugin_module")
    expect_error("env-lesa-plugins-missing-in-python", "env", lambda: lesa_core.plugins.PluginHost.create(),
                 PluginLoadError, ["cannot be imported"])


def test_sample_any_prompt_on_the_embedded_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`lesa sample --prompt` with words the embedded model's adherence scorer cannot read once ended in its
    ValueError traceback; the image is sampled and adherence left empty."""
    from lesa_core.cli import main

    def check() -> list[str]:
        code = main(["sample", "--prompt", "a cat playing the violin", "--steps", "3", "--out", str(tmp_path / "out"),
                     "--quiet", "--threads", "1"])
        err = capsys.readouterr().err
        if code != 0:
            return [f"exit {code}: {err[-500:]}"]
        rows = json.loads((tmp_path / "out" / "samples.json").read_text())["methods"]
        return [] if rows[0]["adherence"] is None else [f"adherence {rows[0]['adherence']} for a free prompt"]

    expect_behaviour("cli-sample-free-prompt-embedded", "cli", check)
