"""The forecast fast path: memoised host coefficients, CUDA-graph plumbing, the fused combine, and the
stage-aware composite selecting its expert without a host synchronisation."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode

from lesa_core.interfaces import ForecastInput, LinearPredictor
from lesa_core.interfaces import coefficients as fastpath
from lesa_core.interfaces.coefficients import fast_coefficients
from lesa_core.interfaces.predictor import PredictorConfig, combine
from lesa_core.testing.predictors import make_forecast_input


class _Counting(LinearPredictor):
    """``coef = softplus(w) * (t - times)``, counting its coefficient computations."""

    def __init__(self) -> None:
        super().__init__(PredictorConfig())
        self.w = nn.Parameter(torch.tensor(0.5))
        self.calls = 0

    @property
    def history_size(self) -> int:
        return 3

    def coefficients(self, inputs: ForecastInput) -> tuple[Tensor, Tensor]:
        self.calls += 1
        coef = nn.functional.softplus(self.w) * (inputs.t - inputs.times)
        return coef, self.w * 0.1


def _eager(predictor: _Counting, inputs: ForecastInput) -> Tensor:
    return combine(inputs.features, *predictor.coefficients(inputs))


def test_host_coefficients_are_memoised_per_times_and_parameters() -> None:
    predictor = _Counting().eval()
    inputs = make_forecast_input(3)
    with torch.no_grad():
        first = predictor(inputs)
        assert predictor(inputs).equal(first)
        assert predictor.calls == 1  # the second forecast reused the coefficients
        later = make_forecast_input(3, step=11)
        assert torch.allclose(predictor(later), _eager(predictor, later))
        calls = predictor.calls
        predictor.w.add_(1.0)  # an optimiser step or load_state_dict changes the version counter
        assert torch.allclose(predictor(inputs), _eager(predictor, inputs))
        assert predictor.calls == calls + 2
        assert not predictor(inputs).equal(first)


def _with_host(inputs: ForecastInput) -> ForecastInput:
    import dataclasses

    host = (tuple(inputs.times.tolist()), tuple(inputs.steps.tolist()), float(inputs.t), float(inputs.step))
    return dataclasses.replace(inputs, scalars=host)


def test_host_copies_key_the_memo_and_follow_last() -> None:
    """With ``ForecastInput.scalars`` (what a runtime passes for CUDA inputs when it knows the times), the
    memo is keyed by the host values alone: the device tensors are never read on the host."""
    import dataclasses

    predictor = _Counting().eval()
    inputs = _with_host(make_forecast_input(3))
    assert inputs.last(2).scalars == (inputs.scalars[0][-2:], inputs.scalars[1][-2:], inputs.scalars[2], inputs.scalars[3])
    with torch.no_grad():
        first = predictor(inputs)
        poisoned = dataclasses.replace(inputs, times=inputs.times * float("nan"), t=inputs.t * float("nan"))
        assert predictor(poisoned).equal(first)  # same host values: the memoised coefficients
        assert predictor.calls == 1
        other = _with_host(make_forecast_input(3, step=12))
        expected = _eager(predictor, other)
        assert torch.allclose(predictor(other), expected)
        assert predictor.calls == 3  # first, the eager reference, the new host values


def test_memo_is_bypassed_for_training_and_gradients() -> None:
    predictor = _Counting()
    inputs = make_forecast_input(3)
    predictor.train()
    with torch.no_grad():
        predictor(inputs), predictor(inputs)
    assert predictor.calls == 2
    predictor.eval()
    out = predictor(inputs)  # grad enabled and w requires grad: plain evaluation, differentiable
    out.sum().backward()
    assert predictor.w.grad is not None and predictor.calls == 3


def test_memo_is_bounded_and_not_copied(monkeypatch: pytest.MonkeyPatch) -> None:
    import copy

    monkeypatch.setattr(fastpath, "MEMO_SIZE", 4)
    predictor = _Counting().eval()
    with torch.no_grad():
        for step in range(10, 20):
            predictor(make_forecast_input(3, step=step))
    assert len(predictor.__dict__["_lesa_fast_state"].memo) == 4
    clone = copy.deepcopy(predictor)
    assert clone.__dict__["_lesa_fast_state"].memo == {}
    assert "_lesa_fast_state" not in predictor.state_dict()


class _EmulatedGraph:
    """CPU stand-in for a captured CUDA graph: replay recomputes into the static outputs in place."""

    def __init__(self, fn: fastpath.CoefficientFn, static_inputs: ForecastInput, outputs: tuple[Tensor, Tensor]):
        self.fn, self.static_inputs, self.outputs = fn, static_inputs, outputs
        self.replays = 0

    def replay(self) -> None:
        self.replays += 1
        for out, value in zip(self.outputs, self.fn(self.static_inputs), strict=True):
            out.copy_(value)


def _emulated_capture(state: fastpath._FastState, fn: fastpath.CoefficientFn, inputs: ForecastInput) -> fastpath._Graph:
    import dataclasses

    with torch.inference_mode(False), torch.no_grad():  # as _capture: normal tensors, even under inference_mode
        static = tuple(t.detach().clone() for t in (inputs.times, inputs.steps, inputs.t, inputs.step))
        static_inputs = dataclasses.replace(inputs, times=static[0], steps=static[1], t=static[2], step=static[3])
        outputs = tuple(t.clone() for t in fn(static_inputs))
    return fastpath._Graph(_EmulatedGraph(fn, static_inputs, outputs), static, outputs)  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["no_grad", "inference_mode"])
def test_graph_path_feeds_static_inputs_and_keys_by_history_length(monkeypatch: pytest.MonkeyPatch,
                                                                   mode: str) -> None:
    monkeypatch.setattr(fastpath, "_capture", _emulated_capture)
    predictor = _Counting().eval()
    with torch.no_grad() if mode == "no_grad" else torch.inference_mode():
        for n, step in [(2, 10), (3, 11), (3, 12), (2, 13), (3, 14)]:
            inputs = make_forecast_input(n, step=step)
            coef, bias = fastpath._graphed(predictor, predictor.coefficients, inputs)
            expected = predictor.coefficients(inputs)
            assert torch.allclose(coef, expected[0]) and torch.allclose(bias, expected[1])
    graphs = predictor.__dict__["_lesa_fast_state"].graphs
    assert len(graphs) == 2  # one per history length
    assert sum(g.graph.replays for g in graphs.values()) == 5


def test_failed_capture_falls_back_to_eager_once(monkeypatch: pytest.MonkeyPatch,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    def broken(*_: object) -> fastpath._Graph:
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(fastpath, "_capture", broken)
    predictor = _Counting().eval()
    with torch.no_grad(), caplog.at_level(logging.WARNING, logger="lesa"):
        for step in (10, 11, 12):
            inputs = make_forecast_input(3, step=step)
            coef, _ = fastpath._graphed(predictor, predictor.coefficients, inputs)
            assert torch.allclose(coef, predictor.coefficients(inputs)[0])
    assert sum("CUDA-graph capture" in r.message for r in caplog.records) == 1
    assert predictor.__dict__["_lesa_fast_state"].graphs_failed


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("per_channel", [False, True])
def test_combine_accumulates_in_float32(dtype: torch.dtype, per_channel: bool) -> None:
    g = torch.Generator().manual_seed(0)
    features = [torch.randn(2, 5, 4, generator=g).to(dtype) for _ in range(4)]
    coef = torch.randn(4, 4, generator=g) if per_channel else torch.randn(4, generator=g)
    bias = torch.randn(4, generator=g) if per_channel else torch.randn((), generator=g)
    out = combine(features, coef, bias)
    reference = sum(f.double() * c.double() for f, c in zip(features, coef, strict=True)) + bias.double()
    assert out.dtype == dtype and out.shape == features[0].shape
    assert torch.allclose(out.double(), reference.to(dtype).double(), atol=1e-5 if dtype == torch.float32 else 0.05)
    if dtype == torch.bfloat16:  # no worse than rounding the float64 result once
        assert (out.double() - reference).abs().max() <= (reference.to(dtype).double() - reference).abs().max() * 2.5


class _NoHostReads(TorchDispatchMode):
    """Fails on ``aten._local_scalar_dense`` — the op behind ``.item()``, ``float(t)`` and
    ``tensor[index_tensor]``, i.e. every read of a tensor value on the host — and on ``aten.lift_fresh``,
    a host value turned into a tensor (``t[i] = 1.0``, ``torch.tensor(...)``), which on CUDA is a copy
    from the host. Both synchronise on CUDA and break a graph capture."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        if func is torch.ops.aten._local_scalar_dense.default:
            raise AssertionError("a tensor value was read on the host")
        if func is torch.ops.aten.lift_fresh.default:
            raise AssertionError("a host value was copied into a tensor")
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("family", ["kan", "taylor"])
def test_coefficients_never_read_device_values_on_the_host(family: str) -> None:
    """The eager coefficient path (what a CUDA graph captures) must not synchronise: stage selection
    by ``index_select``, Taylor coefficients without Python scalars written into tensors."""
    from lesa_core.composite import StageAwarePredictor, build_predictor
    from lesa_predictors.kan import KANConfig, KANPredictor
    from lesa_predictors.taylor import TaylorConfig, TaylorPredictor
    from lesa_schedulers.routers.threshold import ThresholdConfig, ThresholdRouter

    router = ThresholdRouter(ThresholdConfig(boundaries=(0.9, 0.5)))
    if family == "kan":
        predictor = build_predictor(KANPredictor, KANConfig(taps=(2, 3, 3), hidden=(4,)), router, None).eval()
        assert isinstance(predictor, StageAwarePredictor)
        fn = predictor._selected_coefficients
    else:
        predictor = build_predictor(TaylorPredictor, TaylorConfig(order=2), router, None).eval()
        fn = predictor.coefficients
    with torch.no_grad():
        for step in (3, 30, 45):  # one per stage
            inputs = make_forecast_input(3, step=step)
            if family == "kan":
                expected = predictor.expert_list[router.route(float(inputs.t))](inputs)
            else:
                expected = predictor(inputs)
            with _NoHostReads():
                coef, bias = fn(inputs)
            assert torch.allclose(combine(inputs.features, coef, bias), expected, atol=1e-6)


