"""Nothing lost, ever: where LESA writes its outputs.

An output goes to a new folder, an empty one, or one LESA wrote before (recognised by its metadata);
anything else is refused before any work, the folder untouched. ``--out`` inside or equal to the data
folder is refused. Writability and free space are checked before long work; a disk that fills up
anyway is answered by a clear error with nothing half-written. Files follow the umask.

The full-disk cases run on a small tmpfs mounted for the test (skipped where mounting is not allowed).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from reliability_support import CALL, KAN_CONFIG, expect_behaviour, expect_error, run_cli_case, tree

from lesa_core import LesaBundle
from lesa_core.bundle import BUNDLE_CONFIG_NAME, BUNDLE_WEIGHTS_NAME
from lesa_core.errors import OutputError
from lesa_core.outputs import OUTPUT_MARKER, check_free_space, check_writable
from lesa_core.plugins import PluginHost
from lesa_core.trainer import PipelineRunner, train

pytestmark = pytest.mark.integration

PROMPTS = ["a red circle", "a blue square"]


def _digests(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with its content digest (what must survive a refused command)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _user_project(folder: Path) -> Path:
    """A folder of the user's (what `lesa train --out` once emptied)."""
    (folder / "src").mkdir(parents=True)
    (folder / "README.txt").write_text("my notes\n")
    (folder / "src" / "main.py").write_text("print('hello')\n")
    return folder


class CountingRunner(PipelineRunner):
    """A pipeline runner that counts its sampling calls (a refusal "before any work" makes none)."""

    calls = 0

    def run(self, *args: Any, **kwargs: Any) -> Any:
        CountingRunner.calls += 1
        return super().run(*args, **kwargs)


def _train(pipe: Any, host: PluginHost, out: Path, data: Path, **kwargs: Any) -> tuple[Path, Any]:
    return train(pipe, KAN_CONFIG, PROMPTS, runner=CountingRunner(pipe, **CALL), out=out, data_dir=data, host=host,
                 show_progress=False, **kwargs)


def _refused_before_work(case: str, pipe: Any, inputs: dict[str, Any], host: PluginHost, tmp_path: Path, out: Path,
                         data: Path, words: list[str]) -> None:
    """``train`` refuses ``out`` with an :class:`OutputError` before sampling anything, leaving every file
    under ``tmp_path`` as it was."""
    before = _digests(tmp_path)
    CountingRunner.calls = 0
    expect_error(case, "output", lambda: _train(pipe, host, out, data), OutputError, words, folders=[tmp_path],
                 model=pipe.transformer, inputs=inputs)
    assert CountingRunner.calls == 0, "sampled before refusing"
    assert _digests(tmp_path) == before


# ----------------------------------------------------------------------------- never delete what LESA did not write


def test_train_into_a_users_folder_is_refused(flux_pipe: Any, flux_inputs: dict[str, Any], host: PluginHost,
                                              tmp_path: Path) -> None:
    """`lesa train --out <existing folder>` once deleted README.txt and src/main.py."""
    out = _user_project(tmp_path / "project")
    _refused_before_work("train-out-users-folder", flux_pipe, flux_inputs, host, tmp_path, out, tmp_path / "data",
                         ["project", "README.txt", "src", "LESA did not write", "choose a new or empty folder"])


def test_train_out_equal_to_data_dir_is_refused(flux_pipe: Any, flux_inputs: dict[str, Any], host: PluginHost,
                                                kan_bundle: Path, tmp_path: Path) -> None:
    """`--out` equal to `--data-dir` once deleted the trajectories and checkpoints."""
    data = tmp_path / "data"
    shutil.copytree(kan_bundle.parent / "data", data)
    _refused_before_work("train-out-is-data-dir", flux_pipe, flux_inputs, host, tmp_path, data, data,
                         ["--out", "is --data-dir", "choose an --out outside --data-dir"])


