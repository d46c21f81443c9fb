"""Bad or unusual inputs at run time, on the tiny FLUX transformer and pipeline: errors are specific and
leave nothing behind; NaN inputs, batch-size changes, unknown or missing cache contexts and calls that
fail half-way are handled as specified, with no state leaking into the next call."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import torch
from reliability_support import CALL, expect_behaviour, expect_error

import lesa_core
from lesa_core.errors import AttachError, ConfigError, ForwardInputError, UnsupportedModelError
from lesa_core.plugins import PluginHost

pytestmark = pytest.mark.integration

TAYLOR = {"predictor": {"name": "taylor", "order": 1}, "router": {"name": "threshold", "boundaries": []},
          "policy": {"name": "interval", "interval": 3, "warmup": 2, "force_full": []}}
"""Steps 0, 1, 4, 7, ... compute; the others forecast."""

STEP_TIMES = [1.0, 0.85, 0.7, 0.55, 0.4, 0.25]


def _step_inputs(model: Any, step: int, batch: int = 1, stream: int = 0) -> dict[str, Any]:
    """Deterministic forward arguments of step ``step`` (flow time STEP_TIMES[step])."""
    from lesa_core.testing.tiny import transformer_inputs

    return transformer_inputs(model, batch=batch, t=STEP_TIMES[step], seed=100 * stream + step)


def _forward(model: Any, inputs: dict[str, Any]) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs, return_dict=False)[0]


@contextmanager
def _context(model: Any, name: str | None, step: int) -> Iterator[None]:
    if name is None:
        yield
    else:
        with model.cache_context(name, step_index=step, num_inference_steps=len(STEP_TIMES)):
            yield


def _loop(model: Any, context: str | None = "cond", stream: int = 0, batch_at: dict[int, int] | None = None,
          ) -> list[torch.Tensor]:
    outs = []
    for i in range(len(STEP_TIMES)):
        with _context(model, context, i):
            outs.append(_forward(model, _step_inputs(model, i, (batch_at or {}).get(i, 1), stream)))
    return outs


def _sample(pipe: Any, steps: int = 6, seed: int = 0, **kwargs: Any) -> torch.Tensor:
    return pipe(prompt="a red circle", num_inference_steps=steps, output_type="latent",
                generator=torch.Generator().manual_seed(seed), **{**CALL, **kwargs})[0]


# ----------------------------------------------------------------------------- errors


def test_forward_without_timestep(flux_pipe: Any, flux_inputs: dict[str, Any], host: PluginHost) -> None:
    model = flux_pipe.transformer
    inputs = {k: v for k, v in flux_inputs.items() if k != "timestep"}

    def run() -> None:
        with lesa_core.attach(model, TAYLOR, host=host):
            _forward(model, inputs)

    expect_error("forward-without-timestep", "runtime", run, ForwardInputError,
                 ["`timestep`", "NoneType", "pass both"], model=model, inputs=flux_inputs)


def test_forward_with_a_list_as_latent(flux_pipe: Any, flux_inputs: dict[str, Any], host: PluginHost) -> None:
    model = flux_pipe.transformer
    inputs = {**flux_inputs, "hidden_states": flux_inputs["hidden_states"].tolist()}

    def run() -> None:
        with lesa_core.attach(model, TAYLOR, host=host):
            _forward(model, inputs)

    expect_error("forward-latent-not-a-tensor", "runtime", run, ForwardInputError,
                 ["`hidden_states` (a tensor)", "got list"], model=model, inputs=flux_inputs)


def test_attach_to_something_without_a_transformer(host: PluginHost) -> None:
    expect_error("attach-to-a-string", "runtime", lambda: lesa_core.attach("flux", TAYLOR, host=host),
                 UnsupportedModelError, ["cannot find a transformer in str"])


def test_attach_to_an_unsupported_module(host: PluginHost) -> None:
    from diffusers import AutoencoderKL

    vae = AutoencoderKL(block_out_channels=(4,), layers_per_block=1, latent_channels=1, norm_num_groups=1).eval()
    expect_error("attach-to-a-vae", "runtime", lambda: lesa_core.attach(vae, TAYLOR, host=host),
                 UnsupportedModelError, ["AutoencoderKL", "Registered adapters", "flux"], model=vae,
                 inputs={"sample": torch.zeros(1, 3, 8, 8)})


def test_attach_with_a_tap_the_adapter_lacks(flux_pipe: Any, flux_inputs: dict[str, Any], host: PluginHost) -> None:
    exc = expect_error("attach-unknown-tap", "runtime",
                       lambda: lesa_core.attach(flux_pipe, {**TAYLOR, "tap": "attention"}, host=host), ConfigError,
                       ["'attention' is not one of them", "hidden", "set `tap`"], model=flux_pipe.transformer,
                       inputs=flux_inputs)
    assert isinstance(exc, ConfigError) and exc.path == "tap"


def test_attach_with_the_adapter_of_another_family(flux_pipe: Any, flux_inputs: dict[str, Any],
                                                   host: PluginHost) -> None:
    expect_error("attach-wrong-adapter", "runtime",
                 lambda: lesa_core.attach(flux_pipe, {**TAYLOR, "adapter": "qwen_image"}, host=host),
                 UnsupportedModelError, ["'qwen_image' does not handle FluxTransformer2DModel", "adapter: auto"],
                 model=flux_pipe.transformer, inputs=flux_inputs)


def test_attach_over_a_diffusers_cache(host: PluginHost) -> None:
    from diffusers import FirstBlockCacheConfig

    from lesa_core.testing.tiny import tiny_flux_transformer

    model = tiny_flux_transformer()  # not the session's: diffusers' disable_cache leaves instance forwards
    model.enable_cache(FirstBlockCacheConfig(threshold=0.1))
    try:
        expect_error("attach-over-diffusers-cache", "runtime", lambda: lesa_core.attach(model, TAYLOR, host=host),
                     AttachError, ["already has a diffusers cache enabled", "disable_cache()"], model=model)
    finally:
        model.disable_cache()

# ----------------------------------------------------------------------------- behaviours


def test_nan_latents_fall_back_to_full_steps(flux_pipe: Any, flux_inputs: dict[str, Any], host: PluginHost,
                                             caplog: pytest.LogCaptureFixture) -> None:
    """A NaN input makes every tap NaN; every forecast from them is non-finite, so the guard turns each
    into a full step: the result is exactly the model's own (NaN) result, counted and logged once."""
    model = flux_pipe.transformer
    nan = torch.full((1, 16 * 16, 4), float("nan"))

    def check() -> list[str]:
        vanilla = _sample(flux_pipe, latents=nan)
        with caplog.at_level(logging.WARNING, logger="lesa"), lesa_core.attach(flux_pipe, TAYLOR, host=host) as h:
            out = _sample(flux_pipe, latents=nan)
            _sample(flux_pipe, latents=nan)
            stats = h.stats()["cond"]
        problems = []
        if not torch.equal(out.isnan(), vanilla.isnan()) or not torch.allclose(out, vanilla, equal_nan=True):
            problems.append("output differs from the model's own")
        if (stats["forecast_steps"], stats["fallback_steps"], stats["decisions"]) != (0, 3, "FFxxFx"):
            problems.append(f"stats {stats}")
        logged = [r for r in caplog.records if "non-finite" in r.getMessage()]
        if len(logged) != 1:
            problems.append(f"logged {len(logged)} times")
        return problems

    expect_behaviour("nan-latents-guarded", "runtime", check, model=model, inputs=flux_inputs)


