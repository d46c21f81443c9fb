"""Train run-config variants of the embedded model's default and compare them on held-out prompts.

The one-off experiments behind docs/results.md that ``lesa bench --quality`` does not cover (training
length, learning rates, stage-2 update modes, force-full diagnostics). A variants file maps a name to
the config keys it overrides (merged into the model's default run config; ``predictor`` keys are merged
into the default predictor)::

    python benchmarks/quality_variants.py benchmarks/variants/stage2.json --out /tmp/variants \
        [--eval-prompts 16] [--prompt-offset 0] [--intervals 7,10] [--trajectories DIR]

``--trajectories`` reuses an existing collection (a ``trajectories`` folder written by ``lesa collect``
or ``lesa demo`` with the default run's tap) for the variants on that tap; any other tap is collected
once under ``--out``. A variant
whose value is ``{"eval_only": {...}}`` is not trained: its run config (a bundle path or a training-free
config, e.g. with ``policy.force_full``) is evaluated as given (a bundle path starting with ``OUT/``
is one this run trains under ``--out``). Reuse and Taylor-1 at every interval are always in the table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("variants", help="JSON file: name -> config overrides")
    parser.add_argument("--out", default="variants-out")
    parser.add_argument("--eval-prompts", type=int, default=16)
    parser.add_argument("--prompt-offset", type=int, default=0,
                        help="evaluate held-out prompts [K, K + eval-prompts) with seeds 10000 + K + i; the docs "
                             "report K = 0 (the demo's prompts) and choose settings on a disjoint K (validation)")
    parser.add_argument("--intervals", default="7", help="comma-separated N to evaluate every variant at")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--trajectories", help="an existing trajectories folder to reuse (same tap)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from lesa_core.plugins import get_plugin_host
    from lesa_core.run import resolve_run
    from lesa_core.sources import training_prompts
    from lesa_core.trainer import PipelineRunner, train
    from lesa_workflows.evaluate import evaluate

    source = get_plugin_host().models.get("embedded")()
    base = source.default_config()
    pipe = source.load("cpu")
    call = source.call_defaults()
    runner = PipelineRunner(pipe, **call)
    variants: dict[str, Any] = json.loads(Path(args.variants).read_text())
    intervals = [int(n) for n in args.intervals.split(",")]
    out = Path(args.out)

    def at(interval: int) -> str:
        return "" if interval == base["policy"]["interval"] else f"@N{interval}"

    methods: dict[str, Any] = {"full": None}
    shared = {"router": base["router"], "tap": base["tap"]}
    for n in intervals:
        policy = {**base["policy"], "interval": n}
        methods["reuse" + at(n)] = {**shared, "policy": policy, "predictor": {"name": "taylor", "order": 0}}
        methods["taylor1" + at(n)] = {**shared, "policy": policy, "predictor": {"name": "taylor", "order": 1}}
    for name, override in variants.items():
        if "eval_only" in override:
            config = dict(override["eval_only"])
            if str(config.get("bundle", "")).startswith("OUT/"):  # a bundle this run trains
                config["bundle"] = str(out / config["bundle"][4:])
            methods[name] = config
            continue
        config = resolve_run(override, model_defaults=base)
        tap = config.config.tap
        data = out / "data" / f"tap-{tap}"
        if args.trajectories and tap == base["tap"] and not (data / "trajectories").exists():
            data.mkdir(parents=True, exist_ok=True)
            (data / "trajectories").symlink_to(Path(args.trajectories).resolve())
        prompts = training_prompts(config.config.training, source)
        began = time.perf_counter()
        bundle, report = train(pipe, config, prompts, runner=runner, out=out / "bundles" / name, data_dir=data,
                               checkpoint_dir=out / "checkpoints" / name, show_progress=False)
        print(f"[{name}] trained in {time.perf_counter() - began:.0f} s; losses {json.dumps(report.losses)}",
              file=sys.stderr, flush=True)
        for n in intervals:
            methods[name + at(n)] = {"bundle": str(bundle), "policy": {**config.policy.as_dict(), "interval": n}}
    prompts = source.eval_prompts()[args.prompt_offset: args.prompt_offset + args.eval_prompts]
    seeds = [10_000 + args.prompt_offset + i for i in range(len(prompts))]
    results = evaluate(pipe, methods, prompts, seeds, num_steps=args.steps,
                       call_kwargs=call, source=source)
    rows = [r.row() for r in results]
    (out / "variants.json").write_text(json.dumps({"variants": variants, "results": rows}, indent=2) + "\n")
    for r in results:
        print(f"{r.name:32s} full passes {r.full_passes:4.1f}  PSNR {r.psnr:7.3f}  SSIM {r.ssim:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
