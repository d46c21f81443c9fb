"""How a ``lesa`` command runs, set once before it starts (:func:`prepare_command`): quiet when asked, a
CPU thread count that does not collapse on a busy machine, and no third-party notices that do not
concern the user.

* ``--quiet`` silences every progress bar: LESA's own (each command passes ``show_progress``) and
  diffusers' and transformers' model-loading bars, which they draw by themselves.
* **Threads.** On a machine busy with other work, torch's default of one thread per core makes the
  threads wait for each other: one forward of the embedded model took 4.49 s with 2 threads and 0.36 s
  with 1 on a shared 2-core machine. Unless ``--threads`` says otherwise, a CPU command measures a short
  matrix-product test at torch's default thread count and at one thread (interleaved, a few hundredths of
  a second) and keeps the faster; when that is fewer threads, it prints one ``lesa: note:`` line saying so.
* **Notices.** transformers logs, when it is imported without torchvision, that it falls back to its PIL
  image processors — which is what LESA uses (it never processes images with them). That one notice is
  dropped, on purpose and only here; every other warning is left alone.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

import torch

__all__ = ["choose_threads", "prepare_command", "silence_known_notices", "silence_progress_bars"]


class _DropNotice(logging.Filter):
    """Drops log records whose message contains ``text``."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


_TORCHVISION_NOTICE = _DropNotice("requires torchvision (not installed)")


def silence_known_notices() -> None:
    """Drop transformers' "requires torchvision (not installed); falling back to ...Pil" notice (see the
    module docstring). Safe to call more than once; imports nothing."""
    logger = logging.getLogger("transformers.utils.import_utils")
    if _TORCHVISION_NOTICE not in logger.filters:
        logger.addFilter(_TORCHVISION_NOTICE)


def silence_progress_bars() -> None:
    """Turn off diffusers', transformers' and huggingface_hub's progress bars (model loading, downloads)."""
    import importlib

    for module, function in (("diffusers.utils.logging", "disable_progress_bar"),
                             ("transformers.utils.logging", "disable_progress_bar"),
                             ("huggingface_hub.utils", "disable_progress_bars")):
        try:
            getattr(importlib.import_module(module), function)()
        except (ImportError, AttributeError):
            continue


def _matmul_seconds(threads: int, size: int = 320, repeats: int = 4) -> float:
    torch.set_num_threads(threads)
    a = torch.randn(size, size)
    b = torch.randn(size, size)
    torch.mm(a, b)  # warm the pool
    began = time.perf_counter()
    for _ in range(repeats):
        torch.mm(a, b)
    return (time.perf_counter() - began) / repeats


def choose_threads(requested: int | None, *, announce: bool = True) -> int:
    """Set torch's CPU thread count: ``requested``, or the faster of torch's default and one thread right
    now (see the module docstring). Returns the count set.

    :param announce: print a ``lesa: note:`` line to stderr when fewer threads than torch's default are used.
    """
    if requested is not None:
        torch.set_num_threads(requested)
        return requested
    default = torch.get_num_threads()
    if default <= 1:
        return default
    many, one = [], []
    for _ in range(3):  # interleaved: both see the same load
        many.append(_matmul_seconds(default))
        one.append(_matmul_seconds(1))
    many_s, one_s = sorted(many)[1], sorted(one)[1]
    if many_s < 0.9 * one_s:
        torch.set_num_threads(default)
        return default
    torch.set_num_threads(1)
    if announce:
        print(f"lesa: note: using 1 torch thread, not {default}: the machine is busy ({default} threads ran a test "
              f"{many_s / one_s:.1f}x as long as 1 thread); pass --threads N to choose", file=sys.stderr)
    return 1


def prepare_command(args: argparse.Namespace) -> None:
    """Apply what every command shares, from its parsed arguments: ``quiet`` silences every progress bar;
    a CPU command (``device`` cpu or unset) gets its thread count from ``threads`` or
    :func:`choose_threads`. Attributes a command lacks are skipped."""
    silence_known_notices()
    if getattr(args, "quiet", False):
        silence_progress_bars()
    if not hasattr(args, "threads"):
        return
    device = getattr(args, "device", None)
    if device is None or str(device).startswith("cpu"):
        choose_threads(args.threads)
    elif args.threads is not None:
        torch.set_num_threads(args.threads)
