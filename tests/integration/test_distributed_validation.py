"""Closed-loop validation under ``torchrun`` (gloo, CPU): each rank samples only its share of the validation
prompts, and every rank gets the per-prompt scores a single process computes (up to the last bits of a
batch sampled with other batch-mates), so all ranks take the same selection decisions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.integration

WORKER = r'''
import json, os, sys
import torch
from lesa_core import distributed
from lesa_core.assembly import assemble
from lesa_core.testing.tiny import tiny_flux_pipeline
from lesa_core.trainer import PipelineRunner
from lesa_core.trainer.selection import ClosedLoopValidator
from lesa_core.trainer.store import StoreMeta


class Recording(PipelineRunner):
    """A pipeline runner that remembers which prompts it sampled."""

    def __init__(self, pipe, **kwargs):
        super().__init__(pipe, **kwargs)
        self.sampled = []

    def run(self, prompts, seeds, num_steps, **overrides):
        self.sampled.append(list(prompts))
        return super().run(prompts, seeds, num_steps, **overrides)


def scores(num_rows, out_name):
    torch.manual_seed(0)
    pipe = tiny_flux_pipeline()
    config = {"predictor": {"name": "taylor", "order": 1},
              "policy": {"name": "interval", "interval": 3, "warmup": 2, "force_full": []}}
    assembly = assemble(pipe.transformer, config)
    prompts = [f"validation prompt {i}" for i in range(6)]
    meta = StoreMeta(model_class="", model_fingerprint="", tap="hidden", num_steps=8, schedule=None,
                     token_index=None, prompts=prompts, seed=5, call={})
    runner = Recording(pipe, height=32, width=32, max_sequence_length=16)
    validator = ClosedLoopValidator(assembly, runner, meta, range(6 - num_rows, 6))
    per_prompt = validator.per_prompt(assembly.predictor)
    return {"scores": per_prompt.tolist(), "mean": validator.score(assembly.predictor), "sampled": runner.sampled}


with distributed.session("cpu"):
    out = {"three": scores(3, "three"), "one": scores(1, "one")}
with open(os.path.join(sys.argv[1], f"rank{os.environ.get('RANK', 'single')}.json"), "w") as fh:
    json.dump(out, fh)
'''


def test_each_rank_validates_its_share_and_all_agree_with_one_process(tmp_path: Path) -> None:
    script = tmp_path / "validate.py"
    script.write_text(WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LESA_DIST_TIMEOUT": "120"}
    single = subprocess.run([sys.executable, str(script), str(tmp_path)], env={**env, "WORLD_SIZE": "1"},
                            capture_output=True, text=True, timeout=180)
    assert single.returncode == 0, single.stderr[-4000:]
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(script), str(tmp_path)], env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-4000:]
    one = json.loads((tmp_path / "ranksingle.json").read_text())
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    three = [f"validation prompt {i}" for i in range(3, 6)]
    # one process samples every validation prompt; two ranks split them contiguously (2 + 1), and with a
    # single validation prompt rank 1 samples nothing at all
    assert one["three"]["sampled"][0] == three and one["one"]["sampled"][0] == ["validation prompt 5"]
    assert {tuple(p) for p in ranks[0]["three"]["sampled"]} == {tuple(three[:2])}
    assert {tuple(p) for p in ranks[1]["three"]["sampled"]} == {tuple(three[2:])}
    assert {tuple(p) for p in ranks[0]["one"]["sampled"]} == {("validation prompt 5",)}
    assert ranks[1]["one"]["sampled"] == []
    for case in ("three", "one"):
        # every rank holds every prompt's score, the same on all ranks, and the single process's (the
        # scores are finite and differ per prompt: the forecaster is not exact)
        assert ranks[0][case]["scores"] == ranks[1][case]["scores"]
        assert ranks[0][case]["mean"] == ranks[1][case]["mean"]
        torch.testing.assert_close(torch.tensor(ranks[0][case]["scores"]), torch.tensor(one[case]["scores"]),
                                   atol=0.05, rtol=0.0, check_dtype=False)
    assert len(set(one["three"]["scores"])) == 3 and all(10 < s < 200 for s in one["three"]["scores"])
