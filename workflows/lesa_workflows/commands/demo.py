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

from lesa_core.cli.arguments import add_common_arguments, resolve_command_run
from lesa_core.cli.values import int_at_least


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("demo", help="collect, train, and compare LESA with its peers on the default model")
    add_common_arguments(parser)
    parser.add_argument("--out", default="demo-out", metavar="DIR",
                        help="where the report goes (default demo-out): new, empty, or a previous demo's")
    parser.add_argument("--eval-prompts", type=int_at_least(1), default=16,
                        help="held-out prompts to evaluate on (default 16)")
    parser.add_argument("--extra-interval", type=int_at_least(0), default=10,
                        help="also evaluate LESA and Taylor at this interval N (0 to skip)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lesa_core.outputs import check_not_nested, claim_output_folder
    from lesa_core.trainer import PipelineRunner, train
    from lesa_workflows.bench.any_schedule import any_schedule_bundle
    from lesa_workflows.evaluate import evaluate
    from lesa_workflows.report import REPORT_MARKERS, write_report

    started = time.perf_counter()
    out = Path(args.out)
    command = resolve_command_run(args, overrides=None if args.data_dir else {"training": {"data_dir": str(out / "data")}})
    source, run = command.source, command.run
    data_dir = Path(run.config.training.data_dir)
    check_not_nested(out, data_dir, data_inside_ok=True)  # the default data folder is OUT/data
    claim_output_folder(out, command="lesa demo", markers=REPORT_MARKERS)  # before any work
    pipe = command.load_pipeline(args.device)
    call = command.call
    runner = PipelineRunner(pipe, **call)
    prompts = command.training_prompts()
    quiet = args.quiet

    timings: dict[str, float] = {}
    began = time.perf_counter()
    lesa_bundle, lesa_report = train(pipe, run, prompts, runner=runner, out=out / "bundles" / "lesa",
                                     data_dir=data_dir, show_progress=not quiet)
    timings["collect_and_train_lesa"] = time.perf_counter() - began
    # lesa at another N needs a predictor not bound to the run's own full steps (a kept floor candidate is):
    # before the mlp run replaces the checkpoint this resumes from
    anywhere = any_schedule_bundle(pipe, run, lesa_bundle, prompts, runner=runner,
                                   out=out / "bundles" / "lesa-any-schedule", data_dir=data_dir,
                                   checkpoint_dir=data_dir / "checkpoint", show_progress=not quiet)
    mlp_config = run.derive(predictor={**run.predictor.as_dict(), "name": "mlp"})
    began = time.perf_counter()
    mlp_bundle, _ = train(pipe, mlp_config, prompts, runner=runner, out=out / "bundles" / "mlp", data_dir=data_dir,
                          show_progress=not quiet)
    timings["train_mlp"] = time.perf_counter() - began
    any_schedule_bundle(pipe, mlp_config, mlp_bundle, prompts, runner=runner,  # for tables at another N
                        out=out / "bundles" / "mlp-any-schedule", data_dir=data_dir,
                        checkpoint_dir=data_dir / "checkpoint", show_progress=not quiet)

    policy = run.policy.as_dict()
    # the peers forecast the same tap as LESA
    taylor = {"router": run.router.as_dict(), "policy": policy, "guard_non_finite": run.config.guard_non_finite,
              "tap": run.config.tap}
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
        methods[f"lesa@N{args.extra_interval}"] = {"bundle": str(anywhere), "policy": extra_policy}
        methods[f"taylor1@N{args.extra_interval}"] = {**taylor, "policy": extra_policy,
                                                       "predictor": {"name": "taylor", "order": 1}}
    eval_prompts = source.eval_prompts()[: args.eval_prompts]
    seeds = [10_000 + i for i in range(len(eval_prompts))]
    began = time.perf_counter()
    num_steps = run.config.training.num_steps
    results = evaluate(pipe, methods, eval_prompts, seeds, num_steps=num_steps, call_kwargs=call,
                       source=source, batch_size=8, show_progress=not quiet, reference_tap=run.config.tap)
    timings["evaluate"] = time.perf_counter() - began
    timings["total"] = time.perf_counter() - started
    meta = json.loads((lesa_bundle / "lesa_bundle.json").read_text())
    from lesa_core.trainer.selection import describe_selection
    from lesa_workflows.bench.zoo import schedule_text

    resolved_policy = run.plugins.policy_config.model_dump()  # defaults filled in: E, phase, forced steps
    notes = [
        f"Policy {policy}; router {run.router.as_dict()}; predictor {run.predictor.as_dict()}.",
        *([f"Full-step schedule: {schedule_text(resolved_policy)}"
           + (f"; at N = {args.extra_interval} the same with N changed" if args.extra_interval else "") + "."]
          if policy.get("name") == "interval" else []),
        *([line] if (line := describe_selection(lesa_report.selection)) else []),
        f"Collected {len(prompts)} prompts, trained on "
        f"{len(prompts) - lesa_report.selection.get('validation_prompts', 0)} ({lesa_report.updates} updates); "
        f"timings (s): " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()) + ".",
    ]
    paths = write_report(out, results, steps=num_steps, prompts=eval_prompts,
                         title=f"LESA demo on the '{command.model}' model", notes=notes,
                         schedule=meta.get("schedule"), boundaries=run.router.params.get("boundaries", ()),
                         extra={"timings": {k: round(v, 1) for k, v in timings.items()}},
                         main_methods=("full", "lesa", "mlp", "taylor1", "taylor2", "reuse"))
    for r in results:
        print(json.dumps(r.row()))
    print(f"report: {paths['report.md']}  (total {timings['total']:.0f} s)")
    return 0
