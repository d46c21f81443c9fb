"""Procedural, captioned videos: the training data of the HunyuanVideo-class model.

Every video has :data:`NUM_FRAMES` (9) frames of 32 × 32 pixels and shows one coloured shape on a dark
grey background that does what its caption says over the clip::

    "a red square moving right"     "a blue circle growing"
    "a green triangle turning"      "a yellow square turning blue"

* attributes: shape (circle, square, triangle), colour (5 colours) and motion: ``moving left / right /
  up / down`` (12 px), ``growing`` / ``shrinking`` (radius 3.5 ↔ 7.5 px), ``turning`` (a rotation by
  45° for a square, 60° for a triangle; a circle never turns: nothing would show) or ``turning
  <colour>`` (the colour blends linearly into another palette colour).  160 combinations, of which a
  fixed 10 % (16, seeded permutation) is held out and never trained on.
* the motion is linear in the frame index (frame ``f`` is at ``t = f / 8``); jitter moves the start
  point (inside the range that keeps the shape in view), scales sizes ±10 % and colours ±0.04.
* rendering is vectorised torch (signed distance fields, one-pixel anti-aliasing), deterministic from
  a seeded CPU ``torch.Generator``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from lesa_embedded.common.captions import CaptionedCombos

FRAME_SIZE = 32
NUM_FRAMES = 9

SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
COLOURS: tuple[str, ...] = ("red", "green", "blue", "yellow", "white")
#: RGB in [0, 1], in the order of :data:`COLOURS`.
PALETTE: tuple[tuple[float, float, float], ...] = (
    (0.88, 0.12, 0.12),  # red
    (0.15, 0.72, 0.20),  # green
    (0.18, 0.30, 0.92),  # blue
    (0.96, 0.86, 0.12),  # yellow
    (0.95, 0.95, 0.95),  # white
)
BACKGROUND: tuple[float, float, float] = (0.22, 0.22, 0.22)

#: Motions without a target colour; ``turning <colour>`` is motion :data:`RECOLOUR`.
MOTIONS: tuple[str, ...] = (
    "moving left",
    "moving right",
    "moving up",
    "moving down",
    "growing",
    "shrinking",
    "turning",
)
RECOLOUR = len(MOTIONS)  # motion index of a colour change; the target colour is ``Combo.target``
#: Unit displacement (x, y) of the four "moving" motions (image y points down).
DIRECTIONS: tuple[tuple[int, int], ...] = ((-1, 0), (1, 0), (0, -1), (0, 1))

# Geometry in pixels of a 32 × 32 frame.
RADIUS = 5.0
TRAVEL = 12.0  # displacement of a "moving" shape from the first to the last frame
RADIUS_SMALL, RADIUS_LARGE = 3.5, 7.5  # "growing" goes small -> large, "shrinking" large -> small
TURN_ANGLE = (0.0, math.pi / 4, math.pi / 3)  # per shape: a square turns 45°, a triangle 60°
SQUARE_HALF_SIDE = 0.88  # × radius
TRIANGLE_CIRCUMRADIUS = 1.2  # × radius; the centroid sits on the object's centre
SIZE_JITTER = 0.10
COLOUR_JITTER = 0.04

HELDOUT_FRACTION = 0.10
HELDOUT_SEED = 20260303


@dataclass(frozen=True)
class Combo:
    """One caption's content: shape, colour, motion and (for a colour change) the target colour."""

    shape: int
    colour: int
    motion: int
    target: int = -1  # a colour index when ``motion == RECOLOUR``, else -1

    @property
    def caption(self) -> str:
        return caption(self)


def _enumerate_combos() -> tuple[Combo, ...]:
    """Every (shape, colour, motion) but a turning circle, and every colour change to another colour."""
    out = []
    for s in range(len(SHAPES)):
        for c in range(len(COLOURS)):
            for m in range(len(MOTIONS)):
                if MOTIONS[m] == "turning" and SHAPES[s] == "circle":
                    continue
                out.append(Combo(s, c, m))
            out.extend(Combo(s, c, RECOLOUR, t) for t in range(len(COLOURS)) if t != c)
    return tuple(out)


def caption(combo: Combo) -> str:
    """The canonical caption, e.g. ``"a red square moving right"`` or ``"a red square turning blue"``."""
    what = f"turning {COLOURS[combo.target]}" if combo.motion == RECOLOUR else MOTIONS[combo.motion]
    return f"a {COLOURS[combo.colour]} {SHAPES[combo.shape]} {what}"