def test_batch_size_change_mid_trajectory_starts_over(flux_pipe: Any, flux_inputs: dict[str, Any],
                                                      host: PluginHost) -> None:
    """A latent of another batch size (or resolution) in the middle of a trajectory starts a new one:
    that step is computed (bit-identical to the model's own), never forecast from the other batch."""
    model = flux_pipe.transformer

    def check() -> list[str]:
        with lesa_core.attach(model, TAYLOR, host=host) as handle:
            outs = _loop(model, batch_at={3: 2, 4: 2, 5: 2})
            stats = handle.stats()["cond"]
        problems = []
        expected = _forward(model, _step_inputs(model, 3, batch=2))
        if not torch.equal(outs[3], expected):
            problems.append("the step with the new batch size is not the model's own output")
        if stats["decisions"] != "FFc":  # the new trajectory: step 3 (computed: no history), 4 (full), 5
            problems.append(f"decisions {stats['decisions']!r}")
        return problems

    expect_behaviour("batch-size-change-mid-call", "runtime", check, model=model, inputs=flux_inputs)


def test_unknown_context_names_keep_separate_state(flux_pipe: Any, flux_inputs: dict[str, Any],
                                                   host: PluginHost) -> None:
    """Any cache-context name gets its own state: two interleaved trajectories ('alpha', 'beta') give
    exactly what each gives alone."""
    model = flux_pipe.transformer

    def check() -> list[str]:
        with lesa_core.attach(model, TAYLOR, host=host) as handle:
            mixed: dict[str, list[torch.Tensor]] = {"alpha": [], "beta": []}
            for i in range(len(STEP_TIMES)):
                for stream, name in enumerate(("alpha", "beta")):
                    with _context(model, name, i):
                        mixed[name].append(_forward(model, _step_inputs(model, i, stream=stream)))
            stats = handle.stats()
        alone = {}
        for stream, name in enumerate(("alpha", "beta")):
            with lesa_core.attach(model, TAYLOR, host=host):
                alone[name] = _loop(model, name, stream=stream)
        problems = [f"{name} differs" for name in alone
                    if not all(torch.equal(a, b) for a, b in zip(mixed[name], alone[name], strict=True))]
        if sorted(stats) != ["alpha", "beta"] or any(s["forecast_steps"] != 3 for s in stats.values()):
            problems.append(f"stats {stats}")
        return problems

    expect_behaviour("unknown-context-names", "runtime", check, model=model, inputs=flux_inputs)


