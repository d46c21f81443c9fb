"""Test worker, not product code: train a predictor on the tiny FLUX pipeline in its own process, so
that ``test_kill_resume.py`` can ``kill -9`` it at a chosen moment and run it again.

    python kill_worker.py DATA_DIR OUT_DIR LOG_FILE

It calls :func:`lesa_core.trainer.train` exactly as a user would. Two test hooks, set by environment:

* ``LESA_TEST_HANG=SUBSTRING:N`` — the N-th safetensors file written whose path contains SUBSTRING is
  written completely (to its temporary name) and then the worker stops before the rename: it creates
  ``LOG_FILE.hanging`` and sleeps, waiting to be killed. This puts the kill in the middle of an
  atomic write (``traj_00002`` = a collection shard, ``.checkpoint.`` = a training checkpoint).
* every sampling call appends its seeds to LOG_FILE (one line per call), so the test can tell which
  prompts were collected again.
* ``LESA_TEST_BATCH_SIZE=N`` passes the (deprecated, ignored) ``batch_size=N``, as old scripts do.

On success it prints ``{"resumed_from": ...}`` as JSON.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

PROMPTS = ["a red circle", "a blue square", "a green triangle", "a yellow star"]
CONFIG: dict[str, Any] = {
    "predictor": {"name": "kan", "taps": [2, 3, 3], "hidden": [8, 8]},
    "policy": {"name": "interval", "interval": 3, "warmup": 2, "force_full": []},
    "training": {"num_steps": 8, "seed": 11, "stage1": {"epochs": 3, "batch_size": 2, "lr": 0.003},
                 "stage2": {"epochs": 2, "batch_size": 2, "lr": 0.001},
                 # no validation slice: these tests count the pipeline calls of collection and stage 2 (the
                 # selection's resume is covered by tests/integration/test_trainer_pipeline.py)
                 "validation_prompts": 0,
                 # one prompt per call: the kill lands at one shard's write (fixed groups of several prompts
                 # are covered by test_batching.py)
                 "collect_batch": 1},
}
CALL = {"height": 32, "width": 32, "max_sequence_length": 16}


def _install_hang(spec: str, marker: Path) -> None:
    import safetensors.torch

    substring, _, nth = spec.rpartition(":")
    original = safetensors.torch.save_file
    seen = {"n": 0}

    def save_file(tensors: Any, filename: Any, metadata: Any = None) -> None:
        original(tensors, filename, metadata=metadata)
        if substring in str(filename):
            seen["n"] += 1
            if seen["n"] == int(nth):
                marker.write_text(str(filename))
                time.sleep(120)  # killed here: the temporary file is complete, the rename never happens

    safetensors.torch.save_file = save_file


def main(argv: list[str]) -> int:
    data, out, log = (Path(a) for a in argv[1:4])
    import torch

    torch.set_num_threads(1)
    if os.environ.get("LESA_TEST_HANG"):
        _install_hang(os.environ["LESA_TEST_HANG"], Path(f"{log}.hanging"))

    from lesa_core.testing.tiny import tiny_flux_pipeline
    from lesa_core.trainer import PipelineRunner, train

    class LoggingRunner(PipelineRunner):
        def run(self, prompts: Any, seeds: Any, num_steps: int, **overrides: Any) -> Any:
            with log.open("a") as fh:
                fh.write(" ".join(str(int(s)) for s in seeds) + "\n")
            return super().run(prompts, seeds, num_steps, **overrides)

    pipe = tiny_flux_pipeline()
    pipe.set_progress_bar_config(disable=True)
    batch_size = int(os.environ.get("LESA_TEST_BATCH_SIZE", "0")) or None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        _, report = train(pipe, CONFIG, PROMPTS, runner=LoggingRunner(pipe, **CALL), out=out, data_dir=data,
                          batch_size=batch_size, show_progress=False)
    print(json.dumps({"resumed_from": report.resumed_from}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
