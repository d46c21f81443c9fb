"""``lesa bench --speed``: wall-clock speed of LESA against full compute and other caches, in one process."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "bench", help="benchmark LESA against full compute and other caches (wall clock, full passes, memory)",
        description="Times a 50-step sampling loop of a random-init backbone for every method, repeats "
                    "interleaved (full, lesa, taylor1, ..., full, lesa, ...), and reports median seconds, "
                    "speed-up over full compute, full passes (counted with a forward hook on the first "
                    "block) and the cache state's bytes. Progress goes to stderr.",
    )
    parser.add_argument("--speed", action="store_true", help="run the speed benchmark (the only kind so far)")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON document on stdout")
    parser.add_argument("--model", default="cpu-bench",
                        help="backbone: cpu-bench (CPU, fp32), flux-dev-shapes (CUDA, bf16) or tiny (default: cpu-bench)")
    parser.add_argument("--device", help="torch device (default: the model's: cpu for cpu-bench/tiny, cuda otherwise)")
    parser.add_argument("--steps", type=int, default=50, help="denoising steps per trajectory (default: 50)")
    parser.add_argument("--repeats", type=int, default=3, help="timed trajectories per method (default: 3)")
    parser.add_argument("--methods", help="comma-separated subset, in this order (default: all: full,lesa,taylor1,"
                                          "diffusers-taylorseer,diffusers-taylorseer-lite,cache-dit; "
                                          "also: lesa-eager = lesa without CUDA graphs)")
    parser.add_argument("--interval", type=int, default=7, help="N: one full step every N (default: 7)")
    parser.add_argument("--warmup", type=int, default=3, help="E: leading full steps (default: 3)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--verbose", action="store_true", help="log every timed run to stderr")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from lesa_core.bench import DEFAULT_METHODS, PolicySpec, run_speed_bench
    from lesa_core.bench.methods import EXTRA_METHODS
    from lesa_core.errors import ConfigError

    if not args.speed:
        raise ConfigError("lesa bench needs a kind of benchmark: pass --speed")
    if args.steps < 1 or args.repeats < 1:
        raise ConfigError("--steps and --repeats must be at least 1")
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip()) if args.methods else DEFAULT_METHODS
    unknown = [m for m in methods if m not in DEFAULT_METHODS + EXTRA_METHODS]
    if unknown:
        raise ConfigError(f"unknown method(s) {', '.join(unknown)}; choose from "
                          f"{', '.join(DEFAULT_METHODS + EXTRA_METHODS)}")
    from lesa_core.bench.models import MODELS

    if args.model not in MODELS:
        raise ConfigError(f"unknown bench model '{args.model}'; choose from {', '.join(MODELS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    policy = PolicySpec(interval=args.interval, warmup=args.warmup)

    def log(message: str) -> None:
        if args.verbose:
            print(message, file=sys.stderr, flush=True)

    report = run_speed_bench(args.model, methods=methods, steps=args.steps, repeats=args.repeats, policy=policy,
                             device=args.device, show_progress=not args.quiet, log=log)
    if args.json:
        print(json.dumps(report.to_json()))
    else:
        print(report.table())
    return 0
