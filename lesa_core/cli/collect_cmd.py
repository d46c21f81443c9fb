"""``lesa collect``: full-compute trajectories of the tap, written as resumable safetensors shards."""

from __future__ import annotations

import argparse
from typing import Any

from lesa_core.cli.arguments import (
    add_batch_size_argument,
    add_common_arguments,
    note_batch_size,
    resolve_command_run,
)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("collect", help="record full-compute tap trajectories for training")
    add_common_arguments(parser)
    add_batch_size_argument(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Collect; under ``torchrun`` each rank collects the prompts ``i % WORLD_SIZE == RANK``."""
    from lesa_core import distributed
    from lesa_core.trainer import PipelineRunner, collect_trajectories

    note_batch_size(args)
    command = resolve_command_run(args)
    with distributed.session(args.device) as dist:
        pipe = command.load_pipeline(dist.device)
        meta = collect_trajectories(pipe, command.run, command.training_prompts(),
                                    runner=PipelineRunner(pipe, **command.call), show_progress=not args.quiet)
        if dist.is_main:
            print(f"collected {len(meta.prompts)} trajectories × {meta.num_steps} steps of tap '{meta.tap}' "
                  f"into {command.run.config.training.data_dir}"
                  + (f" ({dist.world_size} ranks)" if dist.world_size > 1 else ""))
    return 0
