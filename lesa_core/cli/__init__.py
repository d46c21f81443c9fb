"""The ``lesa`` command line.

Sub-commands are small modules in this package, each exposing ``register(subparsers)``; plugins add
their own through the ``lesa_register_commands`` hook. ``python -m lesa_core.cli`` works too (for
``torchrun``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from lesa_core.errors import LesaError

_BUILTIN_COMMANDS = ("plugins_cmd", "config_cmd", "collect_cmd", "train_cmd")
"""Core modules providing sub-commands (looked up lazily, so ``lesa --help`` stays fast). The workflow
commands (``sample``, ``demo``, ``bench``) come from the ``lesa-workflows`` distribution through
``lesa_register_commands``, like any plugin's."""


def build_parser(*, with_plugins: bool = True) -> argparse.ArgumentParser:
    """The ``lesa`` argument parser with every built-in and plugin sub-command."""
    import importlib

    parser = argparse.ArgumentParser(
        prog="lesa",
        description="LESA: learned, stage-aware feature forecasting for Diffusion Transformers.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _BUILTIN_COMMANDS:
        importlib.import_module(f"lesa_core.cli.{name}").register(subparsers)
    if with_plugins:
        from lesa_core.plugins import get_plugin_host

        get_plugin_host().add_commands(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lesa`` script; returns the process exit code.

    Errors LESA raises on purpose are printed as one line (``lesa: error: ...``) with exit code 2;
    anything else is a bug and keeps its traceback.
    """
    args_list = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser()
        args = parser.parse_args(args_list)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        return int(args.func(args) or 0)
    except LesaError as exc:
        print(f"lesa: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `lesa plugins --json | head`
        return 0
    except KeyboardInterrupt:
        print("lesa: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
