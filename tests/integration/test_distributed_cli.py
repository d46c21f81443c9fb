"""``lesa collect`` / ``lesa train`` under ``torchrun`` (gloo, CPU) on a tiny FluxPipeline folder.

* a 2-process data-parallel ``train`` gives the bundle a 1-process run gives (same data, same global
  batches — including uneven splits and a rank with an empty slice), resuming from a checkpoint;
* a rank that dies mid-collection costs nothing on the rerun: finished shards are kept, untouched, and
  only the missing prompts are sampled.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lesa_core.assembly import assemble
from lesa_core.bundle import BUNDLE_WEIGHTS_NAME
from lesa_core.cli import main as lesa
from lesa_core.interfaces import Decision, ForecastInput
from lesa_core.trainer import TrajectoryStore
from lesa_core.trainer.schedule import history_indices

pytestmark = pytest.mark.integration

STEPS = 8
PROMPTS = [f"a distributed prompt {i}" for i in range(5)]
CONFIG = {
    "predictor": {"name": "kan", "taps": [3, 4, 4], "hidden": [8, 8]},
    "policy": {"name": "interval", "interval": 4, "warmup": 2, "force_full": []},
    # 5 prompts, global batches of 4: stage 1 splits 4 rows 2+2 and 1 row 1+0 (rank 1 empty);
    # stage 2 samples prompts 2+2, then 1+ghost
    "training": {"num_steps": STEPS, "seed": 3, "prompts": PROMPTS,
                 "stage1": {"epochs": 2, "batch_size": 4, "lr": 0.003},
                 "stage2": {"epochs": 1, "batch_size": 4, "lr": 0.001},
                 # all 5 prompts train (no validation slice): the batch splits above depend on it
                 "validation_prompts": 0,
                 # one prompt per call: the kill test below owns prompts per rank (fixed groups of several
                 # prompts split over ranks: tests/reliability/test_batching.py)
                 "collect_batch": 1},
}
HOOK = Path(__file__).with_name("cli_with_fault.py")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved tiny FluxPipeline (with its call arguments in ``lesa_call.json``) and a run config."""
    from lesa_core.testing.tiny import tiny_flux_pipeline

    root = tmp_path_factory.mktemp("dist")
    tiny_flux_pipeline().save_pretrained(root / "pipe")
    (root / "pipe" / "lesa_call.json").write_text(json.dumps({"height": 32, "width": 32, "max_sequence_length": 16}))
    (root / "run.json").write_text(json.dumps(CONFIG))
    return root


