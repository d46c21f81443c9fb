"""Fidelity metrics against the same model's full-compute output (the field's protocol).

Images are compared as uint8 RGB arrays (lossless; nothing is saved as JPEG in between):

* **PSNR** — ``20·log10(255 / sqrt(MSE))`` per image, averaged over images (∞ for identical images is
  capped at 100 dB so averages stay finite).
* **Paired differences** — two methods compared on the same prompts and seeds: the mean and standard
  error of the per-image differences (:func:`paired_difference`), the form every Δ ± s.e. here takes.
* **SSIM** — on grayscale (ITU-R 601: 0.299 R + 0.587 G + 0.114 B), 7×7 uniform window, data range
  255, K1 = 0.01, K2 = 0.03, sample covariance, borders cropped — scikit-image's
  ``structural_similarity`` defaults, re-implemented in torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

PSNR_CAP_DB = 100.0


def to_uint8(images: Tensor) -> Tensor:
    """Float images in [0, 1] (``(B, 3, H, W)``) to uint8, rounding like PIL does."""
    return (images.clamp(0, 1) * 255).round().to(torch.uint8)


def psnr(reference: Tensor, test: Tensor) -> Tensor:
    """Per-image PSNR in dB of uint8 ``(B, C, H, W)`` images."""
    ref = reference.to(torch.float64)
    out = test.to(torch.float64)
    mse = (ref - out).pow(2).flatten(1).mean(1)
    value = 20 * math.log10(255.0) - 10 * torch.log10(mse.clamp_min(1e-20))
    return value.clamp(max=PSNR_CAP_DB)


def _gray(images: Tensor) -> Tensor:
    """Luma rounded to integers, as OpenCV's ``cvtColor(..., COLOR_RGB2GRAY)`` returns uint8."""
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=torch.float64).view(1, 3, 1, 1)
    return (images.to(torch.float64) * weights).sum(1, keepdim=True).round()


def ssim(reference: Tensor, test: Tensor, *, win_size: int = 7) -> Tensor:
    """Per-image grayscale SSIM of uint8 ``(B, 3, H, W)`` images (scikit-image defaults)."""
    x, y = _gray(reference), _gray(test)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    kernel = torch.full((1, 1, win_size, win_size), 1.0 / win_size**2, dtype=torch.float64)
    n = win_size**2
    cov_norm = n / (n - 1)

    def filt(z: Tensor) -> Tensor:
        return F.conv2d(z, kernel)

    ux, uy = filt(x), filt(y)
    vx = cov_norm * (filt(x * x) - ux * ux)
    vy = cov_norm * (filt(y * y) - uy * uy)
    vxy = cov_norm * (filt(x * y) - ux * uy)
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
    return rearrange(s, "b 1 h w -> b (h w)").mean(1)


def relative_l2(reference: Tensor, test: Tensor) -> Tensor:
    """Per-sample ``||test − reference|| / ||reference||`` (for features and latents)."""
    ref = reference.flatten(1).to(torch.float64)
    diff = test.flatten(1).to(torch.float64) - ref
    return diff.norm(dim=1) / ref.norm(dim=1).clamp_min(1e-12)


def paired_difference(values: Sequence[float], reference: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error of the per-image differences ``values[i] − reference[i]`` (the same prompt and
    seed under two methods), each value capped at :data:`PSNR_CAP_DB` so that identical images (∞ dB) count as
    100 dB; the standard error is NaN with fewer than two images.

    :raises ValueError: for sequences of different lengths or no images.
    """
    if len(values) != len(reference) or not values:
        raise ValueError(f"paired values need the same images: got {len(values)} and {len(reference)}")
    diffs = [min(a, PSNR_CAP_DB) - min(b, PSNR_CAP_DB) for a, b in zip(values, reference, strict=True)]
    n = len(diffs)
    mean = sum(diffs) / n
    if n < 2:
        return mean, math.nan
    variance = sum((d - mean) ** 2 for d in diffs) / (n - 1)
    return mean, math.sqrt(variance / n)