def test_train_out_inside_data_dir_is_refused(flux_pipe: Any, flux_inputs: dict[str, Any], host: PluginHost,
                                              kan_bundle: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(kan_bundle.parent / "data", data)
    _refused_before_work("train-out-inside-data-dir", flux_pipe, flux_inputs, host, tmp_path, data / "bundle", data,
                         ["lies inside --data-dir", "choose an --out outside"])


def test_train_data_dir_inside_out_is_refused(flux_pipe: Any, flux_inputs: dict[str, Any], host: PluginHost,
                                              tmp_path: Path) -> None:
    _refused_before_work("train-data-dir-inside-out", flux_pipe, flux_inputs, host, tmp_path, tmp_path / "out",
                         tmp_path / "out" / "data", ["contains --data-dir", "choose an --out outside"])


def test_train_out_is_a_file(flux_pipe: Any, flux_inputs: dict[str, Any], host: PluginHost, tmp_path: Path) -> None:
    (tmp_path / "bundle").write_text("not a folder")
    _refused_before_work("train-out-is-a-file", flux_pipe, flux_inputs, host, tmp_path, tmp_path / "bundle",
                         tmp_path / "data", ["existing file", "choose a new folder path"])


def test_train_out_under_a_file(flux_pipe: Any, flux_inputs: dict[str, Any], host: PluginHost, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("a file")
    _refused_before_work("train-out-under-a-file", flux_pipe, flux_inputs, host, tmp_path,
                         tmp_path / "notes.txt" / "bundle", tmp_path / "data", ["is a file, not a folder",
                                                                                "choose another path"])


def test_train_out_not_writable(flux_pipe: Any, flux_inputs: dict[str, Any], host: PluginHost, tmp_path: Path) -> None:
    """An --out that cannot be created (here under /proc, which nobody can write, root included) is
    refused before collection — it once failed with a raw PermissionError after the whole training."""
    _refused_before_work("train-out-not-writable", flux_pipe, flux_inputs, host, tmp_path,
                         Path("/proc/lesa-cannot-write-here/bundle"), tmp_path / "data",
                         ["not writable", "choose a folder you can write to"])


def test_train_out_is_a_bundle_with_a_users_file(flux_pipe: Any, flux_inputs: dict[str, Any], host: PluginHost,
                                                 kan_bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    shutil.copytree(kan_bundle, out)
    (out / "NOTES.md").write_text("what this bundle is for")
    _refused_before_work("train-out-bundle-plus-users-file", flux_pipe, flux_inputs, host, tmp_path, out,
                         tmp_path / "data", ["NOTES.md", "move them out or choose another folder"])


def test_checkpoint_dir_of_a_users_folder_is_refused(flux_pipe: Any, flux_inputs: dict[str, Any], host: PluginHost,
                                                     tmp_path: Path) -> None:
    checkpoints = _user_project(tmp_path / "ckpt")
    before = _digests(tmp_path)
    expect_error("train-checkpoint-dir-users-folder", "output",
                 lambda: _train(flux_pipe, host, tmp_path / "bundle", tmp_path / "data", checkpoint_dir=checkpoints),
                 OutputError, ["checkpoint folder", "README.txt", "choose a new or empty folder"], folders=[tmp_path],
                 model=flux_pipe.transformer, inputs=flux_inputs)
    assert _digests(tmp_path) == before


def test_trajectory_folder_of_a_users_folder_is_refused(flux_pipe: Any, flux_inputs: dict[str, Any],
                                                        host: PluginHost, tmp_path: Path) -> None:
    data = tmp_path / "data"
    _user_project(data / "trajectories")
    before = _digests(tmp_path)
    expect_error("train-trajectories-users-folder", "output",
                 lambda: _train(flux_pipe, host, tmp_path / "bundle", data), OutputError,
                 ["trajectory store folder", "README.txt"], folders=[tmp_path], model=flux_pipe.transformer,
                 inputs=flux_inputs)
    assert _digests(tmp_path) == before


def test_save_pretrained_into_a_users_folder_is_refused(kan_bundle: Path, host: PluginHost, tmp_path: Path) -> None:
    """`LesaBundle.save_pretrained(existing_folder)` once deleted what was there."""
    bundle = LesaBundle.from_pretrained(kan_bundle, host=host)
    target = _user_project(tmp_path / "project")
    before = _digests(tmp_path)
    expect_error("save-pretrained-users-folder", "output", lambda: bundle.save_pretrained(target), OutputError,
                 ["project", "README.txt", "LESA did not write", "choose a new or empty folder"], folders=[tmp_path])
    assert _digests(tmp_path) == before


def test_save_pretrained_onto_a_file_is_refused(kan_bundle: Path, host: PluginHost, tmp_path: Path) -> None:
    bundle = LesaBundle.from_pretrained(kan_bundle, host=host)
    (tmp_path / "weights.bin").write_bytes(b"\x00" * 16)
    expect_error("save-pretrained-onto-a-file", "output", lambda: bundle.save_pretrained(tmp_path / "weights.bin"),
                 OutputError, ["existing file", "choose a new folder path"], folders=[tmp_path])
    assert (tmp_path / "weights.bin").read_bytes() == b"\x00" * 16


def test_save_pretrained_onto_a_dangling_link_is_refused(kan_bundle: Path, host: PluginHost, tmp_path: Path) -> None:
    bundle = LesaBundle.from_pretrained(kan_bundle, host=host)
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    expect_error("save-pretrained-dangling-link", "output", lambda: bundle.save_pretrained(tmp_path / "link"),
                 OutputError, ["dangling symbolic link", "remove it or choose another path"], folders=[tmp_path])


def test_ours_are_replaced_and_empty_folders_used(kan_bundle: Path, host: PluginHost, tmp_path: Path) -> None:
    """What may be written: a previous bundle (replaced whole), an empty folder, a new path."""
    bundle = LesaBundle.from_pretrained(kan_bundle, host=host)

    def check() -> list[str]:
        problems = []
        previous = tmp_path / "previous"
        shutil.copytree(kan_bundle, previous)
        (previous / BUNDLE_WEIGHTS_NAME).write_bytes(b"stale")  # a damaged previous bundle is still ours
        empty = tmp_path / "empty"
        empty.mkdir()
        for target in (previous, empty, tmp_path / "new" / "nested"):
            bundle.save_pretrained(target)
            if sorted(p.name for p in target.iterdir()) != sorted([BUNDLE_CONFIG_NAME, BUNDLE_WEIGHTS_NAME]):
                problems.append(f"{target}: {sorted(p.name for p in target.iterdir())}")
            elif (target / BUNDLE_WEIGHTS_NAME).read_bytes() != (kan_bundle / BUNDLE_WEIGHTS_NAME).read_bytes():
                problems.append(f"{target}: weights differ")
        if [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]:
            problems.append("temporary folders left")
        return problems

    expect_behaviour("save-pretrained-ours-empty-new", "output", check)


# ----------------------------------------------------------------------------- reports and samples


def test_write_report_into_a_users_folder_is_refused(tmp_path: Path) -> None:
    from lesa_workflows.evaluate import EvaluatedMethod
    from lesa_workflows.report import write_report

    target = _user_project(tmp_path / "project")
    before = _digests(tmp_path)
    full = EvaluatedMethod("full", 6, 1.0, torch.zeros(1, 3, 8, 8), [0.0] * 6, [99.0], 99.0, 1.0)
    expect_error("write-report-users-folder", "output",
                 lambda: write_report(target, [full], steps=6, prompts=["a"], title="t"), OutputError,
                 ["README.txt", "choose a new or empty folder"], folders=[tmp_path])
    assert _digests(tmp_path) == before


def test_write_report_over_a_previous_report(tmp_path: Path) -> None:
    from lesa_workflows.evaluate import EvaluatedMethod
    from lesa_workflows.report import write_report

    def check() -> list[str]:
        out = tmp_path / "report"
        full = EvaluatedMethod("full", 6, 1.0, torch.zeros(1, 3, 8, 8), [0.0] * 6, [99.0], 99.0, 1.0)
        lesa = EvaluatedMethod("lesa", 3, 0.6, torch.zeros(1, 3, 8, 8), [0.1] * 6, [30.0], 30.0, 0.9)
        write_report(out, [full, lesa], steps=6, prompts=["a"], title="first")
        (out / "my-notes.txt").write_text("kept")  # next to a report of ours: kept, never deleted
        write_report(out, [full, lesa], steps=6, prompts=["a"], title="second")
        problems = []
        if "# second" not in (out / "report.md").read_text():
            problems.append("the report was not rewritten")
        if (out / "my-notes.txt").read_text() != "kept":
            problems.append("a user's file next to the report was touched")
        if not (out / OUTPUT_MARKER).is_file():
            problems.append("no marker")
        return problems

    expect_behaviour("write-report-over-previous", "output", check)


@pytest.mark.parametrize(("case", "command"), [
    ("cli-sample-out-users-folder", ["sample", "--prompt", "a red circle", "--steps", "6"]),
    ("cli-demo-out-users-folder", ["demo", "--eval-prompts", "1"]),
    ("cli-bench-quality-out-users-folder", ["bench", "--quality", "--eval-prompts", "1"]),
    ("cli-train-out-users-folder", ["train", "--config", "CONFIG"]),
])
def test_cli_out_of_a_users_folder_is_refused(case: str, command: list[str], tmp_path: Path, pipeline_folder: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    import json

    config = tmp_path / "run.json"
    config.write_text(json.dumps({**KAN_CONFIG, "training": {**KAN_CONFIG["training"], "prompts": PROMPTS}}))
    out = _user_project(tmp_path / "project")
    before = _digests(tmp_path)
    argv = [str(config) if a == "CONFIG" else a for a in command]
    run_cli_case(case, [*argv, "--model", str(pipeline_folder), "--out", str(out), "--data-dir", str(tmp_path / "d"),
                        "--quiet"], ["README.txt", "LESA did not write"], capsys, [tmp_path], category="output")
    assert _digests(tmp_path) == before


def test_cli_demo_out_equal_to_data_dir_is_refused(tmp_path: Path, pipeline_folder: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    run_cli_case("cli-demo-out-is-data-dir", ["demo", "--model", str(pipeline_folder), "--out", str(tmp_path / "d"),
                                              "--data-dir", str(tmp_path / "d"), "--quiet"],
                 ["is --data-dir", "choose an --out outside"], capsys, [tmp_path], category="output")


def test_cli_sample_out_is_a_file(tmp_path: Path, pipeline_folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "samples.png").write_bytes(b"\x89PNG")
    run_cli_case("cli-sample-out-is-a-file", ["sample", "--model", str(pipeline_folder), "--prompt", "a",
                                              "--out", str(tmp_path / "samples.png"), "--quiet"],
                 ["existing file", "choose a new folder path"], capsys, [tmp_path], category="output")


# ----------------------------------------------------------------------------- permissions follow the umask


@contextlib.contextmanager
def _umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002], ids=lambda m: f"umask-{m:03o}")
def test_bundle_files_follow_the_umask(mask: int, kan_bundle: Path, host: PluginHost, tmp_path: Path) -> None:
    """Bundles were written 0700 / 0600 whatever the umask (``tempfile.mkdtemp``)."""
    bundle = LesaBundle.from_pretrained(kan_bundle, host=host)

    def check() -> list[str]:
        with _umask(mask):
            out = bundle.save_pretrained(tmp_path / "bundle")
        modes = {p.name: _mode(p) for p in [out, *out.iterdir()]}
        want = {p.name: (0o777 if p.is_dir() else 0o666) & ~mask for p in [out, *out.iterdir()]}
        return [] if modes == want else [f"modes {({k: oct(v) for k, v in modes.items()})}, want "
                                         f"{({k: oct(v) for k, v in want.items()})}"]

    expect_behaviour(f"bundle-umask-{mask:03o}", "output", check)


def test_trajectories_and_checkpoints_follow_the_umask(flux_pipe: Any, host: PluginHost, tmp_path: Path) -> None:
    def check() -> list[str]:
        with _umask(0o022):
            _train(flux_pipe, host, tmp_path / "bundle", tmp_path / "data")
        wrong = [f"{p}: {oct(_mode(p))}" for p in [tmp_path / "data", *(tmp_path / "data").rglob("*")]
                 if _mode(p) != (0o755 if p.is_dir() else 0o644)]
        return wrong

    expect_behaviour("data-umask-022", "output", check)


# ----------------------------------------------------------------------------- writable, free space, full disk


def test_check_writable_and_free_space_are_real(tmp_path: Path) -> None:
    """The checks themselves on the real file system: a writable folder passes and leaves nothing; a disk
    asked for more than it has free is refused."""
    check_writable(tmp_path / "a" / "b")
    assert list(tmp_path.iterdir()) == []
    free = shutil.disk_usage(tmp_path).free
    expect_error("free-space-check", "output", lambda: check_free_space(tmp_path / "out", 2 * free + 10**9),
                 OutputError, ["needs about", "free some space or choose a folder on another disk"],
                 folders=[tmp_path])


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Any]:
    """``make(size)``: a tmpfs of ``size`` bytes mounted under ``tmp_path`` (unmounted afterwards)."""
    mounted: list[Path] = []

    def make(size: int, name: str = "disk") -> Path:
        point = tmp_path / name
        point.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.strip()}")
        mounted.append(point)
        return point

    yield make
    for point in mounted:
        subprocess.run(["umount", str(point)], check=False)


def _fill(disk: Path, leave: int) -> None:
    """Fill ``disk`` until about ``leave`` bytes are free."""
    free = shutil.disk_usage(disk).free
    with (disk / "filler.bin").open("wb") as fh:
        fh.write(b"\0" * max(free - leave, 0))


def test_bundle_on_a_full_disk(kan_bundle: Path, host: PluginHost, small_disk: Any) -> None:
    """A disk that fills up while a bundle is written (once a raw `SafetensorError` after the whole
    training): a clear OutputError, nothing half-written, a previous bundle there intact."""
    bundle = LesaBundle.from_pretrained(kan_bundle, host=host)
    disk = small_disk(1 << 20)
    previous = disk / "bundle"
    shutil.copytree(kan_bundle, previous)
    before = _digests(previous)
    _fill(disk, 4096)
    expect_error("bundle-disk-full", "output", lambda: bundle.save_pretrained(previous), OutputError,
                 ["could not write the bundle", "No space left on device", "free some disk space"],
                 folders=[disk])
    assert _digests(previous) == before
    assert [p.name for p in disk.iterdir() if p.name.startswith(".")] == []


def test_collection_stops_when_the_rest_would_not_fit(flux_pipe: Any, flux_inputs: dict[str, Any], host: PluginHost,
                                                      kan_bundle: Path, small_disk: Any, tmp_path: Path) -> None:
    """Free space is checked during collection from the first shard's size: a collection that cannot fit
    stops before sampling the rest, keeping what it wrote (its first group of ``collect_batch`` = 4 prompts)."""
    disk = small_disk(1 << 20)
    shard = (kan_bundle.parent / "data" / "trajectories" / "traj_00000.safetensors").stat().st_size
    prompts = [f"prompt {i}" for i in range(2 * (1 << 20) // shard + 2)]  # twice what the disk holds
    CountingRunner.calls = 0
    exc = expect_error(
        "collect-would-not-fit", "output",
        lambda: train(flux_pipe, KAN_CONFIG, prompts, runner=CountingRunner(flux_pipe, **CALL), out=tmp_path / "b",
                      data_dir=disk / "data", host=host, show_progress=False),
        OutputError, ["trajectory store", "needs about", "free some space"], folders=[tmp_path / "b"],
        model=flux_pipe.transformer, inputs=flux_inputs)
    assert CountingRunner.calls <= 2, f"made {CountingRunner.calls} sampling calls before refusing: {exc}"
    first_group = [f"traj_{i:05d}.safetensors" for i in range(4)]
    assert sorted(p.name for p in (disk / "data" / "trajectories").iterdir()) == ["store.json", *first_group]


def test_collection_on_a_full_disk(flux_pipe: Any, flux_inputs: dict[str, Any], host: PluginHost, small_disk: Any,
                                   tmp_path: Path) -> None:
    """A disk already full when the first shard is written: a clear error, no temporary file left."""
    disk = small_disk(1 << 20)
    data = disk / "data"
    _fill(disk, 6000)
    expect_error("collect-disk-full", "output",
                 lambda: _train(flux_pipe, host, tmp_path / "b", data), OutputError,
                 ["could not write", "No space left on device", "free some disk space"], folders=[tmp_path / "b"],
                 model=flux_pipe.transformer, inputs=flux_inputs)
    assert [p for p in tree(disk) if Path(p).name.startswith(".")] == []
