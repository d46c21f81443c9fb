"""Train recipe variants on one collection and score them on held-out prompts, paired per image against a
reference run (issue #15: why a recipe trails another, and what the default should be)::

    python benchmarks/recipe_variants.py --out /tmp/rv --variants '{"sel": {"training": {...}}}' \
        [--model embedded] [--prompts 32] [--eval-prompts 64] [--long-interval 10] \
        [--reference docs/results/quality-embedded.json]

Each variant is a partial run config merged over the model's tap, router and policy (no model
``training`` block; ``predictor: kan`` unless the variant names one). Every variant trains on the same
``--prompts`` collected trajectories (``out/data``; the collection size, validation slice included), and
is sampled at the policy's N and at ``--long-interval`` on the held-out prompts (seeds 10 000 + i). The
per-image PSNR goes to ``out/variants.json``; with ``--reference`` (a quality-bench or recipe-check JSON
with per-image rows on the same prompts and seeds) the paired Δ ± s.e. against its rows is printed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path
from typing import Any


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``extra`` merged in, dicts recursively."""
    out = dict(base)
    for key, value in extra.items():
        out[key] = (
            merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        )
    return out


def reference_rows(path: str) -> dict[str, list[float]]:
    """Per-image PSNR rows of a quality-bench JSON (``rows`` a list) or a recipe-check JSON (a dict)."""
    data = json.loads(Path(path).read_text())
    rows = data["rows"]
    if isinstance(rows, dict):
        return {name: list(row["psnr_per_image"]) for name, row in rows.items()}
    found: dict[str, list[float]] = {}
    for row in rows:
        found.setdefault(row["name"], list(row["psnr_per_image"]))
    return found


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", required=True)
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--variants", required=True, help="JSON: name → partial run config")
    parser.add_argument(
        "--prompts", type=int, default=32, help="collected prompts (validation slice included)"
    )
    parser.add_argument("--eval-prompts", type=int, default=64)
    parser.add_argument("--long-interval", type=int, default=10)
    parser.add_argument("--reference", action="append", default=[], help="JSON with per-image rows to pair")
    parser.add_argument("--call", default="{}", help="JSON: sampling-call overrides")
    parser.add_argument("--no-eval", action="store_true", help="train only (the validation scores per epoch)")
    parser.add_argument("--peers", action="store_true",
                        help="also sample reuse / taylor1 / taylor2 on each variant's schedule (rows under 'peers')")
    args = parser.parse_args()

    import torch

    logging.basicConfig(format="%(asctime)s %(message)s")
    logging.getLogger("lesa").setLevel(logging.INFO)
    torch.set_num_threads(1)
    from lesa_core.plugins import get_plugin_host
    from lesa_core.run import resolve_run
    from lesa_core.trainer import PipelineRunner, train
    from lesa_workflows.bench.zoo import paired, schedule_text
    from lesa_workflows.evaluate import evaluate

    source = get_plugin_host().models.get(args.model)()
    base = source.default_config()
    model_facts = {k: base[k] for k in ("model", "tap", "router", "policy") if base.get(k) is not None}
    call = {**source.call_defaults(), **json.loads(args.call)}
    pipe = source.load("cpu")
    runner = PipelineRunner(pipe, **call)
    prompts = source.train_prompts()[: args.prompts]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "variants.json"
    results: dict[str, Any] = json.loads(results_path.read_text()) if results_path.exists() else {}
    held_out = source.eval_prompts()[: args.eval_prompts]
    seeds = [10_000 + i for i in range(len(held_out))]
    methods: dict[str, Any] = {"full": None}
    trained: dict[str, Any] = {}
    for name, variant in json.loads(args.variants).items():
        config = merge({**model_facts, "predictor": {"name": "kan"}}, variant)
        run = resolve_run(config)
        policy = run.policy.as_dict()
        load = os.getloadavg()[0]
        began = time.perf_counter()
        bundle, report = train(
            pipe,
            config,
            prompts,
            runner=runner,
            out=out / name,
            data_dir=out / "data",
            checkpoint_dir=out / f"checkpoint-{name}",
        )
        seconds = time.perf_counter() - began
        methods[name] = {"bundle": str(bundle)}
        methods[f"{name}@N{args.long_interval}"] = {
            "bundle": str(bundle),
            "policy": {**policy, "interval": args.long_interval},
        }
        trained[name] = {
            "config": config,
            "schedule": schedule_text(policy),
            "train_seconds": seconds,
            "report_seconds": report.seconds,
            "load_average": [load, os.getloadavg()[0]],
            "selection": report.selection,
            "losses": report.losses,
        }
        print(
            f"## {name}: trained in {seconds:.0f} s (load {load:.1f}); {json.dumps(report.selection)}",
            flush=True,
        )
    if args.no_eval:
        results.update(trained)
        results_path.write_text(json.dumps(results, indent=1, default=str) + "\n")
        return 0
    peers: dict[str, Any] = {}
    if args.peers:
        for entry in trained.values():
            run = resolve_run(entry["config"])
            policy = run.policy.as_dict()
            for order, label in ((0, "reuse"), (1, "taylor1"), (2, "taylor2")):
                key = f"{label}@N{policy.get('interval')}E{policy.get('warmup')}"
                methods[key] = {"tap": run.config.tap, "router": run.router.as_dict(), "policy": policy,
                                "predictor": {"name": "taylor", "order": order}}
                peers[key] = {}
    rows = evaluate(
        pipe,
        methods,
        held_out,
        seeds,
        num_steps=run.config.training.num_steps,
        call_kwargs=call,
        source=source,
        reference_tap=run.config.tap,
    )
    for r in rows:
        if r.name == "full":
            continue
        if r.name in peers:
            peers[r.name] = {"psnr": r.psnr, "psnr_per_image": list(r.psnr_per_image)}
            continue
        name = r.name.split("@")[0]
        trained[name].setdefault("rows", {})[r.name] = {
            "psnr": r.psnr,
            "psnr_per_image": list(r.psnr_per_image),
        }
    results.update(trained)
    if peers:
        results["peers"] = {**results.get("peers", {}), **peers}
    results_path.write_text(json.dumps(results, indent=1, default=str) + "\n")
    refs: dict[str, list[float]] = {}
    for path in args.reference:
        refs.update({f"{Path(path).stem}/{k}": v for k, v in reference_rows(path).items()})
    for name in trained:
        print(f"## {name} ({trained[name]['schedule']}; train {trained[name]['train_seconds']:.0f} s)")
        for row_name, row in trained[name]["rows"].items():
            line = f"{row_name}: {row['psnr']:.2f}"
            for ref_name, ref in refs.items():
                if len(ref) == len(row["psnr_per_image"]) and ref_name.split("/")[-1] in (
                    "lesa",
                    "reuse",
                    "linear",
                    "lesa@N10",
                    "taylor1",
                ):
                    mean, se = paired(row["psnr_per_image"], ref)
                    line += f"; − {ref_name} {mean:+.2f} ± {se:.2f}"
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
