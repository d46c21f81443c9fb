"""Training checkpoints without pickle: tensors in safetensors, everything else in JSON.

A checkpoint holds the predictor's parameters, the AdamW state (moments and step counts), and the
:class:`TrainState` (phase, finished epochs, update count, loss history; under the JSON key
``progress``, as checkpoints have always stored it). It is written atomically after every
epoch, so a killed run resumes from the last finished epoch and — the data order being a function of
(seed, phase, epoch) — ends bit-identical to an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lesa_core.errors import OutputError, TrainingError
from lesa_core.outputs import follow_umask
from lesa_core.parsing import parse_json, read_text

CHECKPOINT_TENSORS = "checkpoint.safetensors"
CHECKPOINT_STATE = "checkpoint.json"


@dataclass
class TrainState:
    """Where training stands. ``phase`` 1 or 2; ``epoch`` = epochs finished in that phase;
    ``stage2_updates`` = optimizer updates stage 2 took so far (its learning-rate schedule resumes from
    there: one per forecast step *and cache context*, so it is counted, not derived from the epoch)."""

    key: str
    phase: int = 1
    epoch: int = 0
    updates: int = 0
    stage2_updates: int = 0
    losses: dict[str, list[float]] = field(default_factory=lambda: {"stage1": [], "stage2": []})
    selection: dict[str, Any] = field(default_factory=dict)


def stage1_checkpoint(folder: Path) -> Path:
    """Where the checkpoint of stage 1's end is kept once stage 2 starts (next to ``folder``)."""
    return folder.with_name(f"{folder.name}-stage1")


