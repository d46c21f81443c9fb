"""``kill -9`` during collection and training, then the same command again: it resumes (finished shards
are not recomputed, training continues from its checkpoint), leaves no temporary file behind, and the
bundle equals an uninterrupted run's byte for byte.

The work runs in a subprocess (``kill_worker.py``: :func:`lesa_core.trainer.train` on the tiny FLUX
pipeline). SIGKILL lands in the middle of an atomic write: the worker hangs after writing a temporary
file and before renaming it (``LESA_TEST_HANG``), which is the worst moment for a kill.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from reliability_support import Outcome, record, temporaries

from lesa_core.bundle import BUNDLE_WEIGHTS_NAME

pytestmark = pytest.mark.integration

WORKER = Path(__file__).with_name("kill_worker.py")
NUM_PROMPTS = 4
SEED = 11  # kill_worker.CONFIG training.seed: prompt i samples with seed 11 + i
STAGE1_EPOCHS = 3


def _env(hang: str | None = None, batch_size: int | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LESA_TEST_HANG", "LESA_TEST_BATCH_SIZE")}
    env.update(HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONHASHSEED="0")
    if hang:
        env["LESA_TEST_HANG"] = hang
    if batch_size:
        env["LESA_TEST_BATCH_SIZE"] = str(batch_size)
    return env


def _run(root: Path, *, hang: str | None = None, batch_size: int | None = None) -> dict[str, Any]:
    """Run the worker to completion; returns its JSON report."""
    done = subprocess.run([sys.executable, str(WORKER), str(root / "data"), str(root / "bundle"), str(root / "log")],
                          env=_env(hang, batch_size), capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _run_and_kill(root: Path, hang: str, batch_size: int | None = None) -> None:
    """Start the worker, wait until it hangs inside the chosen atomic write, SIGKILL it."""
    marker = Path(f"{root / 'log'}.hanging")
    proc = subprocess.Popen([sys.executable, str(WORKER), str(root / "data"), str(root / "bundle"),
                             str(root / "log")], env=_env(hang, batch_size), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 180
    try:
        while not marker.exists():
            if proc.poll() is not None:
                raise AssertionError(f"worker ended before the kill: {proc.stderr.read().decode()[-3000:]}")
            assert time.monotonic() < deadline, "the worker never reached the write to interrupt"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]
    marker.unlink()


def _calls(root: Path) -> list[list[int]]:
    log = root / "log"
    return [[int(s) for s in line.split()] for line in log.read_text().splitlines()] if log.exists() else []


def _collection_calls(calls: list[list[int]]) -> list[int]:
    """Seeds sampled while collecting (batch size 1) before the first stage-2 call (batch size 2)."""
    seeds = []
    for call in calls:
        if len(call) > 1:
            break
        seeds.append(call[0])
    return seeds


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    root = tmp_path_factory.mktemp("uninterrupted")
    report = _run(root)
    assert report["resumed_from"] is None
    assert _collection_calls(_calls(root)) == [SEED + i for i in range(NUM_PROMPTS)]
    assert temporaries(root) == []
    return (root / "bundle" / BUNDLE_WEIGHTS_NAME).read_bytes()


def _record(case: str, stray: list[str], ok: bool) -> None:
    record(Outcome(case, "kill -9", False, ok, stray, []))


def test_kill_during_collection_resumes_without_recomputing(tmp_path: Path, uninterrupted: bytes) -> None:
    _run_and_kill(tmp_path, "traj_00002:1")  # shards 0 and 1 done, shard 2 half-way through its atomic write
    store = tmp_path / "data" / "trajectories"
    done = sorted(p.name for p in store.glob("traj_*.safetensors"))
    assert done == ["traj_00000.safetensors", "traj_00001.safetensors"]
    left = temporaries(tmp_path)
    assert [Path(p).name.startswith(".traj_00002.safetensors.") for p in left] == [True], left  # the killed write
    stamps = {name: (store / name).stat().st_mtime_ns for name in done}
    before = len(_calls(tmp_path))

    report = _run(tmp_path)  # the same command again

    resumed = _calls(tmp_path)[before:]
    stray = temporaries(tmp_path)
    same = (tmp_path / "bundle" / BUNDLE_WEIGHTS_NAME).read_bytes() == uninterrupted
    _record("kill-during-collection", stray, same)
    assert _collection_calls(resumed) == [SEED + 2, SEED + 3], "finished shards were sampled again"
    assert {name: (store / name).stat().st_mtime_ns for name in done} == stamps
    assert report["resumed_from"] is None
    assert stray == [], "a temporary file of the killed run is still there"
    assert same, "the bundle differs from an uninterrupted run's"


def test_kill_during_collection_with_a_batch_size_resumes_byte_identically(tmp_path: Path,
                                                                           uninterrupted: bytes) -> None:
    """kill -9 during collection with batch size > 1 once resumed to a bundle that was not byte-identical
    (batch-mates re-sampled in a smaller batch: taps differed by up to 4.8e-7). Each prompt is now sampled
    on its own, whatever batch size an old script passes."""
    _run_and_kill(tmp_path, "traj_00002:1", batch_size=4)
    _run(tmp_path, batch_size=3)  # resumed with another batch size
    stray = temporaries(tmp_path)
    same = (tmp_path / "bundle" / BUNDLE_WEIGHTS_NAME).read_bytes() == uninterrupted
    _record("kill-during-collection-batch-4", stray, same)
    assert stray == [] and same


@pytest.mark.parametrize(("hang", "resumed_from"), [
    (".checkpoint.:2", [1, 1]),  # stage 1: epoch 1's checkpoint on disk, epoch 2's half-written
    (f".checkpoint.:{STAGE1_EPOCHS + 2}", [2, 1]),  # stage 2: its epoch 1 on disk, epoch 2's half-written
], ids=["stage1", "stage2"])
def test_kill_during_training_resumes_from_the_checkpoint(tmp_path: Path, uninterrupted: bytes, hang: str,
                                                          resumed_from: list[int]) -> None:
    _run_and_kill(tmp_path, hang)
    assert len(temporaries(tmp_path / "data")) == 1  # the killed checkpoint write
    state = json.loads((tmp_path / "data" / "checkpoint" / "checkpoint.json").read_text())
    assert [state["progress"]["phase"], state["progress"]["epoch"]] == resumed_from
    before = len(_calls(tmp_path))

    report = _run(tmp_path)

    resumed = _calls(tmp_path)[before:]
    stray = temporaries(tmp_path)
    same = (tmp_path / "bundle" / BUNDLE_WEIGHTS_NAME).read_bytes() == uninterrupted
    _record(f"kill-during-training-{'stage1' if resumed_from[0] == 1 else 'stage2'}", stray, same)
    assert _collection_calls(resumed) == [], "trajectories were collected again"
    assert report["resumed_from"] == resumed_from
    if resumed_from[0] == 2:  # stage 2 ran one epoch (2 batches of 2 prompts) after the resume
        assert len(resumed) == 2 and all(len(c) == 2 for c in resumed)
    assert stray == [], "a temporary file of the killed run is still there"
    assert same, "the bundle differs from an uninterrupted run's"


# ----------------------------------------------------------------------------- the crash windows


def test_checkpoint_killed_between_its_two_renames_is_recovered(tmp_path: Path) -> None:
    """save_checkpoint moves the old checkpoint aside, then the new one in; a kill between the two
    renames leaves only ``.checkpoint.old`` (and the new temporary folder): the next run uses the old
    one and cleans up."""
    from lesa_core.trainer.checkpoint import TrainState, load_checkpoint, save_checkpoint

    folder = tmp_path / "checkpoint"
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(net.parameters())
    net(torch.ones(1, 3)).sum().backward()
    opt.step()
    save_checkpoint(folder, net, opt, TrainState(key="k", phase=1, epoch=2, updates=5))
    saved = {k: v.clone() for k, v in net.state_dict().items()}
    os.replace(folder, tmp_path / ".checkpoint.old")  # the state right after the first rename...
    (tmp_path / ".checkpoint.x1y2z3").mkdir()  # ...with the new checkpoint's temporary folder
    (tmp_path / ".checkpoint.x1y2z3" / "checkpoint.safetensors").write_bytes(b"half")

    fresh = torch.nn.Linear(3, 2)
    train_state = load_checkpoint(folder, fresh, torch.optim.AdamW(fresh.parameters()), "k")
    assert train_state is not None and (train_state.phase, train_state.epoch, train_state.updates) == (1, 2, 5)
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in saved.items())
    save_checkpoint(folder, fresh, opt, train_state)  # the next epoch's checkpoint
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]
    _record("checkpoint-killed-between-renames", temporaries(tmp_path), True)


def test_stale_shard_temporary_is_removed_when_the_shard_is_written(tmp_path: Path) -> None:
    from lesa_core.trainer.store import TrajectoryStore

    store = TrajectoryStore(tmp_path)
    (tmp_path / ".traj_00003.safetensors.abc123").write_bytes(b"half a shard")
    (tmp_path / ".traj_00004.safetensors.def456").write_bytes(b"another prompt's")
    store.write(3, {"cond": torch.zeros(2, 4, 3)}, "a prompt")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".traj_00004.safetensors.def456", "traj_00003.safetensors"]
    _record("stale-shard-temporary", [], True)


def test_interrupted_stage2_with_two_cache_contexts_resumes_bit_identically(tmp_path: Path) -> None:
    """Qwen-Image with true CFG trains on two cache contexts (cond, uncond): stage 2 takes one update per
    forecast step *per context*, so its learning-rate schedule must resume from the counted updates, not
    from a count derived from the epoch (found by this test: the resumed bundle differed)."""
    from lesa_core.testing.tiny import tiny_qwen_image_pipeline
    from lesa_core.trainer import PipelineRunner, train

    pipe = tiny_qwen_image_pipeline()
    pipe.set_progress_bar_config(disable=True)
    config = {"predictor": {"name": "kan", "taps": [2, 3, 3], "hidden": [8, 8]},
              "policy": {"name": "interval", "interval": 3, "warmup": 2, "force_full": []},
              "training": {"num_steps": 8, "seed": 11, "stage1": {"epochs": 1, "batch_size": 2},
                           "stage2": {"epochs": 2, "batch_size": 2, "lr": 0.001},
                           "validation_prompts": 0}}  # the interrupt counts stage 2's pipeline calls
    prompts = ["a red circle", "a blue square", "a green triangle", "a yellow star"]
    call = dict(height=32, width=32, max_sequence_length=16, negative_prompt="blurry", true_cfg_scale=4.0)

    class Interrupt(Exception):
        pass

    class DiesInStage2(PipelineRunner):
        calls = 0

        def run(self, *args: Any, **kwargs: Any) -> Any:
            DiesInStage2.calls += 1
            if DiesInStage2.calls == 1 + 2 + 1:  # 1 collection call (a group of 4), stage 2 epoch 1 (2 batches)
                raise Interrupt
            return super().run(*args, **kwargs)

    reference, _ = train(pipe, config, prompts, runner=PipelineRunner(pipe, **call), out=tmp_path / "a",
                         data_dir=tmp_path / "da", show_progress=False)
    with pytest.raises(Interrupt):
        train(pipe, config, prompts, runner=DiesInStage2(pipe, **call), out=tmp_path / "b", data_dir=tmp_path / "db",
              show_progress=False)
    resumed, report = train(pipe, config, prompts, runner=PipelineRunner(pipe, **call), out=tmp_path / "b",
                            data_dir=tmp_path / "db", show_progress=False)
    same = (reference / BUNDLE_WEIGHTS_NAME).read_bytes() == (resumed / BUNDLE_WEIGHTS_NAME).read_bytes()
    _record("interrupted-stage2-two-contexts", temporaries(tmp_path), same)
    assert report.resumed_from == (2, 1)
    assert same
