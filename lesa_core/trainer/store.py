"""On-disk trajectories: one safetensors shard per prompt, written atomically, resumable.

Layout of a store folder::

    store/
      store.json              # what was collected: model, tap, steps, schedule, token subset, contexts
      traj_00000.safetensors  # taps.<context>: (S, N', C) — the tap at every step of prompt 0
                              # (+ probes.<context>: (S, N', P) — the probe, for a probe-conditioned run)
                              # (+ output: the prompt's final output as validation scores it — uint8
                              #   images with a pipeline runner; absent in stores written before)
      traj_00001.safetensors
      ...

A shard exists completely or not at all (written to a temporary file, then renamed), so a collection
that was killed resumes by sampling the groups of prompts (``collect_batch`` per call) with a shard
missing. Shards are independent, so several processes can fill one store (each owning the groups
``g % world_size == rank``).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from lesa_core.errors import OutputError, TrainingError
from lesa_core.outputs import follow_umask
from lesa_core.parsing import parse_json, read_text

STORE_META = "store.json"
PROBE_PREFIX = "probes."
OUTPUT_KEY = "output"


@dataclass(frozen=True)
class StoreMeta:
    """What a trajectory store holds (checked on every reuse).

    :ivar model_class: / :ivar model_fingerprint: the model that produced the taps.
    :ivar tap: tap name. :ivar num_steps: steps per trajectory. :ivar schedule: S + 1 flow times.
    :ivar token_index: the kept token positions, or ``None`` for all tokens.
    :ivar prompts: the prompts, in order; prompt i uses seed ``seed + i``.
    :ivar call: the sampling call's settings (must match between collection and closed-loop training).
    :ivar token_subsample: ``training.token_subsample`` of the collection (tokens kept per sample).
    :ivar probe_blocks: k when the shards also hold the probe (the first k body blocks' output,
        ``probes.<context>``) for a probe-conditioned predictor; ``None`` (and absent from stores written
        before probes existed) when they hold taps only.
    :ivar collect_batch: prompts per pipeline call, in fixed groups ``[kB, (k + 1)B)``: once a shard is written
        a resumed collection samples with the store's own (1, one prompt per call, in stores written before
        the field existed); not part of the identity — any complete store is the same collection up to the
        last bits.
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
    token_subsample: int | None = None
    probe_blocks: int | None = None
    collect_batch: int = 1

    def identity(self) -> dict[str, Any]:
        """The fields that must agree for a store to be reused: every setting that changes what the shards
        hold (the schedule and token subset are measured from the first trajectory, so they follow)."""
        data = asdict(self)
        data.pop("schedule")
        data.pop("token_index")
        data.pop("collect_batch")
        return data

    @classmethod
    def from_json(cls, data: Any, source: Path) -> StoreMeta:
        """Check the types of ``store.json``'s fields and build the metadata.

        :raises TrainingError: naming the file and what to do, for any field of the wrong type.
        """
        if not isinstance(data, dict):
            raise _damaged(source, "not a JSON object")
        names = {f.name for f in fields(cls)}
        if "token_subsample" not in data and isinstance(data.get("token_index"), list):
            data = {**data, "token_subsample": len(data["token_index"])}  # written before the field existed
        unknown, missing = sorted(set(data) - names), sorted(
            names - set(data) - {"token_subsample", "probe_blocks", "collect_batch"})
        if unknown or missing:
            raise _damaged(source, f"unknown keys {unknown or 'none'}, missing keys {missing or 'none'}")
        checks = {
            "model_class": isinstance(data["model_class"], str), "model_fingerprint": isinstance(data["model_fingerprint"], str),
            "tap": isinstance(data["tap"], str), "num_steps": _is_int(data["num_steps"]) and data["num_steps"] >= 1,
            "schedule": data["schedule"] is None or (isinstance(data["schedule"], list) and all(
                isinstance(x, (int, float)) and not isinstance(x, bool) for x in data["schedule"])),
            "token_index": data["token_index"] is None or (isinstance(data["token_index"], list) and all(
                _is_int(x) and x >= 0 for x in data["token_index"])),
            "prompts": isinstance(data["prompts"], list) and all(isinstance(x, str) for x in data["prompts"]),
            "seed": _is_int(data["seed"]), "call": isinstance(data["call"], dict),
            "token_subsample": data.get("token_subsample") is None or _is_int(data["token_subsample"]),
            "probe_blocks": data.get("probe_blocks") is None or _is_int(data["probe_blocks"]),
            "collect_batch": _is_int(data.get("collect_batch", 1)) and data.get("collect_batch", 1) >= 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise _damaged(source, f"wrong type of {', '.join(bad)}")
        if data["schedule"] is not None and len(data["schedule"]) != data["num_steps"] + 1:
            raise _damaged(source, f"schedule has {len(data['schedule'])} times for {data['num_steps']} steps")
        return cls(**data)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _damaged(source: Path, what: str) -> TrainingError:
    return TrainingError(f"{source} is damaged ({what}); delete the folder {source.parent} and collect again "
                         "(`lesa collect` or `lesa train` recollects it)")


def _atomic_write_bytes(path: Path, write: Any) -> None:
    """Write ``path`` through a temporary file and a rename (permissions following the umask).

    :raises OutputError: if the disk is full or the folder not writable (nothing is left behind).
    """
    from safetensors import SafetensorError

    tmp = ""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        os.close(fd)
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        follow_umask(Path(tmp))  # mkstemp made it 0600
        os.replace(tmp, path)
    except (OSError, SafetensorError) as exc:
        if tmp:
            Path(tmp).unlink(missing_ok=True)
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise OutputError(f"could not write {path} ({reason}); nothing was left half-written — free some disk space "
                          "or choose another data folder, then run again (finished shards are kept)") from None
    except BaseException:
        if tmp:
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
            data = parse_json(read_text(self.meta_path))
        except (OSError, UnicodeDecodeError, ValueError) as exc:  # json.JSONDecodeError, DocumentError
            raise _damaged(self.meta_path, str(exc)) from None
        return StoreMeta.from_json(data, self.meta_path)

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

    def write(self, index: int, taps: dict[str, Tensor], prompt: str, probes: dict[str, Tensor] | None = None,
              output: Tensor | None = None) -> None:
        """Write prompt ``index``'s taps (context name → (S, N', C)), for a probe collection its probes
        (context name → (S, N', P)), and its final ``output`` if given, atomically (and remove a temporary
        file of this shard that a killed run left behind)."""
        from safetensors.torch import save_file

        tensors = {f"taps.{ctx}": t.detach().to("cpu").contiguous() for ctx, t in taps.items()}
        tensors.update({f"{PROBE_PREFIX}{ctx}": t.detach().to("cpu").contiguous() for ctx, t in (probes or {}).items()})
        if output is not None:
            tensors[OUTPUT_KEY] = output.detach().to("cpu").contiguous()
        path = self.shard_path(index)
        for stale in self.root.glob(f".{path.name}.*"):  # left by a writer that was killed (only this
            stale.unlink(missing_ok=True)                 # process writes this shard)
        # one metadata key: safetensors orders several keys differently from run to run, and a shard must be
        # byte-identical whenever its content is (a resumed collection equals an uninterrupted one)
        info = json.dumps({"index": index, "prompt": prompt}, sort_keys=True)
        _atomic_write_bytes(self.shard_path(index), lambda tmp: save_file(tensors, tmp, metadata={"shard": info}))

    def load(self, indices: list[int] | None = None, dtype: torch.dtype = torch.float32, *,
             what: str = "taps") -> dict[str, Tensor]:
        """Load shards into memory: context → (P, S, N', C), in prompt order — the taps, or with
        ``what="probes"`` the probes of a probe collection (an empty dict for shards without probes, as
        every store collected before probes existed). Every shard is checked: it
        must be readable, hold the steps of the store and finite values only.

        :raises TrainingError: if a shard is missing (collection incomplete), damaged, of another shape, or
            holds NaN or infinite values — naming the shard and what to do.
        """
        from safetensors import SafetensorError
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
            path = self.shard_path(i)
            redo = f"delete {path} and run `lesa collect` (or `lesa train`) again to collect prompt {i} anew"
            try:
                tensors = load_file(str(path))
            except (SafetensorError, OSError, ValueError) as exc:
                raise TrainingError(f"trajectory shard {path} is damaged ({exc}); {redo}") from None
            tensors = {k: v for k, v in tensors.items() if k.startswith(f"{what}.")}
            if set(per_context) and set(tensors) != {f"{what}.{c}" for c in per_context}:
                raise TrainingError(f"trajectory shard {path} holds contexts {sorted(tensors)}, unlike the other "
                                    f"shards; {redo}")
            for key, value in tensors.items():
                if value.ndim < 1 or value.shape[0] != meta.num_steps:
                    raise TrainingError(f"trajectory shard {path} holds {tuple(value.shape)} for '{key}', not "
                                        f"{meta.num_steps} steps; {redo}")
                if value.is_floating_point() and not bool(torch.isfinite(value).all()):
                    raise TrainingError(
                        f"trajectory shard {path} (prompt {i}, {key}) holds NaN or infinite values; training on it "
                        f"would diverge. If the file was damaged, {redo}; if the model itself produces them for "
                        "this prompt, remove the prompt from training.prompts"
                    )
                per_context.setdefault(key.removeprefix(f"{what}."), []).append(value.to(dtype))
        try:
            return {ctx: torch.stack(values) for ctx, values in per_context.items()}
        except RuntimeError as exc:
            raise TrainingError(f"{self.root}: the trajectory shards differ in shape ({exc}); delete the folder "
                                "and collect again") from None

    def load_outputs(self, indices: list[int]) -> Tensor | None:
        """The final outputs collection kept for prompts ``indices``, stacked in that order; ``None`` when a
        shard holds none (a store written before outputs were kept, or by a runner without tensor output)
        or they differ in shape or are not finite — the caller then samples them."""
        from safetensors import SafetensorError, safe_open

        outputs = []
        for i in indices:
            try:
                with safe_open(str(self.shard_path(i)), "pt") as fh:
                    names = list(fh.keys())
                    if OUTPUT_KEY not in names:
                        return None
                    outputs.append(fh.get_tensor(OUTPUT_KEY))
            except (SafetensorError, OSError):
                return None
        if not outputs or any(o.shape != outputs[0].shape or o.dtype != outputs[0].dtype for o in outputs):
            return None
        stacked = torch.stack(outputs)
        if stacked.is_floating_point() and not bool(torch.isfinite(stacked).all()):
            return None
        return stacked
