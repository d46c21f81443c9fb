"""Procedural, captioned shape images: the training data of the embedded default model.

Every image shows one shape (circle, square or triangle) of one colour and one size, placed in one
cell of a 3 × 3 grid, on a flat background of another colour.  The caption names all five
attributes, e.g. ``"a small red circle at the top left on a blue background"``, so a caption
determines the image's content up to a small jitter (position ±1.5 px, size ±10 %, colour ±0.04).

* Rendering is vectorised torch (signed distance fields with one-pixel anti-aliasing), so a batch of
  thousands of images renders in milliseconds on a GPU and fast enough on a CPU.
* Everything is deterministic from a seed: all random numbers are drawn from a CPU
  ``torch.Generator`` and then moved to the target device, so CPU and GPU give the same images (up
  to float rounding).
* A fixed 10 % of the attribute combinations (:data:`HELDOUT_COMBOS`) is never used for training
  (:data:`TRAIN_COMBOS`); prompt adherence is evaluated on those.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from lesa_embedded.common.captions import CaptionedCombos, enumerate_combos

IMAGE_SIZE = 64

SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
SIZES: tuple[str, ...] = ("small", "large")
COLOURS: tuple[str, ...] = ("red", "green", "blue", "yellow", "purple", "cyan", "white", "black")
#: RGB in [0, 1], in the order of :data:`COLOURS`.
PALETTE: tuple[tuple[float, float, float], ...] = (
    (0.86, 0.12, 0.12),  # red
    (0.15, 0.68, 0.20),  # green
    (0.14, 0.24, 0.86),  # blue
    (0.95, 0.85, 0.12),  # yellow
    (0.56, 0.18, 0.74),  # purple
    (0.12, 0.80, 0.86),  # cyan
    (0.95, 0.95, 0.95),  # white
    (0.08, 0.08, 0.08),  # black
)
#: Grid cells, row-major (index = 3 * row + col); row 0 is the top.
POSITIONS: tuple[str, ...] = (
    "top left", "top", "top right",
    "left", "center", "right",
    "bottom left", "bottom", "bottom right",
)  # fmt: skip
_POSITION_PHRASES: tuple[str, ...] = (
    "at the top left", "at the top", "at the top right",
    "at the left", "in the center", "at the right",
    "at the bottom left", "at the bottom", "at the bottom right",
)  # fmt: skip

#: Attribute names, in the order used for combo indices.
ATTRIBUTES: tuple[str, ...] = ("shape", "colour", "size", "position", "background")

# Geometry in pixels of a 64 × 64 image.
CELL_CENTRES: tuple[float, float, float] = (16.0, 32.0, 48.0)
POSITION_JITTER = 1.5
RADIUS: tuple[float, float] = (5.5, 11.0)  # small, large
SIZE_JITTER = 0.10  # multiplicative, uniform in [1 - j, 1 + j]
COLOUR_JITTER = 0.04
SQUARE_HALF_SIDE = 0.9  # × radius
TRIANGLE_CIRCUMRADIUS = 1.2  # × radius; the centroid sits on the cell centre

HELDOUT_FRACTION = 0.10
HELDOUT_SEED = 20260226


# ------------------------------------------------------------------ combos and captions


@dataclass(frozen=True)
class Combo:
    """One attribute combination (indices into the attribute tuples)."""

    shape: int
    colour: int
    size: int
    position: int
    background: int

    @property
    def caption(self) -> str:
        return caption(self)

    def as_dict(self) -> dict[str, int]:
        return {a: getattr(self, a) for a in ATTRIBUTES}


def caption(combo: Combo | dict[str, int]) -> str:
    """The canonical caption, e.g. ``"a small red circle at the top left on a blue background"``."""
    d = combo.as_dict() if isinstance(combo, Combo) else combo
    return (
        f"a {SIZES[d['size']]} {COLOURS[d['colour']]} {SHAPES[d['shape']]} "
        f"{_POSITION_PHRASES[d['position']]} on a {COLOURS[d['background']]} background"
    )


CAPTION_SET: CaptionedCombos[Combo] = CaptionedCombos(
    enumerate_combos(
        Combo, (len(SHAPES), len(COLOURS), len(SIZES), len(POSITIONS), len(COLOURS)), keep=lambda s, c, z, p, b: b != c
    ),
    HELDOUT_FRACTION,
    HELDOUT_SEED,
    kind="shapes",
)
ALL_COMBOS: tuple[Combo, ...] = CAPTION_SET.all
#: Indices into :data:`ALL_COMBOS`: training combos and held-out combos (disjoint, fixed).
TRAIN_COMBOS, HELDOUT_COMBOS = CAPTION_SET.train, CAPTION_SET.heldout


def parse_caption(text: str) -> Combo:
    """Inverse of :func:`caption` (exact canonical captions only; raises ``ValueError`` otherwise)."""
    return CAPTION_SET.parse(text)


def train_captions() -> list[str]:
    return CAPTION_SET.captions("train")


def heldout_captions() -> list[str]:
    return CAPTION_SET.captions("heldout")


def combos_to_tensors(combos: Sequence[Combo], device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    return {
        a: torch.tensor([getattr(c, a) for c in combos], dtype=torch.long, device=device) for a in ATTRIBUTES
    }


# ------------------------------------------------------------------ rendering


def _palette(device: torch.device | str) -> torch.Tensor:
    return torch.tensor(PALETTE, dtype=torch.float32, device=device)


def draw_jitter(n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """The per-image random jitter (CPU tensors), drawn in a fixed order from ``generator``."""
    u = torch.rand(n, 9, generator=generator)
    return {
        "dxy": (u[:, 0:2] * 2 - 1) * POSITION_JITTER,
        "scale": 1 + (u[:, 2] * 2 - 1) * SIZE_JITTER,
        "fg": (u[:, 3:6] * 2 - 1) * COLOUR_JITTER,
        "bg": (u[:, 6:9] * 2 - 1) * COLOUR_JITTER,
    }


def no_jitter(n: int) -> dict[str, torch.Tensor]:
    return {
        "dxy": torch.zeros(n, 2),
        "scale": torch.ones(n),
        "fg": torch.zeros(n, 3),
        "bg": torch.zeros(n, 3),
    }


def render(
    attrs: dict[str, torch.Tensor],
    jitter: dict[str, torch.Tensor] | None = None,
    size: int = IMAGE_SIZE,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Render images ``(B, 3, size, size)`` in ``[0, 1]`` for attribute index tensors ``(B,)``."""
    device = torch.device(device) if device is not None else attrs["shape"].device
    a = {k: v.to(device) for k, v in attrs.items()}
    n = a["shape"].shape[0]
    j = {k: v.to(device) for k, v in (jitter if jitter is not None else no_jitter(n)).items()}
    s = size / IMAGE_SIZE  # geometry is defined on a 64-pixel canvas
    centres = torch.tensor(CELL_CENTRES, device=device)
    row, col = a["position"] // 3, a["position"] % 3
    cx = (centres[col] + j["dxy"][:, 0]) * s
    cy = (centres[row] + j["dxy"][:, 1]) * s
    r = torch.tensor(RADIUS, device=device)[a["size"]] * j["scale"] * s

    coords = torch.arange(size, device=device, dtype=torch.float32) + 0.5
    dx = coords[None, None, :] - cx[:, None, None]  # (B, 1, W)
    dy = coords[None, :, None] - cy[:, None, None]  # (B, H, 1)
    rr = r[:, None, None]
    sd_circle = torch.sqrt(dx * dx + dy * dy) - rr
    sd_square = torch.maximum(dx.abs(), dy.abs()) - SQUARE_HALF_SIDE * rr
    # Equilateral triangle pointing up (y grows downwards), centroid at (cx, cy), inradius R / 2.
    big_r = TRIANGLE_CIRCUMRADIUS * rr
    c30, s30 = 0.8660254037844386, 0.5
    sd_triangle = (
        torch.maximum(torch.maximum(dy + 0 * dx, -c30 * dx - s30 * dy), c30 * dx - s30 * dy) - big_r / 2
    )
    sd = torch.stack([sd_circle, sd_square, sd_triangle], 1)  # (B, 3, H, W)
    sd = sd.gather(1, a["shape"][:, None, None, None].expand(n, 1, size, size)).squeeze(1)
    cover = (0.5 - sd / s).clamp(0, 1)[:, None]  # one-pixel anti-aliasing, (B, 1, H, W)

    pal = _palette(device)
    fg = (pal[a["colour"]] + j["fg"]).clamp(0, 1)[:, :, None, None]
    bg = (pal[a["background"]] + j["bg"]).clamp(0, 1)[:, :, None, None]
    return bg + cover * (fg - bg)


