"""Worker of ``test_context_parallel.py``: LESA attached to a tiny FluxPipeline under diffusers' context
parallelism (Ulysses, degree = world size), run by ``torchrun`` on the CPU with gloo.

Two pipelines per rank: one parallelised before LESA is attached, one after. Every rank writes
``rank<R>.json`` (the attachment's statistics) and ``latents_<order>_rank<R>.pt`` into ``argv[1]``.

CPU shim: diffusers 0.42 assigns each rank ``rank % torch.accelerator.device_count()`` and so
divides by zero without an accelerator; with none, the count is reported as 1 (the mesh is built on
the CPU device type, which gloo serves). Nothing else is patched.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from lesa_core import attach
from lesa_core.testing.tiny import tiny_flux_pipeline

CONFIG = {"predictor": {"name": "kan", "taps": [3, 4, 4], "hidden": [8, 8]},
          "policy": {"name": "interval", "interval": 4, "warmup": 2, "force_full": []}}
CALL = {"prompt": ["a red square", "a blue circle"], "num_inference_steps": 12, "height": 32, "width": 32,
        "max_sequence_length": 16, "output_type": "latent"}


def generators() -> list[torch.Generator]:
    return [torch.Generator().manual_seed(s) for s in (0, 1)]


def parallelise(pipe) -> None:  # type: ignore[no-untyped-def]
    from diffusers import ContextParallelConfig

    pipe.transformer.set_attention_backend("native")
    pipe.transformer.enable_parallelism(config=ContextParallelConfig(ulysses_degree=dist.get_world_size()))


def main(out: Path) -> None:
    dist.init_process_group("gloo")
    if torch.accelerator.device_count() == 0:
        torch.accelerator.device_count = lambda: 1  # the CPU shim (see the module docstring)
    rank = dist.get_rank()
    stats = {}
    for order in ("cp_then_lesa", "lesa_then_cp"):
        pipe = tiny_flux_pipeline()
        pipe.set_progress_bar_config(disable=True)
        torch.manual_seed(0)  # the predictor's initialisation (untrained KAN: the path matters, not quality)
        if order == "cp_then_lesa":
            parallelise(pipe)
            handle = attach(pipe, CONFIG)
        else:
            handle = attach(pipe, CONFIG)
            parallelise(pipe)
        with handle:
            latents = pipe(**CALL, generator=generators()).images
            stats[order] = handle.stats()
        torch.save(latents, out / f"latents_{order}_rank{rank}.pt")
    (out / f"rank{rank}.json").write_text(json.dumps(stats))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
