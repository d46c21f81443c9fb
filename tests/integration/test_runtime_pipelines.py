"""The LESA runtime on real diffusers pipelines built offline from tiny random parts."""

from __future__ import annotations

import inspect
import logging

import pytest
import torch
from runtime_support import FAMILIES, ExecutionCounter, Family, make_host, run_config

import lesa_core
from lesa_core.errors import AttachError, UnsupportedModelError
from lesa_core.plugins import PluginHost

pytestmark = pytest.mark.integration

# LESA at 50 steps, N = 7, E = 3, step 3 forced: 10 full passes
SCHEDULED_FULL = [0, 1, 2, 3, 9, 16, 23, 30, 37, 44]


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test here runs on one torch thread (tiny models: threads only add overhead)."""


@pytest.fixture(scope="module")
def host() -> PluginHost:
    return make_host()


@pytest.fixture(params=sorted(FAMILIES))
def family(request: pytest.FixtureRequest) -> Family:
    return FAMILIES[request.param]


def test_interval_schedule_runs_the_body_on_exactly_the_scheduled_steps(family: Family, host: PluginHost) -> None:
    pipe = family.pipeline()
    counter = ExecutionCounter(pipe.transformer)
    with lesa_core.attach(pipe, run_config(7, 3), host=host) as handle:
        out = family.call(pipe, 50)
        stats = handle.stats()
    counter.remove()
    assert torch.isfinite(out).all()
    contexts = family.contexts
    # the pipelines call cond then (with CFG) uncond per step: call c is step c // k of context c % k
    k = len(contexts)
    for key in ("first", "last"):
        for j, name in enumerate(contexts):
            steps = [c // k for c in counter.executed[key] if c % k == j]
            assert steps == SCHEDULED_FULL, (key, name)
    assert set(stats) == set(contexts)
    for name in contexts:
        assert stats[name]["full_steps"] == 10
        assert stats[name]["forecast_steps"] == 40
        assert stats[name]["fallback_steps"] == 0
        assert [i for i, c in enumerate(stats[name]["decisions"]) if c == "F"] == SCHEDULED_FULL
        assert stats[name]["cache_bytes"] > 0 and stats[name]["seconds"] > 0


def test_every_step_full_is_bit_identical_and_remove_restores(family: Family, host: PluginHost) -> None:
    pipe = family.pipeline()
    signature = inspect.signature(pipe.transformer.forward)
    vanilla = family.call(pipe, 6)
    for tap in family.taps:
        handle = lesa_core.attach(pipe, run_config(1, 0, tap=tap, force_full=()), host=host)
        assert inspect.signature(pipe.transformer.forward) == signature
        assert torch.equal(family.call(pipe, 6), vanilla), tap
        assert all(s["forecast_steps"] == 0 for s in handle.stats().values())
        handle.remove()
        assert torch.equal(family.call(pipe, 6), vanilla), tap
        assert inspect.signature(pipe.transformer.forward) == signature
        assert "forward" not in pipe.transformer.__dict__


@pytest.mark.parametrize("tap", ["default", "hidden", "output"])
def test_consecutive_calls_with_new_resolution_and_step_count(family: Family, host: PluginHost, tap: str) -> None:
    pipe = family.pipeline()
    config = run_config(3, 2, tap=None if tap == "default" else tap, force_full=())
    with lesa_core.attach(pipe, config, host=host) as handle:
        first = family.call(pipe, 12)
        second = family.call(pipe, 9, family.other_size, seed=1)
        stats = handle.stats()
    assert torch.isfinite(first).all() and torch.isfinite(second).all()
    assert first.shape != second.shape
    assert all(len(s["decisions"]) == 9 for s in stats.values())  # the second call, from its step 0
    with lesa_core.attach(pipe, config, host=host):
        fresh = family.call(pipe, 9, family.other_size, seed=1)
    assert torch.equal(second, fresh)


def test_stats_survive_the_pipeline_reset_and_cache_holds_k_taps(host: PluginHost) -> None:
    family = FAMILIES["flux"]
    pipe = family.pipeline()
    with lesa_core.attach(pipe, run_config(4, 2, tap="hidden", order=2, force_full=()), host=host) as handle:
        family.call(pipe, 10)
        stats = handle.stats()["cond"]
    tap_bytes = 1 * 16 * 16 * 32 * 4  # batch 1, 16x16 tokens, width 32, float32
    assert stats["cache_bytes"] == 3 * tap_bytes  # K = order + 1
    assert stats["decisions"] == "FFcccFcccF"


def test_non_finite_forecasts_fall_back_to_full_steps(host: PluginHost, caplog: pytest.LogCaptureFixture) -> None:
    family = FAMILIES["flux"]
    pipe = family.pipeline()
    vanilla = family.call(pipe, 8)
    handle = lesa_core.attach(pipe, run_config(3, 2, force_full=()), host=host)
    handle.predictor.register_forward_hook(lambda module, args, out: out * float("nan"))
    with caplog.at_level(logging.WARNING, logger="lesa"):
        out = family.call(pipe, 8)
        family.call(pipe, 8)
    stats = handle.stats()["cond"]
    handle.remove()
    assert torch.equal(out, vanilla)  # every forecast was replaced by the real step
    assert stats["fallback_steps"] == 4 and stats["forecast_steps"] == 0 and stats["full_steps"] == 8
    assert stats["decisions"] == "FFxxFxxF"
    assert len([r for r in caplog.records if "non-finite" in r.getMessage()]) == 1


def test_guard_can_be_turned_off(host: PluginHost) -> None:
    family = FAMILIES["flux"]
    pipe = family.pipeline()
    config = {**run_config(3, 2, force_full=()), "guard_non_finite": False}
    with lesa_core.attach(pipe, config, host=host) as handle:
        handle.predictor.register_forward_hook(lambda module, args, out: out * float("nan"))
        out = family.call(pipe, 8)
        stats = handle.stats()["cond"]
    assert not torch.isfinite(out).all()
    assert stats["fallback_steps"] == 0 and stats["forecast_steps"] == 4


def test_attaching_twice_is_refused(host: PluginHost) -> None:
    pipe = FAMILIES["flux"].pipeline()
    with lesa_core.attach(pipe, run_config(), host=host), pytest.raises(AttachError, match="already attached"):
        lesa_core.attach(pipe, run_config(), host=host)
    with lesa_core.attach(pipe, run_config(), host=host):  # after remove, attaching works again
        pass


def test_unsupported_model_names_the_class_and_the_adapters(host: PluginHost) -> None:
    from diffusers import AutoencoderKL

    vae = AutoencoderKL(block_out_channels=(4,), layers_per_block=1, latent_channels=1, norm_num_groups=1)
    with pytest.raises(UnsupportedModelError) as info:
        lesa_core.attach(vae, run_config(), host=host)
    message = str(info.value)
    assert "diffusers.models.autoencoders.autoencoder_kl.AutoencoderKL" in message
    for name in ("flux", "qwen_image", "hunyuan_video"):
        assert name in message
    with pytest.raises(UnsupportedModelError, match="Linear"):
        lesa_core.attach(torch.nn.Linear(2, 2), run_config(), host=host)
