"""The two-object data generator, its per-object scorer and the offline-built Qwen2 tokenizer (fast)."""

from __future__ import annotations

import torch

from lesa_embedded.qwen import HELDOUT_PROMPTS, TRAIN_PROMPTS, heldout_prompts, pairs
from lesa_embedded.qwen.adherence import score_adherence


def test_generator_is_deterministic_from_a_seed() -> None:
    a_img, a_attr, a_cap = pairs.sample_batch(32, seed=7)
    b_img, b_attr, b_cap = pairs.sample_batch(32, seed=7)
    c_img, _, c_cap = pairs.sample_batch(32, seed=8)
    assert torch.equal(a_img, b_img) and a_cap == b_cap
    assert all(torch.equal(a_attr[k], b_attr[k]) for k in a_attr)
    assert not torch.equal(a_img, c_img) and a_cap != c_cap
    assert a_img.shape == (32, 3, 40, 40) and a_img.min() >= 0 and a_img.max() <= 1
    x1, i1 = pairs.TrainSampler(seed=3).next(8)
    x2, i2 = pairs.TrainSampler(seed=3).next(8)
    assert torch.equal(x1, x2) and torch.equal(i1, i2) and x1.min() >= -1 and x1.max() <= 1


def test_heldout_split_is_fixed_disjoint_and_covers_every_value() -> None:
    train, held = set(pairs.TRAIN_COMBOS), set(pairs.HELDOUT_COMBOS)
    assert not train & held and len(train | held) == len(pairs.ALL_COMBOS) == 540
    assert len(held) == 54 and not set(TRAIN_PROMPTS) & set(HELDOUT_PROMPTS)
    sizes = {"shape1": 3, "colour1": 6, "shape2": 3, "colour2": 6, "relation": 2}
    for attr, n in sizes.items():
        assert {getattr(pairs.ALL_COMBOS[i], attr) for i in pairs.TRAIN_COMBOS} == set(range(n)), attr
        assert {getattr(pairs.ALL_COMBOS[i], attr) for i in pairs.HELDOUT_COMBOS} == set(range(n)), attr
    assert heldout_prompts(2) == [HELDOUT_PROMPTS[0], HELDOUT_PROMPTS[27]]


def test_captions_round_trip_and_name_both_objects() -> None:
    for combo in pairs.ALL_COMBOS[::7]:
        assert pairs.parse_caption(combo.caption) == combo
    assert pairs.caption(pairs.Combo(0, 0, 1, 2, 0)) == "a red circle left of a blue square"
    assert pairs.caption(pairs.Combo(2, 3, 0, 1, 1)) == "a yellow triangle above a green circle"


def test_relation_places_the_first_object_left_of_or_above_the_second() -> None:
    attrs = pairs.combos_to_tensors(list(pairs.ALL_COMBOS))
    centres = pairs.object_centres(
        attrs["relation"], pairs.draw_jitter(len(pairs.ALL_COMBOS), torch.Generator())
    )
    d = centres[:, 1] - centres[:, 0]
    left = attrs["relation"] == 0
    assert (d[left, 0] > 10).all() and (d[left, 1].abs() < 3).all()
    assert (d[~left, 1] > 10).all() and (d[~left, 0].abs() < 3).all()


def test_scorer_reads_ground_truth_renders_back() -> None:
    combos = list(pairs.ALL_COMBOS) * 2  # every combination, twice, with random jitter
    attrs = pairs.combos_to_tensors(combos)
    images = pairs.render(attrs, pairs.draw_jitter(len(combos), torch.Generator().manual_seed(0)))
    res = score_adherence(images, attrs)
    assert res.rate == 1.0, res.attribute_rates()
    caps = [c.caption for c in combos[:64]]
    assert score_adherence(images[:64] * 2 - 1, caps).rate == 1.0  # [-1, 1] input, captions as targets
    big = pairs.render({k: v[:64] for k, v in attrs.items()}, size=80)
    assert score_adherence(big, caps).rate == 1.0


def test_scorer_rejects_wrong_captions_per_object() -> None:
    combos = list(pairs.ALL_COMBOS)
    attrs = pairs.combos_to_tensors(combos)
    images = pairs.render(attrs, pairs.draw_jitter(len(combos), torch.Generator().manual_seed(1)))
    for attr, n in (("shape1", 3), ("shape2", 3), ("relation", 2)):
        wrong = {**attrs, attr: (attrs[attr] + 1) % n}
        res = score_adherence(images, wrong)
        assert not res.match.any(), attr
        assert not res.per_attribute[attr].any(), attr
    swapped = {**attrs, "shape1": attrs["shape2"], "colour1": attrs["colour2"], "shape2": attrs["shape1"],
               "colour2": attrs["colour1"]}  # fmt: skip
    assert not score_adherence(images, swapped).per_attribute["relation"].any()  # the order is the relation
    other = (attrs["colour1"] + 1) % 6
    other = torch.where(other == attrs["colour2"], (other + 1) % 6, other)
    res = score_adherence(images, {**attrs, "colour1": other})  # a colour that is not in the image
    assert not res.per_attribute["colour1"].any() and not res.match.any()
    blank = torch.tensor(pairs.BACKGROUND)[None, :, None, None].expand(2, 3, 40, 40)
    assert not score_adherence(blank, [combos[0].caption] * 2).match.any()


def test_tokenizer_is_a_qwen2_bpe_with_the_pipelines_34_token_template_prefix() -> None:
    from transformers import Qwen2Tokenizer

    from lesa_embedded.qwen import QWEN_PIPELINE_DIR

    tok = Qwen2Tokenizer.from_pretrained(QWEN_PIPELINE_DIR / "tokenizer")
    template = (
        "<|im_start|>system\nDescribe the image by detailing the color, shape, size, texture, quantity, text, "
        "spatial relationships of the objects and background:<|im_end|>\n<|im_start|>user\n"
    )
    assert len(tok(template).input_ids) == 34  # QwenImagePipeline.prompt_template_encode_start_idx
    ids = tok("a red circle left of a blue square").input_ids
    assert len(ids) == 8 and tok.decode(ids) == "a red circle left of a blue square"
    assert tok.decode(tok("any text, even ünïcödé!").input_ids) == "any text, even ünïcödé!"  # byte fall-back
