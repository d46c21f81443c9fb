"""``lesa`` sub-commands with bad flags and files: exit code 2 and one line ``lesa: error: ...`` that says
what is wrong and what to do (argument errors too: ``lesa: error: lesa <command>: argument --x: ...``),
nothing else on stderr but ``lesa: note:`` lines (no progress bar under ``--quiet``, no third-party
notice), no traceback, nothing written. Commands that load a model run on the tiny FLUX pipeline saved
with ``save_pretrained``."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from reliability_support import KAN_CONFIG, Outcome, gives_guidance, record, run_cli_case, tree

from lesa_core.bundle import BUNDLE_WEIGHTS_NAME
from lesa_core.cli import main

pytestmark = pytest.mark.integration


def _cli(case: str, argv: list[str], words: list[str], capsys: pytest.CaptureFixture[str], folders: list[Path],
         *, category: str = "cli") -> str:
    err = run_cli_case(case, argv, words, capsys, folders, category=category)
    return err


def _write(path: Path, content: Any) -> Path:
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def test_config_validate_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _cli("cli-validate-missing-file", ["config", "validate", str(tmp_path / "run.yaml")], ["file not found"],
         capsys, [tmp_path])


def test_config_validate_unknown_predictor(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = _write(tmp_path / "run.yaml", "predictor: {name: kann}\n")
    _cli("cli-validate-unknown-predictor", ["config", "validate", str(file)],
         ["at 'predictor.name'", "unknown predictor 'kann'", "kan"], capsys, [tmp_path])


def test_config_validate_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _cli("cli-validate-a-folder", ["config", "validate", str(tmp_path)], ["folder, not a file"], capsys, [tmp_path])


def test_config_validate_wrong_extension(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = _write(tmp_path / "run.ini", "[predictor]\nname = taylor\n")
    _cli("cli-validate-ini-file", ["config", "validate", str(file)], ["unsupported extension '.ini'"], capsys,
         [tmp_path])


@pytest.mark.parametrize(("case", "argv", "words"), [
    ("cli-batch-size-not-int", ["collect", "--batch-size", "abc"], ["--batch-size", "must be an integer >= 1",
                                                                     "'abc'"]),
    ("cli-train-without-out", ["train"], ["the following arguments are required: --out", "lesa train --help"]),
    ("cli-unknown-command", ["nosuch"], ["invalid choice: 'nosuch'", "plugins"]),
    ("cli-plugins-unknown-flag", ["plugins", "--bogus"], ["unrecognized arguments: --bogus"]),
    ("cli-sample-steps-not-int", ["sample", "--steps", "fifty"], ["--steps", "must be an integer >= 1"]),
], ids=lambda v: v if isinstance(v, str) else None)
def test_argparse_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, argv: list[str],
                         words: list[str]) -> None:
    _cli(case, argv, words, capsys, [tmp_path])


def test_train_bad_stages(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _cli("cli-train-stages-3", ["train", "--out", str(tmp_path / "b"), "--stages", "3"], ["--stages '3'", "use '1'"],
         capsys, [tmp_path])


def test_model_that_is_neither_a_source_nor_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _cli("cli-unknown-model", ["sample", "--model", str(tmp_path / "no-such-model"), "--out", str(tmp_path / "o")],
         ["neither a registered model source", "nor a local pipeline folder", "pass --model"], capsys, [tmp_path])


def test_model_folder_that_is_not_a_pipeline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "not-a-pipeline"
    folder.mkdir()
    _cli("cli-model-folder-not-a-pipeline", ["collect", "--model", str(folder), "--quiet"],
         ["no model_index.json", "save_pretrained()"], capsys, [tmp_path])


def test_config_typo_with_a_real_model(tmp_path: Path, pipeline_folder: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    file = _write(tmp_path / "run.toml", "[polciy]\nname = 'interval'\n")
    _cli("cli-collect-config-typo", ["collect", "--model", str(pipeline_folder), "--config", str(file), "--quiet"],
         ["run.toml", "unknown key 'polciy'", "policy"], capsys, [tmp_path, pipeline_folder])


def test_train_batch_size_zero(tmp_path: Path, pipeline_folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _write(tmp_path / "run.json", {**KAN_CONFIG, "training": {**KAN_CONFIG["training"], "prompts": ["a"]}})
    _cli("cli-train-batch-size-0", ["train", "--model", str(pipeline_folder), "--config", str(config), "--out",
                                    str(tmp_path / "bundle"), "--data-dir", str(tmp_path / "data"),
                                    "--batch-size", "0", "--quiet"],
         ["--batch-size", "must be an integer >= 1, got 0"], capsys, [tmp_path, pipeline_folder])


def test_collect_with_no_prompts(tmp_path: Path, pipeline_folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _write(tmp_path / "run.yaml", "training: {prompts: [], num_steps: 4}\n")
    _cli("cli-collect-no-prompts", ["collect", "--model", str(pipeline_folder), "--config", str(config),
                                    "--data-dir", str(tmp_path / "data"), "--quiet"],
         ["no prompts", "give at least one prompt"], capsys, [tmp_path, pipeline_folder])


def test_sample_with_a_damaged_bundle(tmp_path: Path, pipeline_folder: Path, kan_bundle: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(kan_bundle, bundle)
    weights = bundle / BUNDLE_WEIGHTS_NAME
    weights.write_bytes(weights.read_bytes()[:-8])
    _cli("cli-sample-damaged-bundle", ["sample", "--model", str(pipeline_folder), "--bundle", str(bundle),
                                       "--prompt", "a red circle", "--steps", "6", "--out", str(tmp_path / "out"),
                                       "--quiet"],
         ["truncated or was altered", "re-download or re-export"], capsys, [tmp_path, pipeline_folder])


def test_the_installed_console_script_exits_2_with_one_line(tmp_path: Path) -> None:
    """The real ``lesa`` executable (not ``main()`` in-process): exit status 2, one stderr line."""
    script = Path(sys.executable).with_name("lesa")
    done = subprocess.run([str(script), "config", "validate", str(tmp_path / "missing.toml")], capture_output=True,
                          text=True, timeout=120)
    lines = done.stderr.strip().splitlines()
    clear = done.returncode == 2 and len(lines) == 1 and lines[0].startswith("lesa: error: ") \
        and gives_guidance(lines[0])
    record(Outcome("cli-console-script", "cli", True, clear, sorted(tree(tmp_path)), [], done.stderr.strip()))
    assert done.returncode == 2, done
    assert len(lines) == 1 and lines[0].startswith("lesa: error: ") and "file not found" in lines[0], done.stderr
    assert done.stdout == ""


def test_sample_with_a_good_bundle_and_no_config(tmp_path: Path, pipeline_folder: Path, kan_bundle: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """``--bundle`` alone: the bundle's predictor and router are used (the default predictor of an empty
    config used to be taken as an attempt to change them, so this command always failed)."""
    code = main(["sample", "--model", str(pipeline_folder), "--bundle", str(kan_bundle), "--prompt", "a red circle",
                 "--steps", "6", "--out", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err
    ok = code == 0 and (tmp_path / "out" / "samples.json").is_file()
    record(Outcome("cli-sample-with-bundle", "cli", False, ok, [], []))
    assert ok, err
    rows = json.loads((tmp_path / "out" / "samples.json").read_text())["methods"]
    assert [r["name"] for r in rows] == ["lesa"] and rows[0]["full_passes"] < 6, rows
