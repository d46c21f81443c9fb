"""``learned`` and ``adaptive`` policies fitted by the trainer on a real (tiny, offline) FluxPipeline: the
fitted parameters go into the bundle, ``attach(pipe, bundle)`` runs them, and the adaptive policy keeps its
budget per cache context and decides the same way for the same input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lesa_core import attach
from lesa_core.bundle import BUNDLE_CONFIG_NAME
from lesa_core.cli.train_cmd import describe_policy_fit
from lesa_core.errors import ConfigError
from lesa_core.run import resolve_run
from lesa_core.testing.tiny import tiny_flux_pipeline
from lesa_core.trainer import PipelineRunner, floor_may_keep, train

pytestmark = pytest.mark.integration

STEPS = 12
BASE = {
    "predictor": {"name": "kan", "taps": [2, 3, 3], "hidden": [8, 8]},
    "training": {
        "num_steps": STEPS,
        "seed": 3,
        "validation_prompts": 0,  # these tests are about the fitted policies: train on all four prompts
        "stage1": {"epochs": 2, "batch_size": 4, "lr": 0.003},
        "stage2": {"epochs": 1, "batch_size": 4, "lr": 0.001},
    },
}
PROMPTS = [f"a prompt number {i}" for i in range(4)]


@pytest.fixture(scope="module")
def pipe():
    return tiny_flux_pipeline()


def _runner(pipe) -> PipelineRunner:
    return PipelineRunner(pipe, height=32, width=32, max_sequence_length=16)


def _train(pipe, tmp: Path, policy: dict, name: str) -> tuple[Path, dict]:
    bundle, _ = train(
        pipe,
        {**BASE, "policy": policy},
        PROMPTS,
        runner=_runner(pipe),
        out=tmp / name,
        data_dir=tmp / "data",
        checkpoint_dir=tmp / f"ckpt-{name}",
        stages=(1,),
        show_progress=False,
    )
    return bundle, json.loads((bundle / BUNDLE_CONFIG_NAME).read_text())


def test_learned_schedule_is_fitted_into_the_bundle_and_attached(pipe, tmp_path: Path) -> None:
    bundle, meta = _train(pipe, tmp_path, {"name": "learned", "budget": 5}, "learned")
    policy = meta["run_config"]["policy"]
    assert policy["name"] == "learned" and policy["num_steps"] == STEPS and len(policy["steps"]) == 5
    fit = meta["extra"]["policy_fit"]
    assert fit["full_passes_after"] == 5 and fit["error_after"] <= fit["error_before"] + 1e-9
    with attach(pipe, str(bundle)) as handle:
        _runner(pipe).run(PROMPTS[:1], [0], STEPS)
        decisions = handle.stats()["cond"]["decisions"]
    assert [i for i, d in enumerate(decisions) if d == "F"] == policy["steps"]
    with attach(pipe, str(bundle)) as handle:  # another step count: still 5 full passes
        _runner(pipe).run(PROMPTS[:1], [0], 8)
        assert handle.stats()["cond"]["decisions"].count("F") == 5
    other = {"name": "learned", "budget": 4, "steps": [0, 1, 5, 9], "num_steps": STEPS}
    with pytest.raises(ConfigError, match="times: null"):  # the bundle's 5 fitted times merge with 4 new steps
        attach(pipe, {"bundle": str(bundle), "policy": other})
    with attach(pipe, {"bundle": str(bundle), "policy": {**other, "times": None}}) as handle:
        _runner(pipe).run(PROMPTS[:1], [0], STEPS)
        assert [i for i, d in enumerate(handle.stats()["cond"]["decisions"]) if d == "F"] == [0, 1, 5, 9]


def test_learned_schedule_is_refined_in_closed_loop_and_never_scores_below_its_fit(pipe, tmp_path: Path) -> None:
    """With a validation slice (references kept by collection), the fitted steps are moved while the closed-loop
    score on the collection's prompts rises: the bundle runs the refined steps with their flow times, spends
    the same full passes, and its score is the best seen; with ``refine_policy: 0`` the teacher-forced fit."""
    config = {**BASE, "policy": {"name": "learned", "budget": 5},
              "training": {**BASE["training"], "validation_prompts": 1, "refine_policy": 6}}
    prompts = [*PROMPTS, "a validation prompt"]

    def fit(name: str, refine: int) -> dict:
        run = {**config, "training": {**config["training"], "refine_policy": refine}}
        bundle, _ = train(pipe, run, prompts, runner=_runner(pipe), out=tmp_path / name, data_dir=tmp_path / "data",
                          checkpoint_dir=tmp_path / "ckpt", stages=(1,), show_progress=False)
        return json.loads((bundle / BUNDLE_CONFIG_NAME).read_text())

    refined, plain = fit("refined", 6), fit("plain", 0)  # the second resumes the first's training
    line = describe_policy_fit(tmp_path / "refined")  # what `lesa train --fit-policy learned` prints
    assert line is not None and f"closed loop on {len(prompts)} prompts" in line
    assert "closed loop" not in (describe_policy_fit(tmp_path / "plain") or "closed loop")
    assert "closed_loop" not in plain["extra"]["policy_fit"]
    loop = refined["extra"]["policy_fit"]["closed_loop"]
    teacher_forced = plain["run_config"]["policy"]["steps"]
    assert loop["before"] == teacher_forced and loop["prompts"] == len(prompts)
    assert 2 <= loop["evaluations"] <= 6 and loop["after_db"] >= loop["before_db"]
    policy = refined["run_config"]["policy"]
    assert policy["steps"] == loop["after"] and len(policy["steps"]) == 5
    assert policy["times"] == [refined["schedule"][s] for s in policy["steps"]]
    # the climb starts from the best of the fit and the even schedules; it changes the steps only if one scored higher
    assert (loop["after"] != loop["before"]) == (loop["moves_kept"] > 0 or loop["start"] is not None)


@pytest.mark.parametrize(("policy", "floor", "may_keep"), [
    ({"name": "interval"}, "keep", True), ({"name": "interval"}, "reproduce", False),
    ({"name": "learned", "budget": 5}, "keep", False), ({"name": "adaptive", "budget": 5}, "keep", False)])
def test_the_floor_keeps_a_candidate_only_for_a_policy_that_is_not_fitted_after_training(policy, floor, may_keep) -> None:
    """A kept candidate's coefficients belong to the full steps it was fitted for; a policy fitted after training
    searches its steps for the predictor, so there the floor reproduces the candidate in the family."""
    run = resolve_run({**BASE, "policy": policy, "training": {**BASE["training"], "floor": floor}})
    assert floor_may_keep(run) is may_keep


def test_a_fitted_policy_run_whose_floor_applies_returns_the_family_with_fitted_steps(pipe, tmp_path: Path) -> None:
    """Training that barely moves (lr 1e-9) ends below the floor's candidates: the bundle is still the family
    (``kan``), its steps fitted for it."""
    config = {**BASE, "policy": {"name": "learned", "budget": 5},
              "training": {**BASE["training"], "validation_prompts": 1, "refine_policy": 0,
                           "stage1": {"epochs": 1, "batch_size": 4, "lr": 1e-9}}}
    bundle, _ = train(pipe, config, [*PROMPTS, "a validation prompt"], runner=_runner(pipe), out=tmp_path / "b",
                      data_dir=tmp_path / "data", checkpoint_dir=tmp_path / "ckpt", stages=(1,), show_progress=False)
    meta = json.loads((bundle / BUNDLE_CONFIG_NAME).read_text())
    floor = meta["extra"]["selection"]["floor"]
    assert floor["applied"] and not floor.get("kept_candidate")  # a candidate won; the family reproduces it
    assert meta["run_config"]["predictor"]["name"] == "kan"
    assert len(meta["run_config"]["policy"]["steps"]) == 5 and "policy_fit" in meta["extra"]


def test_adaptive_threshold_is_fitted_and_the_budget_holds(pipe, tmp_path: Path) -> None:
    bundle, meta = _train(pipe, tmp_path, {"name": "adaptive", "budget": 5, "warmup": 2}, "adaptive")
    policy = meta["run_config"]["policy"]
    assert policy["name"] == "adaptive" and policy["threshold"] > 0
    runs = []
    for _ in range(2):
        with attach(pipe, str(bundle)) as handle:
            _runner(pipe).run(PROMPTS[:2], [0, 1], STEPS)
            runs.append(handle.stats()["cond"]["decisions"])
    assert runs[0] == runs[1]  # deterministic for a given input
    assert 2 <= runs[0].count("F") <= 5 and runs[0].startswith("FF")
    # a threshold no forecast reaches: only the warm-up computes; one every forecast reaches: the cap holds
    for threshold, expected in ((1e9, 2), (1e-9, 5)):
        config = {
            **meta["run_config"],
            "policy": {**policy, "threshold": threshold, "max_gap": None},
            "bundle": str(bundle),
        }
        with attach(pipe, config) as handle:
            _runner(pipe).run(PROMPTS[:1], [0], STEPS)
            assert handle.stats()["cond"]["decisions"].count("F") == expected
