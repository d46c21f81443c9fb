"""The :class:`ModelSource` interface: a named model the ``lesa`` workflow commands can run on.

A model source loads a ready pipeline and knows how to call it (resolution, guidance, sequence
length), which prompts to train and evaluate on, and — if it can — how to score whether an image
matches its prompt. The embedded default model is one (``embedded``, in ``lesa-embedded``); a user
registers their own checkpoints the same way.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch
from torch import Tensor


class ModelSource(ABC):
    """Base class of model sources.

    :cvar description: one line for ``lesa plugins``.
    :cvar trained: ``False`` for a source whose weights are not trained (random-init shapes for speed
        measurements): quality comparisons over every model (``lesa bench --quality --zoo``) skip it.
    """

    description: str = ""
    trained: bool = True

    @abstractmethod
    def load(self, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> Any:
        """Load and return the pipeline (every component in ``eval()`` mode)."""

    def default_config(self) -> dict[str, Any]:
        """The recommended run config for this model (a dict :func:`lesa_core.load_config` accepts)."""
        return {}

    def call_defaults(self) -> dict[str, Any]:
        """Keyword arguments for the pipeline call (``height``, ``width``, ``guidance_scale``...)."""
        return {}

    def train_prompts(self) -> list[str]:
        """Prompts to collect training trajectories on."""
        return []

    def eval_prompts(self) -> list[str]:
        """Held-out prompts for evaluation (never among the training prompts)."""
        return []

    def score_adherence(self, images: Tensor, prompts: list[str]) -> Tensor | None:
        """Per-image prompt adherence in [0, 1] for float images ``(B, 3, H, W)`` in [0, 1], or ``None``
        if this model has no scorer."""
        return None
