"""Selection by what users see, on a real (tiny, offline) FluxPipeline: the start is the best of the
training-free forecasters and the closed-form fit, the best epoch is kept, and the trainer never returns a
predictor worse on the validation slice than its start (issue #15)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lesa_core.assembly import assemble
from lesa_core.bundle import read_metadata
from lesa_core.errors import ConfigError
from lesa_core.metrics import to_uint8
from lesa_core.testing.tiny import tiny_flux_pipeline
from lesa_core.trainer import PipelineRunner, train
from lesa_core.trainer.selection import ClosedLoopValidator, describe_selection
from lesa_core.trainer.store import TrajectoryStore

pytestmark = pytest.mark.integration

STEPS = 12
POLICY = {"name": "interval", "interval": 4, "warmup": 2, "force_full": []}
PROMPTS = [f"a prompt number {i}" for i in range(8)]


@pytest.fixture(scope="module")
def pipe():
    return tiny_flux_pipeline()


def _runner(pipe) -> PipelineRunner:
    return PipelineRunner(pipe, height=32, width=32, max_sequence_length=16)


def _config(predictor: dict, **training) -> dict:
    return {
        "predictor": predictor,
        "policy": POLICY,
        "training": {
            "num_steps": STEPS,
            "seed": 3,
            "validation_prompts": 2,
            "stage1": {"epochs": 2, "batch_size": 4, "lr": 0.003},
            "stage2": {"epochs": 1, "batch_size": 4, "lr": 0.001},
            **training,
        },
    }


def _validation_score(pipe, bundle: Path, data: Path) -> float:
    """The returned bundle scored again from scratch, by the same validator on the same slice against the
    same references (the full-compute outputs collection kept)."""
    store = TrajectoryStore(data / "trajectories")
    meta = store.read_meta()
    assert meta is not None
    assembly = assemble(pipe.transformer, str(bundle))
    rows = list(range(len(meta.prompts) - 2, len(meta.prompts)))
    references = store.load_outputs(rows)
    assert references is not None and references.dtype == torch.uint8
    return ClosedLoopValidator(assembly, _runner(pipe), meta, rows, references).score(assembly.predictor)


def test_harmful_training_never_returns_worse_than_the_start(pipe, tmp_path: Path) -> None:
    """A stage-1 learning rate far too high wrecks the fit; the kept weights still score the best of all."""
    config = _config(
        {"name": "kan", "taps": [3, 4, 4], "hidden": [8, 8]}, stage1={"epochs": 2, "batch_size": 4, "lr": 3.0}
    )
    bundle, report = train(
        pipe,
        config,
        PROMPTS,
        runner=_runner(pipe),
        out=tmp_path / "b",
        data_dir=tmp_path / "d",
        show_progress=False,
    )
    floor = report.selection["floor"]
    singles = ["reuse", "taylor1", "taylor2", "linear", "linear(taps=2)", "linear(taps=8)"]
    assert set(singles) <= set(floor["candidates"])
    ranked = sorted(singles, key=floor["candidates"].get, reverse=True)
    family = {"reuse": "taylor", "taylor1": "taylor", "taylor2": "taylor"}
    first = ranked[0]  # blended with the best of another family
    second = next(n for n in ranked[1:] if family.get(n, "linear") != family.get(first, "linear"))
    blends = [f"{w:g}·{first} + {1 - w:g}·{second}" for w in (0.25, 0.5, 0.75)]
    assert set(floor["candidates"]) == {*singles, *blends}  # the two best, blended (carried by linear(taps=8))
    assert floor["chosen"] == max(floor["candidates"], key=floor["candidates"].get)
    epochs = report.selection["epochs"]
    scores = dict(epochs["scores"])
    trained = ["start", "stage1 epoch 1", "stage1 epoch 2", "stage2 epoch 1"]
    # training starts from the family's own initialisation; the floor is tried only when training fell short
    assert list(scores) in (trained, [*trained, f"floor {floor['chosen']}"])
    assert (f"floor {floor['chosen']}" in scores) == (max(scores[k] for k in trained) < floor["floor_db"])
    assert epochs["best_db"] == round(max(scores.values()), 4) and epochs["gain_over_start_db"] >= 0
    assert min(scores.values()) < scores["start"]  # the harmful epochs really were worse
    metadata = read_metadata(bundle)
    assert metadata.extra["selection"]["epochs"]["best"] == epochs["best"]
    # training.floor: keep — never below the best candidate: the kept weights, or the candidate itself
    kept = floor.get("kept_candidate", False)
    assert kept == (epochs["best_db"] < floor["floor_db"])
    chosen = floor["chosen"]
    assert metadata.run_config["predictor"]["name"] == (
        "kan" if not kept else "linear" if "linear" in chosen or "·" in chosen else "taylor")
    returned = _validation_score(pipe, bundle, tmp_path / "d")
    assert returned == pytest.approx(max(epochs["best_db"], floor["floor_db"]), abs=1e-3)


def test_floor_keep_returns_the_candidate_itself_when_not_even_its_reproduction_reaches_it(
    pipe, tmp_path: Path
) -> None:
    """A family that can hardly move (one tap, α held near zero by a tiny time network) trains to about reuse;
    the closed-form fit scores higher and the family cannot reproduce it, so ``floor: keep`` returns the fit
    itself and ``floor: reproduce`` the family's weights, scored below it."""
    results = {}
    for mode in ("keep", "reproduce"):
        config = _config({"name": "kan", "taps": 1, "hidden": [1]}, start=[{"name": "taylor", "order": 0}, "linear"], floor=mode,
                         stage1={"epochs": 1, "batch_size": 4, "lr": 1e-9}, stage2={"epochs": 0})
        bundle, report = train(pipe, config, PROMPTS, runner=_runner(pipe), out=tmp_path / mode,
                               data_dir=tmp_path / "d", checkpoint_dir=tmp_path / f"c-{mode}", show_progress=False)
        results[mode] = (bundle, report.selection["floor"])
    keep, reproduce = results["keep"][1], results["reproduce"][1]
    assert keep["chosen"] == "linear" and keep["candidates"]["linear"] > keep["candidates"]["reuse"]
    assert keep["kept_candidate"] and not reproduce.get("kept_candidate")
    assert read_metadata(results["keep"][0]).run_config["predictor"]["name"] == "linear"
    assert read_metadata(results["reproduce"][0]).run_config["predictor"]["name"] == "kan"
    kept_score = _validation_score(pipe, results["keep"][0], tmp_path / "d")
    assert kept_score == pytest.approx(keep["floor_db"], abs=1e-3)
    assert _validation_score(pipe, results["reproduce"][0], tmp_path / "d") < kept_score
    assert "the bundle is linear itself" in (describe_selection({"validation_prompts": 2, "floor": keep}) or "")


