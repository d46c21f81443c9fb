#!/usr/bin/env python3
"""GPU half of the speed benchmark (issue #6): FLUX.1-dev shapes, bf16, one H100/H200, no network.

In one process, within a time budget (default 220 s after the imports):

1. a short warm-up (two full forward passes, timed: the first one pays cuBLAS/cuDNN set-up);
2. checks of the forecast path: the CUDA-graph coefficients equal the eager ones (stage-aware KAN, every
   history length), and micro-timings (CUDA events) of one forecast's predictor call, graph vs eager,
   and of the weighted sum over the 8 taps;
3. :func:`lesa_workflows.bench.run_speed_bench` with ``flux-dev-shapes``: 50 steps, 3 interleaved repeats of
   full, lesa, lesa-eager (no CUDA graphs), taylor1, diffusers TaylorSeer lite, diffusers TaylorSeer
   default and cache-dit (the last three only while the budget allows; cache-dit only if installed),
   then one instrumented lesa trajectory (per-step costs);
4. a sync check: one lesa trajectory with ``torch.cuda.set_sync_debug_mode("error")`` on every
   forecast step (any host synchronisation there raises and is reported).

Writes ``speed.json`` (exactly the ``lesa bench --speed --json`` document), ``details.json`` (the checks,
micro-timings, per-step costs, every repeat) and ``gpu_speed.log`` to ``--out`` (default ``$OUT``), and
prints a table last.

``--tiny`` runs the same script on the tiny CPU model (a smoke test of the script itself, ~1 minute).
Run it through ``benchmarks/gpu_speed.sh``, which installs the wheels of ``.whl/`` first.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import sys
import time
import traceback
from pathlib import Path
from typing import Any

STARTED = time.perf_counter()


class Log:
    def __init__(self, path: Path) -> None:
        self.file = path.open("a", encoding="utf-8")

    def __call__(self, message: str) -> None:
        line = f"[{time.perf_counter() - STARTED:7.1f}s] {message}"
        print(line, file=sys.stderr, flush=True)
        self.file.write(line + "\n")
        self.file.flush()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12] if path.exists() else "missing"


def environment(log: Log) -> dict[str, Any]:
    import diffusers
    import torch

    import lesa_core

    root = Path(lesa_core.__file__).resolve().parent.parent
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "diffusers": diffusers.__version__,
        "lesa_core": lesa_core.__file__,
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "sources": {rel: _sha(root / rel) for rel in (
            "lesa_core/interfaces/coefficients.py", "lesa_core/composite.py", "lesa_core/interfaces/predictor.py",
            "workflows/lesa_workflows/bench/timing.py", "adapters/lesa_adapters/engine/attachment.py",
            "adapters/lesa_adapters/engine/hooks.py")},
    }
    log(f"environment: {json.dumps(env)}")
    return env


def cuda_time(fn: Any, repeats: int, device: Any) -> float:
    """Median milliseconds of ``fn()`` measured with CUDA events (host clock on the CPU)."""
    import torch

    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def warm_up(bm: Any, log: Log) -> dict[str, float]:
    import torch

    from lesa_workflows.bench.timing import synchronize

    out = {}
    t = torch.full((1,), 0.5, device=bm.device, dtype=bm.dtype)
    with torch.inference_mode():
        for name in ("first_forward_s", "second_forward_s"):
            synchronize(bm.device)
            t0 = time.perf_counter()
            bm.transformer(hidden_states=bm.latents, timestep=t, return_dict=False, **bm.kwargs)
            synchronize(bm.device)
            out[name] = time.perf_counter() - t0
    log(f"warm-up: first forward {out['first_forward_s']:.3f} s, second {out['second_forward_s']:.3f} s")
    return out


def forecast_path_checks(bm: Any, log: Log) -> dict[str, Any]:
    """Graph vs eager coefficients (equality) and micro-timings of one forecast, on realistic shapes."""
    import torch

    from lesa_core.assembly import assemble
    from lesa_core.interfaces import ForecastInput
    from lesa_core.interfaces.coefficients import cuda_graphs, fast_coefficients
    from lesa_core.interfaces.predictor import combine
    from lesa_workflows.bench import PolicySpec
    from lesa_workflows.bench.methods import make_method

    config = make_method("lesa", PolicySpec(), 50).config  # type: ignore[attr-defined]
    predictor = assemble(bm.transformer, config).predictor
    device = bm.device
    shape = (1, bm.spec.image_tokens, bm.spec.hidden_size)
    g = torch.Generator(device="cpu").manual_seed(0)
    base = torch.randn(shape, generator=g).to(device, bm.dtype)
    schedule = torch.linspace(1.0, 0.0, 51)
    result: dict[str, Any] = {"tap_shape": list(shape), "tap_dtype": str(bm.dtype)}
    mismatches = []
    worst = worst_out = 0.0
    with torch.inference_mode():
        features = [base + 0.01 * i for i in range(8)]
        for n in range(4, 9):
            for step in (5, 12, 26, 40, 49):  # the three stages
                steps = torch.arange(step - n, step, dtype=torch.float32)
                inputs = ForecastInput(features=features[-n:], times=schedule[steps.long()].to(device),
                                       steps=steps.to(device), t=schedule[step].to(device),
                                       step=torch.tensor(float(step)).to(device))
                fast = [t.clone() for t in fast_coefficients(predictor, predictor._selected_coefficients, inputs)]
                eager = predictor._selected_coefficients(inputs)
                error = max(float((a - b).abs().max()) for a, b in zip(fast, eager, strict=True))
                worst = max(worst, error)
                if not all(torch.allclose(a, b, rtol=1e-5, atol=1e-6) for a, b in zip(fast, eager, strict=True)):
                    mismatches.append((n, step, error))
                out_fast, out_eager = predictor(inputs), combine(inputs.features, *eager)
                worst_out = max(worst_out, float((out_fast.float() - out_eager.float()).abs().max()))
        result["graph_equals_eager"] = not mismatches
        result["max_coefficient_difference"] = worst
        result["max_forecast_difference"] = worst_out
        result["mismatches"] = mismatches
        state = predictor.__dict__.get("_lesa_fast_state")
        result["graphs_captured"] = 0 if state is None else len(state.graphs)
        result["graphs_failed"] = None if state is None else state.graphs_failed
        steps = torch.arange(12, 20, dtype=torch.float32)
        inputs = ForecastInput(features=features, times=schedule[steps.long()].to(device), steps=steps.to(device),
                               t=schedule[20].to(device), step=torch.tensor(20.0).to(device))
        result["predictor_ms_graph"] = cuda_time(lambda: predictor(inputs), 50, device)
        with cuda_graphs(False):
            result["predictor_ms_eager"] = cuda_time(lambda: predictor(inputs), 50, device)
        coef, bias = predictor._selected_coefficients(inputs)
        result["combine_ms"] = cuda_time(lambda: combine(features, coef, bias), 50, device)
        taps_bytes = sum(f.numel() * f.element_size() for f in features)
        result["combine_min_bytes"] = taps_bytes + features[0].numel() * features[0].element_size()
    log(f"forecast path: graph == eager: {result['graph_equals_eager']} (max coefficient difference "
        f"{result['max_coefficient_difference']:.2e}, {result['graphs_captured']} graphs, "
        f"failed={result['graphs_failed']}); predictor {result['predictor_ms_graph']:.3f} ms (graph) vs "
        f"{result['predictor_ms_eager']:.3f} ms (eager); combine of 8 taps {result['combine_ms']:.3f} ms "
        f"(reads+writes at least {result['combine_min_bytes'] / 1e6:.0f} MB)")
    return result


def sync_check(bm: Any, log: Log) -> dict[str, Any]:
    """One warm lesa trajectory, then one with CUDA's sync debug mode set to 'error' on forecast steps."""
    import torch

    from lesa_workflows.bench import PolicySpec
    from lesa_workflows.bench.methods import make_method
    from lesa_workflows.bench.timing import Trajectory

    if bm.device.type != "cuda":
        return {"skipped": "not on CUDA"}
    policy = PolicySpec()
    mask = policy.mask(50)
    method = make_method("lesa", policy, 50)
    method.prepare(bm.transformer)
    trajectory = Trajectory(bm, 50)
    done = {"step": -1}

    def on_step(i: int) -> None:
        done["step"] = i
        upcoming = i + 1 < len(mask) and not mask[i + 1]
        torch.cuda.set_sync_debug_mode("error" if upcoming else "default")

    outcome: dict[str, Any] = {}
    try:
        target = method.attach(bm.transformer)
        try:
            trajectory.run(target)  # warm: graphs captured, memo filled
            method.before_trajectory()
            trajectory.run(target, on_step=on_step)
            outcome["forecast_steps_sync_free"] = True
        except RuntimeError as exc:
            outcome["forecast_steps_sync_free"] = False
            outcome["error"] = f"step {done['step'] + 1}: {exc}"
        finally:
            torch.cuda.set_sync_debug_mode("default")
            method.detach()
    finally:
        method.close()
    log(f"sync check: {outcome}")
    return outcome


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.environ.get("OUT", "gpu-speed-out"), help="output folder (default $OUT)")
    parser.add_argument("--budget", type=float, default=220.0, help="seconds for everything after the imports")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--tiny", action="store_true", help="smoke test: the tiny model on the CPU")
    parser.add_argument("--methods", default="full,lesa,lesa-eager,taylor1,diffusers-taylorseer-lite,"
                                              "diffusers-taylorseer,cache-dit")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = Log(out / "gpu_speed.log")

    import torch

    from lesa_workflows.bench import build_model, run_speed_bench

    imported = time.perf_counter()
    deadline = imported + args.budget
    log(f"imports done in {imported - STARTED:.1f} s; budget {args.budget:.0f} s")
    details: dict[str, Any] = {"environment": environment(log), "budget_s": args.budget}
    model = "tiny" if args.tiny else "flux-dev-shapes"
    device = "cpu" if args.tiny else "cuda"
    if args.tiny:
        torch.set_num_threads(1)  # a smoke test on a shared CPU: no OpenMP barrier stalls
    if not args.tiny and not torch.cuda.is_available():
        log("no CUDA device: use --tiny for a CPU smoke test")
        return 2
    t0 = time.perf_counter()
    bm = build_model(model, device)
    details["build_s"] = time.perf_counter() - t0
    params = sum(p.numel() for p in bm.transformer.parameters())
    log(f"built {model}: {params / 1e6:,.0f} M parameters, {bm.spec.dtype}, {bm.device} in {details['build_s']:.1f} s")
    if bm.device.type == "cuda":
        details["gpu_memory_after_build_gib"] = torch.cuda.memory_allocated() / 2**30

    details["warm_up"] = warm_up(bm, log)
    try:
        details["forecast_path"] = forecast_path_checks(bm, log)
    except Exception:
        details["forecast_path"] = {"error": traceback.format_exc()}
        log(f"forecast-path checks failed:\n{details['forecast_path']['error']}")

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    optional = ("diffusers-taylorseer", "cache-dit", "lesa-eager")
    # leave ~25 s for the instrumented pass, the sync check and writing the results
    report = run_speed_bench(bm, methods=methods, steps=args.steps, repeats=args.repeats, show_progress=True,
                             log=log, deadline=deadline - 25, hard_deadline=deadline - 12, optional=optional,
                             warmup_steps={"full": 6, "diffusers-taylorseer": 8, "cache-dit": 8})
    doc = report.to_json()
    (out / "speed.json").write_text(json.dumps(doc, indent=2) + "\n")
    details["speed"] = doc
    details["step_seconds"] = report.step_seconds
    details["repeats"] = {m.name: {"times": m.times, "full_passes": m.full_passes} for m in report.methods}
    if bm.device.type == "cuda":
        details["gpu_max_memory_allocated_gib"] = torch.cuda.max_memory_allocated() / 2**30
    if time.perf_counter() < deadline - 8:
        try:
            details["sync_check"] = sync_check(bm, log)
        except Exception:
            details["sync_check"] = {"error": traceback.format_exc()}
            log(f"sync check failed:\n{details['sync_check']['error']}")
    else:
        details["sync_check"] = {"skipped": "time budget"}
    details["total_s"] = time.perf_counter() - STARTED
    (out / "details.json").write_text(json.dumps(details, indent=2, default=str) + "\n")
    log(f"wrote {out / 'speed.json'} and {out / 'details.json'} after {details['total_s']:.0f} s")
    print(report.table())
    print(json.dumps(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
