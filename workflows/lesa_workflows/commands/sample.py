"""``lesa sample``: generate images with LESA attached (optionally next to full compute)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from lesa_core.cli.arguments import add_common_arguments, resolve_command_run
from lesa_core.cli.values import int_at_least, seed_value

SAMPLE_MARKERS = ("samples.json",)
"""What marks a folder as one ``lesa sample`` wrote (besides :data:`lesa_core.outputs.OUTPUT_MARKER`)."""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("sample", help="sample images with a bundle or run config attached")
    add_common_arguments(parser)
    parser.add_argument("--bundle", metavar="DIR", help="trained bundle to attach (overrides the config's bundle)")
    parser.add_argument("--prompt", action="append", help="prompt (repeat for several); default: held-out prompts")
    parser.add_argument("--num-prompts", type=int_at_least(1), default=4,
                        help="how many held-out prompts when --prompt is absent")
    parser.add_argument("--steps", type=int_at_least(1), help="denoising steps (default: training.num_steps)")
    parser.add_argument("--seed", type=seed_value, default=1000, help="seed of the first prompt (then +1 per prompt)")
    parser.add_argument("--compare", action="store_true", help="also sample with full compute and report PSNR/SSIM")
    parser.add_argument("--out", default="lesa-out", metavar="DIR",
                        help="folder for images and report: new, empty, or one `lesa sample` wrote")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lesa_core.errors import UsageError
    from lesa_core.outputs import check_claimable, claim_output_folder
    from lesa_workflows.evaluate import evaluate
    from lesa_workflows.report import save_grid

    out = Path(args.out)
    check_claimable(out, command="lesa sample", markers=SAMPLE_MARKERS)  # before any work
    command = resolve_command_run(args)  # --bundle is a layer of the run: its predictor and router win
    source, run = command.source, command.run
    prompts = args.prompt or source.eval_prompts()[: args.num_prompts]
    if not prompts:
        raise UsageError(f"model '{command.model}' has no held-out prompts; pass --prompt TEXT (repeat for several)")
    steps = args.steps if args.steps is not None else run.config.training.num_steps
    pipe = command.load_pipeline(args.device)
    methods: dict[str, Any] = {"full": None, "lesa": run}  # full compute is the reference of the metrics
    results = evaluate(pipe, methods, prompts, [args.seed + i for i in range(len(prompts))], num_steps=steps,
                       call_kwargs=command.call, source=source, show_progress=not args.quiet)
    claim_output_folder(out, command="lesa sample", markers=SAMPLE_MARKERS)
    shown = results if args.compare else results[1:]
    save_grid(out / "samples.png", shown, prompts)
    rows = [r.row() for r in shown]
    (out / "samples.json").write_text(json.dumps({"prompts": prompts, "steps": steps, "methods": rows}, indent=2))
    for row in rows:
        print(json.dumps(row))
    print(f"wrote {out / 'samples.png'}")
    return 0
