"""Benchmark backbones: random-init FLUX transformers at fixed shapes, with their forward inputs.

Three shapes, all ``FluxTransformer2DModel`` run as a bare transformer (no pipeline, no VAE, no text
encoder), batch 1, random weights (speed does not depend on what the weights are):

``tiny``
    2 double + 4 single blocks, width 128 (2 heads × 64), 64 image / 8 text tokens, fp32 CPU: tests.
``cpu-bench``
    8 double + 16 single blocks, width 512 (8 heads × 64), 256 image / 32 text tokens, fp32, CPU
    (about 140 M parameters; ~0.3 s per forward on 2 cores).
``flux-dev-shapes``
    FLUX.1-dev's shapes: 19 double + 38 single blocks, 24 heads × 128, joint_attention_dim 4096,
    pooled 768, guidance embedding, 1024² image (4096 tokens), 512 text tokens, bf16 on CUDA
    (about 12 B parameters, built directly on the device).

diffusers is imported inside the functions.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["MODELS", "BenchModel", "ModelSpec", "build_model"]


@dataclass(frozen=True)
class ModelSpec:
    """Shapes of one benchmark backbone (``FluxTransformer2DModel`` constructor arguments + inputs)."""

    name: str
    description: str
    num_layers: int
    num_single_layers: int
    heads: int
    head_dim: int
    joint_attention_dim: int
    pooled_projection_dim: int
    guidance_embeds: bool
    axes_dims_rope: tuple[int, int, int]
    image_grid: int  # image tokens = image_grid ** 2 (packed 2×2 latents)
    text_tokens: int
    dtype: torch.dtype = torch.float32
    default_device: str = "cpu"
    in_channels: int = 64
    dynamic_shift: bool = False  # FLUX.1-dev's resolution-dependent schedule shift

    @property
    def image_tokens(self) -> int:
        return self.image_grid * self.image_grid

    @property
    def hidden_size(self) -> int:
        return self.heads * self.head_dim


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("tiny", "random-init FLUX, 2 double + 4 single blocks, width 128, 64 image / 8 text tokens, fp32",
                  2, 4, 2, 64, 64, 64, False, (16, 24, 24), 8, 8),
        ModelSpec("cpu-bench", "random-init FLUX, 8 double + 16 single blocks, width 512 (8 heads x 64), "
                  "256 image / 32 text tokens, batch 1, fp32",
                  8, 16, 8, 64, 512, 256, False, (16, 24, 24), 16, 32),
        ModelSpec("flux-dev-shapes", "random-init FLUX.1-dev shapes, 19 double + 38 single blocks, 24 heads x 128, "
                  "1024x1024 (4096 image tokens), 512 text tokens, batch 1, bf16",
                  19, 38, 24, 128, 4096, 768, True, (16, 56, 56), 64, 512, torch.bfloat16, "cuda",
                  dynamic_shift=True),
    )
}


@dataclass
class BenchModel:
    """A built backbone and everything one sampling loop needs.

    :ivar latents: the initial noise ``(1, image_tokens, in_channels)``.
    :ivar kwargs: the other forward arguments (text states, pooled projections, ids, guidance).
    :ivar scheduler_factory: a fresh ``FlowMatchEulerDiscreteScheduler`` per trajectory.
    :ivar mu: the schedule shift for dynamic-shifting schedulers (else ``None``).
    """

    spec: ModelSpec
    transformer: nn.Module
    latents: Tensor
    kwargs: dict[str, Any]
    scheduler_factory: Callable[[], Any]
    mu: float | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def dtype(self) -> torch.dtype:
        return self.spec.dtype

    def describe_device(self) -> str:
        if self.device.type == "cuda":
            return f"cuda:{torch.cuda.get_device_name(self.device)}"
        import platform

        return f"cpu:{platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype) -> Iterator[None]:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def _image_ids(grid: int) -> Tensor:
    ids = torch.zeros(grid, grid, 3)
    ids[..., 1] = torch.arange(grid)[:, None]
    ids[..., 2] = torch.arange(grid)[None, :]
    return ids.reshape(-1, 3)


def build_model(name: str, device: str | torch.device | None = None, seed: int = 0) -> BenchModel:
    """Build the backbone ``name`` (see :data:`MODELS`) with random weights, in ``eval()`` mode.

    Parameters are created directly on ``device`` in the spec's dtype (no fp32 copy on the host).

    :raises KeyError: listing the known names.
    """
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel

    try:
        spec = MODELS[name]
    except KeyError:
        raise KeyError(f"unknown bench model '{name}'; known: {', '.join(MODELS)}") from None
    dev = torch.device(device or spec.default_device)
    torch.manual_seed(seed)
    with torch.device(dev), _default_dtype(spec.dtype):
        model: Any = FluxTransformer2DModel(
            patch_size=1, in_channels=spec.in_channels, num_layers=spec.num_layers,
            num_single_layers=spec.num_single_layers, attention_head_dim=spec.head_dim,
            num_attention_heads=spec.heads, joint_attention_dim=spec.joint_attention_dim,
            pooled_projection_dim=spec.pooled_projection_dim, guidance_embeds=spec.guidance_embeds,
            axes_dims_rope=spec.axes_dims_rope,
        )
    model.eval().requires_grad_(False)
    g = torch.Generator().manual_seed(seed + 1)

    def randn(*shape: int) -> Tensor:
        return torch.randn(*shape, generator=g).to(dev, spec.dtype)

    kwargs: dict[str, Any] = {
        "encoder_hidden_states": randn(1, spec.text_tokens, spec.joint_attention_dim),
        "pooled_projections": randn(1, spec.pooled_projection_dim),
        "img_ids": _image_ids(spec.image_grid).to(dev, spec.dtype),
        "txt_ids": torch.zeros(spec.text_tokens, 3, device=dev, dtype=spec.dtype),
    }
    if spec.guidance_embeds:
        kwargs["guidance"] = torch.full((1,), 3.5, device=dev, dtype=torch.float32)
    latents = randn(1, spec.image_tokens, spec.in_channels)
    mu: float | None = None
    if spec.dynamic_shift:  # FLUX.1-dev's scheduler config and the pipeline's shift for this resolution
        config = dict(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                      base_image_seq_len=256, max_image_seq_len=4096)
        slope = (1.15 - 0.5) / (4096 - 256)
        mu = spec.image_tokens * slope + (0.5 - slope * 256)
    else:
        config = {}

    def scheduler_factory() -> Any:
        return FlowMatchEulerDiscreteScheduler(**config)

    return BenchModel(spec, model, latents, kwargs, scheduler_factory, mu, dev)
