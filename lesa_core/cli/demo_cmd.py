"""``lesa demo``: the whole workflow on the embedded default model, side by side with the peers.

Collect → train LESA (KAN, stage-aware) and the MLP ablation → sample held-out prompts with full
compute, ``lesa``, ``mlp``, Taylor order 1 and 2 and reuse, all at the same number of full passes →
``report.md``, ``report.json``, ``grid.png``, ``error_per_step.png`` in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from lesa_core.cli._common import add_common_arguments, resolve_model_source, run_config, training_prompts


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("demo", help="collect, train, and compare LESA with its peers on the default model")
    add_common_arguments(parser)
    parser.add_argument("--out", default="demo-out", metavar="DIR", help="where the report goes (default demo-out)")
    parser.add_argument("--eval-prompts", type=int, default=16, help="held-out prompts to evaluate on (default 16)")
    parser.add_argument("--extra-interval", type=int, default=10,
                        help="also evaluate LESA and Taylor at this interval N (0 to skip)")
    parser.set_defaults(func=run)


def _policy(config: Any) -> dict[str, Any]:
    return config.policy.as_dict()


def run(args: argparse.Namespace) -> int:
    from lesa_core.config import load_config
    from lesa_core.evaluate import evaluate
    from lesa_core.report import write_report
    from lesa_core.trainer import PipelineRunner, train

    started = time.perf_counter()
    out = Path(args.out)
    data_dir = Path(args.data_dir) if args.data_dir else out / "data"
    source = resolve_model_source(args.model)
    config = run_config(args, source)
    pipe = source.load(args.device)
    call = source.call_defaults()
    runner = PipelineRunner(pipe, **call)
    prompts = training_prompts(config, source)
    quiet = args.quiet

    timings: dict[str, float] = {}
    began = time.perf_counter()
    lesa_bundle, lesa_report = train(pipe, config, prompts, runner=runner, out=out / "bundles" / "lesa",
                                     data_dir=data_dir, show_progress=not quiet)
    timings["collect_and_train_lesa"] = time.perf_counter() - began
    mlp_config = load_config({**config.to_dict(), "predictor": {**config.predictor.as_dict(), "name": "mlp"}})
    began = time.perf_counter()
    mlp_bundle, _ = train(pipe, mlp_config, prompts, runner=runner, out=out / "bundles" / "mlp", data_dir=data_dir,
                          show_progress=not quiet)
    timings["train_mlp"] = time.perf_counter() - began

    policy = _policy(config)
    # the peers forecast the same tap as LESA
    taylor = {"router": config.router.as_dict(), "policy": policy, "guard_non_finite": config.guard_non_finite,
              "tap": config.tap}
    methods: dict[str, Any] = {
        "full": None,
        "lesa": {"bundle": str(lesa_bundle)},
        "mlp": {"bundle": str(mlp_bundle)},
        "taylor1": {**taylor, "predictor": {"name": "taylor", "order": 1}},
        "taylor2": {**taylor, "predictor": {"name": "taylor", "order": 2}},
        "reuse": {**taylor, "predictor": {"name": "taylor", "order": 0}},
    }
    if args.extra_interval:
        extra_policy = {**policy, "interval": args.extra_interval}
        methods[f"lesa@N{args.extra_interval}"] = {"bundle": str(lesa_bundle), "policy": extra_policy}
        methods[f"taylor1@N{args.extra_interval}"] = {**taylor, "policy": extra_policy,
                                                       "predictor": {"name": "taylor", "order": 1}}
    eval_prompts = source.eval_prompts()[: args.eval_prompts]
    seeds = [10_000 + i for i in range(len(eval_prompts))]
    began = time.perf_counter()
    results = evaluate(pipe, methods, eval_prompts, seeds, num_steps=config.training.num_steps, call_kwargs=call,
                       source=source, batch_size=8, show_progress=not quiet, reference_tap=config.tap)
    timings["evaluate"] = time.perf_counter() - began
    timings["total"] = time.perf_counter() - started
    meta = json.loads((lesa_bundle / "lesa_bundle.json").read_text())
    notes = [
        f"Policy {policy}; router {config.router.as_dict()}; predictor {config.predictor.as_dict()}.",
        f"Trained on {len(prompts)} prompts ({lesa_report.updates} updates); "
        f"timings (s): " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()) + ".",
    ]
    paths = write_report(out, results, steps=config.training.num_steps, prompts=eval_prompts,
                         title=f"LESA demo on the '{args.model or 'embedded'}' model", notes=notes,
                         schedule=meta.get("schedule"), boundaries=config.router.params.get("boundaries", ()),
                         extra={"timings": {k: round(v, 1) for k, v in timings.items()}},
                         main_methods=("full", "lesa", "mlp", "taylor1", "taylor2", "reuse"))
    for r in results:
        print(json.dumps(r.row()))
    print(f"report: {paths['report.md']}  (total {timings['total']:.0f} s)")
    return 0
