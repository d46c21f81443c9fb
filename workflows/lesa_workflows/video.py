"""Video outputs in the workflows: metrics over all frames, frame strips and a per-frame error plot.

A video pipeline (``HunyuanVideoPipeline``, ``WanPipeline``…) called with ``output_type="pt"`` returns
``.frames`` of shape ``(B, F, C, H, W)`` in [0, 1]; an image pipeline returns ``.images`` ``(B, C, H, W)``.
Everything here takes either: a 4-D batch is an image batch, a 5-D batch a video batch.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from einops import rearrange
from torch import Tensor

from lesa_core.metrics import psnr, ssim, to_uint8

if TYPE_CHECKING:
    from lesa_workflows.evaluate import EvaluatedMethod

__all__ = [
    "is_video",
    "output_pixels",
    "per_sample_quality",
    "save_frame_error_plot",
    "save_frame_strips",
    "still_frames",
]


def is_video(pixels: Tensor) -> bool:
    """Whether ``pixels`` is a video batch ``(B, F, C, H, W)`` (else an image batch ``(B, C, H, W)``)."""
    return pixels.dim() == 5


def output_pixels(output: Any) -> Any:
    """A pipeline output's pixels: ``.frames`` of a video pipeline, else ``.images``, else ``output[0]``."""
    for name in ("frames", "images"):
        if hasattr(output, name):
            return getattr(output, name)
    return output[0]


def still_frames(pixels: Tensor) -> Tensor:
    """One image per sample ``(B, C, H, W)``: a video's middle frame, an image batch unchanged."""
    return pixels[:, pixels.shape[1] // 2] if is_video(pixels) else pixels


def per_sample_quality(reference: Tensor, test: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
    """PSNR and SSIM per sample of uint8 images or videos against ``reference``, and per frame for videos.

    A video's PSNR is over all its frames (the MSE of every pixel of every frame), its SSIM the mean
    of its frames' SSIM; the third value is the PSNR of each frame index averaged over the videos
    ``(F,)`` (``None`` for images).
    """
    if not is_video(reference):
        return psnr(reference, test), ssim(reference, test), None
    b = reference.shape[0]
    flat_ref = rearrange(reference, "b f c h w -> (b f) c h w")
    flat_test = rearrange(test, "b f c h w -> (b f) c h w")
    frame_psnr = rearrange(psnr(flat_ref, flat_test), "(b f) -> b f", b=b)
    frame_ssim = rearrange(ssim(flat_ref, flat_test), "(b f) -> b f", b=b)
    return psnr(reference, test), frame_ssim.mean(1), frame_psnr.mean(0)


def save_frame_strips(
    path: Path, results: Sequence[EvaluatedMethod], prompts: Sequence[str], *, max_prompts: int = 4
) -> None:
    """A PNG of frames side by side: per prompt a block with one row per method, the frames in order."""
    from PIL import Image, ImageDraw

    shown = min(max_prompts, len(prompts))
    first = results[0].images
    frames, (h, w) = first.shape[1], first.shape[-2:]
    scale = max(1, 64 // max(h, w))
    cell_h, cell_w, head, side = h * scale, w * scale, 14, 96
    block = head + cell_h * len(results)
    sheet = Image.new("RGB", (side + cell_w * frames, block * shown), "white")
    draw = ImageDraw.Draw(sheet)
    for p in range(shown):
        top = p * block
        draw.text((3, top + 2), prompts[p], fill="black")
        for r, result in enumerate(results):
            y = top + head + r * cell_h
            label = f"{result.name} {result.psnr:.1f}dB" if result.psnr < 99 else result.name
            draw.text((3, y + cell_h // 2 - 5), label, fill="black")
            video = to_uint8(result.images[p]).permute(0, 2, 3, 1).numpy()  # (F, H, W, C)
            for f in range(frames):
                tile = Image.fromarray(video[f]).resize((cell_w, cell_h), Image.Resampling.NEAREST)
                sheet.paste(tile, (side + f * cell_w, y))
    tmp = path.with_name(f".{path.name}.tmp.png")
    sheet.save(tmp)
    os.replace(tmp, path)


def save_frame_error_plot(path: Path, results: Sequence[EvaluatedMethod]) -> None:
    """PSNR of each frame against full compute (mean over the videos), one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=120)
    for result in results[1:]:
        if result.psnr_per_frame:
            frames = range(len(result.psnr_per_frame))
            ax.plot(
                frames,
                result.psnr_per_frame,
                marker="o",
                label=f"{result.name} (all frames {result.psnr:.1f} dB)",
            )
    ax.set_xlabel("frame")
    ax.set_ylabel("PSNR vs full compute (dB)")
    ax.set_title("Error per frame: PSNR of each frame against the full-compute video")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, format="png")
    plt.close(fig)
    os.replace(tmp, path)
