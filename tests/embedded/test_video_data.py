"""The motion-video generator, its per-frame and motion scorer, and the offline-built tokenizer (fast)."""

from __future__ import annotations

import pytest
import torch

from lesa_embedded.common.captions import seeded_split
from lesa_embedded.video import HELDOUT_PROMPTS, PROMPT_TEMPLATE, TRAIN_PROMPTS, heldout_prompts, motions
from lesa_embedded.video.adherence import score_adherence


def _videos(combos: list[motions.Combo], seed: int = 0) -> torch.Tensor:
    """Ground-truth renders as a video pipeline returns them: ``(B, F, 3, H, W)``."""
    jitter = motions.draw_jitter(len(combos), torch.Generator().manual_seed(seed))
    return motions.render(motions.combos_to_tensors(combos), jitter).permute(0, 2, 1, 3, 4)


def test_generator_is_deterministic_from_a_seed() -> None:
    a, a_attr, a_cap = motions.sample_batch(16, seed=7)
    b, b_attr, b_cap = motions.sample_batch(16, seed=7)
    c, _, c_cap = motions.sample_batch(16, seed=8)
    assert torch.equal(a, b) and a_cap == b_cap and all(torch.equal(a_attr[k], b_attr[k]) for k in a_attr)
    assert not torch.equal(a, c) and a_cap != c_cap
    assert a.shape == (16, 3, motions.NUM_FRAMES, 32, 32) and a.min() >= 0 and a.max() <= 1
    x1, i1 = motions.TrainSampler(seed=3).next(4)
    x2, i2 = motions.TrainSampler(seed=3).next(4)
    assert torch.equal(x1, x2) and torch.equal(i1, i2) and x1.min() >= -1 and x1.max() <= 1


def test_heldout_split_is_fixed_disjoint_and_covers_every_value() -> None:
    train, held = set(motions.TRAIN_COMBOS), set(motions.HELDOUT_COMBOS)
    assert not train & held and len(train | held) == len(motions.ALL_COMBOS) == 160 and len(held) == 16
    assert not set(TRAIN_PROMPTS) & set(HELDOUT_PROMPTS)
    for attr, n in {"shape": 3, "colour": 5, "motion": len(motions.MOTIONS) + 1}.items():
        assert {getattr(motions.ALL_COMBOS[i], attr) for i in motions.TRAIN_COMBOS} == set(range(n)), attr
    assert heldout_prompts(2) == [HELDOUT_PROMPTS[0], HELDOUT_PROMPTS[8]]
    assert seeded_split(160, 0.1, motions.HELDOUT_SEED) == (
        motions.TRAIN_COMBOS,
        motions.HELDOUT_COMBOS,
    )


def test_captions_round_trip_and_name_the_motion() -> None:
    for combo in motions.ALL_COMBOS:
        assert motions.parse_caption(combo.caption) == combo
    assert motions.caption(motions.Combo(1, 0, 1)) == "a red square moving right"
    assert motions.caption(motions.Combo(0, 2, 4)) == "a blue circle growing"
    assert motions.caption(motions.Combo(2, 1, 6)) == "a green triangle turning"
    assert motions.caption(motions.Combo(1, 3, motions.RECOLOUR, 2)) == "a yellow square turning blue"
    assert "a white circle turning" not in {c.caption for c in motions.ALL_COMBOS}  # nothing would show
    with pytest.raises(ValueError, match="not a canonical motion caption"):
        motions.parse_caption("a red square dancing")


def test_the_motion_is_in_the_frames() -> None:
    (right, grow, turn, recolour) = _videos(
        [motions.parse_caption(c) for c in ("a red square moving right", "a blue circle growing",
                                             "a green triangle turning", "a yellow square turning blue")]
    )  # fmt: skip
    col = lambda v: (v - torch.tensor(motions.BACKGROUND).view(3, 1, 1)).norm(dim=0) > 0.3  # noqa: E731
    xs = torch.arange(32.0)
    cx = [float((col(f) * xs).sum() / col(f).sum()) for f in right]
    assert all(b > a for a, b in zip(cx, cx[1:], strict=False)) and cx[-1] - cx[0] == pytest.approx(
        12, abs=0.5
    )
    assert col(grow[-1]).sum() > 3 * col(grow[0]).sum()
    assert not torch.equal(col(turn[0]), col(turn[-1]))
    assert recolour[0, 2].max() < 0.3 and recolour[-1, 2].max() > 0.8  # blue channel: yellow -> blue


def test_scorer_accepts_every_ground_truth_video_and_rejects_wrong_captions() -> None:
    combos = list(motions.ALL_COMBOS)
    videos = _videos(combos, seed=1)
    scored = score_adherence(videos, combos)
    assert scored.match.all(), [c.caption for c, ok in zip(combos, scored.match, strict=True) if not ok]
    shuffled = [combos[i] for i in torch.randperm(len(combos), generator=torch.Generator().manual_seed(0))]
    assert score_adherence(videos, shuffled).match.float().mean() < 0.05


@pytest.mark.parametrize(
    ("shown", "claimed"),
    [
        ("a red square moving right", "a red square moving left"),
        ("a red square moving right", "a red square moving up"),
        ("a blue circle growing", "a blue circle shrinking"),
        ("a green triangle turning", "a green triangle moving down"),
        ("a green square moving up", "a green square turning"),
        ("a yellow square turning blue", "a yellow square turning green"),
        ("a yellow square turning blue", "a yellow circle turning blue"),
        ("a white triangle growing", "a red triangle growing"),
    ],
)
def test_scorer_names_the_difference(shown: str, claimed: str) -> None:
    video = _videos([motions.parse_caption(shown)], seed=2)
    assert score_adherence(video, [shown]).match.all()
    assert not score_adherence(video, [claimed]).match.any()


def test_a_static_or_reversed_video_does_not_count_as_its_motion() -> None:
    combos = [motions.parse_caption(c) for c in ("a blue circle growing", "a red square moving right")]
    videos = _videos(combos, seed=3)
    assert not score_adherence(videos.flip(1), combos).match.any()  # played backwards
    frozen = videos[:, :1].expand_as(videos)
    assert not score_adherence(frozen, combos).match.any()


def test_the_llama_tokenizer_crop_matches_the_template() -> None:
    from transformers import AutoTokenizer

    from lesa_embedded.video import VIDEO_PIPELINE_DIR

    if not (VIDEO_PIPELINE_DIR / "tokenizer").exists():
        pytest.skip("the pipeline folder is not built")
    tok = AutoTokenizer.from_pretrained(VIDEO_PIPELINE_DIR / "tokenizer", local_files_only=True)
    prefix = PROMPT_TEMPLATE["template"].split("{}")[0]
    assert len(tok(prefix).input_ids) == PROMPT_TEMPLATE["crop_start"]
    for caption in HELDOUT_PROMPTS:
        full = tok(PROMPT_TEMPLATE["template"].format(caption)).input_ids
        assert tok.decode(full[PROMPT_TEMPLATE["crop_start"] :]).startswith(caption)