def test_calls_without_a_cache_context_use_the_default_one(flux_pipe: Any, flux_inputs: dict[str, Any],
                                                           host: PluginHost) -> None:
    model = flux_pipe.transformer

    def check() -> list[str]:
        with lesa_core.attach(model, TAYLOR, host=host) as handle:
            bare = _loop(model, context=None)
            stats = handle.stats()
        with lesa_core.attach(model, TAYLOR, host=host):
            named = _loop(model, context="cond")
        problems = []
        if list(stats) != ["default"] or stats["default"]["decisions"] != "FFccFc":
            problems.append(f"stats {stats}")
        if not all(torch.equal(a, b) for a, b in zip(bare, named, strict=True)):
            problems.append("no-context run differs from the named-context run")
        return problems

    expect_behaviour("no-cache-context", "runtime", check, model=model, inputs=flux_inputs)


class _Stop(Exception):
    pass


def _stop_at(step: int) -> Any:
    def callback(pipe: Any, i: int, t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        if i == step:
            raise _Stop
        return kwargs

    return callback


@pytest.mark.parametrize("failure", ["callback-raises", "callback-raises-at-step-0", "keyboard-interrupt",
                                     "forward-input-error"])
def test_a_call_that_fails_half_way_leaks_nothing(flux_pipe: Any, flux_inputs: dict[str, Any], host: PluginHost,
                                                  failure: str) -> None:
    """After a pipeline call dies half-way (user callback, Ctrl-C, a bad forward), the next call gives
    exactly what a freshly attached pipeline gives."""
    model = flux_pipe.transformer

    def check() -> list[str]:
        with lesa_core.attach(flux_pipe, TAYLOR, host=host):
            fresh = _sample(flux_pipe, steps=7, seed=5)
        with lesa_core.attach(flux_pipe, TAYLOR, host=host) as handle:
            _sample(flux_pipe, steps=6, seed=1)
            try:
                if failure.startswith("callback-raises"):
                    _sample(flux_pipe, steps=6, seed=2, callback_on_step_end=_stop_at(0 if "step-0" in failure else 3))
                elif failure == "keyboard-interrupt":
                    hook = model.transformer_blocks[0].register_forward_hook(_interrupt_once())
                    try:
                        _sample(flux_pipe, steps=6, seed=2)
                    finally:
                        hook.remove()
                else:
                    _forward(model, {k: v for k, v in flux_inputs.items() if k != "timestep"})
            except (_Stop, KeyboardInterrupt, ForwardInputError):
                pass
            again = _sample(flux_pipe, steps=7, seed=5)
            stats = handle.stats()["cond"]
        problems = []
        if not torch.equal(again, fresh):
            problems.append("the call after the failure differs from a fresh attachment's")
        if stats["decisions"] != "FFccFccF"[:7]:
            problems.append(f"decisions {stats['decisions']!r}")
        return problems

    expect_behaviour(f"half-done-call-{failure}", "runtime", check, model=model, inputs=flux_inputs)


def _interrupt_once() -> Any:
    calls = {"n": 0}

    def hook(module: Any, args: Any, output: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return output

    return hook
