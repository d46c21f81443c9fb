"""Loading a shipped pipeline folder and sampling held-out captions with fixed seeds (the evaluate tools)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from lesa_embedded.common.loading import load_pipeline_folder


def load(pipeline_class_name: str, path: str | Path) -> Any:
    """The pipeline folder at ``path`` in fp32 on the CPU, offline, ``eval()``, no progress bar."""
    return load_pipeline_folder(pipeline_class_name, path)


def captions_and_seeds(heldout_prompts: Callable[..., list[str]], n: int) -> tuple[list[str], list[int]]:
    """``n`` held-out captions (spread by ``heldout_prompts(n)``; cycling through all of them when ``n``
    exceeds their number) with seeds 0..n-1."""
    caps = heldout_prompts()
    if n <= len(caps):
        return heldout_prompts(n), list(range(n))
    return [caps[i % len(caps)] for i in range(n)], list(range(n))


@torch.no_grad()
def sample_seeded(
    pipe: Any,
    prompts: list[str],
    seeds: list[int],
    batch: int,
    call: Mapping[str, Any],
    output: str = "images",
) -> torch.Tensor:
    """``pipe(prompts, **call)`` in batches of ``batch``, prompt ``i`` with a CPU generator seeded
    ``seeds[i]``; the pipeline output's ``output`` field (``images`` / ``frames``) in fp32, concatenated."""
    out = []
    for i in range(0, len(prompts), batch):
        gens = [torch.Generator().manual_seed(s) for s in seeds[i : i + batch]]
        res = pipe(prompts[i : i + batch], generator=gens, output_type="pt", **call)
        out.append(getattr(res, output).float())
    return torch.cat(out)


class HeldoutSampling:
    """One model's evaluate-tool basics: its pipeline class, call defaults, held-out prompts, the output
    field (``images`` / ``frames``) and default batch; :meth:`trajectory` records a tap over one call."""

    def __init__(
        self,
        pipeline_class_name: str,
        call_defaults: Mapping[str, Any],
        heldout_prompts: Callable[..., list[str]],
        output: str = "images",
        batch: int = 16,
    ) -> None:
        self.pipeline_class_name, self.call_defaults = pipeline_class_name, call_defaults
        self.heldout_prompts, self.output, self.batch = heldout_prompts, output, batch

    def load(self, path: str | Path) -> Any:
        return load(self.pipeline_class_name, path)

    def captions_and_seeds(self, n: int) -> tuple[list[str], list[int]]:
        return captions_and_seeds(self.heldout_prompts, n)

    def sample(
        self,
        pipe: Any,
        prompts: list[str],
        seeds: list[int] | None = None,
        batch: int | None = None,
        **kw: Any,
    ) -> torch.Tensor:
        """Seed ``seeds[i]`` (default ``i``) for prompt ``i``, the call defaults overridden by ``kw``."""
        seeds = list(range(len(prompts))) if seeds is None else seeds
        call = {**self.call_defaults, **kw}
        return sample_seeded(pipe, prompts, seeds, self.batch if batch is None else batch, call, self.output)

    def trajectory(
        self, pipe: Any, prompts: list[str], module: torch.nn.Module, tap: Callable[[Any], torch.Tensor],
        steps: int = 50,
    ) -> dict[str, list[float]]:  # fmt: skip
        """:func:`~.trajectory.record_trajectory` of ``tap(module output)`` over one call on all ``prompts``."""
        from .trajectory import record_trajectory

        run = lambda: self.sample(pipe, prompts, batch=len(prompts), num_inference_steps=steps)  # noqa: E731
        return record_trajectory(pipe, module, tap, run, steps)