class _CountingRunner(PipelineRunner):
    """Counts the prompts each call samples."""

    def __init__(self, pipe, **kwargs) -> None:
        super().__init__(pipe, **kwargs)
        self.calls: list[list[str]] = []

    def run(self, prompts, seeds, num_steps, **overrides):
        self.calls.append(list(prompts))
        return super().run(prompts, seeds, num_steps, **overrides)


def test_collection_keeps_each_prompts_output_and_validation_does_not_sample_it_again(pipe, tmp_path: Path) -> None:
    runner = _CountingRunner(pipe, height=32, width=32, max_sequence_length=16)
    config = _config({"name": "kan", "taps": [3, 4, 4], "hidden": [8, 8]}, stage1={"epochs": 1, "batch_size": 4},
                     start=["reuse"])
    _, report = train(pipe, config, PROMPTS, runner=runner, out=tmp_path / "b", data_dir=tmp_path / "d",
                      show_progress=False)
    store = TrajectoryStore(tmp_path / "d" / "trajectories")
    outputs = store.load_outputs(list(range(len(PROMPTS))))
    assert outputs is not None and outputs.dtype == torch.uint8 and outputs.shape == (8, 3, 32, 32)
    alone = _runner(pipe).run([PROMPTS[6]], [3 + 6], STEPS, output_type="pt").images
    assert torch.equal(outputs[6], to_uint8(alone)[0])  # the full-compute image of that prompt, as PIL rounds it
    validation = [call for call in runner.calls if call == PROMPTS[-2:]]
    scored = len(report.selection["epochs"]["scores"]) + len(report.selection["floor"]["candidates"])
    assert len(validation) == scored  # one call per scored point: the reference came from collection


