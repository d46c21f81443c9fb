"""The ``lesa`` command line.

Sub-commands are small modules in this package, each exposing ``register(subparsers)``; plugins add
their own through the ``lesa_register_commands`` hook. ``python -m lesa_core.cli`` works too (for
``torchrun``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from lesa_core.errors import LesaError, UsageError

_BUILTIN_COMMANDS = ("plugins_cmd", "config_cmd", "collect_cmd", "train_cmd")
"""Core modules providing sub-commands (looked up lazily, so ``lesa --help`` stays fast). The workflow
commands (``sample``, ``demo``, ``bench``) come from the ``lesa-workflows`` distribution through
``lesa_register_commands``, like any plugin's."""


MAX_MESSAGE = 2000
"""The longest error line ``lesa`` prints (longer messages are cut, saying how much was left out)."""


class LesaArgumentParser(argparse.ArgumentParser):
    """``argparse`` whose errors are :class:`~lesa_core.errors.UsageError`: printed as the one line
    ``lesa: error: ...`` and exit code 2, like every other error (sub-command parsers, plugins' included,
    are of this class too)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}; run `{self.prog} --help` for the usage")


def one_line(message: str, limit: int = MAX_MESSAGE) -> str:
    """``message`` on one line (its lines joined by ``; ``), cut to ``limit`` characters."""
    text = "; ".join(line.strip() for line in message.splitlines() if line.strip())
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text) - limit} characters more)"


def build_parser(*, with_plugins: bool = True) -> argparse.ArgumentParser:
    """The ``lesa`` argument parser with every built-in and plugin sub-command."""
    import importlib

    parser = LesaArgumentParser(
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

    Errors LESA raises on purpose — bad arguments and environment variables included — are printed as
    one line (``lesa: error: ...``, at most :data:`MAX_MESSAGE` characters) with exit code 2; anything
    else is a bug and keeps its traceback.
    """
    from lesa_core.cli.setup import prepare_command, silence_known_notices

    args_list = list(sys.argv[1:] if argv is None else argv)
    silence_known_notices()  # before any plugin imports transformers
    try:
        parser = build_parser()
        args = parser.parse_args(args_list)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        prepare_command(args)
        return int(args.func(args) or 0)
    except LesaError as exc:
        print(f"lesa: error: {one_line(str(exc))}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `lesa plugins --json | head`
        return 0
    except KeyboardInterrupt:
        print("lesa: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
