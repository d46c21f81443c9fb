"""``lesa sample``: generate images with LESA attached (optionally next to full compute)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from lesa_core.cli._common import add_common_arguments, model_name, resolve_model_source, run_config


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
    from lesa_core.config import load_config
    from lesa_core.evaluate import evaluate
    from lesa_core.report import save_grid

    source = resolve_model_source(args.model)
    config = run_config(args, source)
    if args.bundle:  # the bundle brings its predictor and router; keep only what the user set besides them
        data = config.to_dict()
        config = load_config({**{k: data[k] for k in config.model_fields_set if k not in ("predictor", "router")},
                              "bundle": args.bundle})
    source = resolve_model_source(model_name(args, config))
    pipe = source.load(args.device)
    prompts = args.prompt or source.eval_prompts()[: args.num_prompts]
    steps = args.steps or config.training.num_steps
    methods: dict[str, Any] = {"full": None, "lesa": config}  # full compute is the reference of the metrics
    results = evaluate(pipe, methods, prompts, [args.seed + i for i in range(len(prompts))], num_steps=steps,
                       call_kwargs=source.call_defaults(), source=source, show_progress=not args.quiet)
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
