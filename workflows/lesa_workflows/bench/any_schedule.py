"""The bundle a benchmark runs on other full-step schedules than the one it was trained for (another N, a
step-count sweep, a learned or adaptive schedule): where ``training.floor: keep`` returned a candidate bound to
the trained schedule's full steps, the trained family's weights instead."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lesa_core.run import ResolvedRun

__all__ = ["any_schedule_bundle"]


def any_schedule_bundle(pipe: Any, run: ResolvedRun, bundle: Path, prompts: Sequence[str], *, runner: Any,
                        out: Path, data_dir: Path, checkpoint_dir: Path, show_progress: bool = True) -> Path:
    """The bundle to run on other full-step schedules than the one it was trained for: ``bundle`` itself,
    unless its floor kept a candidate (``training.floor: keep``: a closed-form fit or blend, whose
    coefficients belong to the trained schedule's steps); then the trained family's — the same run resumed
    from ``checkpoint_dir`` (no training repeats) with ``training.floor: reproduce`` — written to ``out``.
    Used by the rows that apply one predictor across schedules (another N, a learned or adaptive schedule)."""
    from lesa_core.bundle import read_metadata
    from lesa_core.trainer import train

    floor = read_metadata(bundle).extra.get("selection", {}).get("floor", {})
    if not floor.get("kept_candidate"):
        return bundle
    config = run.config.to_dict()
    config["training"] = {**config.get("training", {}), "floor": "reproduce"}
    trained, _ = train(pipe, config, prompts, runner=runner, out=out, data_dir=data_dir,
                       checkpoint_dir=checkpoint_dir, show_progress=show_progress)
    return trained
