"""Check the one default training recipe (issue #15) on a model setting: train ``kan`` (nothing else set)
and the closed-form ``linear`` peer, and compare them with reuse / Taylor-1 / Taylor-2 on held-out prompts.

    python benchmarks/recipe_check.py --out /tmp/recipe-embedded [--call '{"true_cfg_scale": 1.0}'] \
        [--steps 50] [--eval-prompts 64] [--predictor '{"name": "kan"}'] [--skip-eval]

The run config is the model source's default with its ``predictor`` and ``training`` stage settings
replaced by the library defaults (``predictor: kan``); the tap, router, policy and the collection size
(``num_prompts``, ``token_subsample``) stay the model's. ``--call`` overrides the sampling call (another
setting of the same model: without true CFG, another shift...). Everything runs with one torch thread;
the load average before and after collection + training is recorded. Writes ``recipe.json`` (per-image
PSNR of every row) and prints the table with paired Δ ± s.e.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any


def paired(values: list[float], reference: list[float]) -> tuple[float, float]:
    diffs = [a - b for a, b in zip(values, reference, strict=True)]
    n = len(diffs)
    mean = sum(diffs) / n
    var = sum((d - mean) ** 2 for d in diffs) / max(n - 1, 1)
    return mean, (var / n) ** 0.5


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--call", default="{}", help="JSON: sampling-call overrides")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--eval-prompts", type=int, default=64)
    parser.add_argument("--predictor", default='{"name": "kan"}', help="JSON predictor spec of the `lesa` row")
    parser.add_argument("--training", default="{}", help="JSON: training overrides")
    parser.add_argument("--long-interval", type=int, default=10)
    parser.add_argument("--skip-eval", action="store_true")
    args = parser.parse_args()

    import logging

    import torch

    logging.basicConfig(format="%(asctime)s %(message)s")
    logging.getLogger("lesa").setLevel(logging.INFO)
    torch.set_num_threads(1)
    from lesa_core.plugins import get_plugin_host
    from lesa_core.run import resolve_run
    from lesa_core.sources import training_prompts
    from lesa_core.trainer import PipelineRunner, train
    from lesa_workflows.evaluate import evaluate

    source = get_plugin_host().models.get(args.model)()
    base = source.default_config()
    call = {**source.call_defaults(), **json.loads(args.call)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    training = {k: base["training"][k] for k in ("num_prompts", "token_subsample") if k in base.get("training", {})}
    training.update(num_steps=args.steps, **json.loads(args.training))
    config: dict[str, Any] = {"model": args.model, "tap": base.get("tap"), "router": base.get("router"),
                              "policy": base.get("policy"), "predictor": json.loads(args.predictor),
                              "training": training}
    config = {k: v for k, v in config.items() if v is not None}
    pipe = source.load("cpu")
    runner = PipelineRunner(pipe, **call)
    prompts = training_prompts(resolve_run(config).config.training, source)
    record: dict[str, Any] = {"config": config, "call": {k: v for k, v in call.items() if not callable(v)},
                              "machine": os.uname().nodename, "cpus": os.cpu_count(), "threads": 1}
    load_before = os.getloadavg()
    began = time.perf_counter()
    bundle, report = train(pipe, config, prompts, runner=runner, out=out / "lesa", data_dir=out / "data",
                           checkpoint_dir=out / "ckpt-lesa")
    record["lesa_seconds_collect_and_train"] = time.perf_counter() - began
    record["lesa_report"] = {"seconds": report.seconds, "selection": report.selection, "losses": report.losses}
    began = time.perf_counter()
    linear, linear_report = train(pipe, {**config, "predictor": {"name": "linear"}}, prompts, runner=runner,
                                  out=out / "linear", data_dir=out / "data", checkpoint_dir=out / "ckpt-linear")
    record["linear_seconds_train"] = time.perf_counter() - began
    record["linear_report"] = {"seconds": linear_report.seconds, "selection": linear_report.selection}
    record["load_average"] = [load_before, os.getloadavg()]
    print(json.dumps({k: record[k] for k in ("lesa_seconds_collect_and_train", "lesa_report", "linear_report",
                                               "load_average")}, indent=1, default=str), flush=True)
    (out / "recipe.json").write_text(json.dumps(record, indent=1, default=str))
    if args.skip_eval:
        return 0

    policy = dict(config["policy"])
    longer = {**policy, "interval": args.long_interval}
    shared = {"tap": config.get("tap"), "router": config.get("router")}
    shared = {k: v for k, v in shared.items() if v is not None}

    def peer(order: int, pol: dict[str, Any]) -> dict[str, Any]:
        return {**shared, "policy": pol, "predictor": {"name": "taylor", "order": order}}

    methods: dict[str, Any] = {
        "full": None, "lesa": {"bundle": str(bundle)}, "linear": {"bundle": str(linear)},
        "reuse": peer(0, policy), "taylor1": peer(1, policy), "taylor2": peer(2, policy),
        f"lesa@N{args.long_interval}": {"bundle": str(bundle), "policy": longer},
        f"taylor1@N{args.long_interval}": peer(1, longer),
    }
    held_out = source.eval_prompts()[: args.eval_prompts]
    seeds = [10_000 + i for i in range(len(held_out))]
    began = time.perf_counter()
    results = evaluate(pipe, methods, held_out, seeds, num_steps=args.steps, call_kwargs=call, source=source,
                       reference_tap=config.get("tap"))
    record["eval_seconds"] = time.perf_counter() - began
    rows = {r.name: r.psnr_per_image for r in results if r.name != "full"}
    record["rows"] = {r.name: {"psnr": r.psnr, "full_passes": r.full_passes, "psnr_per_image": r.psnr_per_image}
                      for r in results}
    best_free = max(("reuse", "taylor1", "taylor2"), key=lambda n: sum(rows[n]))
    lines = [f"| method | full passes | PSNR dB | Δ vs lesa ± s.e. | Δ vs {best_free} (best training-free, N = "
             f"{policy.get('interval')}) ± s.e. |", "|---|---|---|---|---|"]
    for r in results:
        if r.name == "full":
            continue
        d1 = paired(rows[r.name], rows["lesa"])
        d2 = paired(rows[r.name], rows[best_free])
        lines.append(f"| {r.name} | {r.full_passes:g} | {r.psnr:.2f} | {d1[0]:+.2f} ± {d1[1]:.2f} | "
                     f"{d2[0]:+.2f} ± {d2[1]:.2f} |")
    table = "\n".join(lines)
    record["table"] = table
    (out / "recipe.json").write_text(json.dumps(record, indent=1, default=str))
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
