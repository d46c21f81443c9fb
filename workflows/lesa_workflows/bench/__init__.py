"""Speed benchmarks: LESA against full compute and other caches in one process (``lesa bench``).

* :mod:`lesa_workflows.bench.models` — random-init FLUX backbones at fixed shapes (``tiny``, ``cpu-bench``,
  ``flux-dev-shapes``) and their inputs;
* :mod:`lesa_workflows.bench.methods` — the compared methods (full, lesa, taylor1, diffusers' TaylorSeer
  default and lite, cache-dit), each tuned to the same number of full passes;
* :mod:`lesa_workflows.bench.timing` — the sampling loop, interleaved timed repeats, per-step costs and
  the JSON report.

diffusers (and cache-dit) are imported inside functions: importing this package is cheap.
"""

from __future__ import annotations

from lesa_workflows.bench.methods import DEFAULT_METHODS, PolicySpec
from lesa_workflows.bench.models import MODELS, BenchModel, build_model
from lesa_workflows.bench.timing import SpeedReport, TimedMethod, run_speed_bench

__all__ = [
    "DEFAULT_METHODS",
    "MODELS",
    "BenchModel",
    "PolicySpec",
    "SpeedReport",
    "TimedMethod",
    "build_model",
    "run_speed_bench",
]
