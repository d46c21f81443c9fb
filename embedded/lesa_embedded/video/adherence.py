"""Analytic prompt-adherence scorer for the motion videos: per frame (colour, shape) and the motion.

It reads the caption back from the pixels of a video ``(B, F, 3, H, W)`` in [0, 1] (no learning,
deterministic):

1. **object mask per frame**: a pixel's contrast is its distance to the background colour; the frame's
   object contrast is the mean of its 4 strongest pixels; the mask is the pixels above half of it
   (nothing is found when the object contrast is below :data:`MIN_CONTRAST` or the mask is under
   :data:`MIN_AREA` pixels).  Area, centroid and mean colour (pixels above 3/4 of the contrast) follow.
2. **colour per frame**: the nearest palette colour to the mean colour.  A caption's colour must hold
   in every frame; for ``turning <colour>`` the first frame shows the caption colour and the last the
   target colour.
3. **shape per frame**: ``area / (r_max + 0.5)²`` with ``r_max`` the farthest mask pixel from the
   centroid: a rotation- and scale-invariant compactness, π for a circle, 2 for a square, 1.30 for an
   equilateral triangle (ground truth sits at 2.9–3.4 / 1.8–2.2 / 1.2–1.5); the shape must hold in at
   least 2/3 of the frames (a small shape at 32 px is a few pixels wide).
4. **motion**, first frame against last: centroid displacement ``d`` (``moving <dir>``: at least
   :data:`MIN_TRAVEL` along the direction and more than twice across; otherwise ``|d|`` below
   :data:`MAX_DRIFT`); area ratio (``growing`` ≥ :data:`GROW_RATIO`, ``shrinking`` ≤ 1 /
   :data:`GROW_RATIO`, otherwise within ``[1/STABLE_RATIO, STABLE_RATIO]``); rotation: the IoU of the
   last frame's soft mask with the first frame's, shifted onto the same centroid (bilinear), is below
   :data:`TURN_IOU` for ``turning`` and above it for every other caption whose size does not change.

A video matches its caption when colour, shape and motion all hold.  On ground-truth renders of every
combination (with jitter) it scores 100 % (tests/embedded/test_video_data.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .motions import (
    DIRECTIONS,
    MOTIONS,
    PALETTE,
    RECOLOUR,
    SQUARE_HALF_SIDE,
    TRIANGLE_CIRCUMRADIUS,
    Combo,
    parse_caption,
    shape_distance,
)

MIN_CONTRAST = 0.2
MIN_AREA = 6.0  # pixels (a shrunken triangle at the end of "shrinking" covers ~ 15)
MIN_TRAVEL = 6.0  # pixels, of the 12 a moving shape travels
MAX_DRIFT = 4.0
GROW_RATIO = 1.8  # ground truth: (7.5 / 3.5)² ≈ 4.6
STABLE_RATIO = 1.5
TURN_IOU = 0.8  # ground truth: a square turned 45° ≈ 0.7, a triangle turned 60° ≈ 0.5, unturned ≈ 1
SHAPE_FRAMES = 2 / 3
#: Area of a circle / square / triangle of radius r (as :func:`.motions.shape_distance` draws them), in r².
SHAPE_AREA_PER_R2 = (math.pi, 4 * SQUARE_HALF_SIDE**2, 3 * math.sqrt(3) / 4 * TRIANGLE_CIRCUMRADIUS**2)


@dataclass
class FrameReadout:
    """Per video and frame ``(B, F)``: found, area, centroid, colour index, shape index; soft masks."""

    found: torch.Tensor
    area: torch.Tensor
    cx: torch.Tensor
    cy: torch.Tensor
    colour: torch.Tensor
    shape: torch.Tensor
    shape_iou: torch.Tensor  # (B, F, 3) best IoU with a circle / square / triangle template
    soft: torch.Tensor  # (B, F, H, W) coverage in [0, 1]


def _shape_iou(soft: torch.Tensor, area: torch.Tensor, cx: torch.Tensor, cy: torch.Tensor) -> torch.Tensor:
    """Best soft IoU ``(N, 3)`` of each mask with a circle / square / triangle of its area and centroid,
    over rotations in steps of 10° (a turning shape is matched at its angle)."""
    n, h, w = soft.shape
    dx = (torch.arange(w, dtype=torch.float32) + 0.5)[None, None, :] - cx[:, None, None]
    dy = (torch.arange(h, dtype=torch.float32) + 0.5)[None, :, None] - cy[:, None, None]
    dx, dy = torch.broadcast_tensors(dx, dy)
    best = torch.zeros(n, 3)
    for k, per_r2 in enumerate(SHAPE_AREA_PER_R2):
        r = torch.sqrt(area / per_r2)[:, None, None]
        for deg in range(0, 120, 10):
            a = torch.tensor(deg * torch.pi / 180)
            ux, uy = torch.cos(a) * dx + torch.sin(a) * dy, -torch.sin(a) * dx + torch.cos(a) * dy
            tpl = (0.5 - shape_distance(torch.full((n,), k), ux, uy, r)).clamp(0, 1)
            iou = torch.minimum(tpl, soft).sum((-2, -1)) / torch.maximum(tpl, soft).sum((-2, -1)).clamp(
                min=1e-6
            )
            best[:, k] = torch.maximum(best[:, k], iou)
            if k == 0:
                break  # a circle has no angle
    return best


def read_frames(videos: torch.Tensor) -> FrameReadout:
    """Object readout of every frame of ``videos`` ``(B, F, 3, H, W)`` in [0, 1]."""
    v = videos.detach().float().cpu().clamp(0, 1)
    b, f, _, h, w = v.shape
    bg = v.flatten(3).median(-1).values[..., None, None]  # (B, F, 3, 1, 1): the object covers < 1/4
    dist = (v - bg).norm(dim=2)  # (B, F, H, W)
    contrast = dist.flatten(2).topk(4, dim=-1).values.mean(-1)  # (B, F)
    c = contrast[..., None, None].clamp(min=1e-6)
    mask = (dist > 0.5 * c).float()
    soft = ((dist / c - 0.1) / 0.8).clamp(0, 1)
    area = soft.sum((-2, -1))
    xs = torch.arange(w, dtype=torch.float32) + 0.5
    ys = torch.arange(h, dtype=torch.float32) + 0.5
    safe = area.clamp(min=1e-6)
    cx = (soft * xs).sum((-2, -1)) / safe
    cy = (soft * ys[:, None]).sum((-2, -1)) / safe
    core = (dist > 0.75 * c).float()
    mean_col = (v * core[:, :, None]).sum((-2, -1)) / core.sum((-2, -1))[..., None].clamp(min=1)
    colour = torch.cdist(mean_col.view(-1, 3), torch.tensor(PALETTE)).argmin(-1).view(b, f)
    ious = _shape_iou(soft.view(b * f, h, w), area.view(-1), cx.view(-1), cy.view(-1)).view(b, f, 3)
    shape = ious.argmax(-1)
    found = (contrast > MIN_CONTRAST) & (mask.sum((-2, -1)) >= MIN_AREA)
    return FrameReadout(found, area, cx, cy, colour, shape, ious, soft)


def _shifted(mask: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    """``mask`` ``(B, H, W)`` moved by (dx, dy) pixels, bilinear, zeros outside."""
    b, h, w = mask.shape
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1
    theta[:, 0, 2] = -dx * 2 / w
    theta[:, 1, 2] = -dy * 2 / h
    grid = F.affine_grid(theta, [b, 1, h, w], align_corners=False)
    return F.grid_sample(mask[:, None], grid, align_corners=False, padding_mode="zeros")[:, 0]


@dataclass
class VideoAdherence:
    """Per video ``(B,)`` booleans (``colour``, ``shape``, ``motion``, ``match``) and the measurements."""

    colour: torch.Tensor
    shape: torch.Tensor
    motion: torch.Tensor
    match: torch.Tensor
    displacement: torch.Tensor  # (B, 2) centroid last − first, pixels
    area_ratio: torch.Tensor
    turn_iou: torch.Tensor
    readout: FrameReadout


def score_adherence(videos: torch.Tensor, prompts: Sequence[str | Combo]) -> VideoAdherence:
    """Score ``videos`` ``(B, F, 3, H, W)`` in [0, 1] against their canonical captions."""
    combos = [p if isinstance(p, Combo) else parse_caption(p) for p in prompts]
    if len(combos) != videos.shape[0]:
        raise ValueError(f"{videos.shape[0]} videos but {len(combos)} prompts")
    rd = read_frames(videos)
    shape = torch.tensor([c.shape for c in combos])
    colour = torch.tensor([c.colour for c in combos])
    motion = torch.tensor([c.motion for c in combos])
    target = torch.tensor([c.target if c.motion == RECOLOUR else c.colour for c in combos])
    found_all = rd.found.all(1)

    recolour = motion == RECOLOUR
    same_colour = (rd.colour == colour[:, None]).all(1)
    ends = (rd.colour[:, 0] == colour) & (rd.colour[:, -1] == target)
    colour_ok = found_all & torch.where(recolour, ends, same_colour)
    shape_ok = found_all & ((rd.shape == shape[:, None]).float().mean(1) >= SHAPE_FRAMES - 1e-6)

    disp = torch.stack([rd.cx[:, -1] - rd.cx[:, 0], rd.cy[:, -1] - rd.cy[:, 0]], -1)
    dirs = torch.tensor(DIRECTIONS + ((0, 0),) * (len(MOTIONS) + 1 - 4), dtype=torch.float32)[motion]
    along = (disp * dirs).sum(-1)
    across = (disp - along[:, None] * dirs).norm(dim=-1)
    moving = motion < 4
    move_ok = torch.where(moving, (along >= MIN_TRAVEL) & (across * 2 < along), disp.norm(dim=-1) < MAX_DRIFT)
    ratio = rd.area[:, -1] / rd.area[:, 0].clamp(min=1)
    growing, shrinking = motion == MOTIONS.index("growing"), motion == MOTIONS.index("shrinking")
    size_ok = torch.where(
        growing,
        ratio >= GROW_RATIO,
        torch.where(
            shrinking, ratio <= 1 / GROW_RATIO, (ratio <= STABLE_RATIO) & (ratio >= 1 / STABLE_RATIO)
        ),
    )
    first = _shifted(rd.soft[:, 0], disp[:, 0], disp[:, 1])
    last = rd.soft[:, -1]
    iou = torch.minimum(first, last).sum((-2, -1)) / torch.maximum(first, last).sum((-2, -1)).clamp(min=1e-6)
    turning = motion == MOTIONS.index("turning")
    turn_ok = torch.where(turning, iou < TURN_IOU, (iou >= TURN_IOU) | growing | shrinking)
    motion_ok = found_all & move_ok & size_ok & turn_ok
    return VideoAdherence(
        colour=colour_ok,
        shape=shape_ok,
        motion=motion_ok,
        match=colour_ok & shape_ok & motion_ok,
        displacement=disp,
        area_ratio=ratio,
        turn_iou=iou,
        readout=rd,
    )