def test_linear_family_trains_in_closed_form_and_runs_as_a_peer(pipe, tmp_path: Path) -> None:
    bundle, report = train(
        pipe,
        _config({"name": "linear"}),
        PROMPTS,
        runner=_runner(pipe),
        out=tmp_path / "lin",
        data_dir=tmp_path / "d",
        show_progress=False,
    )
    fit = report.selection["closed_form"]
    assert fit["steps"] > 0 and 0 <= fit["residual"] < 1  # better than reuse on the training slice
    assert report.losses == {} and "closed_form" in report.seconds
    score = _validation_score(pipe, bundle, tmp_path / "d")
    assert score == pytest.approx(report.selection["validation_db"], abs=1e-3)
    # its coefficients belong to the policy's full steps: another policy is refused, with what to do instead
    assemble(pipe.transformer, {"bundle": str(bundle), "policy": POLICY})  # the same policy is fine
    with pytest.raises(ConfigError, match="fitted per step for the policy") as info:
        assemble(pipe.transformer, {"bundle": str(bundle), "policy": {**POLICY, "interval": 5}})
    assert "training.floor: reproduce" in str(info.value)


def test_stage2_output_loss_trains_through_the_tap_head(pipe, tmp_path: Path) -> None:
    config = {
        **_config(
            {"name": "kan", "taps": [3, 4, 4], "hidden": [8, 8]},
            stage2={"epochs": 1, "batch_size": 4, "lr": 0.001, "loss": "output"},
            validation_prompts=0,
        ),
        "tap": "normed",
    }
    _, report = train(
        pipe,
        config,
        PROMPTS,
        runner=_runner(pipe),
        out=tmp_path / "o",
        data_dir=tmp_path / "d",
        show_progress=False,
    )
    assert len(report.losses["stage2"]) == 1 and report.losses["stage2"][0] > 0


def test_stage2_output_loss_is_refused_before_collection_on_a_tap_without_head(pipe, tmp_path: Path) -> None:
    from lesa_core.errors import TrainingError

    config = _config({"name": "kan"}, stage2={"epochs": 1, "loss": "output"})
    with pytest.raises(TrainingError, match="head"):
        train(
            pipe,
            config,
            PROMPTS,
            runner=_runner(pipe),
            out=tmp_path / "o",
            data_dir=tmp_path / "d",
            show_progress=False,
        )
    assert not (tmp_path / "d" / "trajectories").exists()


def test_references_that_do_not_fit_the_validation_samples_are_refused(pipe) -> None:
    """Outputs collected with another call (here another image size) are not scored against: a clear error."""
    from lesa_core.errors import TrainingError
    from lesa_core.trainer.store import StoreMeta

    assembly = assemble(pipe.transformer, {"predictor": {"name": "taylor", "order": 0}, "policy": POLICY})
    meta = StoreMeta(model_class="", model_fingerprint="", tap="hidden", num_steps=STEPS, schedule=None,
                     token_index=None, prompts=PROMPTS, seed=3, call={})
    with pytest.raises(TrainingError, match="3 reference outputs for 2 validation prompts"):
        ClosedLoopValidator(assembly, _runner(pipe), meta, [6, 7], torch.zeros(3, 3, 32, 32, dtype=torch.uint8))
    validator = ClosedLoopValidator(assembly, _runner(pipe), meta, [6, 7], torch.zeros(2, 3, 16, 16, dtype=torch.uint8))
    with pytest.raises(TrainingError, match="differs from the collection's"):
        validator.score(assembly.predictor)