@pytest.mark.gpu
def test_cuda_graph_coefficients_match_eager() -> None:
    from lesa_core.composite import build_predictor
    from lesa_predictors.kan import KANConfig, KANPredictor
    from lesa_schedulers.routers.threshold import ThresholdConfig, ThresholdRouter

    router = ThresholdRouter(ThresholdConfig(boundaries=(0.9, 0.5)))
    predictor = build_predictor(KANPredictor, KANConfig(), router, None).cuda().eval().requires_grad_(False)
    with torch.no_grad():
        for step in (5, 12, 20, 30, 44, 46, 49):
            for n in (4, 6, 8):
                cpu = make_forecast_input(n, shape=(1, 64, 32), step=step, dtype=torch.bfloat16)
                inputs = ForecastInput(features=[f.cuda() for f in cpu.features], times=cpu.times.cuda(),
                                       steps=cpu.steps.cuda(), t=cpu.t.cuda(), step=cpu.step.cuda())
                fast = [t.clone() for t in fast_coefficients(predictor, predictor._selected_coefficients, inputs)]
                eager = predictor._selected_coefficients(inputs)
                for a, b in zip(fast, eager, strict=True):
                    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert len(predictor.__dict__["_lesa_fast_state"].graphs) == 3


class _PerChannel(_Counting):
    """Per-channel coefficients ``(K, C)`` and bias ``(C,)``."""

    @property
    def coefficient_shape(self) -> tuple[int, ...]:
        return (4,)

    def coefficients(self, inputs: ForecastInput) -> tuple[Tensor, Tensor]:
        coef, bias = super().coefficients(inputs)
        return coef[:, None].expand(-1, 4), bias.expand(4)


def test_experts_with_different_coefficient_shapes_forecast_each_and_select_without_state() -> None:
    """The composite decides at construction whether it can select coefficients; its forward mutates
    nothing (predictors are pure)."""
    from lesa_core.composite import StageAwarePredictor
    from lesa_core.interfaces import StageRouter

    class _TwoStages(StageRouter):
        @property
        def boundaries(self) -> tuple[float, ...]:
            return (0.5,)

    same = StageAwarePredictor([_Counting(), _Counting()], _TwoStages(PredictorConfig()))
    mixed = StageAwarePredictor([_Counting(), _PerChannel()], _TwoStages(PredictorConfig()))
    assert same._linear and not mixed._linear
    inputs = make_forecast_input(3, shape=(2, 6, 4))
    before = dict(vars(mixed))
    with torch.no_grad():
        out = mixed(inputs)
    assert vars(mixed).keys() == before.keys() and all(vars(mixed)[k] is v for k, v in before.items())
    expert = mixed.expert_list[int(mixed.stage_of(inputs.t))]
    torch.testing.assert_close(out, _eager(expert, inputs))  # type: ignore[arg-type]
