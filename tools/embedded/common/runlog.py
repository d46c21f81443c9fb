"""The training tools' console log (``[tag HH:MM:SS] message``) and their ``losses.csv``."""

from __future__ import annotations

import csv
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def console_log(tag: str) -> Callable[[str], None]:
    """A ``print`` that prefixes ``[tag HH:MM:SS]`` and flushes."""

    def log(msg: str) -> None:
        print(f"[{tag} {time.strftime('%H:%M:%S')}] {msg}", flush=True)

    return log


class CsvLog:
    """``losses.csv`` (columns stage, step, loss, lr, seconds), flushed per row; ``append`` continues a
    file a resumed run started."""

    def __init__(self, path: Path, append: bool = False):
        new = not (append and path.exists())
        self.f = open(path, "w" if new else "a", newline="")  # noqa: SIM115 (kept open for the run)
        self.w = csv.writer(self.f)
        if new:
            self.w.writerow(["stage", "step", "loss", "lr", "seconds"])

    def row(self, *vals: Any) -> None:
        self.w.writerow(vals)
        self.f.flush()

    def close(self) -> None:
        self.f.close()
