"""``lesa bench``: ``--speed`` (wall clock of LESA against full compute and other caches, in one process)
and ``--quality`` (the ablation of the learned predictor beside the training-free peers on a model source)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from lesa_core.cli.values import device_name, int_at_least


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "bench", help="benchmark LESA: --speed (wall clock, full passes, memory) or --quality (ablation, fidelity)",
        description="--speed times a 50-step sampling loop of a random-init backbone for every method, repeats "
                    "interleaved (full, lesa, taylor1, ..., full, lesa, ...), and reports median seconds, "
                    "speed-up over full compute, full passes (counted with a forward hook on the first "
                    "block) and the cache state's bytes. --quality collects a model source's trajectories once, "
                    "trains the ablation of the run's learned predictor (stages on/off x KAN/MLP, stage 1 only vs "
                    "1 + 2, history steps vs full), and compares every variant with reuse and Taylor 1/2 on "
                    "held-out prompts, also at a longer interval and at other step counts; it writes quality.md and "
                    "quality.json to --out. Progress goes to stderr.",
    )
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument("--speed", action="store_true", help="run the speed benchmark")
    kind.add_argument("--quality", action="store_true", help="run the quality ablation on a model source")
    kind.add_argument("--frontier", action="store_true",
                      help="run the quality-speed frontier (PSNR vs full-pass equivalents and wall-clock speed-up, "
                           "budgets of B full passes; LESA's fixed, learned and adaptive schedules against every peer) "
                           "on a model source; writes frontier.json/.md/.png to --out")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON document on stdout")
    parser.add_argument("--model",
                        help="--speed: backbone cpu-bench (CPU, fp32; the default), flux-dev-shapes (CUDA, bf16) or "
                             "tiny; --quality: a model source or pipeline folder (default: the config's, else embedded)")
    parser.add_argument("--device", type=device_name,
                        help="torch device (default: the model's: cpu for cpu-bench/tiny, cuda otherwise)")
    parser.add_argument("--steps", type=int_at_least(1), default=50, help="denoising steps per trajectory (default: 50)")
    parser.add_argument("--repeats", type=int_at_least(1), default=3, help="timed trajectories per method (default: 3)")
    parser.add_argument("--methods", help="comma-separated subset, in this order (default: all: full,lesa,taylor1,"
                                          "diffusers-taylorseer,diffusers-taylorseer-lite,cache-dit; "
                                          "also: lesa-eager = lesa without CUDA graphs)")
    parser.add_argument("--interval", type=int_at_least(1), default=7, help="N: one full step every N (default: 7)")
    parser.add_argument("--warmup", type=int_at_least(0), default=3, help="E: leading full steps (default: 3)")
    parser.add_argument("--threads", type=int_at_least(1),
                        help="torch CPU threads (default: torch's, or 1 when a quick test shows the machine is too "
                             "busy for more)")
    parser.add_argument("--verbose", action="store_true", help="log every timed run to stderr")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    quality = parser.add_argument_group("--quality options")
    quality.add_argument("--config", metavar="FILE", help="run config (default: the model's own)")
    quality.add_argument("--out", default="quality-out", metavar="DIR", help="report folder (default quality-out)")
    quality.add_argument("--data-dir", metavar="DIR", help="shared trajectories (default OUT/data)")
    quality.add_argument("--eval-prompts", type=int_at_least(1), default=16, help="held-out prompts (default 16)")
    quality.add_argument("--steps-sweep", default="30,40",
                         help="other step counts to run the trained predictor at (default 30,40; '' for none)")
    quality.add_argument("--compare-taps", default="",
                         help="also train the run's predictor on these taps, comma-separated (e.g. hidden)")
    quality.add_argument("--extra-interval", type=int_at_least(0), default=10,
                         help="also compare at this interval N (default 10; 0 to skip)")
    frontier = parser.add_argument_group("--frontier options (also --config, --out, --data-dir, --eval-prompts)")
    frontier.add_argument("--budgets", default="6,8,10,12,14,16",
                          help="full passes per trajectory to compare at, comma-separated (default 6,8,10,12,14,16)")
    frontier.add_argument("--frontier-methods", metavar="LIST",
                          help="comma-separated subset of the compared methods (default: all; see "
                               "lesa_workflows.bench.frontier.FAMILIES)")
    quality.add_argument("--zoo", action="store_true",
                         help="check the one default recipe (predictor: kan, library training defaults) on every "
                              "trained model source, with the closed-form linear peer, in one table")
    quality.add_argument("--zoo-settings", metavar="JSON", default=None,
                         help='--zoo: settings per model as {"name": {call overrides}}, e.g. '
                              '\'{"default": {}, "no-cfg": {"true_cfg_scale": 1.0}}\' (default: the model\'s own call)')
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:

    from lesa_core.errors import ConfigError
    from lesa_workflows.bench import DEFAULT_METHODS, PolicySpec, run_speed_bench
    from lesa_workflows.bench.methods import EXTRA_METHODS

    if args.quality and args.zoo:
        return run_zoo_command(args)
    if args.quality:
        return run_quality(args)
    if args.frontier:
        return run_frontier(args)
    if not args.speed:
        raise ConfigError("lesa bench needs a kind of benchmark: pass --speed, --quality or --frontier")
    args.model = args.model or "cpu-bench"
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip()) if args.methods else DEFAULT_METHODS
    unknown = [m for m in methods if m not in DEFAULT_METHODS + EXTRA_METHODS]
    if unknown:
        raise ConfigError(f"unknown method(s) {', '.join(unknown)}; choose from "
                          f"{', '.join(DEFAULT_METHODS + EXTRA_METHODS)}")
    from lesa_workflows.bench.models import MODELS

    if args.model not in MODELS:
        raise ConfigError(f"unknown bench model '{args.model}'; choose from {', '.join(MODELS)}")
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


def run_zoo_command(args: argparse.Namespace) -> int:
    import torch

    from lesa_core.errors import ConfigError
    from lesa_core.outputs import claim_output_folder
    from lesa_core.parsing import parse_json
    from lesa_core.plugins import get_plugin_host
    from lesa_workflows.bench.zoo import run_zoo, trained_sources

    settings = None
    if args.zoo_settings:
        try:
            settings = parse_json(args.zoo_settings)
        except ValueError as exc:
            raise ConfigError(f"--zoo-settings is not valid JSON ({exc}); pass e.g. "
                              '\'{"default": {}, "no-cfg": {"true_cfg_scale": 1.0}}\'') from None
        if not isinstance(settings, dict) or not all(isinstance(v, dict) for v in settings.values()):
            raise ConfigError('--zoo-settings must map a setting name to call overrides, e.g. {"default": {}}')
    sources = trained_sources(get_plugin_host())
    if args.model:
        if args.model not in sources:
            raise ConfigError(f"--model {args.model}: not a trained model source; choose from {', '.join(sources)}")
        sources = {args.model: sources[args.model]}
    if not sources:
        raise ConfigError("no trained model source is registered; install lesa-embedded (scripts/setup.sh)")
    claim_output_folder(args.out, command="lesa bench --quality --zoo", markers=("zoo.json",))
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")

    def log(message: str) -> None:
        if not args.quiet:
            print(message, file=sys.stderr, flush=True)

    extra = args.extra_interval or 10
    report = run_zoo(sources, out=args.out, settings=settings, eval_prompts=args.eval_prompts, long_interval=extra,
                     device=device, show_progress=not args.quiet, log=log)
    print(json.dumps(report.to_json()) if args.json else report.markdown())
    return 0


def run_quality(args: argparse.Namespace) -> int:
    import torch

    from lesa_core.cli.arguments import resolve_command_run
    from lesa_core.errors import ConfigError
    from lesa_core.outputs import check_not_nested, claim_output_folder
    from lesa_workflows.bench.quality import run_quality_bench

    try:
        sweep = tuple(int(s) for s in args.steps_sweep.split(",") if s.strip())
    except ValueError:
        raise ConfigError(f"--steps-sweep {args.steps_sweep!r}: pass comma-separated step counts such as 30,40"
                          ) from None
    if any(s < 2 for s in sweep):
        raise ConfigError(f"--steps-sweep values must be at least 2, got {args.steps_sweep!r}; pass e.g. 30,40")
    command = resolve_command_run(args)
    data = args.data_dir or str(Path(args.out) / "data")
    check_not_nested(args.out, data, data_inside_ok=True)
    claim_output_folder(args.out, command="lesa bench --quality", markers=("quality.json",))  # before any work
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")

    def log(message: str) -> None:
        if not args.quiet:
            print(message, file=sys.stderr, flush=True)

    report = run_quality_bench(command.source, command.run, out=args.out, device=device, data_dir=args.data_dir,
                               eval_prompts=args.eval_prompts, steps_sweep=sweep,
                               compare_taps=tuple(t.strip() for t in args.compare_taps.split(",") if t.strip()),
                               extra_interval=args.extra_interval or None, model_name=command.model,
                               show_progress=not args.quiet, log=log)
    if args.json:
        print(json.dumps(report.to_json()))
    else:
        print(report.markdown())
    return 0


def run_frontier(args: argparse.Namespace) -> int:
    import platform

    import torch

    from lesa_core.cli.arguments import resolve_command_run
    from lesa_core.errors import ConfigError
    from lesa_core.outputs import check_not_nested, claim_output_folder
    from lesa_workflows.bench.frontier import FAMILIES, run_frontier_bench

    try:
        budgets = tuple(int(b) for b in args.budgets.split(",") if b.strip())
    except ValueError:
        raise ConfigError(f"--budgets {args.budgets!r}: pass comma-separated full-pass counts such as 6,8,10") from None
    if not budgets or any(b < 2 for b in budgets):
        raise ConfigError(f"--budgets values must be at least 2, got {args.budgets!r}; pass e.g. 6,8,10")
    families = (tuple(f.strip() for f in args.frontier_methods.split(",") if f.strip()) if args.frontier_methods
                else FAMILIES)
    out = "frontier-out" if args.out == "quality-out" else args.out
    command = resolve_command_run(args)
    data = args.data_dir or str(Path(out) / "data")
    check_not_nested(out, data, data_inside_ok=True)
    claim_output_folder(out, command="lesa bench --frontier", markers=("frontier.json",))
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    machine = (f"{platform.machine()}, {torch.get_num_threads()} torch thread(s), torch {torch.__version__}, "
               f"device {device}")

    def log(message: str) -> None:
        if not args.quiet:
            print(message, file=sys.stderr, flush=True)

    report = run_frontier_bench(command.source, command.run, out=out, device=device, data_dir=args.data_dir,
                                eval_prompts=args.eval_prompts, budgets=budgets, families=families,
                                model_name=command.model, machine=machine, show_progress=not args.quiet, log=log)
    if args.json:
        print(json.dumps(report.to_json()))
    else:
        print(report.markdown())
    return 0
