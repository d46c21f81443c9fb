"""``lesa config validate FILE``: check a run config, plugin parameters included."""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("config", help="work with run configs")
    sub = parser.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    validate = sub.add_parser("validate", help="validate a YAML/TOML/JSON run config and its plugin parameters")
    validate.add_argument("file", help="path of the run config")
    validate.add_argument("--print", dest="print_config", action="store_true",
                          help="print the resolved config (defaults filled in) as JSON")
    validate.set_defaults(func=run_validate)


def run_validate(args: argparse.Namespace) -> int:
    from lesa_core.config import read_config_file
    from lesa_core.run import resolve_run

    run = resolve_run(read_config_file(args.file), origin=args.file)
    if args.print_config:
        print(json.dumps(run.to_dict(), indent=2))
    else:
        print(f"{args.file}: OK (predictor {run.predictor.name}, router {run.router.name}, "
              f"policy {run.policy.name}, adapter {run.config.adapter})")
    return 0
