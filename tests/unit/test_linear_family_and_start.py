"""The closed-form ``linear`` family, and a learned family started from given coefficients (issue #15)."""

from __future__ import annotations

import pytest
import torch

from lesa_core.errors import ConfigError, ScheduleMismatchError
from lesa_core.interfaces import (
    ClosedFormFit,
    CoefficientStart,
    CoefficientTarget,
    Decision,
    Example,
    ForecastInput,
    PredictorContext,
)
from lesa_core.trainer.losses import TeacherForcing
from lesa_core.trainer.selection import (
    coefficient_targets,
    fit_blend_into,
    fit_closed_form,
    forecast_steps,
    snr_db,
    training_slice,
    validation_count,
)
from lesa_core.trainer.store import StoreMeta
from lesa_predictors.kan import KANConfig, KANPredictor
from lesa_predictors.linear import LinearConfig, LinearStepPredictor
from lesa_predictors.mlp import MLPConfig, MLPPredictor
from lesa_predictors.taylor import TaylorConfig, TaylorPredictor

S = 12
SCHEDULE = [1.0 - i / S for i in range(S)] + [0.0]
F, C_ = Decision.FORECAST, Decision.COMPUTE
DECISIONS = [C_, C_, C_, F, F, C_, F, F, C_, F, F, C_]
TIMES = torch.tensor(SCHEDULE[:S])


def trajectories(prompts: int = 5, tokens: int = 6, channels: int = 4, seed: int = 0) -> torch.Tensor:
    """Smooth random trajectories ``(P, S, N, C)``: a quadratic in the step plus a per-channel offset."""
    g = torch.Generator().manual_seed(seed)
    a, b, c = (torch.randn(prompts, 1, tokens, channels, generator=g) for _ in range(3))
    s = torch.arange(S, dtype=torch.float32).reshape(1, S, 1, 1) / S
    return a + b * s + 0.7 * c * s * s


def linear(**params) -> LinearStepPredictor:
    config = LinearConfig.model_validate({"schedule": SCHEDULE, **params})
    return LinearStepPredictor(config, PredictorContext(channels=4))


def test_the_family_declares_closed_form_fit_and_the_learned_ones_a_coefficient_start() -> None:
    assert isinstance(linear(), ClosedFormFit) and not isinstance(linear(), CoefficientStart)
    kan = KANPredictor(KANConfig(taps=4), PredictorContext(channels=4))
    assert isinstance(kan, CoefficientStart) and not isinstance(kan, ClosedFormFit)


def test_untrained_linear_is_reuse_and_needs_a_schedule() -> None:
    p = linear()
    taps = trajectories()
    inputs = TeacherForcing(p, DECISIONS, TIMES).forecast_input([taps[:, j] for j in (0, 1, 2)], [0, 1, 2], 3)
    assert torch.equal(p(inputs), taps[:, 2])
    with pytest.raises(ConfigError, match="schedule"):
        LinearStepPredictor(LinearConfig(), PredictorContext(channels=4))


def test_closed_form_fit_recovers_a_quadratic_exactly() -> None:
    """Trajectories quadratic in the step are forecast exactly by 3 taps: the fit must find it."""
    p = linear(ridge=0.0)
    taps = {"cond": trajectories()}
    summary = fit_closed_form(p, DECISIONS, TIMES, taps)
    assert summary["steps"] == len(forecast_steps(TeacherForcing(p, DECISIONS, TIMES)))
    assert summary["residual"] < 1e-8
    teacher = TeacherForcing(p, DECISIONS, TIMES)
    for step in forecast_steps(teacher):
        idx = teacher.history(step)
        forecast = p(teacher.forecast_input([taps["cond"][:, j] for j in idx], idx, step))
        torch.testing.assert_close(forecast, taps["cond"][:, step], atol=1e-4, rtol=1e-4)


