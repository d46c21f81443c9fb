"""The shared parts of the shipped models: caption sets, the held-out split, the model source base."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from lesa_embedded.common.captions import (
    CaptionedCombos,
    CaptionIndex,
    enumerate_combos,
    normalise_caption,
    seeded_split,
    shuffled,
    spread,
)
from lesa_embedded.common.source import ShippedPipelineSource


@dataclass(frozen=True)
class _Pair:
    colour: int
    shape: int

    @property
    def caption(self) -> str:
        return f"a {('red', 'blue', 'green')[self.colour]} {('circle', 'square')[self.shape]}"


def test_enumerate_combos_is_lexicographic_and_filtered() -> None:
    combos = enumerate_combos(_Pair, (3, 2), keep=lambda c, s: (c, s) != (1, 1))
    assert [(c.colour, c.shape) for c in combos] == [(0, 0), (0, 1), (1, 0), (2, 0), (2, 1)]


@pytest.mark.parametrize("n", [1, 10, 541])
def test_seeded_split_is_fixed_disjoint_and_complete(n: int) -> None:
    train, held = seeded_split(n, 0.1, seed=7)
    assert (train, held) == seeded_split(n, 0.1, seed=7)
    assert not set(train) & set(held) and sorted(train + held) == list(range(n))
    assert len(held) == round(0.1 * n) and list(train) == sorted(train)
    assert seeded_split(n, 0.1, seed=8) != (train, held) or n < 10


def test_seeded_split_refuses_a_fraction_outside_0_1() -> None:
    with pytest.raises(ValueError, match="fraction"):
        seeded_split(10, 1.0, seed=0)


def test_caption_index_parses_up_to_case_and_spacing_and_names_the_set() -> None:
    index = CaptionIndex(enumerate_combos(_Pair, (3, 2)), kind="pair")
    assert index.parse("  A  Blue SQUARE ") == _Pair(1, 1)
    assert normalise_caption("  A  Blue SQUARE ") == "a blue square"
    with pytest.raises(ValueError, match="not a canonical pair caption: 'a cat'"):
        index.parse("a cat")


def test_captioned_combos_pools_and_captions() -> None:
    combos = CaptionedCombos(enumerate_combos(_Pair, (3, 2)), 0.34, seed=1, kind="pair")
    assert len(combos.pool("heldout")) == 2 and len(combos.pool("train")) == 4
    assert combos.captions("all") == [c.caption for c in combos.all]
    assert set(combos.captions("train")).isdisjoint(combos.captions("heldout"))
    with pytest.raises(ValueError, match=r"unknown split 'test'.*'all', 'heldout', 'train'"):
        combos.pool("test")


def test_spread_and_shuffled() -> None:
    assert spread(list(range(10)), 3) == [0, 3, 6] and spread([1, 2], 5) == [1, 2] and spread([1, 2], None) == [1, 2]
    assert shuffled(range(20), seed=3) == shuffled(range(20), seed=3) != list(range(20))
    assert sorted(shuffled(range(20), seed=3)) == list(range(20))


class _Source(ShippedPipelineSource):
    shuffle_seed = 5
    _set = CaptionedCombos(enumerate_combos(_Pair, (3, 2)), 0.34, seed=1, kind="pair")

    def load_pipeline(self, device, dtype):  # type: ignore[no-untyped-def]
        raise AssertionError("not loaded in this test")

    def shipped_call_defaults(self):  # type: ignore[no-untyped-def]
        return {"num_inference_steps": 50, "height": 8}

    def caption_set(self) -> CaptionedCombos[_Pair]:
        return self._set

    def score(self, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        return torch.ones(len(prompts))


def test_shipped_source_orders_prompts_drops_steps_and_scores_only_canonical_captions() -> None:
    source = _Source()
    assert source.call_defaults() == {"height": 8}
    assert sorted(source.train_prompts()) == sorted(source.train_captions())
    assert source.eval_prompts() == shuffled(source.heldout_captions(), 5)
    images = torch.zeros(2, 3, 8, 8)
    assert source.score_adherence(images, ["a red circle", "a blue square"]).tolist() == [1.0, 1.0]
    assert source.score_adherence(images, ["a red circle", "anything else"]) is None
