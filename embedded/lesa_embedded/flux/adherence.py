"""Analytic prompt-adherence scorer for the shapes data: the project's stand-in for CLIP score.

It reads the five attributes back from the pixels (no learning, fully deterministic) and compares
them with the caption:

1. every pixel is given the nearest palette colour; the most frequent one is the **background**;
2. the most frequent other colour is the **shape's colour**; the shape's mask is every pixel whose
   projection on the background → shape-colour line is past the midpoint (anti-aliased edges count
   as half);
3. **position**: the mask's centroid, binned into the 3 × 3 grid;
4. **shape**: template matching: an ideal circle, square and up-pointing triangle with the blob's
   area and centroid are drawn, and the one with the highest soft IoU against the blob's
   (anti-aliased) coverage wins; that IoU is kept as ``Detection.shape_iou``;
5. **size**: the mask's area against the geometric mean of the small and large areas of that shape.

An image matches its caption when all five attributes agree.  On ground-truth renders of every
combination (with jitter) it scores 100 % (see the tests).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .shapes import (
    ATTRIBUTES,
    CELL_CENTRES,
    PALETTE,
    RADIUS,
    SQUARE_HALF_SIDE,
    TRIANGLE_CIRCUMRADIUS,
    Combo,
    combos_to_tensors,
    parse_caption,
)

MIN_AREA = 6.0  # pixels on a 64 × 64 canvas; fewer means "no shape found"


def _templates(cx: torch.Tensor, cy: torch.Tensor, area: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Soft renders ``(B, 3, H, W)`` of a circle, square and up-pointing triangle of the given area/centroid."""
    dx = (torch.arange(w, dtype=torch.float32) + 0.5)[None, None, :] - cx[:, None, None]
    dy = (torch.arange(h, dtype=torch.float32) + 0.5)[None, :, None] - cy[:, None, None]
    a = area[:, None, None]
    sd_circle = torch.sqrt(dx * dx + dy * dy) - torch.sqrt(a / math.pi)
    sd_square = torch.maximum(dx.abs(), dy.abs()) - torch.sqrt(a) / 2
    big_r = torch.sqrt(a / (3 * math.sqrt(3) / 4))
    c30, s30 = math.sqrt(3) / 2, 0.5
    sd_tri = torch.maximum(torch.maximum(dy + 0 * dx, -c30 * dx - s30 * dy), c30 * dx - s30 * dy) - big_r / 2
    return (0.5 - torch.stack([sd_circle, sd_square, sd_tri], 1)).clamp(0, 1)


def _reference_areas() -> torch.Tensor:
    """Threshold areas (per shape) between small and large, on a 64 × 64 canvas."""
    out = []
    for unit in (math.pi, (2 * SQUARE_HALF_SIDE) ** 2, 3 * math.sqrt(3) / 4 * TRIANGLE_CIRCUMRADIUS**2):
        small, large = unit * RADIUS[0] ** 2, unit * RADIUS[1] ** 2
        out.append(math.sqrt(small * large))
    return torch.tensor(out)


@dataclass
class Detection:
    """Attributes read from pixels: index tensors ``(B,)`` plus ``found`` (a shape was seen)."""

    shape: torch.Tensor
    colour: torch.Tensor
    size: torch.Tensor
    position: torch.Tensor
    background: torch.Tensor
    found: torch.Tensor
    area: torch.Tensor
    shape_iou: torch.Tensor


@dataclass
class AdherenceResult:
    """Per-image match (all five attributes right) and per-attribute agreement, all bool ``(B,)``."""

    match: torch.Tensor
    per_attribute: dict[str, torch.Tensor]
    detection: Detection

    @property
    def rate(self) -> float:
        return float(self.match.float().mean())

    def attribute_rates(self) -> dict[str, float]:
        return {k: float(v.float().mean()) for k, v in self.per_attribute.items()}


def _to_unit(images: torch.Tensor) -> torch.Tensor:
    x = images.detach().float().cpu()
    if x.ndim == 3:
        x = x[None]
    if x.shape[1] != 3 and x.shape[-1] == 3:  # (B, H, W, 3)
        x = x.permute(0, 3, 1, 2)
    if x.min() < -0.05:  # [-1, 1] → [0, 1]
        x = (x + 1) / 2
    return x.clamp(0, 1)


