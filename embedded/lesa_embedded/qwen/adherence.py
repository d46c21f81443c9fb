"""Analytic prompt-adherence scorer for the two-object data, per object and for the relation.

It reads the caption's content back from the pixels (no learning, deterministic):

1. every pixel gets the nearest of the six object colours, the background colour and the grey of a
   white object's edge;
2. **each object** is looked for by its caption colour: its mask is the pixels of that colour; it is
   *found* when the mask covers at least :data:`MIN_AREA` pixels (40-pixel canvas);
3. **shape** of each object: an ideal circle, square and up-pointing triangle with the blob's area
   and centroid are drawn; the one with the highest soft IoU against the blob's coverage (its
   projection on the background → colour line, near the blob) wins;
4. **relation**: from the first object's centroid to the second's, ``left of`` needs
   ``dx > |dy|``, ``above`` needs ``dy > |dx|`` (y grows downwards).

An image matches its caption when both objects are found with the right shapes and the relation
holds.  Per-attribute agreement (``colour1``/``shape1``/``colour2``/``shape2``/``relation``) and
per-object agreement (``object1``, ``object2``: colour and shape) are reported too.  On ground-truth
renders of every combination (with jitter) it scores 100 % (see tests/embedded/test_qwen_data.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .pairs import BACKGROUND, COLOURS, PALETTE, Combo, combos_to_tensors, parse_caption

MIN_AREA = 20.0  # pixels on a 40 × 40 canvas (a small triangle covers ~55)
WINDOW = 11.0  # pixels around the blob's centroid that count for its shape
CANVAS = 40.0
WHITE = COLOURS.index("white")


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


@dataclass
class ObjectDetection:
    """One object looked up by its caption colour: ``found``, ``shape`` index, centroid, area (``(B,)``)."""

    found: torch.Tensor
    shape: torch.Tensor
    cx: torch.Tensor
    cy: torch.Tensor
    area: torch.Tensor
    shape_iou: torch.Tensor


@dataclass
class PairAdherence:
    """Per-image match and per-attribute / per-object agreement (bool ``(B,)``)."""

    match: torch.Tensor
    per_attribute: dict[str, torch.Tensor]
    objects: tuple[ObjectDetection, ObjectDetection]

    @property
    def rate(self) -> float:
        return float(self.match.float().mean())

    def attribute_rates(self) -> dict[str, float]:
        return {k: float(v.float().mean()) for k, v in self.per_attribute.items()}


def _to_unit(images: torch.Tensor) -> torch.Tensor:
    x = images.detach().float().cpu()
    if x.ndim == 3:
        x = x[None]
    if x.ndim == 5:  # (B, C, 1, H, W) from a video VAE
        x = x[:, :, 0]
    if x.shape[1] != 3 and x.shape[-1] == 3:
        x = x.permute(0, 3, 1, 2)
    if x.min() < -0.05:
        x = (x + 1) / 2
    return x.clamp(0, 1)


def detect_object(images: torch.Tensor, colour: torch.Tensor) -> ObjectDetection:
    """Find the object of palette colour ``colour`` (``(B,)``) in images ``(B, 3, H, W)`` in [0, 1]."""
    x = _to_unit(images)
    b, _, h, w = x.shape
    scale = CANVAS / w
    # the palette, the background, and the grey of a white object's anti-aliased edge (which would
    # otherwise be read as purple)
    bg_label, grey_label = len(PALETTE), len(PALETTE) + 1
    grey = tuple((w + b) / 2 for w, b in zip(PALETTE[WHITE], BACKGROUND, strict=True))
    colours = torch.tensor((*PALETTE, BACKGROUND, grey))
    pix = x.permute(0, 2, 3, 1).reshape(b, -1, 3)
    labels = ((pix[:, :, None] - colours[None, None]) ** 2).sum(-1).argmin(-1)  # (B, P)
    mask = (labels == colour[:, None]).reshape(b, h, w).float()
    area = mask.sum((1, 2)) * scale**2
    ys = torch.arange(h, dtype=torch.float32) + 0.5
    xs = torch.arange(w, dtype=torch.float32) + 0.5
    m = mask.sum((1, 2)).clamp_min(1e-6)
    cy = (mask.sum(2) * ys).sum(1) / m
    cx = (mask.sum(1) * xs).sum(1) / m
    # soft coverage near the blob: projection on the background -> object-colour line
    bgc, fgc = colours[bg_label][None, None], colours[colour][:, None]
    d = fgc - bgc
    proj = (((pix - bgc) * d).sum(-1) / (d * d).sum(-1).clamp_min(1e-6)).clamp(0, 1)
    near = (
        (labels == colour[:, None])
        | (labels == bg_label)
        | ((labels == grey_label) & (colour[:, None] == WHITE))
    )
    soft = torch.where(near & (proj > 0.15), proj, torch.zeros_like(proj)).reshape(b, h, w)
    window = ((xs[None, None, :] - cx[:, None, None]).abs() <= WINDOW / scale) & (
        (ys[None, :, None] - cy[:, None, None]).abs() <= WINDOW / scale
    )
    soft = soft * window
    s_area = soft.sum((1, 2)).clamp_min(1e-6)
    scy = (soft.sum(2) * ys).sum(1) / s_area
    scx = (soft.sum(1) * xs).sum(1) / s_area
    templates = _templates(scx, scy, s_area, h, w)
    iou = torch.minimum(templates, soft[:, None]).sum((2, 3)) / torch.maximum(templates, soft[:, None]).sum(
        (2, 3)
    ).clamp_min(1e-6)
    shape_iou, shape = iou.max(1)
    return ObjectDetection(area >= MIN_AREA, shape, cx * scale, cy * scale, area, shape_iou)


def _targets(targets: Sequence[str] | Sequence[Combo] | dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if isinstance(targets, dict):
        return {k: v.detach().cpu().long() for k, v in targets.items()}
    return combos_to_tensors([parse_caption(t) if isinstance(t, str) else t for t in targets])


@torch.no_grad()
def score_adherence(
    images: torch.Tensor, targets: Sequence[str] | Sequence[Combo] | dict[str, torch.Tensor]
) -> PairAdherence:
    """Does each image show its caption (both objects with their shapes, in the named relation)?"""
    tgt = _targets(targets)
    o1 = detect_object(images, tgt["colour1"])
    o2 = detect_object(images, tgt["colour2"])
    dx, dy = o2.cx - o1.cx, o2.cy - o1.cy
    relation_ok = torch.where(tgt["relation"] == 0, dx > dy.abs(), dy > dx.abs()) & o1.found & o2.found
    per = {
        "colour1": o1.found,
        "shape1": o1.found & (o1.shape == tgt["shape1"]),
        "colour2": o2.found,
        "shape2": o2.found & (o2.shape == tgt["shape2"]),
        "relation": relation_ok,
    }
    per["object1"] = per["shape1"]
    per["object2"] = per["shape2"]
    match = per["object1"] & per["object2"] & relation_ok
    return PairAdherence(match=match, per_attribute=per, objects=(o1, o2))
