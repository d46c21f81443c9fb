"""The :class:`ModelSource` base of the models shipped in this distribution."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from lesa_core.interfaces.model import ModelSource

from .captions import CaptionedCombos, shuffled


class ShippedPipelineSource(ModelSource):
    """A trained pipeline folder shipped in a package, trained on a procedural caption set.

    Training prompts are a fixed, seeded shuffle of the training captions; evaluation prompts the same
    for the held-out captions (never trained on). Prompt adherence is scored only for canonical
    captions of the set (``lesa sample --prompt "anything"`` gets ``None``: the scorers are analytic).

    Subclasses set :attr:`shuffle_seed` and implement the four small abstract methods below.
    """

    #: Seed of the shuffle that orders training and evaluation prompts.
    shuffle_seed: ClassVar[int]

    @abstractmethod
    def load_pipeline(self, device: str | torch.device, dtype: torch.dtype) -> Any:
        """The shipped pipeline, loaded offline (see :func:`~lesa_embedded.common.loading.load_pipeline_folder`)."""

    @abstractmethod
    def shipped_call_defaults(self) -> Mapping[str, Any]:
        """The call keyword arguments the model is measured with (``num_inference_steps`` included)."""

    @abstractmethod
    def caption_set(self) -> CaptionedCombos[Any]:
        """The model's procedural caption set (imported lazily: listing sources stays cheap)."""

    def train_captions(self) -> list[str]:
        """Every training caption, in a fixed order."""
        return self.caption_set().captions("train")

    def heldout_captions(self) -> list[str]:
        """Every held-out caption, in a fixed order."""
        return self.caption_set().captions("heldout")

    def parse_caption(self, prompt: str) -> object:
        """The caption's content; raises ``ValueError`` if ``prompt`` is not a caption of the set."""
        return self.caption_set().parse(prompt)

    @abstractmethod
    def score(self, images: Tensor, prompts: list[str]) -> Tensor:
        """Per-image adherence in ``{0, 1}`` for canonical captions."""

    def load(self, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> Any:
        return self.load_pipeline(device, dtype)

    def call_defaults(self) -> dict[str, Any]:
        """The shipped call defaults without ``num_inference_steps`` (the run config sets the steps)."""
        return {k: v for k, v in self.shipped_call_defaults().items() if k != "num_inference_steps"}

    def train_prompts(self) -> list[str]:
        return shuffled(self.train_captions(), self.shuffle_seed)

    def eval_prompts(self) -> list[str]:
        return shuffled(self.heldout_captions(), self.shuffle_seed)

    def score_adherence(self, images: Tensor, prompts: list[str]) -> Tensor | None:
        try:
            for prompt in prompts:
                self.parse_caption(prompt)
        except ValueError:
            return None
        return self.score(images, prompts)