@torch.no_grad()
def detect_attributes(images: torch.Tensor) -> Detection:
    """Read shape, colour, size, position and background from images ``(B, 3, H, W)``.

    Accepts ``[0, 1]`` or ``[-1, 1]`` values (and ``(B, H, W, 3)`` layouts); any square size (the
    geometry is rescaled to the 64-pixel canvas).
    """
    x = _to_unit(images)
    b, _, h, w = x.shape
    scale = 64.0 / w
    pal = torch.tensor(PALETTE)  # (K, 3)
    k = pal.shape[0]
    pix = x.permute(0, 2, 3, 1).reshape(b, -1, 3)  # (B, P, 3)
    d2 = (pal * pal).sum(-1) - 2 * pix @ pal.T  # squared distance to each palette colour, minus |pix|²
    labels = d2.argmin(-1)  # (B, P)
    offsets = torch.arange(b)[:, None] * k
    counts = torch.bincount((labels + offsets).flatten(), minlength=b * k).view(b, k)  # (B, K)
    background = counts.argmax(1)
    counts_fg = counts.clone()
    counts_fg[torch.arange(b), background] = -1
    colour = counts_fg.argmax(1)

    bgc, fgc = pal[background][:, None], pal[colour][:, None]  # (B, 1, 3)
    d = fgc - bgc
    proj = ((pix - bgc) * d).sum(-1) / (d * d).sum(-1).clamp_min(1e-6)  # 0 at bg, 1 at fg
    mask = (proj > 0.5).reshape(b, h, w).float()
    area = mask.sum((1, 2)) * scale**2
    found = area >= MIN_AREA

    ys = torch.arange(h, dtype=torch.float32) + 0.5
    xs = torch.arange(w, dtype=torch.float32) + 0.5
    m_sum = mask.sum((1, 2)).clamp_min(1e-6)
    cy = (mask.sum(2) * ys).sum(1) / m_sum * scale
    cx = (mask.sum(1) * xs).sum(1) / m_sum * scale
    edges = torch.tensor([(CELL_CENTRES[0] + CELL_CENTRES[1]) / 2, (CELL_CENTRES[1] + CELL_CENTRES[2]) / 2])
    row = torch.bucketize(cy, edges)
    col = torch.bucketize(cx, edges)
    position = row * 3 + col

    # Shape: the ideal circle, square and triangle with the blob's area and centroid; the one with the
    # highest (soft) IoU against the blob wins.
    soft = proj.clamp(0, 1).reshape(b, h, w)
    soft = torch.where(soft > 0.15, soft, torch.zeros_like(soft))
    s_area = soft.sum((1, 2)).clamp_min(1e-6)
    scy = (soft.sum(2) * ys).sum(1) / s_area
    scx = (soft.sum(1) * xs).sum(1) / s_area
    templates = _templates(scx, scy, s_area, h, w)  # (B, 3, H, W)
    inter = torch.minimum(templates, soft[:, None]).sum((2, 3))
    union = torch.maximum(templates, soft[:, None]).sum((2, 3)).clamp_min(1e-6)
    iou = inter / union  # (B, 3)
    shape_iou, shape = iou.max(1)
    size = (area > _reference_areas()[shape]).long()
    return Detection(shape, colour, size, position, background, found, area, shape_iou)


def _targets(
    targets: Sequence[str] | Sequence[Combo] | dict[str, torch.Tensor],
) -> dict[str, torch.Tensor]:
    if isinstance(targets, dict):
        return {a: targets[a].detach().cpu().long() for a in ATTRIBUTES}
    combos = [parse_caption(t) if isinstance(t, str) else t for t in targets]
    return combos_to_tensors(combos)


def score_adherence(
    images: torch.Tensor,
    targets: Sequence[str] | Sequence[Combo] | dict[str, torch.Tensor],
) -> AdherenceResult:
    """Does each image show what its caption says?

    ``targets``: canonical captions, :class:`~.shapes.Combo` objects, or a dict of attribute index
    tensors.  Returns an :class:`AdherenceResult`; ``result.match`` is the per-image bool and
    ``result.rate`` the fraction of matching images (the adherence score).
    """
    det = detect_attributes(images)
    tgt = _targets(targets)
    per = {a: (getattr(det, a) == tgt[a]) & det.found for a in ATTRIBUTES}
    match = torch.stack(list(per.values())).all(0)
    return AdherenceResult(match=match, per_attribute=per, detection=det)
