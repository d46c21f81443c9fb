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