def run_key(*parts: Any) -> str:
    """A digest identifying a training run (config + data); a checkpoint resumes only the same run."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def save_checkpoint(folder: Path, predictor: nn.Module, optimizer: torch.optim.Optimizer, train_state: TrainState,
                    extra: dict[str, torch.Tensor] | None = None) -> None:
    """Write the checkpoint atomically (both files replaced together via a fresh folder).

    :param extra: more tensors to keep with it (the best weights so far of a selecting run, say); read back
        by :func:`load_checkpoint`'s ``extra``.

    :raises OutputError: if the disk is full or the folder not writable (the previous checkpoint is kept).
    """
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    folder.parent.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {f"predictor.{k}": v.detach().cpu().contiguous()
                                        for k, v in predictor.state_dict().items()}
    tensors.update({f"extra.{k}": v.detach().cpu().contiguous() for k, v in (extra or {}).items()})
    opt_state = optimizer.state_dict()
    scalars: dict[str, Any] = {}
    for index, state in opt_state["state"].items():
        for name, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{index}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{index}.{name}"] = value
    _remove_stale_temporaries(folder)
    tmp: Path | None = None
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        save_file(tensors, str(tmp / CHECKPOINT_TENSORS))
        state = {"progress": asdict(train_state), "param_groups": opt_state["param_groups"], "scalars": scalars}
        (tmp / CHECKPOINT_STATE).write_text(json.dumps(state))
        for name in (CHECKPOINT_TENSORS, CHECKPOINT_STATE):
            with (tmp / name).open("rb") as fh:
                os.fsync(fh.fileno())
        follow_umask(tmp)  # mkdtemp made it 0700
        old = None
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old")
            if old.exists():
                _rmtree(old)
            os.replace(folder, old)
        os.replace(tmp, folder)
        if old is not None:
            _rmtree(old)
    except (OSError, SafetensorError) as exc:
        if tmp is not None:
            _rmtree(tmp)
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise OutputError(f"could not write the checkpoint {folder} ({reason}); the previous checkpoint is kept — "
                          "free some disk space, then run again (training resumes from it)") from None
    except BaseException:
        if tmp is not None:
            _rmtree(tmp)
        raise


def load_checkpoint(folder: Path, predictor: nn.Module, optimizer: torch.optim.Optimizer, key: str,
                    extra: dict[str, torch.Tensor] | None = None) -> TrainState | None:
    """Restore predictor and optimizer from ``folder`` if it holds a checkpoint of run ``key``.

    :param extra: filled with the checkpoint's extra tensors (see :func:`save_checkpoint`), if given.

    A run killed while replacing the checkpoint leaves the previous one as ``.<name>.old``; it is
    put back and used.

    :raises TrainingError: if the checkpoint files are damaged (naming the folder to delete).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    previous = folder.with_name(f".{folder.name}.old")
    if not folder.exists() and (previous / CHECKPOINT_STATE).is_file() and (previous / CHECKPOINT_TENSORS).is_file():
        os.replace(previous, folder)  # killed between the two renames of save_checkpoint
    if not (folder / CHECKPOINT_STATE).is_file() or not (folder / CHECKPOINT_TENSORS).is_file():
        return None

    def damaged(name: str, exc: BaseException) -> TrainingError:
        return TrainingError(
            f"{folder / name} is damaged ({type(exc).__name__}: {exc}); delete the folder {folder} to start "
            "training over (the collected trajectories are kept)"
        )

    try:
        state = parse_json(read_text(folder / CHECKPOINT_STATE))
        train_state = _train_state(state["progress"])
    except (OSError, UnicodeDecodeError, ValueError, TypeError, KeyError) as exc:
        raise damaged(CHECKPOINT_STATE, exc) from None
    if train_state.key != key:
        return None
    try:
        tensors = load_file(str(folder / CHECKPOINT_TENSORS))
    except (SafetensorError, OSError, ValueError) as exc:
        raise damaged(CHECKPOINT_TENSORS, exc) from None
    try:
        predictor.load_state_dict({k.removeprefix("predictor."): v for k, v in tensors.items()
                                   if k.startswith("predictor.")}, strict=True)
        opt_state: dict[str, Any] = {"state": {}, "param_groups": state["param_groups"]}
        for name, value in tensors.items():
            if name.startswith("optim."):
                _, index, field_name = name.split(".", 2)
                opt_state["state"].setdefault(int(index), {})[field_name] = value
        for name, value in state["scalars"].items():
            index, field_name = name.split(".", 1)
            opt_state["state"].setdefault(int(index), {})[field_name] = value
        optimizer.load_state_dict(opt_state)
        if extra is not None:
            extra.update({k.removeprefix("extra."): v for k, v in tensors.items() if k.startswith("extra.")})
    except (RuntimeError, ValueError, TypeError, KeyError, AttributeError, IndexError) as exc:
        raise damaged(f"{CHECKPOINT_STATE} / {CHECKPOINT_TENSORS}", exc) from None
    return train_state


def _train_state(progress: Any) -> TrainState:
    """A :class:`TrainState` from the checkpoint's ``progress`` object, its field types checked."""
    if not isinstance(progress, dict):
        raise TypeError("'progress' is not an object")
    state = TrainState(**progress)
    ints = (state.phase, state.epoch, state.updates, state.stage2_updates)
    if (not isinstance(state.key, str) or any(type(v) is not int or v < 0 for v in ints) or state.phase not in (1, 2)
            or not isinstance(state.losses, dict) or not isinstance(state.selection, dict)
            or not all(isinstance(v, list) and all(isinstance(x, (int, float)) for x in v) for v in state.losses.values())):
        raise ValueError("'progress' holds values of the wrong type")
    return state


def _remove_stale_temporaries(folder: Path) -> None:
    """Remove temporary folders ``.<name>.XXXX`` that a killed :func:`save_checkpoint` left behind
    (``.<name>.old`` is kept: :func:`load_checkpoint` may still need it)."""
    if not folder.parent.is_dir():
        return
    for stale in folder.parent.glob(f".{folder.name}.*"):
        if stale.name != f".{folder.name}.old" and stale.is_dir():
            _rmtree(stale)


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
