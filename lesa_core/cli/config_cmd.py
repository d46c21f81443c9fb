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
    from lesa_core.config import load_config, resolve_plugins

    config = load_config(args.file)
    resolve_plugins(config, source=args.file)
    if args.print_config:
        print(json.dumps(config.to_dict(), indent=2))
    else:
        print(f"{args.file}: OK (predictor {config.predictor.name}, router {config.router.name}, "
              f"policy {config.policy.name}, adapter {config.adapter})")
    return 0
