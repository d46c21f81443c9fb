"""A trajectory runner for bare transformers, so that the adapter conformance suite can train (test kit).

:class:`TransformerRunner` is a :class:`~lesa_core.trainer.TrajectoryRunner` over one transformer and one
forward call's inputs (the suite's ``adapter_inputs``): a flow-matching Euler loop from seeded noise,
with the conditioning of one input row per prompt. With ``guidance`` it samples as a batched-guidance
pipeline does (SD3, PixArt, Sana): one call per step holding the adapter's ``batched_guidance`` branches
along the batch — the same latents once per branch, each branch with its own conditioning row — and
classifier-free guidance; otherwise one call per step, inside ``cache_context("cond", ...)`` when the model
has one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import torch
from einops import rearrange
from torch import Tensor, nn

from lesa_core.interfaces import BackboneAdapter

__all__ = ["TransformerRunner"]


def _sample_tensor(output: Any) -> Tensor:
    if isinstance(output, Tensor):
        return output
    sample = getattr(output, "sample", None)
    return sample if isinstance(sample, Tensor) else output[0]


class TransformerRunner:
    """Runs full trajectories of a bare transformer (see the module docstring).

    :param model: the transformer.
    :param adapter: the adapter describing it (its latent and timestep arguments, its time units).
    :param inputs: one forward call's keyword arguments; tensors whose first axis is the latent's batch are
        the per-row conditioning (prompt ``k`` of a call uses row ``k mod batch``, or with guidance the rows
        ``0 .. branches-1``, one per branch).
    :param guidance: sample as a batched-guidance pipeline (needs ``adapter.batched_guidance``).
    :param guidance_scale: the guidance scale (recorded in :attr:`settings`).
    """

    def __init__(
        self,
        model: nn.Module,
        adapter: BackboneAdapter,
        inputs: dict[str, Any],
        *,
        guidance: bool = False,
        guidance_scale: float = 3.0,
    ) -> None:
        self.model = model
        self.adapter = adapter
        self.inputs = inputs
        self.latent = inputs[adapter.latent_argument]
        self.branches = len(adapter.batched_guidance) if guidance else 1
        if guidance and self.branches < 2:
            raise ValueError(f"{type(adapter).__name__} declares no batched_guidance")
        if self.latent.shape[0] < self.branches:
            raise ValueError(
                f"guidance needs {self.branches} input rows, the inputs have {self.latent.shape[0]}"
            )
        self.guidance_scale = guidance_scale

    @property
    def settings(self) -> dict[str, Any]:
        return {"guidance_scale": self.guidance_scale} if self.branches > 1 else {}

    def _rows(self, rows: list[int]) -> dict[str, Any]:
        """The conditioning of ``rows``: every batched tensor argument indexed by them."""
        batch = self.latent.shape[0]
        index = torch.tensor(rows)
        return {
            k: v[index] if isinstance(v, Tensor) and v.ndim and v.shape[0] == batch else v
            for k, v in self.inputs.items()
            if k not in (self.adapter.latent_argument, self.adapter.timestep_argument)
        }

    def run(self, prompts: Sequence[str], seeds: Sequence[int], num_steps: int) -> Tensor:
        """Sample one trajectory per prompt (one batch), from noise seeded by its seed; the final latents."""
        noise = [
            torch.randn(self.latent.shape[1:], generator=torch.Generator().manual_seed(int(s))) for s in seeds
        ]
        latents = torch.stack(noise).to(self.latent.dtype)
        count = len(prompts)
        if self.branches > 1:  # branch after branch, each over the prompts: [uncond x P, cond x P]
            conditioning = self._rows([b for b in range(self.branches) for _ in range(count)])
        else:
            conditioning = self._rows([k % self.latent.shape[0] for k in range(count)])
        sigmas = torch.linspace(1.0, 0.0, num_steps + 1)
        cache_context = getattr(self.model, "cache_context", None)
        with torch.no_grad():
            for i in range(num_steps):
                call = torch.cat([latents] * self.branches) if self.branches > 1 else latents
                timestep = self.adapter.timestep_from_time(sigmas[i].expand(call.shape[0])).to(latents.dtype)
                kwargs = {
                    **conditioning,
                    self.adapter.latent_argument: call,
                    self.adapter.timestep_argument: timestep,
                }
                context = (
                    cache_context("cond", step_index=i, num_inference_steps=num_steps)
                    if self.branches == 1 and callable(cache_context)
                    else contextlib.nullcontext()
                )
                with context:
                    velocity = _sample_tensor(self.model(**kwargs))
                velocity = self._like_latent(velocity)
                if self.branches > 1:
                    per_branch = rearrange(velocity, "(x b) ... -> x b ...", x=self.branches)
                    names = self.adapter.batched_guidance
                    uncond = per_branch[names.index("uncond") if "uncond" in names else 0]
                    cond = per_branch[names.index("cond") if "cond" in names else -1]
                    velocity = uncond + self.guidance_scale * (cond - uncond)
                latents = latents + (sigmas[i + 1] - sigmas[i]) * velocity
        return latents

    def _like_latent(self, velocity: Tensor) -> Tensor:
        """The model output in the latent's shape (a learned-sigma output keeps its first channels)."""
        if (
            velocity.shape[1:] != self.latent.shape[1:]
            and velocity.ndim >= 3
            and velocity.shape[2:] == self.latent.shape[2:]
        ):
            velocity = velocity[:, : self.latent.shape[1]]
        return velocity
