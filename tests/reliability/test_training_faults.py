"""Training that cannot be trusted stops: a NaN or Inf loss, weight or trajectory shard ends the run with
an error naming the stage and epoch or the shard, a non-zero exit and no bundle. The store's identity
covers every setting that changes its content, ``--stages`` is honoured on resume, and a data folder is
locked against a second run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from reliability_support import (
    CALL,
    KAN_CONFIG,
    Outcome,
    expect_behaviour,
    expect_error,
    record,
    run_cli_case,
)

from lesa_core.bundle import BUNDLE_WEIGHTS_NAME
from lesa_core.errors import TrainingError
from lesa_core.plugins import PluginHost
from lesa_core.trainer import PipelineRunner, train
from lesa_core.trainer.lock import data_dir_lock

pytestmark = pytest.mark.integration

PROMPTS = ["a red circle", "a blue square"]  # what the session's kan_bundle was trained on


def _config(**training: Any) -> dict[str, Any]:
    merged = dict(KAN_CONFIG["training"])
    for key, value in training.items():
        merged[key] = {**merged.get(key, {}), **value} if isinstance(value, dict) else value
    return {**KAN_CONFIG, "training": merged}


def _train(pipe: Any, host: PluginHost, config: dict[str, Any], out: Path, data: Path, **kwargs: Any) -> Any:
    return train(pipe, config, PROMPTS, runner=PipelineRunner(pipe, **CALL), out=out, data_dir=data, host=host,
                 show_progress=False, **kwargs)


# ----------------------------------------------------------------------------- divergence


@pytest.mark.parametrize(("case", "training", "words"), [
    ("train-diverges-stage1-lr-1e30", {"stage1": {"lr": 1e30}},
     ["diverged in stage 1 (GT-guided)", "epoch", "Lower training.stage1.lr (now 1e+30)"]),
    ("train-diverges-stage1-lr-1e20", {"stage1": {"lr": 1e20, "epochs": 3}}, ["diverged in stage 1", "epoch"]),
    ("train-diverges-stage2-lr-1e30", {"stage2": {"epochs": 1, "batch_size": 2, "lr": 1e30}},
     ["diverged in stage 2 (closed loop)", "epoch 1 of 1", "Lower training.stage2.lr"]),
], ids=lambda v: v if isinstance(v, str) else None)
def test_diverging_training_stops_without_a_bundle(case: str, training: dict[str, Any], words: list[str],
                                                   flux_pipe: Any, flux_inputs: dict[str, Any], host: PluginHost,
                                                   kan_bundle: Path, tmp_path: Path) -> None:
    """`stage1.lr: 1e30` once exited 0 and wrote a NaN bundle."""
    data = tmp_path / "data"
    shutil.copytree(kan_bundle.parent / "data" / "trajectories", data / "trajectories")  # collection done
    in_stage2 = "stage2" in training  # stage 1 ends well first: its checkpoints are kept
    expect_error(case, "training", lambda: _train(flux_pipe, host, _config(**training), tmp_path / "bundle", data),
                 TrainingError, [*words, "no bundle"], folders=[tmp_path], model=flux_pipe.transformer,
                 inputs=flux_inputs, allowed_new=lambda p: in_stage2 and "checkpoint" in p)
    assert not (tmp_path / "bundle").exists()
    if in_stage2:  # no checkpoint of the diverged stage-2 epoch: the last one is stage 1's end
        progress = json.loads((data / "checkpoint" / "checkpoint.json").read_text())["progress"]
        assert (progress["phase"], progress["epoch"]) == (1, KAN_CONFIG["training"]["stage1"]["epochs"])


def test_diverging_training_through_the_cli(tmp_path: Path, pipeline_folder: Path, kan_bundle: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "run.json"
    config.write_text(json.dumps({**_config(stage1={"lr": 1e30}), "training": {**_config(stage1={"lr": 1e30})["training"],
                                                                             "prompts": PROMPTS}}))
    data = tmp_path / "data"
    run_cli_case("cli-train-diverges", ["train", "--model", str(pipeline_folder), "--config", str(config), "--out",
                                        str(tmp_path / "bundle"), "--data-dir", str(data), "--quiet"],
                 ["diverged", "epoch", "Lower training.stage1.lr"], capsys, [tmp_path / "bundle"],
                 category="training")
    assert not (tmp_path / "bundle").exists()


# ----------------------------------------------------------------------------- shards checked on load


def _rewrite_shard(index: int, edit: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[Path], None]:
    def apply(data: Path) -> None:
        from safetensors.torch import load_file, save_file

        path = data / "trajectories" / f"traj_{index:05d}.safetensors"
        tensors = {k: edit(v) for k, v in load_file(str(path)).items()}
        save_file(tensors, str(path), metadata={"prompt": PROMPTS[index], "index": str(index)})

    return apply


def _nan_at(t: torch.Tensor) -> torch.Tensor:
    if not t.is_floating_point():  # the kept uint8 output image
        return t
    t = t.clone()
    t.view(-1)[7] = float("nan")
    return t


def _rename_context(index: int) -> Callable[[Path], None]:
    def apply(data: Path) -> None:
        from safetensors.torch import load_file, save_file

        path = data / "trajectories" / f"traj_{index:05d}.safetensors"
        tensors = {f"{k}_other": v for k, v in load_file(str(path)).items()}
        save_file(tensors, str(path))

    return apply


SHARDS: list[tuple[str, Callable[[Path], None], list[str]]] = [
    ("shard-with-nan", _rewrite_shard(1, _nan_at), ["traj_00001.safetensors", "prompt 1", "NaN or infinite",
                                                    "delete"]),
    ("shard-with-inf", _rewrite_shard(0, lambda t: t * float("inf")), ["traj_00000.safetensors", "NaN or infinite"]),
    ("shard-other-step-count", _rewrite_shard(1, lambda t: t[:-1]), ["traj_00001.safetensors", "not 6 steps"]),
    ("shard-contexts-differ", _rename_context(1), ["traj_00001.safetensors", "unlike the other shards"]),
]


@pytest.mark.parametrize(("case", "damage", "words"), SHARDS, ids=[s[0] for s in SHARDS])
def test_bad_shard_stops_training(case: str, damage: Callable[[Path], None], words: list[str], flux_pipe: Any,
                                  flux_inputs: dict[str, Any], host: PluginHost, kan_bundle: Path,
                                  tmp_path: Path) -> None:
    """Reading a NaN trajectory shard once exited 0 and wrote a NaN bundle."""
    data = tmp_path / "data"
    shutil.copytree(kan_bundle.parent / "data" / "trajectories", data / "trajectories")
    damage(data)
    expect_error(case, "training", lambda: _train(flux_pipe, host, KAN_CONFIG, tmp_path / "bundle", data),
                 TrainingError, words, folders=[tmp_path], model=flux_pipe.transformer, inputs=flux_inputs)
    assert not (tmp_path / "bundle").exists()


def test_truncated_shard_is_collected_again_identically(flux_pipe: Any, host: PluginHost, kan_bundle: Path,
                                                        tmp_path: Path) -> None:
    """A shard whose data was cut short (a disk error) is detected and collected again — to the same bytes,
    since a shard depends on its prompt and seed only."""

    def check() -> list[str]:
        data = tmp_path / "data"
        shutil.copytree(kan_bundle.parent / "data" / "trajectories", data / "trajectories")
        path = data / "trajectories" / "traj_00001.safetensors"
        original = path.read_bytes()
        path.write_bytes(original[: len(original) // 2])
        _train(flux_pipe, host, KAN_CONFIG, tmp_path / "bundle", data)
        return [] if path.read_bytes() == original else ["the recollected shard differs from the original"]

    expect_behaviour("shard-truncated-recollected", "training", check)


# ----------------------------------------------------------------------------- the store's identity


@pytest.mark.parametrize(("case", "training", "words"), [
    ("store-other-token-subsample", {"token_subsample": 4}, ["different collection", "token_subsample"]),
    ("store-other-seed", {"seed": 4}, ["different collection", "seed"]),
    ("store-other-steps", {"num_steps": 5}, ["different collection", "num_steps"]),
], ids=lambda v: v if isinstance(v, str) else None)
def test_store_of_another_collection_is_refused(case: str, training: dict[str, Any], words: list[str],
                                                flux_pipe: Any, flux_inputs: dict[str, Any], host: PluginHost,
                                                kan_bundle: Path, tmp_path: Path) -> None:
    """A collection made with another `token_subsample` was once silently reused."""
    data = tmp_path / "data"
    shutil.copytree(kan_bundle.parent / "data" / "trajectories", data / "trajectories")
    expect_error(case, "training", lambda: _train(flux_pipe, host, _config(**training), tmp_path / "bundle", data),
                 TrainingError, [*words, "use another training.data_dir"], folders=[tmp_path],
                 model=flux_pipe.transformer, inputs=flux_inputs)


def test_other_call_settings_are_another_collection(flux_pipe: Any, flux_inputs: dict[str, Any], host: PluginHost,
                                                    kan_bundle: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(kan_bundle.parent / "data" / "trajectories", data / "trajectories")
    expect_error("store-other-call", "training",
                 lambda: train(flux_pipe, KAN_CONFIG, PROMPTS, runner=PipelineRunner(flux_pipe, **{**CALL, "height": 48}),
                               out=tmp_path / "bundle", data_dir=data, host=host, show_progress=False),
                 TrainingError, ["different collection", "call"], folders=[tmp_path], model=flux_pipe.transformer,
                 inputs=flux_inputs)


# ----------------------------------------------------------------------------- --stages on resume


STAGED = {**KAN_CONFIG, "training": {**KAN_CONFIG["training"], "stage2": {"epochs": 1, "batch_size": 2, "lr": 0.001}}}


def test_stage1_after_a_finished_two_stage_run(flux_pipe: Any, host: PluginHost, kan_bundle: Path,
                                              tmp_path: Path) -> None:
    """`--stages 1` after a finished stages-1-and-2 run once returned the stage-2 weights."""

    def check() -> list[str]:
        data = tmp_path / "data"
        shutil.copytree(kan_bundle.parent / "data" / "trajectories", data / "trajectories")
        both, _ = _train(flux_pipe, host, STAGED, tmp_path / "both", data, stages=(1, 2))
        again, report = _train(flux_pipe, host, STAGED, tmp_path / "stage1-after", data, stages=(1,))
        fresh_data = tmp_path / "fresh"
        shutil.copytree(kan_bundle.parent / "data" / "trajectories", fresh_data / "trajectories")
        only, _ = _train(flux_pipe, host, STAGED, tmp_path / "stage1-only", fresh_data, stages=(1,))
        weights = {p.name: (p / BUNDLE_WEIGHTS_NAME).read_bytes() for p in (both, again, only)}
        problems = []
        if weights["stage1-after"] != weights["stage1-only"]:
            problems.append("--stages 1 after 1,2 did not return stage 1's weights")
        if weights["stage1-after"] == weights["both"]:
            problems.append("--stages 1 after 1,2 returned the stage-2 weights")
        if report.losses.get("stage2"):
            problems.append(f"stage-2 losses reported for a stage-1 run: {report.losses}")
        return problems

    expect_behaviour("stages-1-after-1-and-2", "resume", check)


def test_stage1_after_two_stages_without_its_checkpoint(flux_pipe: Any, flux_inputs: dict[str, Any],
                                                       host: PluginHost, kan_bundle: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(kan_bundle.parent / "data" / "trajectories", data / "trajectories")
    _train(flux_pipe, host, STAGED, tmp_path / "both", data)
    shutil.rmtree(data / "checkpoint-stage1")
    expect_error("stages-1-checkpoint-gone", "resume",
                 lambda: _train(flux_pipe, host, STAGED, tmp_path / "stage1", data, stages=(1,)), TrainingError,
                 ["past stage 1", "checkpoint-stage1", "delete"], folders=[tmp_path], model=flux_pipe.transformer,
                 inputs=flux_inputs)


# ----------------------------------------------------------------------------- one process per data folder


def test_second_run_on_a_locked_data_folder(flux_pipe: Any, flux_inputs: dict[str, Any], host: PluginHost,
                                            kan_bundle: Path, tmp_path: Path) -> None:
    """Two `lesa train` on one data dir: the second once failed with FileNotFoundError (no lock)."""
    data = tmp_path / "data"
    shutil.copytree(kan_bundle.parent / "data" / "trajectories", data / "trajectories")
    with data_dir_lock(data):
        expect_error("train-data-dir-locked", "resume",
                     lambda: _train(flux_pipe, host, KAN_CONFIG, tmp_path / "bundle", data), TrainingError,
                     [f"pid {os.getpid()}", "another lesa process", "use another --data-dir"],
                     folders=[tmp_path], model=flux_pipe.transformer, inputs=flux_inputs,
                     allowed_new=lambda p: False)
    assert not (data / "lesa.lock").exists()


WORKER = Path(__file__).with_name("kill_worker.py")


def test_lock_of_a_killed_run_is_released(tmp_path: Path) -> None:
    """A real second process holds the lock (hanging inside a shard write); a run in this process is refused;
    once the holder is killed with SIGKILL, the same run proceeds (the kernel released the lock)."""
    from kill_worker import CONFIG
    from kill_worker import PROMPTS as WORKER_PROMPTS

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "LESA_TEST_HANG": "traj_00001:1"}
    marker = Path(f"{tmp_path / 'log'}.hanging")
    proc = subprocess.Popen([sys.executable, str(WORKER), str(tmp_path / "data"), str(tmp_path / "bundle"),
                             str(tmp_path / "log")], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    problems: list[str] = []
    try:
        deadline = time.monotonic() + 180
        while not marker.exists():
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the worker never reached the shard write"
            time.sleep(0.05)
        from lesa_core.testing.tiny import tiny_flux_pipeline

        pipe = tiny_flux_pipeline()
        pipe.set_progress_bar_config(disable=True)
        try:
            train(pipe, CONFIG, WORKER_PROMPTS, runner=PipelineRunner(pipe, **CALL), out=tmp_path / "second",
                  data_dir=tmp_path / "data", show_progress=False)
            problems.append("a second run on the locked data folder was not refused")
        except TrainingError as exc:
            if f"pid {proc.pid}" not in str(exc):
                problems.append(f"the message does not name the holder: {exc}")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        train(pipe, CONFIG, WORKER_PROMPTS, runner=PipelineRunner(pipe, **CALL), out=tmp_path / "second",
              data_dir=tmp_path / "data", show_progress=False)
        if (tmp_path / "data" / "lesa.lock").exists():
            problems.append("the lock file was left behind")
        if not (tmp_path / "second" / BUNDLE_WEIGHTS_NAME).is_file():
            problems.append("the run after the kill wrote no bundle")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()  # type: ignore[union-attr]
    record(Outcome("lock-released-by-kill", "resume", False, not problems, [], []))
    assert problems == []
