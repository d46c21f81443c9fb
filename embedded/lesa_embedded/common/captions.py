"""Procedural caption sets: attribute combinations, a fixed held-out split, caption parsing.

A shipped model is trained on captions generated from a few attributes (shape, colour, relation,
motion, ...). Each combination of attribute indices has exactly one canonical caption; a fixed, seeded
fraction of the combinations is held out and never trained on, so evaluation prompts are captions the
model has never seen. :class:`CaptionedCombos` bundles the three parts; the functions are its pieces.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterable, Sequence
from typing import Generic, Protocol, TypeVar

import torch


class Captioned(Protocol):
    """A combination of attribute indices with one canonical caption."""

    @property
    def caption(self) -> str: ...


C = TypeVar("C", bound=Captioned)
T = TypeVar("T")


def enumerate_combos(
    make: Callable[..., C], sizes: Sequence[int], keep: Callable[..., bool] | None = None
) -> tuple[C, ...]:
    """Every ``make(*indices)`` over the product of ``range(size)`` for each attribute, in lexicographic
    order (the first attribute varies slowest), skipping index tuples for which ``keep`` is false."""
    return tuple(make(*ix) for ix in itertools.product(*(range(n) for n in sizes)) if keep is None or keep(*ix))


def seeded_split(n: int, fraction: float, seed: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(train, held_out)`` sorted index tuples: a seeded permutation's first ``round(fraction * n)``
    entries are held out. Deterministic on every machine (a CPU ``torch.Generator``)."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"held-out fraction must be in [0, 1), got {fraction}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    n_held = round(fraction * n)
    return tuple(sorted(perm[n_held:])), tuple(sorted(perm[:n_held]))


def normalise_caption(text: str) -> str:
    """Lower case, single spaces, no surrounding blanks: the form canonical captions are matched in."""
    return " ".join(text.strip().lower().split())


class CaptionIndex(Generic[C]):
    """Canonical caption text → its combination; :meth:`parse` is the inverse of ``combo.caption``.

    :param kind: what the captions describe, for the error message (``"two-object"``).
    """

    def __init__(self, combos: Iterable[C], kind: str):
        self.kind = kind
        self._by_caption = {normalise_caption(c.caption): c for c in combos}

    def parse(self, text: str) -> C:
        """The combination whose canonical caption is ``text`` (case and spacing ignored).

        :raises ValueError: ``text`` is not a canonical caption of this set.
        """
        try:
            return self._by_caption[normalise_caption(text)]
        except KeyError:
            raise ValueError(f"not a canonical {self.kind} caption: {text!r}") from None


def spread(items: Sequence[T], n: int | None) -> list[T]:
    """``n`` items spread evenly over ``items`` (all of them if ``n`` is None or not smaller)."""
    if n is None or n >= len(items):
        return list(items)
    return [items[(i * len(items)) // n] for i in range(n)]


def shuffled(items: Iterable[T], seed: int) -> list[T]:
    """A copy of ``items`` in a fixed, seeded order (Python's ``random``; the same on every machine)."""
    out = list(items)
    random.Random(seed).shuffle(out)
    return out


class CaptionedCombos(Generic[C]):
    """All combinations of a caption set, its fixed held-out split and its caption parser.

    :ivar all: every combination, in enumeration order.
    :ivar train: indices into :attr:`all` of the training combinations (sorted).
    :ivar heldout: indices of the held-out combinations (sorted; disjoint from :attr:`train`).
    """

    def __init__(self, combos: Sequence[C], heldout_fraction: float, seed: int, kind: str):
        self.all: tuple[C, ...] = tuple(combos)
        self.train, self.heldout = seeded_split(len(self.all), heldout_fraction, seed)
        self._index = CaptionIndex(self.all, kind)

    def parse(self, text: str) -> C:
        """See :meth:`CaptionIndex.parse`."""
        return self._index.parse(text)

    def pool(self, split: str) -> tuple[int, ...]:
        """The indices of ``split``: ``"train"``, ``"heldout"`` or ``"all"``."""
        pools = {"train": self.train, "heldout": self.heldout, "all": tuple(range(len(self.all)))}
        try:
            return pools[split]
        except KeyError:
            raise ValueError(f"unknown split {split!r}; choose one of {sorted(pools)}") from None

    def captions(self, split: str) -> list[str]:
        """The canonical captions of ``split``, in index order."""
        return [self.all[i].caption for i in self.pool(split)]
