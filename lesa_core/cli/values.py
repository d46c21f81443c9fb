"""Argument types of the ``lesa`` commands: every value is checked when the command line is parsed, so a
bad one is the one line ``lesa: error: lesa <command>: argument --x: ...`` (exit 2) before any work —
never a ``ZeroDivisionError`` later, a silently replaced default or an ``AssertionError`` from torch.

Public for plugin commands::

    parser.add_argument("--steps", type=int_at_least(1))
    parser.add_argument("--device", type=device_name, default=default_device())
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch

__all__ = ["SEED_MAX", "default_device", "device_name", "int_at_least", "seed_value"]

SEED_MAX = 2**63 - 1
"""The largest seed a torch generator takes."""


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An ``argparse`` type: an integer ``>= minimum``."""

    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {value!r}") from None
        if number < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {number}")
        return number

    parse.__name__ = f"integer >= {minimum}"
    return parse


def seed_value(value: str) -> int:
    """An ``argparse`` type: a seed from 0 to :data:`SEED_MAX`."""
    try:
        number = int(value)
    except ValueError:
        number = -1
    if not 0 <= number <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"must be an integer from 0 to 2**63 - 1, got {value!r}")
    return number


_DEVICE_TYPES = ("cpu", "cuda", "mps", "xpu")


def device_name(value: str) -> str:
    """An ``argparse`` type: a torch device that exists on this machine (``cpu``, ``cuda``, ``cuda:N``,
    ``mps``, ``xpu``).

    Checked here because torch answers a missing GPU only when the first tensor moves (an
    ``AssertionError``), after the model has been loaded.
    """
    try:
        device = torch.device(value)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"{value!r} is not a torch device; use one of cpu, cuda, cuda:N, mps") from None
    if device.type not in _DEVICE_TYPES:
        raise argparse.ArgumentTypeError(f"{value!r}: LESA runs on {', '.join(_DEVICE_TYPES)}; use one of those")
    if device.type == "cpu":
        return value
    backend = getattr(torch, device.type, None)
    if device.type == "mps":
        backend = getattr(torch.backends, "mps", None)
    available = bool(backend is not None and backend.is_available())
    if not available:
        raise argparse.ArgumentTypeError(
            f"{value!r}: this machine has no {device.type.upper()} device (torch {torch.__version__}); use --device "
            "cpu, or install a torch build for your GPU"
        )
    count = getattr(backend, "device_count", lambda: 1)()
    if device.index is not None and device.index >= count:
        raise argparse.ArgumentTypeError(f"{value!r}: this machine has {count} {device.type} device(s), numbered "
                                         f"from 0; use {device.type}:0 .. {device.type}:{count - 1}")
    return value


def default_device() -> str:
    """``cuda`` where a CUDA device is available, else ``cpu``."""
    return "cuda" if torch.cuda.is_available() else "cpu"
