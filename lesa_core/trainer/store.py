"""On-disk trajectories: one safetensors shard per prompt, written atomically, resumable.

Layout of a store folder::

    store/
      store.json              # what was collected: model, tap, steps, schedule, token subset, contexts
      traj_00000.safetensors  # taps.<context>: (S, N', C) — the tap at every step of prompt 0
      traj_00001.safetensors
      ...

A shard exists completely or not at all (written to a temporary file, then renamed), so a collection
that was killed resumes by skipping the prompts whose shard exists. Shards are independent, so
several processes can fill one store (each owning the prompts ``i % world_size == rank``).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from lesa_core.errors import TrainingError

STORE_META = "store.json"


@dataclass(frozen=True)
class StoreMeta:
    """What a trajectory store holds (checked on every reuse).

    :ivar model_class: / :ivar model_fingerprint: the model that produced the taps.
    :ivar tap: tap name. :ivar num_steps: steps per trajectory. :ivar schedule: S + 1 flow times.
    :ivar token_index: the kept token positions, or ``None`` for all tokens.
    :ivar prompts: the prompts, in order; prompt i uses seed ``seed + i``.
    :ivar call: the sampling call's settings (must match between collection and closed-loop training).
    """

    model_class: str
    model_fingerprint: str
    tap: str
    num_steps: int
    schedule: list[float] | None
    token_index: list[int] | None
    prompts: list[str]
    seed: int
    call: dict[str, Any]

    def identity(self) -> dict[str, Any]:
        """The fields that must agree for a store to be reused."""
        data = asdict(self)
        data.pop("schedule")
        data.pop("token_index")
        return data


def _atomic_write_bytes(path: Path, write: Any) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class TrajectoryStore:
    """A folder of per-prompt trajectory shards."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    # -- metadata ---------------------------------------------------------------------------
    @property
    def meta_path(self) -> Path:
        return self.root / STORE_META

    def read_meta(self) -> StoreMeta | None:
        if not self.meta_path.is_file():
            return None
        try:
            return StoreMeta(**json.loads(self.meta_path.read_text()))
        except (json.JSONDecodeError, TypeError) as exc:
            raise TrainingError(f"{self.meta_path} is damaged ({exc}); delete the folder and collect again") from None

    def open(self, meta: StoreMeta) -> None:
        """Create the store, or check that an existing one holds the same collection.

        :raises TrainingError: if the folder holds trajectories of another model, tap, prompt set or call.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        existing = self.read_meta()
        if existing is not None:
            if existing.identity() != meta.identity():
                diff = sorted(k for k, v in meta.identity().items() if existing.identity().get(k) != v)
                raise TrainingError(
                    f"{self.root} already holds trajectories of a different collection (differs in: "
                    f"{', '.join(diff)}); use another training.data_dir or delete the folder"
                )
            return
        _atomic_write_bytes(self.meta_path, lambda tmp: Path(tmp).write_text(json.dumps(asdict(meta), indent=1)))

    def update_meta(self, **changes: Any) -> None:
        meta = self.read_meta()
        if meta is None:
            raise TrainingError(f"{self.root}: no {STORE_META}")
        data = {**asdict(meta), **changes}
        _atomic_write_bytes(self.meta_path, lambda tmp: Path(tmp).write_text(json.dumps(data, indent=1)))

    # -- shards -----------------------------------------------------------------------------
    def shard_path(self, index: int) -> Path:
        return self.root / f"traj_{index:05d}.safetensors"

    def has(self, index: int) -> bool:
        """``True`` if prompt ``index``'s shard is complete and readable."""
        path = self.shard_path(index)
        if not path.is_file():
            return False
        try:
            from safetensors import safe_open

            with safe_open(str(path), "pt") as fh:
                return bool(list(fh.keys()))
        except Exception:
            path.unlink(missing_ok=True)  # a damaged shard is recollected
            return False

    def write(self, index: int, taps: dict[str, Tensor], prompt: str) -> None:
        """Write prompt ``index``'s taps (context name → (S, N', C)) atomically (and remove a temporary
        file of this shard that a killed run left behind)."""
        from safetensors.torch import save_file

        tensors = {f"taps.{ctx}": t.detach().to("cpu").contiguous() for ctx, t in taps.items()}
        path = self.shard_path(index)
        for stale in self.root.glob(f".{path.name}.*"):  # left by a writer that was killed (only this
            stale.unlink(missing_ok=True)                 # process writes this shard)
        _atomic_write_bytes(self.shard_path(index),
                            lambda tmp: save_file(tensors, tmp, metadata={"prompt": prompt, "index": str(index)}))

    def load(self, indices: list[int] | None = None, dtype: torch.dtype = torch.float32) -> dict[str, Tensor]:
        """Load shards into memory: context → (P, S, N', C), in prompt order.

        :raises TrainingError: if a shard is missing (collection incomplete).
        """
        from safetensors.torch import load_file

        meta = self.read_meta()
        if meta is None:
            raise TrainingError(f"{self.root} holds no trajectories; run `lesa collect` first")
        indices = list(range(len(meta.prompts))) if indices is None else indices
        missing = [i for i in indices if not self.shard_path(i).is_file()]
        if missing:
            raise TrainingError(
                f"{self.root}: {len(missing)} of {len(indices)} trajectories are missing (e.g. prompt {missing[0]}); "
                "run `lesa collect` again to finish the collection"
            )
        per_context: dict[str, list[Tensor]] = {}
        for i in indices:
            for key, value in load_file(str(self.shard_path(i))).items():
                per_context.setdefault(key.removeprefix("taps."), []).append(value.to(dtype))
        return {ctx: torch.stack(values) for ctx, values in per_context.items()}