def test_fit_does_not_depend_on_how_the_rows_are_batched() -> None:
    taps = trajectories(prompts=6)
    one, two = linear(), linear()
    teacher = TeacherForcing(one, DECISIONS, TIMES)

    def examples(batch: int):
        for step in forecast_steps(teacher):
            idx = teacher.history(step)
            for start in range(0, 6, batch):
                rows = taps[start : start + batch]
                yield Example(teacher.forecast_input([rows[:, j] for j in idx], idx, step), rows[:, step])

    one.fit_closed_form(examples(6))
    two.fit_closed_form(examples(1))
    torch.testing.assert_close(one.coef, two.coef, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(one.bias, two.bias, atol=1e-6, rtol=1e-6)


def test_per_channel_fit_has_a_coefficient_set_per_channel() -> None:
    p = linear(per_channel=True)
    fit_closed_form(p, DECISIONS, TIMES, {"cond": trajectories()})
    assert p.coef.shape == (S, 3, 4) and p.bias.shape == (S, 4)
    assert not torch.allclose(p.coef[3, :, 0], p.coef[3, :, 1])


def test_linear_is_bound_to_its_schedule() -> None:
    p = linear()
    with pytest.raises(ScheduleMismatchError, match="12-step"):
        p.check_num_steps(20)
    with pytest.raises(ScheduleMismatchError, match="fitted"):
        p.check_time(3, 0.123)
    p.check_time(3, SCHEDULE[3])


@pytest.mark.parametrize("family", [KANPredictor, MLPPredictor])
def test_a_learned_expert_starts_from_taylor1_coefficients(family) -> None:
    """Taylor-1 is ``h[-1] + r_s (h[-1] − h[-2])``: rank one, so the expert reproduces it closely."""
    config = (KANConfig if family is KANPredictor else MLPConfig)(
        taps=4, per_channel=True, relative_units="spacing"
    )
    torch.manual_seed(0)
    expert = family(config, PredictorContext(channels=4))
    teacher = TeacherForcing(expert, DECISIONS, TIMES)
    taylor = TaylorPredictor(TaylorConfig(order=1))
    targets = coefficient_targets(taylor, teacher)
    before = _error(expert, targets)
    error = expert.start_from(targets)
    assert error < 0.02 * before and error < 1e-3


def _error(expert, targets: list[CoefficientTarget]) -> float:
    total = 0.0
    for t in targets:
        with torch.no_grad():
            coef, _ = expert.coefficients(t.inputs)
        total += float((coef - t.coef.unsqueeze(-1)).pow(2).mean())
    return total / len(targets)


def test_a_blend_of_two_forecasters_is_fitted_exactly_by_a_closed_form_family_reading_both_histories() -> None:
    """``w · linear + (1 − w) · Taylor-1`` is linear over the history: a 3-tap closed-form fit to its forecasts
    reproduces it on every forecast step (here on other trajectories than those it was fitted on)."""
    taps = {"cond": trajectories()}
    fitted, taylor = linear(taps=3), TaylorPredictor(TaylorConfig(order=1))
    fit_closed_form(fitted, DECISIONS, TIMES, taps)
    blend = fit_blend_into(linear(taps=3, ridge=0.0), fitted, taylor, 0.25, DECISIONS, TIMES, taps)
    assert blend is not None
    other = trajectories(seed=7)
    teacher = TeacherForcing(blend, DECISIONS, TIMES)
    for step in forecast_steps(teacher):
        idx = teacher.history(step)
        inputs = teacher.forecast_input([other[:, j] for j in idx], idx, step)
        with torch.no_grad():
            want = 0.25 * fitted(inputs.last(min(3, len(idx)))) + 0.75 * taylor(inputs.last(min(2, len(idx))))
            assert torch.allclose(blend(inputs), want, atol=1e-4), step


def test_per_tap_alpha_reproduces_a_closed_form_fit_that_scalar_alpha_only_approximates() -> None:
    """A per-step fit whose taps move independently is not rank one: ``scalar`` α approximates it,
    ``per_tap`` α (one scale per tap and the bias) reproduces it up to the time network's fit."""
    fitted = linear(taps=3)
    fit_closed_form(fitted, DECISIONS, TIMES, {"cond": trajectories()})
    errors = {}
    for alpha in ("scalar", "per_tap"):
        torch.manual_seed(0)
        expert = KANPredictor(KANConfig(taps=3, alpha=alpha, relative_units="spacing"), PredictorContext(channels=4))
        targets = coefficient_targets(fitted, TeacherForcing(expert, DECISIONS, TIMES))
        errors[alpha] = expert.start_from(targets)
    assert errors["per_tap"] < 1e-3
    assert errors["per_tap"] < 0.1 * errors["scalar"]


def test_per_tap_alpha_gives_one_scale_per_tap_and_the_bias() -> None:
    expert = KANPredictor(KANConfig(taps=4, alpha="per_tap", per_channel=True), PredictorContext(channels=4))
    targets = coefficient_targets(TaylorPredictor(TaylorConfig(order=1)), TeacherForcing(expert, DECISIONS, TIMES))
    inputs = targets[0].inputs
    with torch.no_grad():
        assert expert.alpha(inputs).shape == (5,)
        coef, bias = expert.coefficients(inputs)
    assert coef.shape == (len(inputs.features), 4) and bias.shape == (4,)


def test_starting_from_reuse_gives_alpha_zero() -> None:
    expert = KANPredictor(KANConfig(taps=4), PredictorContext(channels=4))
    teacher = TeacherForcing(expert, DECISIONS, TIMES)
    targets = coefficient_targets(TaylorPredictor(TaylorConfig(order=0)), teacher)
    assert expert.start_from(targets) < 1e-6
    inputs = targets[0].inputs
    with torch.no_grad():
        assert abs(float(expert.alpha(inputs))) < 1e-3


def test_validation_slice_is_the_collections_tail_and_at_most_a_quarter() -> None:
    assert validation_count(32, 8) == 8 and validation_count(24, 8) == 6 and validation_count(3, 8) == 0
    meta = StoreMeta("M", "f", "hidden", S, SCHEDULE, None, [f"p{i}" for i in range(8)], 5, {})
    taps = {"cond": torch.zeros(8, S, 2, 2)}
    train_meta, train_taps = training_slice(meta, taps, 2)
    assert train_meta.prompts == [f"p{i}" for i in range(6)] and train_meta.seed == 5
    assert train_taps["cond"].shape[0] == 6


def test_snr_db_is_per_sample_and_capped_for_exact_matches() -> None:
    ref = torch.ones(2, 3, 4)
    sample = ref.clone()
    sample[1] += 0.1
    db = snr_db(sample, ref)
    assert db[0] == 200.0 and abs(float(db[1]) - 20.0) < 1e-3


def test_forecast_input_of_a_single_entry_history_still_works() -> None:
    p = linear()
    x = torch.randn(2, 3, 4)
    out = p(
        ForecastInput([x], torch.tensor([1.0]), torch.tensor([0.0]), torch.tensor(0.9), torch.tensor(1.0))
    )
    assert torch.equal(out, x)


def test_the_cli_line_says_which_start_won_and_by_how_much() -> None:
    from lesa_core.trainer.selection import describe_selection

    selection = {
        "validation_prompts": 6,
        "start": {"candidates": {"reuse": 41.44, "linear": 43.58}, "chosen": "linear"},
        "epochs": {"space": "image", "best": "stage1 epoch 5", "best_db": 45.53, "gain_over_start_db": 1.94},
    }
    line = describe_selection(selection)
    assert line is not None and "6 validation prompts (image PSNR" in line
    assert (
        "start: linear (43.58 dB; reuse 41.44)" in line and "kept: stage1 epoch 5 (45.53 dB, +1.94 dB" in line
    )
    assert describe_selection({"validation_prompts": 0}) is None
    floor = {
        "validation_prompts": 8,
        "floor": {"candidates": {"reuse": 42.96, "linear": 46.68}, "chosen": "linear", "applied": False},
    }
    assert "floor: linear (46.68 dB; reuse 42.96) — training beat it" in (describe_selection(floor) or "")
    floor["floor"]["applied"] = True
    assert "the predictor reproduces linear" in (describe_selection(floor) or "")
