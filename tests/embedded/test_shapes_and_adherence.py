"""The shapes data generator and the analytic adherence scorer (fast, no diffusers)."""

from __future__ import annotations

import torch

from lesa_embedded.flux import HELDOUT_PROMPTS, TRAIN_PROMPTS, heldout_prompts, shapes
from lesa_embedded.flux.adherence import score_adherence


def test_generator_is_deterministic_from_a_seed() -> None:
    a_img, a_attr, a_cap = shapes.sample_batch(32, seed=7)
    b_img, b_attr, b_cap = shapes.sample_batch(32, seed=7)
    c_img, _, c_cap = shapes.sample_batch(32, seed=8)
    assert torch.equal(a_img, b_img) and a_cap == b_cap
    assert all(torch.equal(a_attr[k], b_attr[k]) for k in a_attr)
    assert not torch.equal(a_img, c_img) and a_cap != c_cap
    assert a_img.shape == (32, 3, 64, 64) and a_img.min() >= 0 and a_img.max() <= 1
    s1, s2 = shapes.TrainSampler(seed=3), shapes.TrainSampler(seed=3)
    x1, i1 = s1.next(8)
    x2, i2 = s2.next(8)
    assert torch.equal(x1, x2) and torch.equal(i1, i2) and x1.min() >= -1 and x1.max() <= 1


def test_heldout_split_is_fixed_disjoint_and_covers_every_attribute_value() -> None:
    train, held = set(shapes.TRAIN_COMBOS), set(shapes.HELDOUT_COMBOS)
    assert not train & held and len(train | held) == len(shapes.ALL_COMBOS) == 3024
    assert len(held) == 302
    assert not set(TRAIN_PROMPTS) & set(HELDOUT_PROMPTS)
    for attr, values in [("shape", shapes.SHAPES), ("colour", shapes.COLOURS), ("size", shapes.SIZES),
                         ("position", shapes.POSITIONS), ("background", shapes.COLOURS)]:  # fmt: skip
        seen = {getattr(shapes.ALL_COMBOS[i], attr) for i in shapes.TRAIN_COMBOS}
        assert seen == set(range(len(values))), attr
    # the split is a constant of the data set, not of the run
    assert heldout_prompts(3) == [HELDOUT_PROMPTS[0], HELDOUT_PROMPTS[100], HELDOUT_PROMPTS[201]]
    assert HELDOUT_PROMPTS[0] == "a small red circle at the top on a yellow background"


def test_captions_round_trip() -> None:
    for combo in shapes.ALL_COMBOS[::37]:
        assert shapes.parse_caption(combo.caption) == combo
    assert (
        shapes.caption(shapes.Combo(0, 0, 0, 0, 2))
        == "a small red circle at the top left on a blue background"
    )


def test_scorer_reads_ground_truth_renders_back() -> None:
    # every held-out combination and every 4th training one, with random jitter
    combos = [shapes.ALL_COMBOS[i] for i in (*shapes.HELDOUT_COMBOS, *shapes.TRAIN_COMBOS[::4])]
    attrs = shapes.combos_to_tensors(combos)
    images = shapes.render(attrs, shapes.draw_jitter(len(combos), torch.Generator().manual_seed(0)))
    res = score_adherence(images, attrs)
    assert res.rate == 1.0, res.attribute_rates()
    # [-1, 1] input and captions as targets give the same answer; a 128-pixel render too
    caps = [c.caption for c in combos[:64]]
    assert score_adherence(images[:64] * 2 - 1, caps).rate == 1.0
    big = shapes.render({k: v[:64] for k, v in attrs.items()}, size=128)
    assert score_adherence(big, caps).rate == 1.0


def test_scorer_rejects_wrong_captions() -> None:
    combos = [shapes.ALL_COMBOS[i] for i in shapes.HELDOUT_COMBOS]
    images = shapes.render(shapes.combos_to_tensors(combos))
    for attr, n in [("shape", 3), ("colour", 8), ("size", 2), ("position", 9), ("background", 8)]:
        wrong = []
        for c in combos:
            d = c.as_dict()
            d[attr] = (d[attr] + 1) % n
            if d["colour"] == d["background"]:
                d[attr] = (d[attr] + 1) % n
            wrong.append(shapes.Combo(**d))
        res = score_adherence(images, wrong)
        assert not res.match.any(), attr
        assert not res.per_attribute[attr].any(), attr
    blank = torch.ones(2, 3, 64, 64) * torch.tensor(shapes.PALETTE[2])[:, None, None]
    assert not score_adherence(blank, [combos[0].caption] * 2).match.any()
