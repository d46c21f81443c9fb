"""The bare-transformer sampler, trajectory boundaries without a pipeline, and torch.compile."""

from __future__ import annotations

import pytest
import torch
from runtime_support import make_host, run_config

import lesa_core
from lesa_core.errors import ScheduleMismatchError
from lesa_core.plugins import PluginHost
from lesa_core.sampler import sample
from lesa_core.testing import tiny
from lesa_core.testing.adapters import drive

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test here runs on one torch thread."""


@pytest.fixture(scope="module")
def host() -> PluginHost:
    return make_host()


def _flux() -> tuple[torch.nn.Module, torch.Tensor, dict[str, object]]:
    model = tiny.tiny_flux_transformer()
    kwargs = tiny.transformer_inputs(model, height=4, width=4)
    latents = kwargs.pop("hidden_states")
    kwargs.pop("timestep")
    return model, latents, kwargs


def test_sampler_shares_the_runtime(host: PluginHost) -> None:
    model, latents, kwargs = _flux()
    vanilla = sample(model, latents, kwargs, 50, adapter=host.adapters.get("flux")(model))
    with lesa_core.attach(model, run_config(1, 0, force_full=()), host=host) as handle:
        exact = sample(model, latents, kwargs, 50, adapter=handle.assembly.adapter)
    assert torch.equal(exact, vanilla)
    with lesa_core.attach(model, run_config(7, 3), host=host) as handle:
        cached = sample(model, latents, kwargs, 50, adapter=handle.assembly.adapter)
        stats = handle.stats()
    assert stats["cond"]["full_steps"] == 10 and stats["cond"]["forecast_steps"] == 40
    assert torch.isfinite(cached).all() and not torch.equal(cached, vanilla)


def test_sampler_resolves_the_adapter_and_runs_cfg_contexts(host: PluginHost, monkeypatch: pytest.MonkeyPatch) -> None:
    import lesa_core.plugins

    monkeypatch.setattr(lesa_core.plugins, "_HOST", host)
    model, latents, kwargs = _flux()
    negative = {**kwargs, "encoder_hidden_states": torch.zeros_like(kwargs["encoder_hidden_states"])}
    with lesa_core.attach(model, run_config(3, 2, force_full=()), host=host) as handle:
        out = sample(model, latents, kwargs, 9, negative_model_kwargs=negative, guidance_scale=3.0)
        stats = handle.stats()
    assert torch.isfinite(out).all()
    assert stats["cond"]["decisions"] == stats["uncond"]["decisions"] == "FFccFccFc"


def test_schedule_bound_predictor_is_checked(host: PluginHost) -> None:
    model, latents, kwargs = _flux()
    calls: dict[str, list[object]] = {"num_steps": [], "time": []}
    with lesa_core.attach(model, run_config(3, 2, force_full=()), host=host) as handle:
        handle.predictor.check_num_steps = lambda n: calls["num_steps"].append(n)
        handle.predictor.check_time = lambda i, t: calls["time"].append((i, round(t, 6)))
        sample(model, latents, kwargs, 8, adapter=handle.assembly.adapter)

        def refuse(n: int) -> None:
            raise ScheduleMismatchError(f"trained for 50 steps, not {n}")

        handle.predictor.check_num_steps = refuse
        with pytest.raises(ScheduleMismatchError, match="not 8"):
            sample(model, latents, kwargs, 8, adapter=handle.assembly.adapter)
    from diffusers import FlowMatchEulerDiscreteScheduler

    scheduler = FlowMatchEulerDiscreteScheduler()
    scheduler.set_timesteps(8)
    sigmas = [round(float(s), 6) for s in scheduler.sigmas[:8]]
    assert calls["num_steps"] == [8]
    assert calls["time"] == [(i, sigmas[i]) for i in (0, 1, 4, 7)]


def test_bare_loops_without_context_start_a_new_trajectory_when_t_jumps_back(host: PluginHost) -> None:
    model = tiny.tiny_flux_transformer()
    adapter = host.adapters.get("flux")(model)
    inputs = tiny.transformer_inputs(model)
    with lesa_core.attach(model, run_config(3, 2, force_full=()), host=host) as handle:
        first = drive(model, adapter, inputs, num_steps=8, context=None)
        assert handle.stats()["default"]["decisions"] == "FFccFccF"
        second = drive(model, adapter, inputs, num_steps=5, context=None)  # no reset in between
        assert handle.stats()["default"]["decisions"] == "FFccF"
        other_shape = tiny.transformer_inputs(model, height=2, width=4)
        drive(model, adapter, other_shape, num_steps=3, context=None, start=0.2)  # new shape, lower t
        assert handle.stats()["default"]["decisions"] == "FFc"
    with lesa_core.attach(model, run_config(3, 2, force_full=()), host=host):
        fresh = drive(model, adapter, inputs, num_steps=5, context=None)
    assert all(torch.equal(a, b) for a, b in zip(second, fresh, strict=True))
    assert torch.equal(first[0], fresh[0])  # same start, same full step


def test_torch_compile_whole_model(host: PluginHost) -> None:
    """Dynamo traces through the hooks (decisions are graph breaks); two graph variants, no more."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    model, latents, kwargs = _flux()
    with lesa_core.attach(model, run_config(3, 2, force_full=()), host=host) as handle:
        adapter = handle.assembly.adapter
        eager = sample(model, latents, kwargs, 10, adapter=adapter)
        compiled = torch.compile(model, backend="aot_eager")
        out = sample(compiled, latents, kwargs, 10, adapter=adapter)
        graphs = counters["stats"]["unique_graphs"]
        again = sample(compiled, latents, kwargs, 10, adapter=adapter)
        assert counters["stats"]["unique_graphs"] == graphs  # a second trajectory recompiles nothing
        stats = handle.stats()["cond"]
    torch._dynamo.reset()
    assert stats["decisions"] == "FFccFccFcc"
    torch.testing.assert_close(out, eager, rtol=1e-5, atol=1e-5)
    assert torch.equal(out, again)


@pytest.mark.filterwarnings("ignore:.*torch.jit.script_method.*:DeprecationWarning")  # inductor's own import
def test_compile_repeated_blocks_inductor(host: PluginHost) -> None:
    torch._dynamo.reset()
    model, latents, kwargs = _flux()
    with lesa_core.attach(model, run_config(3, 2, force_full=()), host=host) as handle:
        adapter = handle.assembly.adapter
        eager = sample(model, latents, kwargs, 10, adapter=adapter)
        model.compile_repeated_blocks(fullgraph=False)
        out = sample(model, latents, kwargs, 10, adapter=adapter)
        stats = handle.stats()["cond"]
    torch._dynamo.reset()
    assert stats["decisions"] == "FFccFccFcc"
    torch.testing.assert_close(out, eager, rtol=1e-4, atol=1e-4)
