"""``lesa sample``: generate images with LESA attached (optionally next to full compute)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from lesa_core.cli.arguments import add_common_arguments, resolve_command_run


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("sample", help="sample images with a bundle or run config attached")
    add_common_arguments(parser)
    parser.add_argument("--bundle", metavar="DIR", help="trained bundle to attach (overrides the config's bundle)")
    parser.add_argument("--prompt", action="append", help="prompt (repeat for several); default: held-out prompts")
    parser.add_argument("--num-prompts", type=int, default=4, help="how many held-out prompts when --prompt is absent")
    parser.add_argument("--steps", type=int, help="denoising steps (default: training.num_steps)")
    parser.add_argument("--seed", type=int, default=1000, help="seed of the first prompt (then +1 per prompt)")
    parser.add_argument("--compare", action="store_true", help="also sample with full compute and report PSNR/SSIM")
    parser.add_argument("--out", default="lesa-out", metavar="DIR", help="folder for images and report")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lesa_workflows.evaluate import evaluate
    from lesa_workflows.report import save_grid

    command = resolve_command_run(args)  # --bundle is a layer of the run: its predictor and router win
    source, run = command.source, command.run
    pipe = command.load_pipeline(args.device)
    prompts = args.prompt or source.eval_prompts()[: args.num_prompts]
    steps = args.steps or run.config.training.num_steps
    methods: dict[str, Any] = {"full": None, "lesa": run}  # full compute is the reference of the metrics
    results = evaluate(pipe, methods, prompts, [args.seed + i for i in range(len(prompts))], num_steps=steps,
                       call_kwargs=command.call, source=source, show_progress=not args.quiet)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    shown = results if args.compare else results[1:]
    save_grid(out / "samples.png", shown, prompts)
    rows = [r.row() for r in shown]
    (out / "samples.json").write_text(json.dumps({"prompts": prompts, "steps": steps, "methods": rows}, indent=2))
    for row in rows:
        print(json.dumps(row))
    print(f"wrote {out / 'samples.png'}")
    return 0
