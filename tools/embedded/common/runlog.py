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

    def stage_row(self, stage: str, step: int, loss: float, lr: float, t0: float) -> None:
        """One row: loss to 5 decimals, lr to 3 digits, seconds since ``t0`` to 0.1 s."""
        self.row(stage, step, f"{loss:.5f}", f"{lr:.3g}", f"{time.time() - t0:.1f}")

    def close(self) -> None:
        self.f.close()


def open_run(args: Any, load_skeleton: Callable[..., dict[str, Any]]) -> tuple[Path, CsvLog, dict[str, Any]]:
    """A training run's start: the ``--out`` folder (made), its ``losses.csv`` (continued when
    ``--init-from`` resumes), the torch seed set from ``--seed``, the components built from the
    ``--skeleton`` with that seed."""
    import torch

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = CsvLog(out / "losses.csv", append=args.init_from is not None)
    torch.manual_seed(args.seed)
    return out, log, load_skeleton(args.skeleton, seed=args.seed)