def _torchrun(workspace: Path, *args: str, env: dict[str, str] | None = None, script: Path | None = None,
              check: bool = True, config: str = "run.json") -> subprocess.CompletedProcess[str]:
    target = [str(script)] if script else ["-m", "lesa_core.cli"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *target, *args,
           "--model", str(workspace / "pipe"), "--config", str(workspace / config), "--device", "cpu", "--quiet"]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "LESA_DIST_TIMEOUT": "120", **(env or {})}
    proc = subprocess.run(cmd, env=full_env, capture_output=True, text=True, timeout=180)
    if check and proc.returncode != 0:
        raise AssertionError(f"torchrun failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return proc


def _forecasts(pipe_dir: Path, bundle: Path, data: Path) -> torch.Tensor:
    """The bundle's forecast at every forecast step of every collected trajectory (GT history)."""
    from diffusers import FluxTransformer2DModel

    model = FluxTransformer2DModel.from_pretrained(pipe_dir / "transformer")
    assembly = assemble(model, str(bundle))
    pred = assembly.predictor
    (gt,) = TrajectoryStore(data / "trajectories").load().values()  # one context: FLUX has no CFG pass
    schedule = torch.tensor(json.loads((bundle / "lesa_bundle.json").read_text())["schedule"])
    decisions = assembly.plugins.make_policy().schedule(STEPS)
    out = []
    for step in range(STEPS):
        idx = history_indices(decisions, step, pred.history_size, pred.history_mode)
        if decisions[step] is not Decision.FORECAST or len(idx) < pred.min_history:
            continue
        inputs = ForecastInput([gt[:, j] for j in idx], schedule[idx], torch.tensor(idx, dtype=torch.float32),
                               schedule[step].clone(), torch.tensor(float(step)))
        with torch.no_grad():
            out.append(pred(inputs))
    return torch.stack(out)


def test_two_process_training_matches_one_process(workspace: Path, tmp_path: Path) -> None:
    common = ["--model", str(workspace / "pipe"), "--config", str(workspace / "run.json"), "--device", "cpu",
              "--quiet"]
    assert lesa(["collect", "--data-dir", str(tmp_path / "one"), *common]) == 0
    shutil.copytree(tmp_path / "one" / "trajectories", tmp_path / "two" / "trajectories")
    assert lesa(["train", "--data-dir", str(tmp_path / "one"), "--out", str(tmp_path / "b1"), *common]) == 0

    # two ranks: stage 1 only (as if the job were stopped there), then the full command, which resumes
    _torchrun(workspace, "train", "--data-dir", str(tmp_path / "two"), "--out", str(tmp_path / "partial"),
              "--stages", "1")
    state = json.loads((tmp_path / "two" / "checkpoint" / "checkpoint.json").read_text())["progress"]
    assert (state["phase"], state["epoch"]) == (1, 2)
    proc = _torchrun(workspace, "train", "--data-dir", str(tmp_path / "two"), "--out", str(tmp_path / "b2"))
    assert proc.stdout.count("wrote bundle") == 1 and "[2 ranks]" in proc.stdout  # rank 0 reports, alone

    one = _forecasts(workspace / "pipe", tmp_path / "b1", tmp_path / "one")
    two = _forecasts(workspace / "pipe", tmp_path / "b2", tmp_path / "one")
    rel = float((one - two).norm() / one.norm())
    assert rel < 1e-4, rel
    # the training did something: the bundle differs from the freshly initialised predictor's stage-1 state
    assert (tmp_path / "b2" / BUNDLE_WEIGHTS_NAME).read_bytes() != (tmp_path / "partial" / BUNDLE_WEIGHTS_NAME).read_bytes()
    meta1 = json.loads((tmp_path / "b1" / "lesa_bundle.json").read_text())
    meta2 = json.loads((tmp_path / "b2" / "lesa_bundle.json").read_text())
    assert meta1["extra"]["updates"] == meta2["extra"]["updates"]
    for a, b in zip(meta1["extra"]["losses"]["stage2"], meta2["extra"]["losses"]["stage2"], strict=True):
        assert abs(a - b) <= 1e-4 * abs(a)


def test_two_process_latent_loss_matches_one_process(workspace: Path, tmp_path: Path) -> None:
    """Stage 1 under ``training.loss: latent`` (one update per forecast span and prompt batch; 5 prompts in
    batches of 4: rank 1's slice of the second batch is empty) gives the single-process predictor."""
    config = {**CONFIG, "tap": "normed", "training": {**CONFIG["training"], "loss": "latent"}}
    (workspace / "latent.json").write_text(json.dumps(config))
    common = ["--model", str(workspace / "pipe"), "--config", str(workspace / "latent.json"), "--device", "cpu",
              "--quiet", "--stages", "1"]
    assert lesa(["train", "--data-dir", str(tmp_path / "one"), "--out", str(tmp_path / "b1"), *common]) == 0
    shutil.copytree(tmp_path / "one" / "trajectories", tmp_path / "two" / "trajectories")
    _torchrun(workspace, "train", "--data-dir", str(tmp_path / "two"), "--out", str(tmp_path / "b2"), "--stages", "1",
              config="latent.json")
    one = _forecasts(workspace / "pipe", tmp_path / "b1", tmp_path / "one")
    two = _forecasts(workspace / "pipe", tmp_path / "b2", tmp_path / "one")
    assert float((one - two).norm() / one.norm()) < 1e-4
    meta1 = json.loads((tmp_path / "b1" / "lesa_bundle.json").read_text())
    meta2 = json.loads((tmp_path / "b2" / "lesa_bundle.json").read_text())
    assert meta1["extra"]["updates"] == meta2["extra"]["updates"] == 2 * 2 * 2  # epochs × spans × batches
    for a, b in zip(meta1["extra"]["losses"]["stage1"], meta2["extra"]["losses"]["stage1"], strict=True):
        assert abs(a - b) <= 1e-4 * abs(a)


def test_a_rank_killed_mid_collection_resumes_without_recomputing(workspace: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    log = tmp_path / "calls"
    collect = ["collect", "--data-dir", str(data)]
    log.mkdir()
    # rank 1 owns prompts 1 and 3: it dies after finishing prompt 1; torchrun then stops rank 0 too
    crashed = _torchrun(workspace, *collect, script=HOOK, check=False,
                        env={"LESA_TEST_DIE_RANK": "1", "LESA_TEST_DIE_AFTER": "1",
                             "LESA_TEST_CALL_LOG": str(log / "first")})
    assert crashed.returncode != 0
    store = TrajectoryStore(data / "trajectories")
    done = {i: store.shard_path(i).stat().st_mtime_ns for i in range(len(PROMPTS)) if store.has(i)}
    assert 1 in done and 3 not in done, f"shards {sorted(done)}; torchrun said:\n{crashed.stderr[-4000:]}"
    assert [line for line in (log / "first.1").read_text().split("\n") if line] == ["4"]  # seed 3 + prompt 1

    _torchrun(workspace, *collect, script=HOOK, env={"LESA_TEST_CALL_LOG": str(log / "second")})
    sampled = sorted(int(s) - CONFIG["training"]["seed"] for f in log.glob("second.*")
                     for line in f.read_text().split("\n") if line for s in line.split())
    assert sampled == sorted(set(range(len(PROMPTS))) - set(done))  # only the missing prompts ran, once each
    for i, stamp in done.items():
        assert store.shard_path(i).stat().st_mtime_ns == stamp  # finished shards were not rewritten
    (taps,) = store.load().values()
    assert taps.shape[:2] == (len(PROMPTS), STEPS) and torch.isfinite(taps).all()


ALL_REDUCE_SCRIPT = '''
import json, os, sys
import torch
import torch.distributed as dist
from lesa_core import distributed
from lesa_core.errors import TrainingError
from lesa_core.trainer.sync import all_reduce_gradients

with distributed.session("cpu") as ctx:
    r = ctx.rank
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 1))
    x = torch.randn(4, 3)
    out = {}
    # rows 0-2 on rank 0, row 3 on rank 1, each share scaled by the global row count; the second
    # layer's bias has no gradient on any rank (as an unused expert would) and must stay unset
    rows = x[:3] if r == 0 else x[3:]
    loss = model(rows).sum() / 4
    model.zero_grad(set_to_none=True)
    loss.backward()
    model[1].bias.grad = None
    total, skipped = all_reduce_gradients(model, loss, step=5)
    out["loss"], out["skipped"] = total, skipped
    out["grad"] = model[0].weight.grad.tolist()
    out["bias_none"] = model[1].bias.grad is None
    # an empty rank (loss None) contributes nothing, and leaves no gradient unset that another rank set
    model.zero_grad(set_to_none=True)
    if r == 0:
        (model(x).sum() / 4).backward()
    all_reduce_gradients(model, None if r else torch.tensor(0.0), step=6)
    out["empty_grad"] = model[0].weight.grad.tolist()
    # one rank asks to skip: every rank skips
    model.zero_grad(set_to_none=True)
    (model(x).sum()).backward()
    _, skipped = all_reduce_gradients(model, torch.tensor(1.0), step=7, skip=(r == 1))
    out["skip"] = [skipped, model[0].weight.grad is None]
    # ranks at different steps: refused on every rank
    try:
        all_reduce_gradients(model, torch.tensor(1.0), step=8 + r)
        out["lockstep"] = "accepted"
    except TrainingError as exc:
        out["lockstep"] = str(exc)
    model.zero_grad(set_to_none=True)
    (model(x).sum() / 4).backward()
    out["whole"] = model[0].weight.grad.tolist()
    with open(os.path.join(sys.argv[1], f"rank{r}.json"), "w") as fh:
        json.dump(out, fh)
'''


def test_gradient_all_reduce_sums_shares_skips_together_and_checks_lockstep(tmp_path: Path) -> None:
    script = tmp_path / "all_reduce.py"
    script.write_text(ALL_REDUCE_SCRIPT)
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(script), str(tmp_path)], env={**os.environ, "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-4000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for out in ranks:
        torch.testing.assert_close(torch.tensor(out["grad"]), torch.tensor(out["whole"]))
        torch.testing.assert_close(torch.tensor(out["empty_grad"]), torch.tensor(out["whole"]))
        assert out["bias_none"] and out["skipped"] is False
        assert out["skip"] == [True, True]
        assert "out of lockstep" in out["lockstep"]
    assert ranks[0]["loss"] == ranks[1]["loss"]
