"""The per-family results table and the peer comparisons of the evaluate tools: full, the trained LESA and
MLP bundles, TaylorSeer-1/-2 and reuse at N = 7 and N = 10 through :func:`lesa_workflows.evaluate.evaluate`;
paired Δ PSNR ± s.e. over the prompts."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

#: LESA's three-stage router (t > 0.9, 0.5 < t ≤ 0.9, t ≤ 0.5).
THRESHOLD_ROUTER: dict[str, Any] = {"name": "threshold", "boundaries": [0.9, 0.5]}


def taylor_method(policy: dict[str, Any], tap: str, order: int) -> dict[str, Any]:
    """A training-free Taylor predictor of ``order`` (0: reuse) on ``tap``, routed by stage."""
    return {"router": THRESHOLD_ROUTER, "tap": tap, "policy": policy,
            "predictor": {"name": "taylor", "order": order}}  # fmt: skip


def for_interval(bundle: str, interval: int) -> str:
    """``bundle``, or — at another N than it was trained for — the trained family's bundle ``lesa demo`` writes
    beside it (``<name>-any-schedule``) where the floor kept a candidate bound to the trained full steps."""
    from lesa_core.bundle import read_metadata

    sibling = Path(bundle).with_name(Path(bundle).name + "-any-schedule")
    trained = read_metadata(bundle).run_config.get("policy") or {}
    return str(sibling) if sibling.is_dir() and trained.get("interval") != interval else bundle


def family_methods(lesa_bundle: str, mlp_bundle: str, tap: str, warmup: int) -> dict[str, Any]:
    """full; lesa, mlp, taylor1, taylor2, reuse at N = 7 and N = 10 (``warmup`` full steps first)."""
    methods: dict[str, Any] = {"full": None}
    for interval in (7, 10):
        policy = {"name": "interval", "interval": interval, "warmup": warmup}
        methods[f"lesa@N{interval}"] = {"bundle": for_interval(lesa_bundle, interval), "policy": policy}
        methods[f"mlp@N{interval}"] = {"bundle": for_interval(mlp_bundle, interval), "policy": policy}
        for order, name in ((1, "taylor1"), (2, "taylor2"), (0, "reuse")):
            methods[f"{name}@N{interval}"] = taylor_method(policy, tap, order)
    return methods


def paired_delta(a: Sequence[float], b: Sequence[float], finite_only: bool = True) -> tuple[float, float]:
    """Mean and standard error of the paired differences ``a − b`` (non-finite pairs dropped if
    ``finite_only``)."""
    d = torch.tensor(list(a)) - torch.tensor(list(b))
    if finite_only:
        d = d[torch.isfinite(d)]
    return float(d.mean()), float(d.std() / math.sqrt(len(d)))


def run_methods(
    pipe: Any, methods: dict[str, Any], caps: list[str], call_defaults: Mapping[str, Any], tap: str,
    steps: int = 50,
) -> list[Any]:  # fmt: skip
    """Every method on ``caps`` (seeds 10000 + i), ``call_defaults`` without their step count."""
    from lesa_workflows.evaluate import evaluate

    kwargs = {k: v for k, v in call_defaults.items() if k != "num_inference_steps"}
    return evaluate(pipe, methods, caps, [10_000 + i for i in range(len(caps))], num_steps=steps,
                    call_kwargs=kwargs, batch_size=8, show_progress=False, reference_tap=tap)  # fmt: skip


def family_table(
    pipe: Any,
    caps: list[str],
    lesa_bundle: str,
    mlp_bundle: str,
    call_defaults: Mapping[str, Any],
    tap: str,
    warmup: int = 3,
    extra_row: Callable[[Any], dict[str, Any]] | None = None,
) -> tuple[dict[str, Any], dict[str, Any], float]:
    """The table's rows (full passes, PSNR, SSIM, ``extra_row(result)``, Δ PSNR ± s.e. against lesa at the
    same N), the results by name, and the seconds taken."""
    t0 = time.time()
    results = run_methods(
        pipe, family_methods(lesa_bundle, mlp_bundle, tap, warmup), caps, call_defaults, tap
    )
    by = {r.name: r for r in results}
    rows: dict[str, Any] = {}
    for r in results:
        row: dict[str, Any] = {
            "full_passes": r.full_passes,
            "psnr": round(r.psnr, 2),
            "ssim": round(r.ssim, 4),
        }
        if extra_row is not None:
            row.update(extra_row(r))
        ref = by.get(f"lesa@N{r.name.split('@N')[-1]}")
        if r.name != "full" and ref is not None and ref is not r:
            mean, se = paired_delta(r.psnr_per_image, ref.psnr_per_image)
            row["delta_vs_lesa"], row["delta_se"] = round(mean, 2), round(se, 2)
        rows[r.name] = row
    return rows, by, time.time() - t0
