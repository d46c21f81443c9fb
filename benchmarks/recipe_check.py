"""Check the one default training recipe (issue #15) on one model setting: a thin wrapper of
:func:`lesa_workflows.bench.zoo.check_recipe` (what ``lesa bench --quality --zoo`` runs for every trained
model) with one torch thread, for a single setting::

    python benchmarks/recipe_check.py --out /tmp/recipe-embedded [--model embedded] \
        [--setting no-cfg --call '{"true_cfg_scale": 1.0}'] [--steps 50] [--eval-prompts 64]

Prints the zoo table of that one setting and writes ``setting.json`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import logging


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", required=True)
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--setting", default="default")
    parser.add_argument("--call", default="{}", help="JSON: sampling-call overrides")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--eval-prompts", type=int, default=64)
    parser.add_argument("--long-interval", type=int, default=10)
    args = parser.parse_args()

    import torch

    logging.basicConfig(format="%(asctime)s %(message)s")
    logging.getLogger("lesa").setLevel(logging.INFO)
    torch.set_num_threads(1)
    from lesa_core.plugins import get_plugin_host
    from lesa_workflows.bench.zoo import ZooReport, check_recipe

    source = get_plugin_host().models.get(args.model)()
    result = check_recipe(
        source,
        args.model,
        out=args.out,
        setting=args.setting,
        call=json.loads(args.call),
        num_steps=args.steps,
        eval_prompts=args.eval_prompts,
        long_interval=args.long_interval,
    )
    print(
        json.dumps(
            {"seconds": result.seconds, "load_average": result.load_average, "selection": result.selection},
            indent=1,
            default=str,
        )
    )
    print(ZooReport([result]).markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
