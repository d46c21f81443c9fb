"""Test hook, not product code: ``lesa`` with every sampling call logged and one rank killable.

Run as a script under ``torchrun`` in place of ``-m lesa_core.cli``; arguments are ``lesa``'s. It wraps
:meth:`lesa_core.trainer.PipelineRunner.run` (one call = one batch of full trajectories):

* ``LESA_TEST_CALL_LOG=PREFIX`` — append the seeds of every call to ``PREFIX.<RANK>`` (one line per
  call), so a test can count which prompts a rank sampled;
* ``LESA_TEST_DIE_RANK=R`` and ``LESA_TEST_DIE_AFTER=N`` — rank ``R`` ends itself with ``os._exit(1)``
  (no clean-up, like a crash or a lost node) when it is about to start its call number ``N + 1``,
  i.e. after ``N`` calls have finished (and their shards were written).
"""

from __future__ import annotations

import os
import sys
from typing import Any

from lesa_core.cli import main
from lesa_core.trainer.runner import PipelineRunner

_original_run = PipelineRunner.run
_calls = 0


def _run(self: PipelineRunner, prompts: Any, seeds: Any, num_steps: int, **overrides: Any) -> Any:
    global _calls
    rank = os.environ.get("RANK", "0")
    if os.environ.get("LESA_TEST_DIE_RANK") == rank and _calls >= int(os.environ.get("LESA_TEST_DIE_AFTER", "0")):
        os._exit(1)
    _calls += 1
    result = _original_run(self, prompts, seeds, num_steps, **overrides)
    log = os.environ.get("LESA_TEST_CALL_LOG")
    if log:
        with open(f"{log}.{rank}", "a") as fh:
            fh.write(" ".join(str(int(s)) for s in seeds) + "\n")
    return result


PipelineRunner.run = _run  # type: ignore[method-assign]

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
