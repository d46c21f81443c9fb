"""The diffusers DiT families LESA ships adapters for, as one table of tiny offline pipelines.

Each :class:`FamilySpec` builds a real diffusers pipeline around a tiny random-init transformer (built
from a small config, in ``.eval()``) with no text encoder, no tokenizer and no VAE: the pipeline is
driven with ``prompt_embeds`` / ``negative_prompt_embeds`` and ``output_type="latent"``, so nothing is
downloaded and nothing but the transformer runs. :data:`FAMILY_SPECS` is the one list the family tests
(``test_adapter_families.py``) run over; add a row to cover a new family, and any other check (the
training smoke test) can run over the same rows.

``guidance`` says how the pipeline applies classifier-free guidance, which decides how many body runs
a step costs and which cache contexts appear:

* ``"separate"`` — cond and uncond are separate transformer calls, each in its own cache context
  (``"cond"`` / ``"uncond"``), so each has its own trajectory;
* ``"batched"`` — cond and uncond are rows of one call (one body run per step for both);
* ``"distilled"`` — the guidance scale is an input embedding: one call per step, no uncond;
* ``"none"`` — the pipeline runs without guidance in the test.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

GUIDANCE_KINDS = ("separate", "batched", "distilled", "none")


def _diffusers() -> Any:
    return importlib.import_module("diffusers")


def _embeds(seed: int, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _flow() -> Any:
    return _diffusers().FlowMatchEulerDiscreteScheduler()


@dataclass(frozen=True)
class FamilySpec:
    """One DiT family: its adapter, a tiny transformer, the pipeline around it, and one call's arguments.

    :ivar adapter: the registered adapter name.
    :ivar title: the family as users name it (the coverage table's first column).
    :ivar transformer: builds the tiny transformer (seeded, ``.eval()``).
    :ivar pipeline: builds the pipeline around a transformer (no text encoder, tokenizer or VAE).
    :ivar call: the pipeline's keyword arguments for one generation (embeddings, guidance, size);
        ``num_inference_steps``, ``generator`` and ``output_type`` are added by :meth:`run`.
    :ivar guidance: how the pipeline applies guidance (:data:`GUIDANCE_KINDS`).
    :ivar contexts: the cache contexts the calls run in, in call order within a step (``"default"``
        when the pipeline sets none).
    """

    adapter: str
    title: str
    transformer: Callable[[], nn.Module]
    pipeline: Callable[[nn.Module], Any]
    call: Callable[[], dict[str, Any]]
    guidance: str
    contexts: tuple[str, ...]
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        assert self.guidance in GUIDANCE_KINDS, self.guidance

    @property
    def pipeline_class(self) -> str:
        """The diffusers pipeline class the tests drive (or the loop standing in for it)."""
        return str(self.pipeline.pipeline_class)  # type: ignore[attr-defined]

    @property
    def calls_per_step(self) -> int:
        """Transformer calls per denoising step (2 with separate-call guidance, else 1)."""
        return len(self.contexts)

    def build(self) -> Any:
        """A fresh pipeline with a fresh tiny transformer (progress bars off)."""
        pipe = self.pipeline(self.transformer())
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def run(self, pipe: Any, steps: int, seed: int = 0) -> torch.Tensor:
        """The latents of one generation of ``steps`` steps."""
        out = pipe(
            **self.call(),
            num_inference_steps=steps,
            output_type="latent",
            generator=torch.Generator().manual_seed(seed),
        )
        result = out[0]
        return result if isinstance(result, torch.Tensor) else torch.stack(list(result))


# ----------------------------------------------------------------------------- video and image families


def _tiny_kl_vae() -> Any:
    torch.manual_seed(0)
    return (
        _diffusers()
        .AutoencoderKL(
            block_out_channels=(4, 4, 4),
            latent_channels=4,
            norm_num_groups=1,
            layers_per_block=1,
            down_block_types=("DownEncoderBlock2D",) * 3,
            up_block_types=("UpDecoderBlock2D",) * 3,
        )
        .eval()
    )


def _tiny_magvit_vae() -> Any:
    torch.manual_seed(0)
    return (
        _diffusers()
        .AutoencoderKLMagvit(
            latent_channels=4, block_out_channels=(8, 8, 8, 8), layers_per_block=1, norm_num_groups=4
        )
        .eval()
    )


def _tiny_hunyuan_video15_vae() -> Any:
    torch.manual_seed(0)
    return (
        _diffusers()
        .AutoencoderKLHunyuanVideo15(
            latent_channels=4,
            block_out_channels=(8, 8, 8, 8, 8),
            layers_per_block=1,
            spatial_compression_ratio=16,
        )
        .eval()
    )


def _build(cls: str, **config: Any) -> Callable[[], nn.Module]:
    """A builder of a tiny ``diffusers.<cls>(**config)``, seeded and in ``.eval()``."""

    def build() -> nn.Module:
        torch.manual_seed(0)
        model: nn.Module = getattr(_diffusers(), cls)(**config)
        return model.eval()

    return build


def _pipe(
    cls: str,
    scheduler: Callable[[], Any] = _flow,
    settings: dict[str, Any] | None = None,
    **components: Callable[[], Any],
) -> Callable[[nn.Module], Any]:
    """A builder of ``diffusers.<cls>`` around a transformer, with ``scheduler()`` and the other named
    ``components()`` (built on use); every other component ``None``; then the pipeline attributes
    ``settings`` set."""

    def build(transformer: nn.Module) -> Any:
        import inspect

        klass = getattr(_diffusers(), cls)
        names = [n for n in inspect.signature(klass.__init__).parameters if n != "self"]
        parts: dict[str, Any] = {n: None for n in names}
        parts.update(
            transformer=transformer, scheduler=scheduler(), **{k: make() for k, make in components.items()}
        )
        pipe = klass(**{k: v for k, v in parts.items() if k in names})
        for name, value in (settings or {}).items():
            setattr(pipe, name, value)
        return pipe

    build.pipeline_class = cls  # type: ignore[attr-defined]  # named in the coverage table
    return build


class QwenImage21Loop:
    """The text-to-image denoising loop of ``QwenImage21Pipeline``, for its transformer alone.

    The pipeline itself cannot be built offline here: its ``__init__`` tokenizes a system prompt with a
    Qwen3-VL processor, whose video part needs torchvision. This loop does what the pipeline's
    ``__call__`` does with ``prompt_embeds`` given and no condition image: packed latents, ``img_shapes``,
    the image-pad mask with one slot per 2×2 group of target latents, the flow-matching Euler scheduler
    with the pipeline's sigmas and shift, and true CFG as two calls per step in the cache contexts
    ``"cond"`` / ``"uncond"`` (``timestep / 1000``). It runs without the pipeline's optional KV cache of
    the condition tokens. Called like a pipeline (``FamilySpec.run``).
    """

    pipeline_class = "QwenImage21Pipeline loop"

    def __init__(self, transformer: nn.Module) -> None:
        self.transformer = transformer

    def set_progress_bar_config(self, **kwargs: Any) -> None:
        """No progress bar (the pipeline interface)."""

    @torch.no_grad()
    def __call__(
        self,
        *,
        prompt_embeds: torch.Tensor,
        negative_prompt_embeds: torch.Tensor,
        true_cfg_scale: float,
        height: int,
        width: int,
        num_inference_steps: int,
        generator: torch.Generator,
        output_type: str = "latent",
    ) -> tuple[torch.Tensor]:
        import numpy as np
        from diffusers.pipelines.qwenimage21.pipeline_qwenimage21 import calculate_shift

        transformer: Any = self.transformer
        h, w = height // 16, width // 16
        latents = torch.randn(1, h * w, transformer.config.in_channels, generator=generator)
        scheduler = _flow()
        sigmas = np.linspace(1.0, 1 / num_inference_steps, num_inference_steps)
        scheduler.set_timesteps(sigmas=sigmas, mu=calculate_shift(latents.shape[1], 256, 4096, 0.5, 1.15))

        def branch(embeds: torch.Tensor) -> dict[str, Any]:
            mask = torch.zeros(embeds.shape[:2], dtype=torch.bool)
            return dict(
                encoder_hidden_states=embeds,
                encoder_hidden_states_mask=torch.ones(embeds.shape[:2]),
                img_mask=torch.cat([mask, mask.new_ones(1, latents.shape[1] // 4)], dim=1),
            )

        cond, uncond = branch(prompt_embeds), branch(negative_prompt_embeds)
        for t in scheduler.timesteps:
            common = dict(
                hidden_states=latents,
                timestep=t.expand(1) / 1000,
                img_shapes=[[(1, h, w)]],
                return_dict=False,
            )
            tokens = latents.shape[1]  # the output covers the joint sequence: keep the target image's tokens
            with transformer.cache_context("cond"):
                pred = transformer(**common, **cond)[0][:, -tokens:]
            with transformer.cache_context("uncond"):
                neg = transformer(**common, **uncond)[0][:, -tokens:]
            latents = scheduler.step(neg + true_cfg_scale * (pred - neg), t, latents, return_dict=False)[0]
        transformer._reset_stateful_cache()  # what every pipeline's maybe_free_model_hooks() does
        return (latents,)


def _cfg_call(
    dim: int,
    tokens: int = 6,
    *,
    mask: str | None = "prompt_attention_mask",
    scale: float = 4.5,
    mask_dtype: torch.dtype = torch.float32,
    **extra: Any,
) -> Callable[[], dict[str, Any]]:
    """Arguments with ``prompt_embeds``/``negative_prompt_embeds`` of width ``dim`` (and their masks,
    named ``mask`` / ``negative_<mask>``), guidance ``scale`` and ``extra``."""

    def call() -> dict[str, Any]:
        kwargs: dict[str, Any] = dict(
            prompt_embeds=_embeds(1, 1, tokens, dim),
            negative_prompt_embeds=_embeds(2, 1, tokens, dim),
            guidance_scale=scale,
            negative_prompt=None,
        )
        if mask is not None:
            kwargs[mask] = torch.ones(1, tokens, dtype=mask_dtype)
            kwargs[f"negative_{mask}"] = torch.ones(1, tokens, dtype=mask_dtype)
        kwargs.update(extra)
        return kwargs

    return call


FAMILY_SPECS: list[FamilySpec] = [
    FamilySpec(
        "pixart",
        "PixArt-Σ / PixArt-α",
        _build(
            "PixArtTransformer2DModel",
            num_attention_heads=2,
            attention_head_dim=8,
            in_channels=4,
            out_channels=8,
            num_layers=2,
            cross_attention_dim=16,
            sample_size=8,
            patch_size=2,
            caption_channels=16,
            norm_num_groups=1,
            use_additional_conditions=False,
        ),
        _pipe("PixArtSigmaPipeline", lambda: _diffusers().DPMSolverMultistepScheduler()),
        _cfg_call(16, height=64, width=64, use_resolution_binning=False),
        "batched",
        ("default",),
    ),
    FamilySpec(
        "sana",
        "Sana",
        _build(
            "SanaTransformer2DModel",
            in_channels=4,
            out_channels=4,
            num_attention_heads=2,
            attention_head_dim=8,
            num_layers=2,
            num_cross_attention_heads=2,
            cross_attention_head_dim=8,
            cross_attention_dim=16,
            caption_channels=16,
            sample_size=8,
            patch_size=1,
        ),
        _pipe("SanaPipeline"),
        _cfg_call(
            16, height=256, width=256, use_resolution_binning=False
        ),  # no VAE: the pipeline assumes 32x
        "batched",
        ("default",),
    ),
    FamilySpec(
        "cogvideox",
        "CogVideoX",
        _build(
            "CogVideoXTransformer3DModel",
            num_attention_heads=2,
            attention_head_dim=8,
            in_channels=4,
            out_channels=4,
            time_embed_dim=8,
            text_embed_dim=16,
            num_layers=2,
            sample_width=4,
            sample_height=4,
            sample_frames=2,
            patch_size=2,
            temporal_compression_ratio=4,
            max_text_seq_length=6,
        ),
        _pipe("CogVideoXPipeline", lambda: _diffusers().CogVideoXDDIMScheduler()),
        _cfg_call(16, mask=None, height=32, width=32, num_frames=5, max_sequence_length=6),
        "batched",
        ("cond_uncond",),
    ),
    FamilySpec(
        "ltx_video",
        "LTX-Video",
        _build(
            "LTXVideoTransformer3DModel",
            in_channels=4,
            out_channels=4,
            num_attention_heads=2,
            attention_head_dim=8,
            cross_attention_dim=16,
            num_layers=2,
            caption_channels=16,
        ),
        _pipe("LTXPipeline"),
        _cfg_call(16, height=64, width=64, num_frames=9, decode_timestep=0.0),
        "batched",
        ("cond_uncond",),
    ),
    FamilySpec(
        "wan2",
        "Wan 2.1 / 2.2",
        _build(
            "WanTransformer3DModel",
            patch_size=(1, 2, 2),
            num_attention_heads=2,
            attention_head_dim=12,
            in_channels=4,
            out_channels=4,
            text_dim=16,
            freq_dim=32,
            ffn_dim=32,
            num_layers=2,
            cross_attn_norm=True,
            qk_norm="rms_norm_across_heads",
            rope_max_seq_len=32,
        ),
        _pipe("WanPipeline"),
        _cfg_call(16, mask=None, height=32, width=32, num_frames=1),
        "separate",
        ("cond", "uncond"),
    ),
    FamilySpec(
        "cogview4",
        "CogView4",
        _build(
            "CogView4Transformer2DModel",
            patch_size=2,
            in_channels=4,
            out_channels=4,
            num_layers=2,
            attention_head_dim=8,
            num_attention_heads=2,
            text_embed_dim=16,
            time_embed_dim=8,
            condition_dim=4,
            pos_embed_max_size=16,
            sample_size=8,
            rope_axes_dim=(4, 4),
        ),
        _pipe("CogView4Pipeline"),
        _cfg_call(16, mask=None, height=64, width=64),
        "separate",
        ("cond", "uncond"),
    ),
    FamilySpec(
        "mochi",
        "Mochi 1",
        _build(
            "MochiTransformer3DModel",
            patch_size=2,
            num_attention_heads=2,
            attention_head_dim=8,
            num_layers=2,
            pooled_projection_dim=16,
            in_channels=4,
            text_embed_dim=16,
            time_embed_dim=4,
            max_sequence_length=6,
        ),
        _pipe("MochiPipeline"),
        _cfg_call(16, height=32, width=32, num_frames=7, max_sequence_length=6),
        "batched",
        ("cond_uncond",),
    ),
    FamilySpec(
        "allegro",
        "Allegro",
        _build(
            "AllegroTransformer3DModel",
            num_attention_heads=2,
            attention_head_dim=12,
            in_channels=4,
            out_channels=4,
            num_layers=2,
            cross_attention_dim=24,
            sample_height=4,
            sample_width=4,
            sample_frames=2,
            caption_channels=16,
        ),
        _pipe("AllegroPipeline", lambda: _diffusers().EulerAncestralDiscreteScheduler()),
        _cfg_call(16, height=32, width=32, num_frames=5, max_sequence_length=6),
        "batched",
        ("default",),
    ),
    FamilySpec(
        "flux2",
        "FLUX.2 [dev] / [klein]",
        _build(
            "Flux2Transformer2DModel",
            patch_size=1,
            in_channels=16,
            num_layers=1,
            num_single_layers=1,
            attention_head_dim=16,
            num_attention_heads=2,
            joint_attention_dim=16,
            timestep_guidance_channels=16,
            axes_dims_rope=(4, 4, 4, 4),
        ),
        _pipe("Flux2Pipeline"),
        lambda: dict(prompt_embeds=_embeds(1, 1, 6, 16), guidance_scale=4.0, height=32, width=32),
        "distilled",
        ("default",),
    ),
    FamilySpec(
        "auraflow",
        "AuraFlow",
        _build(
            "AuraFlowTransformer2DModel",
            sample_size=8,
            patch_size=2,
            in_channels=4,
            num_mmdit_layers=1,
            num_single_dit_layers=1,
            attention_head_dim=8,
            num_attention_heads=2,
            joint_attention_dim=16,
            caption_projection_dim=16,
            out_channels=4,
            pos_embed_max_size=64,
        ),
        _pipe("AuraFlowPipeline"),
        _cfg_call(16, height=64, width=64),
        "batched",
        ("default",),
    ),
    FamilySpec(
        "cogview3plus",
        "CogView3-Plus",
        _build(
            "CogView3PlusTransformer2DModel",
            patch_size=2,
            in_channels=4,
            num_layers=2,
            attention_head_dim=8,
            num_attention_heads=2,
            out_channels=4,
            text_embed_dim=16,
            time_embed_dim=8,
            condition_dim=4,
            pos_embed_max_size=16,
            sample_size=8,
        ),
        _pipe("CogView3PlusPipeline", lambda: _diffusers().CogVideoXDDIMScheduler()),
        _cfg_call(16, mask=None, height=64, width=64),
        "batched",
        ("default",),
    ),
    FamilySpec(
        "skyreels_v2",
        "SkyReels-V2",
        _build(
            "SkyReelsV2Transformer3DModel",
            patch_size=(1, 2, 2),
            num_attention_heads=2,
            attention_head_dim=12,
            in_channels=4,
            out_channels=4,
            text_dim=16,
            freq_dim=32,
            ffn_dim=32,
            num_layers=2,
            rope_max_seq_len=32,
        ),
        _pipe(
            "SkyReelsV2Pipeline",
            lambda: _diffusers().UniPCMultistepScheduler(
                prediction_type="flow_prediction", use_flow_sigmas=True
            ),
        ),
        _cfg_call(16, mask=None, height=32, width=32, num_frames=1),
        "separate",
        ("cond", "uncond"),
    ),
    FamilySpec(
        "latte",
        "Latte",
        _build(
            "LatteTransformer3DModel",
            num_attention_heads=2,
            attention_head_dim=8,
            in_channels=4,
            out_channels=8,
            num_layers=2,
            cross_attention_dim=16,
            sample_size=8,
            patch_size=2,
            activation_fn="gelu-approximate",
            num_embeds_ada_norm=1000,
            norm_type="ada_norm_single",
            norm_elementwise_affine=False,
            norm_eps=1e-6,
            caption_channels=16,
            video_length=2,
        ),
        _pipe("LattePipeline", lambda: _diffusers().DDIMScheduler()),
        _cfg_call(16, mask=None, height=64, width=64, video_length=2),
        "batched",
        ("default",),
    ),
    FamilySpec(
        "ovis_image",
        "Ovis-Image",
        _build(
            "OvisImageTransformer2DModel",
            patch_size=1,
            in_channels=16,
            out_channels=16,
            num_layers=1,
            num_single_layers=1,
            attention_head_dim=16,
            num_attention_heads=2,
            joint_attention_dim=16,
            axes_dims_rope=(4, 6, 6),
        ),
        _pipe("OvisImagePipeline"),
        _cfg_call(16, mask=None, height=32, width=32),
        "separate",
        ("cond", "uncond"),
    ),
    FamilySpec(
        "chroma",
        "Chroma",
        _build(
            "ChromaTransformer2DModel",
            patch_size=1,
            in_channels=16,
            num_layers=1,
            num_single_layers=1,
            attention_head_dim=16,
            num_attention_heads=2,
            joint_attention_dim=16,
            axes_dims_rope=(4, 6, 6),
            approximator_num_channels=8,
            approximator_hidden_dim=16,
            approximator_layers=1,
        ),
        _pipe("ChromaPipeline"),
        _cfg_call(16, scale=1.0, height=32, width=32),
        "none",
        ("default",),
    ),
    FamilySpec(
        "sana_video",
        "Sana-Video",
        _build(
            "SanaVideoTransformer3DModel",
            in_channels=4,
            out_channels=4,
            num_attention_heads=2,
            attention_head_dim=8,
            num_layers=2,
            num_cross_attention_heads=2,
            cross_attention_head_dim=8,
            cross_attention_dim=16,
            caption_channels=16,
            sample_size=8,
            rope_max_seq_len=32,
        ),
        _pipe("SanaVideoPipeline"),
        _cfg_call(16, height=64, width=64, frames=1, use_resolution_binning=False),
        "batched",
        ("default",),
    ),
    FamilySpec(
        "hidream",
        "HiDream-I1",
        _build(
            "HiDreamImageTransformer2DModel",
            patch_size=2,
            in_channels=4,
            out_channels=4,
            num_layers=1,
            num_single_layers=1,
            attention_head_dim=8,
            num_attention_heads=2,
            caption_channels=[16, 16],
            text_emb_dim=16,
            num_routed_experts=2,
            num_activated_experts=1,
            axes_dims_rope=(4, 2, 2),
            max_resolution=(32, 32),
            llama_layers=[0, 1],
        ),
        _pipe("HiDreamImagePipeline", settings={"default_sample_size": 4}),  # it rescales to this area
        lambda: dict(
            prompt_embeds_t5=_embeds(1, 1, 6, 16),
            negative_prompt_embeds_t5=_embeds(2, 1, 6, 16),
            prompt_embeds_llama3=_embeds(3, 2, 1, 6, 16),
            negative_prompt_embeds_llama3=_embeds(4, 2, 1, 6, 16),
            pooled_prompt_embeds=_embeds(5, 1, 16),
            negative_pooled_prompt_embeds=_embeds(6, 1, 16),
            guidance_scale=4.0,
            height=32,
            width=32,
        ),
        "batched",
        ("default",),
    ),
    FamilySpec(
        "hunyuan_image",
        "HunyuanImage 2.1",
        _build(
            "HunyuanImageTransformer2DModel",
            in_channels=4,
            out_channels=4,
            num_attention_heads=2,
            attention_head_dim=8,
            num_layers=1,
            num_single_layers=1,
            num_refiner_layers=1,
            text_embed_dim=16,
            text_embed_2_dim=8,
            rope_axes_dim=(4, 4),
        ),
        _pipe("HunyuanImagePipeline", guider=lambda: _diffusers().ClassifierFreeGuidance(guidance_scale=4.0)),
        lambda: dict(
            prompt_embeds=_embeds(1, 1, 6, 16),
            prompt_embeds_mask=torch.ones(1, 6),
            negative_prompt_embeds=_embeds(2, 1, 6, 16),
            negative_prompt_embeds_mask=torch.ones(1, 6),
            prompt_embeds_2=_embeds(3, 1, 4, 8),
            prompt_embeds_mask_2=torch.ones(1, 4),
            negative_prompt_embeds_2=_embeds(4, 1, 4, 8),
            negative_prompt_embeds_mask_2=torch.ones(1, 4),
            height=64,
            width=64,
        ),
        "separate",
        ("pred_cond", "pred_uncond"),
    ),
    FamilySpec(
        "lumina2",
        "Lumina-Image 2.0",
        _build(
            "Lumina2Transformer2DModel",
            sample_size=8,
            patch_size=2,
            in_channels=4,
            hidden_size=16,
            num_layers=2,
            num_refiner_layers=1,
            num_attention_heads=2,
            num_kv_heads=2,
            multiple_of=16,
            axes_dim_rope=(2, 2, 4),
            axes_lens=(64, 32, 32),
            cap_feat_dim=16,
        ),
        _pipe("Lumina2Pipeline"),
        _cfg_call(16, mask_dtype=torch.long, scale=1.0, height=32, width=32),
        "none",
        ("default",),
    ),
    FamilySpec(
        "z_image",
        "Z-Image",
        _build(
            "ZImageTransformer2DModel",
            all_patch_size=(2,),
            all_f_patch_size=(1,),
            in_channels=4,
            dim=32,
            n_layers=2,
            n_refiner_layers=1,
            n_heads=2,
            n_kv_heads=2,
            cap_feat_dim=16,
            axes_dims=[4, 6, 6],
            axes_lens=[64, 32, 32],
        ),
        _pipe("ZImagePipeline"),
        lambda: dict(
            prompt_embeds=[_embeds(1, 6, 16)],
            negative_prompt_embeds=[_embeds(2, 6, 16)],
            guidance_scale=4.0,
            height=32,
            width=32,
        ),
        "batched",
        ("default",),
    ),
    FamilySpec(
        "hunyuan_video15",
        "HunyuanVideo 1.5",
        _build(
            "HunyuanVideo15Transformer3DModel",
            in_channels=9,
            out_channels=4,
            num_attention_heads=2,
            attention_head_dim=8,
            num_layers=2,
            num_refiner_layers=1,
            text_embed_dim=16,
            text_embed_2_dim=8,
            image_embed_dim=8,
            rope_axes_dim=(2, 2, 4),
            target_size=32,
            task_type="t2v",
        ),
        _pipe(
            "HunyuanVideo15Pipeline",
            guider=lambda: _diffusers().ClassifierFreeGuidance(guidance_scale=4.0),
            vae=_tiny_hunyuan_video15_vae,  # the pipeline reads its config while denoising
        ),
        lambda: dict(
            prompt_embeds=_embeds(1, 1, 6, 16),
            prompt_embeds_mask=torch.ones(1, 6),
            negative_prompt_embeds=_embeds(2, 1, 6, 16),
            negative_prompt_embeds_mask=torch.ones(1, 6),
            prompt_embeds_2=_embeds(3, 1, 4, 8),
            prompt_embeds_mask_2=torch.ones(1, 4),
            negative_prompt_embeds_2=_embeds(4, 1, 4, 8),
            negative_prompt_embeds_mask_2=torch.ones(1, 4),
            height=32,
            width=32,
            num_frames=1,
        ),
        "separate",
        ("pred_cond", "pred_uncond"),
    ),
    FamilySpec(
        "bria",
        "Bria 3.2",
        _build(
            "BriaTransformer2DModel",
            patch_size=1,
            in_channels=16,
            num_layers=1,
            num_single_layers=1,
            attention_head_dim=16,
            num_attention_heads=2,
            joint_attention_dim=16,
            axes_dims_rope=[4, 6, 6],
        ),
        _pipe("BriaPipeline", vae=_tiny_kl_vae),  # the pipeline reads its config
        _cfg_call(16, mask=None, height=64, width=64),
        "batched",
        ("default",),
    ),
    FamilySpec(
        "easyanimate",
        "EasyAnimate",
        _build(
            "EasyAnimateTransformer3DModel",
            num_attention_heads=2,
            attention_head_dim=16,
            in_channels=4,
            out_channels=4,
            patch_size=2,
            sample_width=4,
            sample_height=4,
            num_layers=2,
            mmdit_layers=2,
            time_embed_dim=8,
            text_embed_dim=16,
        ),
        _pipe("EasyAnimatePipeline", vae=_tiny_magvit_vae),  # the pipeline reads its config while denoising
        _cfg_call(16, height=32, width=32, num_frames=1),
        "batched",
        ("default",),
    ),
    FamilySpec(
        "qwen_image21",
        "Qwen-Image 2.1",
        _build(
            "QwenImage21Transformer2DModel",
            patch_size=1,
            in_channels=16,
            out_channels=16,
            num_layers=2,
            attention_head_dim=16,
            num_attention_heads=2,
            context_in_dim=16,
            axes_dims_rope=(4, 6, 6),
        ),
        QwenImage21Loop,
        lambda: dict(
            prompt_embeds=_embeds(1, 1, 6, 16),
            negative_prompt_embeds=_embeds(2, 1, 6, 16),
            true_cfg_scale=4.0,
            height=32,
            width=32,
        ),
        "separate",
        ("cond", "uncond"),
    ),
]

if (
    importlib.util.find_spec("lesa_adapters.sd3") is not None
):  # the sd3 adapter comes with the batched-CFG work
    FAMILY_SPECS.append(
        FamilySpec(
            "sd3",
            "Stable Diffusion 3 / 3.5",
            _build(
                "SD3Transformer2DModel",
                sample_size=8,
                patch_size=2,
                in_channels=4,
                num_layers=2,
                attention_head_dim=8,
                num_attention_heads=2,
                joint_attention_dim=16,
                caption_projection_dim=16,
                pooled_projection_dim=8,
                out_channels=4,
                pos_embed_max_size=16,
            ),
            _pipe("StableDiffusion3Pipeline"),
            lambda: dict(
                prompt_embeds=_embeds(1, 1, 6, 16),
                negative_prompt_embeds=_embeds(2, 1, 6, 16),
                pooled_prompt_embeds=_embeds(3, 1, 8),
                negative_pooled_prompt_embeds=_embeds(4, 1, 8),
                guidance_scale=4.5,
                height=64,
                width=64,
            ),
            "batched",
            ("default",),
        )
    )
