"""How the trainer runs the model: any object with ``run(prompts, seeds, num_steps)``.

:class:`PipelineRunner` drives a diffusers pipeline (duck-typed: it only calls it). Each prompt gets
its own CPU generator seeded ``seed``, so a prompt's initial noise does not depend on which batch it
is in, and collection, closed-loop training and evaluation see the same trajectories.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import torch


class TrajectoryRunner(Protocol):
    """Runs full sampling trajectories; LESA's runtime, attached to the model, observes them."""

    @property
    def settings(self) -> dict[str, Any]:
        """The sampling call's settings (recorded with collected trajectories)."""
        ...

    def run(self, prompts: Sequence[str], seeds: Sequence[int], num_steps: int) -> Any:
        """Sample one trajectory per prompt (in one batch) and return the pipeline's output."""
        ...


class PipelineRunner:
    """Calls ``pipe(prompt=[...], num_inference_steps=S, generator=[...], **call_kwargs)``.

    :param pipe: a diffusers pipeline (or anything with the same call signature).
    :param call_kwargs: extra call arguments (height, width, guidance, ``output_type``...).
        ``output_type`` defaults to ``"latent"`` (no VAE decode) for collection and training.
    """

    def __init__(self, pipe: Any, **call_kwargs: Any) -> None:
        self.pipe = pipe
        self.call_kwargs = {"output_type": "latent", **call_kwargs}

    @property
    def settings(self) -> dict[str, Any]:
        return {k: v for k, v in sorted(self.call_kwargs.items()) if isinstance(v, (int, float, str, bool))}

    def run(self, prompts: Sequence[str], seeds: Sequence[int], num_steps: int, **overrides: Any) -> Any:
        generators = [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]
        kwargs = {**self.call_kwargs, **overrides}
        if hasattr(self.pipe, "set_progress_bar_config"):
            self.pipe.set_progress_bar_config(disable=True)
        return self.pipe(prompt=list(prompts), num_inference_steps=num_steps, generator=generators, **kwargs)
