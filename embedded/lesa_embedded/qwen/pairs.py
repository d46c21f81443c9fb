"""Procedural, captioned two-object images: the training data of the Qwen-Image-class model.

Every 40 × 40 image shows two shapes on a dark grey background, placed side by side or one above the
other, and the caption names both objects and their relation::

    "a red circle left of a blue square"
    "a yellow triangle above a green circle"

* attributes per object: shape (circle, square, triangle) and colour (6 colours; the two objects
  always differ in colour), plus the relation (``left of`` / ``above``): 18 × 15 × 2 = **540**
  combinations, of which a fixed 10 % (54, seeded permutation) is held out and never trained on.
* jitter: the pair's centre moves by ±4 px across the relation axis and ±2 px along it, each object
  by ±1 px more, sizes ±10 %, colours ±0.04, so a caption fixes the content, not the pixels.
* rendering is vectorised torch (signed distance fields, one-pixel anti-aliasing), deterministic from
  a seeded CPU ``torch.Generator`` (the same images on any device).

Richer than the FLUX-class data (:mod:`lesa_embedded.flux.shapes`, one object): the text encoder has
to bind each colour to its shape and the order of the two noun phrases to a spatial relation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from lesa_embedded.common.captions import CaptionedCombos, enumerate_combos

IMAGE_SIZE = 40

SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
COLOURS: tuple[str, ...] = ("red", "green", "blue", "yellow", "white", "purple")
#: RGB in [0, 1], in the order of :data:`COLOURS`.
PALETTE: tuple[tuple[float, float, float], ...] = (
    (0.88, 0.12, 0.12),  # red
    (0.15, 0.72, 0.20),  # green
    (0.18, 0.30, 0.92),  # blue
    (0.96, 0.86, 0.12),  # yellow
    (0.95, 0.95, 0.95),  # white
    (0.62, 0.20, 0.80),  # purple
)
BACKGROUND: tuple[float, float, float] = (0.22, 0.22, 0.22)
RELATIONS: tuple[str, ...] = ("left of", "above")

#: Attribute names of a combination, in index order.
ATTRIBUTES: tuple[str, ...] = ("shape1", "colour1", "shape2", "colour2", "relation")

# Geometry in pixels of a 40 × 40 image.
HALF_GAP = 8.5  # distance of each object's centre from the pair's centre along the relation axis
PAIR_JITTER_ACROSS = 4.0
PAIR_JITTER_ALONG = 2.0
OBJECT_JITTER = 1.0
RADIUS = 6.0
SIZE_JITTER = 0.10
COLOUR_JITTER = 0.04
SQUARE_HALF_SIDE = 0.88  # × radius
TRIANGLE_CIRCUMRADIUS = 1.2  # × radius; the centroid sits on the object's centre

HELDOUT_FRACTION = 0.10
HELDOUT_SEED = 20260302


@dataclass(frozen=True)
class Combo:
    """One caption's content: (shape, colour) of the first and second object and their relation."""

    shape1: int
    colour1: int
    shape2: int
    colour2: int
    relation: int

    @property
    def caption(self) -> str:
        return caption(self)

    def as_dict(self) -> dict[str, int]:
        return {a: getattr(self, a) for a in ATTRIBUTES}


def caption(combo: Combo | dict[str, int]) -> str:
    """The canonical caption, e.g. ``"a red circle left of a blue square"``."""
    d = combo.as_dict() if isinstance(combo, Combo) else combo
    return (
        f"a {COLOURS[d['colour1']]} {SHAPES[d['shape1']]} {RELATIONS[d['relation']]} "
        f"a {COLOURS[d['colour2']]} {SHAPES[d['shape2']]}"
    )


CAPTION_SET: CaptionedCombos[Combo] = CaptionedCombos(
    enumerate_combos(
        Combo, (len(SHAPES), len(COLOURS), len(SHAPES), len(COLOURS), len(RELATIONS)), keep=lambda s1, c1, s2, c2, r: c1 != c2
    ),
    HELDOUT_FRACTION,
    HELDOUT_SEED,
    kind="two-object",
)
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
    return {
        a: torch.tensor([getattr(c, a) for c in combos], dtype=torch.long, device=device) for a in ATTRIBUTES
    }


