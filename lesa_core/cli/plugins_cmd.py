"""``lesa plugins``: what is installed, as a table or JSON."""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("plugins", help="list installed adapters, predictors, routers and policies")
    parser.add_argument("--json", action="store_true", help="print a JSON list of {kind, name, distribution, version, default}")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lesa_core.plugins import get_plugin_host

    infos = get_plugin_host().plugin_infos()
    if args.json:
        print(json.dumps([info.as_dict() for info in infos], indent=2))
        return 0
    rows = [("KIND", "NAME", "DISTRIBUTION", "VERSION", "DEFAULT")]
    rows += [(i.kind, i.name, i.distribution or "-", i.version or "-", "yes" if i.default else "") for i in infos]
    widths = [max(len(r[c]) for r in rows) for c in range(5)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    if not infos:
        print("(no plugins: install lesa-adapters, lesa-predictors, lesa-schedulers, lesa-embedded)")
    return 0
