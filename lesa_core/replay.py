"""Full steps recorded by their inputs and handed back instead of run again: :class:`FullStepReplay`.

Closed-loop runs that differ only in the predictor share their first steps. Up to a trajectory's first
forecast every step is a full one, computed from the same noise, conditioning and batch, so scoring
twelve candidates on one validation slice computes the same warm-up steps twelve times (4 of the 10
full passes at N = 7 with 3 warm-up steps and a forced step 3). A runtime given a replay
(:attr:`~lesa_core.interfaces.RuntimeComponents.replay`) looks up each full step taken before its
trajectory's first forecast by a fingerprint of everything the model is called with; on a match it
returns the recorded output and tap without running the model, otherwise it runs the model and records
the step.

A match means the same bytes in every tensor argument, the same other arguments, the same cache
context, step index and tap, so a replayed step returns exactly what the model returned for those
inputs. That holds while the model's weights do not change: keep a replay for runs of one frozen
model (the trainer's validator holds one per validation slice) and drop it when the model changes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = ["EVALUATION_REPLAY_BYTES", "FullStepReplay", "RecordedStep"]

EVALUATION_REPLAY_BYTES = 2**30
"""The ``max_bytes`` of a replay held for one evaluation (a validation slice, a benchmark's batches): the
warm-up steps of a few batches fit, a runaway recording cannot fill the memory."""


@dataclass(frozen=True)
class RecordedStep:
    """One full step as the model computed it.

    :ivar output: the model's output tensor. :ivar tap: the tap the runtime recorded.
    :ivar probe: the probe blocks' output (``None`` without a probe).
    """

    output: Tensor
    tap: Tensor
    probe: Tensor | None = None

    @property
    def nbytes(self) -> int:
        """The bytes the step's tensors hold."""
        tensors = [t for t in (self.output, self.tap, self.probe) if t is not None]
        return sum(t.numel() * t.element_size() for t in tensors)


class FullStepReplay:
    """Full steps recorded by a fingerprint of their inputs (see the module docstring).

    :param max_bytes: stop recording once the recorded tensors hold this many bytes (steps recorded
        before stay available); ``None``: no limit.
    :ivar hits: steps handed back. :ivar misses: steps looked up and not found (then run and recorded).
    """

    def __init__(self, max_bytes: int | None = None) -> None:
        self.max_bytes = max_bytes
        self._steps: dict[str, RecordedStep] = {}
        self.nbytes = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._steps)

    @staticmethod
    def key(scope: tuple[Any, ...], args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str:
        """The fingerprint of one call: ``scope`` (e.g. cache context, step index, tap) and every argument.

        Tensors count by dtype, shape and bytes; containers by their items; other values by ``repr``. An
        object whose ``repr`` names its address fingerprints differently in every call, so such a call is
        never matched (never matched wrongly).
        """
        digest = hashlib.blake2b(digest_size=20)
        _feed(digest, scope)
        _feed(digest, args)
        _feed(digest, dict(kwargs))
        return digest.hexdigest()

    def get(self, key: str) -> RecordedStep | None:
        """The step recorded under ``key``, or ``None`` (counted as a hit or a miss)."""
        step = self._steps.get(key)
        if step is None:
            self.misses += 1
        else:
            self.hits += 1
        return step

    def put(self, key: str, step: RecordedStep) -> None:
        """Record ``step`` under ``key`` (its tensors must not be written to afterwards), unless that would
        pass ``max_bytes``."""
        if key in self._steps or (self.max_bytes is not None and self.nbytes + step.nbytes > self.max_bytes):
            return
        self._steps[key] = step
        self.nbytes += step.nbytes

    def clear(self) -> None:
        """Forget every recorded step."""
        self._steps.clear()
        self.nbytes = 0


def _feed(digest: Any, value: Any) -> None:
    """Add ``value`` to ``digest``, tagged by kind so that different structures cannot collide."""
    if isinstance(value, Tensor):
        data = value.detach()
        digest.update(f"T{data.dtype}{tuple(data.shape)}{data.device.type}".encode())
        if data.numel():
            flat = data.reshape(-1)
            if flat.stride(0) != 1:  # a view (even a one-element one, e.g. an expanded scalar) needs unit stride
                flat = torch.empty(flat.numel(), dtype=flat.dtype, device=flat.device).copy_(flat)
            digest.update(flat.view(torch.uint8).cpu().numpy().tobytes())
    elif isinstance(value, Mapping):
        digest.update(f"M{len(value)}".encode())
        for name in sorted(value, key=repr):
            _feed(digest, name)
            _feed(digest, value[name])
    elif isinstance(value, (list, tuple)):
        digest.update(f"L{type(value).__name__}{len(value)}".encode())
        for item in value:
            _feed(digest, item)
    else:
        digest.update(f"V{type(value).__qualname__}:{value!r};".encode())