def draw_jitter(n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """The per-image random jitter (CPU tensors), drawn in a fixed order from ``generator``."""
    u = torch.rand(n, 16, generator=generator) * 2 - 1
    return {
        "pair": u[:, 0:2],  # (across, along) in [-1, 1]
        "obj": u[:, 2:6].view(n, 2, 2) * OBJECT_JITTER,
        "scale": 1 + u[:, 6:8] * SIZE_JITTER,
        "col": u[:, 8:14].view(n, 2, 3) * COLOUR_JITTER,
        "bg": u[:, 14:16].mean(1, keepdim=True) * COLOUR_JITTER,
    }


def no_jitter(n: int) -> dict[str, torch.Tensor]:
    return {
        "pair": torch.zeros(n, 2),
        "obj": torch.zeros(n, 2, 2),
        "scale": torch.ones(n, 2),
        "col": torch.zeros(n, 2, 3),
        "bg": torch.zeros(n, 1),
    }


def object_centres(relation: torch.Tensor, jitter: dict[str, torch.Tensor]) -> torch.Tensor:
    """Centres ``(B, 2, 2)`` as (x, y) of the first and second object, in 40-pixel canvas units."""
    c = IMAGE_SIZE / 2
    across = c + jitter["pair"][:, 0] * PAIR_JITTER_ACROSS
    along = c + jitter["pair"][:, 1] * PAIR_JITTER_ALONG
    first_along, second_along = along - HALF_GAP, along + HALF_GAP
    horizontal = relation == 0  # "left of": the pair is side by side along x
    x1 = torch.where(horizontal, first_along, across)
    y1 = torch.where(horizontal, across, first_along)
    x2 = torch.where(horizontal, second_along, across)
    y2 = torch.where(horizontal, across, second_along)
    centres = torch.stack([torch.stack([x1, y1], -1), torch.stack([x2, y2], -1)], 1)
    return centres + jitter["obj"].to(centres.device)


def shape_distance(shape: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Signed distance (pixels) to a circle / square / up-pointing triangle of radius ``r``, per image."""
    sd_circle = torch.sqrt(dx * dx + dy * dy) - r
    sd_square = torch.maximum(dx.abs(), dy.abs()) - SQUARE_HALF_SIDE * r
    big_r = TRIANGLE_CIRCUMRADIUS * r
    c30, s30 = 0.8660254037844386, 0.5
    sd_triangle = (
        torch.maximum(torch.maximum(dy + 0 * dx, -c30 * dx - s30 * dy), c30 * dx - s30 * dy) - big_r / 2
    )
    sd = torch.stack(torch.broadcast_tensors(sd_circle, sd_square, sd_triangle), 1)  # (B, 3, H, W)
    n, _, h, w = sd.shape
    return sd.gather(1, shape[:, None, None, None].expand(n, 1, h, w)).squeeze(1)


def render(
    attrs: dict[str, torch.Tensor],
    jitter: dict[str, torch.Tensor] | None = None,
    size: int = IMAGE_SIZE,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Render images ``(B, 3, size, size)`` in ``[0, 1]`` for attribute index tensors ``(B,)``."""
    device = torch.device(device) if device is not None else attrs["shape1"].device
    a = {k: v.to(device) for k, v in attrs.items()}
    n = a["shape1"].shape[0]
    j = {k: v.to(device) for k, v in (jitter if jitter is not None else no_jitter(n)).items()}
    s = size / IMAGE_SIZE
    centres = object_centres(a["relation"], j) * s  # (B, 2, 2)
    coords = torch.arange(size, device=device, dtype=torch.float32) + 0.5
    pal = torch.tensor(PALETTE, device=device)
    bg = (torch.tensor(BACKGROUND, device=device)[None] + j["bg"]).clamp(0, 1)[:, :, None, None]
    img = bg.expand(n, 3, size, size).clone()
    for k, (shape_key, colour_key) in enumerate((("shape1", "colour1"), ("shape2", "colour2"))):
        dx = coords[None, None, :] - centres[:, k, 0, None, None]
        dy = coords[None, :, None] - centres[:, k, 1, None, None]
        r = (RADIUS * s * j["scale"][:, k])[:, None, None]
        cover = (0.5 - shape_distance(a[shape_key], dx, dy, r) / s).clamp(0, 1)[:, None]
        fg = (pal[a[colour_key]] + j["col"][:, k]).clamp(0, 1)[:, :, None, None]
        img = img + cover * (fg - img)
    return img


def sample_batch(
    n: int,
    split: str = "train",
    seed: int | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    size: int = IMAGE_SIZE,
) -> tuple[torch.Tensor, dict[str, torch.Tensor], list[str]]:
    """``n`` random (image in [0, 1], attributes, caption) triples from ``split`` ("train"/"heldout"/"all")."""
    if generator is None:
        generator = torch.Generator().manual_seed(0 if seed is None else seed)
    pool = CAPTION_SET.pool(split)
    pick = torch.randint(len(pool), (n,), generator=generator)
    combos = [ALL_COMBOS[pool[i]] for i in pick.tolist()]
    jitter = draw_jitter(n, generator)
    attrs = combos_to_tensors(combos, device=device)
    return render(attrs, jitter, size=size, device=device), attrs, [c.caption for c in combos]


class TrainSampler:
    """Repeated sampling for training: ``next(n)`` → (images in [-1, 1] on device, positions in ``pool``)."""

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