#: Every combination, the fixed held-out split and the caption parser.
CAPTION_SET: CaptionedCombos[Combo] = CaptionedCombos(_enumerate_combos(), HELDOUT_FRACTION, HELDOUT_SEED, kind="motion")
ALL_COMBOS: tuple[Combo, ...] = CAPTION_SET.all
#: Indices into :data:`ALL_COMBOS`: training and held-out combinations (disjoint, fixed).
TRAIN_COMBOS, HELDOUT_COMBOS = CAPTION_SET.train, CAPTION_SET.heldout


def parse_caption(text: str) -> Combo:
    """Inverse of :func:`caption` (canonical captions only; raises ``ValueError`` otherwise)."""
    return CAPTION_SET.parse(text)


def train_captions() -> list[str]:
    return CAPTION_SET.captions("train")


def heldout_captions() -> list[str]:
    return CAPTION_SET.captions("heldout")


def combos_to_tensors(combos: Sequence[Combo], device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    keys = ("shape", "colour", "motion", "target")
    return {k: torch.tensor([getattr(c, k) for c in combos], dtype=torch.long, device=device) for k in keys}


def draw_jitter(n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """The per-video random jitter (CPU tensors in [-1, 1] or scales), drawn in a fixed order."""
    u = torch.rand(n, 10, generator=generator) * 2 - 1
    return {
        "pos": u[:, 0:2],  # start point within the motion's allowed range
        "scale": 1 + u[:, 2] * SIZE_JITTER,
        "col": u[:, 3:6] * COLOUR_JITTER,
        "col2": u[:, 6:9] * COLOUR_JITTER,
        "bg": u[:, 9:10] * COLOUR_JITTER,
    }


def no_jitter(n: int) -> dict[str, torch.Tensor]:
    return {
        "pos": torch.zeros(n, 2),
        "scale": torch.ones(n),
        "col": torch.zeros(n, 3),
        "col2": torch.zeros(n, 3),
        "bg": torch.zeros(n, 1),
    }


def trajectories(attrs: dict[str, torch.Tensor], jitter: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per video and frame ``(B, F)``: centre x, y, radius, rotation angle and colour blend weight."""
    motion, shape = attrs["motion"], attrs["shape"]
    n = motion.shape[0]
    dev = motion.device
    t = torch.linspace(0, 1, NUM_FRAMES, device=dev)[None]  # (1, F)
    c = FRAME_SIZE / 2
    moving = motion < 4
    direction = torch.tensor(DIRECTIONS + ((0, 0),) * (RECOLOUR + 1 - 4), device=dev, dtype=torch.float32)
    d = direction[motion]  # (B, 2)
    pos = jitter["pos"].to(dev)
    # a moving shape starts TRAVEL/2 behind the centre along its direction (±2 px), ±5 px across it;
    # any other shape sits within ±4 px of the centre
    start = torch.where(
        moving[:, None], c - d * TRAVEL / 2 + pos * torch.where(d != 0, 2.0, 5.0), c + pos * 4.0
    )
    xy = start[:, None, :] + d[:, None, :] * TRAVEL * t[..., None]  # (B, F, 2)
    scale = jitter["scale"].to(dev)[:, None]
    r0 = torch.full((n,), RADIUS, device=dev)
    r0 = torch.where(motion == 4, RADIUS_SMALL, torch.where(motion == 5, RADIUS_LARGE, r0))
    r1 = torch.where(motion == 4, RADIUS_LARGE, torch.where(motion == 5, RADIUS_SMALL, r0))
    radius = (r0[:, None] + (r1 - r0)[:, None] * t) * scale
    turn = torch.tensor(TURN_ANGLE, device=dev)[shape] * (motion == 6)
    angle = turn[:, None] * t
    blend = (motion == RECOLOUR).float()[:, None] * t
    return {"x": xy[..., 0], "y": xy[..., 1], "radius": radius, "angle": angle, "blend": blend.expand(n, -1)}


def shape_distance(shape: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Signed distance (pixels) to a circle / square / up-pointing triangle of radius ``r``; ``shape`` (N,)."""
    sd_circle = torch.sqrt(dx * dx + dy * dy) - r
    sd_square = torch.maximum(dx.abs(), dy.abs()) - SQUARE_HALF_SIDE * r
    big_r = TRIANGLE_CIRCUMRADIUS * r
    c30, s30 = 0.8660254037844386, 0.5
    sd_triangle = torch.maximum(torch.maximum(dy, -c30 * dx - s30 * dy), c30 * dx - s30 * dy) - big_r / 2
    sd = torch.stack(torch.broadcast_tensors(sd_circle, sd_square, sd_triangle), 1)  # (N, 3, H, W)
    n, _, h, w = sd.shape
    return sd.gather(1, shape[:, None, None, None].expand(n, 1, h, w)).squeeze(1)


def render(
    attrs: dict[str, torch.Tensor],
    jitter: dict[str, torch.Tensor] | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Render videos ``(B, 3, F, H, W)`` in ``[0, 1]`` for attribute index tensors ``(B,)``."""
    device = torch.device(device) if device is not None else attrs["shape"].device
    a = {k: v.to(device) for k, v in attrs.items()}
    n = a["shape"].shape[0]
    j = {k: v.to(device) for k, v in (jitter if jitter is not None else no_jitter(n)).items()}
    tr = trajectories(a, j)
    f, size = NUM_FRAMES, FRAME_SIZE
    coords = torch.arange(size, device=device, dtype=torch.float32) + 0.5
    dx = coords[None, None, None, :] - tr["x"][..., None, None]  # (B, F, 1, W)
    dy = coords[None, None, :, None] - tr["y"][..., None, None]  # (B, F, H, 1)
    cos, sin = torch.cos(tr["angle"])[..., None, None], torch.sin(tr["angle"])[..., None, None]
    ux, uy = cos * dx + sin * dy, -sin * dx + cos * dy  # shape-local coordinates (rotated back)
    shape = a["shape"][:, None].expand(n, f).reshape(-1)
    sd = shape_distance(shape, ux.reshape(n * f, size, size), uy.reshape(n * f, size, size),
                        tr["radius"].reshape(-1, 1, 1))  # fmt: skip
    cover = (0.5 - sd).clamp(0, 1).view(n, 1, f, size, size)
    pal = torch.tensor(PALETTE, device=device)
    target = a["target"].clamp(min=0)
    c0 = (pal[a["colour"]] + j["col"]).clamp(0, 1)
    c1 = (pal[target] + j["col2"]).clamp(0, 1)
    w = tr["blend"][:, None, :]  # (B, 1, F)
    fg = (c0[:, :, None] * (1 - w) + c1[:, :, None] * w)[..., None, None]  # (B, 3, F, 1, 1)
    bg = (torch.tensor(BACKGROUND, device=device)[None] + j["bg"]).clamp(0, 1)[:, :, None, None, None]
    return bg + cover * (fg - bg)


def sample_batch(
    n: int,
    split: str = "train",
    seed: int | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> tuple[torch.Tensor, dict[str, torch.Tensor], list[str]]:
    """``n`` random (video ``(3, F, H, W)`` in [0, 1], attributes, caption) from ``split`` (train/heldout/all)."""
    if generator is None:
        generator = torch.Generator().manual_seed(0 if seed is None else seed)
    pool = CAPTION_SET.pool(split)
    pick = torch.randint(len(pool), (n,), generator=generator)
    combos = [ALL_COMBOS[pool[i]] for i in pick.tolist()]
    jitter = draw_jitter(n, generator)
    attrs = combos_to_tensors(combos, device=device)
    return render(attrs, jitter, device=device), attrs, [c.caption for c in combos]


class TrainSampler:
    """Repeated sampling for training: ``next(n)`` → (videos in [-1, 1] on device, positions in the pool)."""

    def __init__(self, split: str = "train", seed: int = 0, device: torch.device | str = "cpu"):
        self.pool = CAPTION_SET.pool(split)
        self.generator = torch.Generator().manual_seed(seed)
        self.device = torch.device(device)
        combos = [ALL_COMBOS[i] for i in self.pool]
        self.attrs = combos_to_tensors(combos, device=self.device)
        self.captions = [c.caption for c in combos]

    def next(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        pick = torch.randint(len(self.pool), (n,), generator=self.generator)
        jitter = draw_jitter(n, self.generator)
        idx = pick.to(self.device)
        return render({k: v[idx] for k, v in self.attrs.items()}, jitter, device=self.device) * 2 - 1, idx