def sample_batch(
    n: int,
    split: str = "train",
    seed: int | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    size: int = IMAGE_SIZE,
) -> tuple[torch.Tensor, dict[str, torch.Tensor], list[str]]:
    """Draw ``n`` random (image, attributes, caption) triples from ``split`` ("train" / "heldout" / "all").

    Returns images ``(n, 3, size, size)`` in ``[0, 1]`` on ``device``, attribute index tensors on
    ``device`` and the captions.  Deterministic given ``seed`` (or the state of the CPU ``generator``).
    """
    if generator is None:
        generator = torch.Generator().manual_seed(0 if seed is None else seed)
    pool = CAPTION_SET.pool(split)
    pick = torch.randint(len(pool), (n,), generator=generator)
    combos = [ALL_COMBOS[pool[i]] for i in pick.tolist()]
    jitter = draw_jitter(n, generator)
    attrs = combos_to_tensors(combos, device=device)
    images = render(attrs, jitter, size=size, device=device)
    return images, attrs, [c.caption for c in combos]


class TrainSampler:
    """Fast repeated sampling for training: combo ids and captions are indexed, not rebuilt.

    ``next(n)`` returns ``(images in [-1, 1] on device, combo positions into self.pool)``.
    """

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
        attrs = {k: v[idx] for k, v in self.attrs.items()}
        return render(attrs, jitter, device=self.device) * 2 - 1, idx
