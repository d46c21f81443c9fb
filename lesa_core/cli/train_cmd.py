"""``lesa train``: collect if needed, then stage 1 (GT-guided) and stage 2 (closed loop); write a bundle."""

from __future__ import annotations

import argparse
from typing import Any

from lesa_core.cli.arguments import (
    add_batch_size_argument,
    add_common_arguments,
    note_batch_size,
    resolve_command_run,
)
from lesa_core.cli.values import int_at_least


def stages_value(value: str) -> tuple[int, ...]:
    """An ``argparse`` type: ``1``, ``2`` or ``1,2``."""
    try:
        stages = tuple(int(s) for s in value.split(",") if s.strip())
    except ValueError:
        stages = ()
    if not stages or any(s not in (1, 2) for s in stages):
        raise argparse.ArgumentTypeError(f"--stages {value!r}: use '1', '2' or '1,2'")
    return tuple(sorted(set(stages)))


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("train", help="train a predictor bundle (collects trajectories first if needed)")
    add_common_arguments(parser)
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="bundle folder to write: new, empty, or a previous bundle (never inside --data-dir)")
    parser.add_argument("--stages", type=stages_value, default=(1, 2),
                        help="which stages to run: '1', '2' or '1,2' (default)")
    parser.add_argument("--fit-policy", choices=("learned", "adaptive"), metavar="NAME",
                        help="after training, fit a cache policy to the predictor and store it in the bundle: "
                             "'learned' (the B full steps with the least forecast error) or 'adaptive' (compute "
                             "when the forecast drifts past a fitted threshold, at most B times); needs --budget")
    parser.add_argument("--budget", type=int_at_least(1), metavar="B",
                        help="full passes per trajectory for --fit-policy")
    add_batch_size_argument(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Train; under ``torchrun`` collection is sharded, training data parallel, rank 0 writes the bundle."""
    from lesa_core import distributed
    from lesa_core.errors import ConfigError
    from lesa_core.trainer import PipelineRunner, train
    from lesa_core.trainer.fit import describe_seconds
    from lesa_core.trainer.selection import describe_selection

    note_batch_size(args)
    stages = args.stages
    if (args.fit_policy is None) != (args.budget is None):
        raise ConfigError("--fit-policy and --budget go together: e.g. --fit-policy learned --budget 8")
    command = resolve_command_run(args)
    run_config = command.run
    if args.fit_policy is not None:
        run_config = run_config.derive(policy={"name": args.fit_policy, "budget": args.budget})
    with distributed.session(args.device) as dist:
        pipe = command.load_pipeline(dist.device)
        path, report = train(pipe, run_config, command.training_prompts(), runner=PipelineRunner(pipe, **command.call),
                             out=args.out, stages=stages, show_progress=not args.quiet)
        if dist.is_main:
            last = {k: (v[-1] if v else None) for k, v in report.losses.items()}
            print(f"wrote bundle {path} ({report.updates} updates; final L1 stage 1: {last.get('stage1')}, "
                  f"stage 2: {last.get('stage2')})" + (f" [{dist.world_size} ranks]" if dist.world_size > 1 else ""))
            print(full_step_schedule(run_config))
            fitted = describe_policy_fit(path)
            if fitted:
                print(fitted)
            for line in (describe_selection(report.selection), describe_seconds(report.seconds)):
                if line:
                    print(line)
    return 0


def describe_policy_fit(bundle: Any) -> str | None:
    """The fitted policy's line for a bundle whose policy was fitted after training (``None`` otherwise):
    ``fitted policy: full steps 0, 5, 14, … (8 full passes); the teacher-forced search chose 0, 7, 15, …;
    closed loop on 32 prompts: 41.48 → 43.28 dB (4 moves, 30 samplings)``."""
    from lesa_core.bundle import read_metadata

    metadata = read_metadata(bundle)
    fit = metadata.extra.get("policy_fit")
    steps = metadata.run_config.get("policy", {}).get("steps")
    if not fit or steps is None:
        return None
    line = f"fitted policy: full steps {', '.join(map(str, steps))} ({len(steps)} full passes)"
    loop = fit.get("closed_loop")
    if loop:
        line += (f"; the teacher-forced search chose {', '.join(map(str, loop['before']))}; closed loop on "
                 f"{loop['prompts']} prompts: {loop['before_db']:.2f} → {loop['after_db']:.2f} dB "
                 f"({loop['moves_kept']} moves, {loop['evaluations']} samplings)")
    return line


def full_step_schedule(run_config: Any) -> str:
    """The policy the predictor was trained for, with its full steps on the training step count, and the other
    schedules it was trained on (``training.schedules``):
    ``policy {'interval': 7, 'warmup': 3, ...}: full steps 0, 1, 2, 3, 9, … (10 of 50); also trained on
    interval=11: full steps 0, 1, 2, 3, 13, … (7 of 50)``."""
    from lesa_core.interfaces import Decision
    from lesa_core.trainer.schedules import training_schedules

    training = run_config.config.training
    steps = training.num_steps
    schedules = training_schedules(run_config.plugins, training, steps)

    def full_steps(decisions: list[Decision]) -> str:
        full = [i for i, d in enumerate(decisions) if d is Decision.COMPUTE]
        return f"full steps {', '.join(map(str, full))} ({len(full)} of {steps})"

    line = f"policy {run_config.plugins.policy_config.model_dump()}: {full_steps(schedules[0].decisions)}"
    others = "; ".join(f"{s.label}: {full_steps(s.decisions)}" for s in schedules[1:])
    return line + (f"; also trained on {others}" if others else "")
