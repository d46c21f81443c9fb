"""``handle.remove()`` restores exactly the hooks that were there — accelerate's offload hooks (what
``enable_model_cpu_offload`` installs) and diffusers' own hooks, installed before or after LESA. Removing
LESA once dropped accelerate's offload hook when offloading was enabled after attaching.

Each case runs on a fresh tiny FLUX pipeline (accelerate leaves an instance ``forward`` behind by design)
and checks that the other party's hook still runs after ``remove()``, that no LESA hook is left, and that
the model's output on fixed inputs is what it was.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from reliability_support import expect_behaviour

import lesa_core
from lesa_adapters import hook_names
from lesa_core.plugins import PluginHost

pytestmark = pytest.mark.integration

accelerate_hooks = pytest.importorskip("accelerate.hooks")

TAYLOR = {"predictor": {"name": "taylor", "order": 1}, "policy": {"name": "interval", "interval": 3, "warmup": 2}}


class CountingHook(accelerate_hooks.ModelHook):  # type: ignore[misc,name-defined]
    """A real accelerate hook that counts the forwards it wraps."""

    def __init__(self) -> None:
        self.calls = 0

    def pre_forward(self, module: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        self.calls += 1
        return args, kwargs


def _fresh() -> tuple[Any, dict[str, Any], torch.Tensor]:
    from lesa_core.testing.tiny import tiny_flux_pipeline, transformer_inputs

    pipe = tiny_flux_pipeline()
    pipe.set_progress_bar_config(disable=True)
    inputs = transformer_inputs(pipe.transformer, t=0.7)
    return pipe, inputs, _output(pipe.transformer, inputs)


def _output(model: Any, inputs: dict[str, Any]) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs, return_dict=False)[0]


def _sample(pipe: Any) -> None:
    pipe("a red circle", num_inference_steps=6, height=32, width=32, max_sequence_length=16, output_type="latent",
         generator=torch.Generator().manual_seed(0))


def _lesa_hooks(model: Any) -> list[str]:
    return [f"{m}:{h}" for m, names in hook_names(model).items() for h in names if h.startswith("lesa")]


def _offload_case(host: PluginHost, install: Callable[[Any], CountingHook], *, lesa_first: bool) -> list[str]:
    pipe, inputs, reference = _fresh()
    model = pipe.transformer
    if lesa_first:
        handle = lesa_core.attach(pipe, TAYLOR, host=host)
        hook = install(model)
    else:
        hook = install(model)
        handle = lesa_core.attach(pipe, TAYLOR, host=host)
    _sample(pipe)
    forecasts = handle.stats()["cond"]["forecast_steps"]
    during = hook.calls
    handle.remove()
    problems = []
    if forecasts == 0 or during == 0:
        problems.append(f"LESA forecast {forecasts} steps and the offload hook ran {during} times while attached")
    if _lesa_hooks(model):
        problems.append(f"LESA hooks left: {_lesa_hooks(model)}")
    out = _output(model, inputs)
    if hook.calls != during + 1:
        problems.append("after remove() the offload hook no longer wraps the forward")
    if not torch.equal(out, reference):
        problems.append("the output changed")
    accelerate_hooks.remove_hook_from_module(model)
    if not torch.equal(_output(model, inputs), reference) or hasattr(model, "_hf_hook"):
        problems.append("removing accelerate's hook afterwards does not give the plain model back")
    return problems


def _counting(model: Any) -> CountingHook:
    hook = CountingHook()
    accelerate_hooks.add_hook_to_module(model, hook)
    return hook


def _cpu_offload(model: Any) -> CountingHook:
    """What ``pipe.enable_model_cpu_offload()`` installs on each model (accelerate's ``cpu_offload_with_hook``,
    here with the CPU as execution device), plus a counting hook appended to it."""
    from accelerate import cpu_offload_with_hook

    cpu_offload_with_hook(model, execution_device="cpu")
    hook = CountingHook()
    accelerate_hooks.add_hook_to_module(model, hook, append=True)
    return hook


@pytest.mark.parametrize("lesa_first", [True, False], ids=["offload-after-attach", "offload-before-attach"])
@pytest.mark.parametrize("install", [_counting, _cpu_offload], ids=["accelerate-hook", "cpu-offload-with-hook"])
def test_remove_keeps_accelerates_hook(lesa_first: bool, install: Callable[[Any], CountingHook],
                                       host: PluginHost) -> None:
    name = f"remove-keeps-{install.__name__.strip('_').replace('_', '-')}-{'after' if lesa_first else 'before'}"
    expect_behaviour(name, "runtime", lambda: _offload_case(host, install, lesa_first=lesa_first))


def test_accelerate_removed_first_then_lesa(host: PluginHost) -> None:
    def check() -> list[str]:
        pipe, inputs, reference = _fresh()
        handle = lesa_core.attach(pipe, TAYLOR, host=host)
        _counting(pipe.transformer)
        _sample(pipe)
        accelerate_hooks.remove_hook_from_module(pipe.transformer)
        _sample(pipe)
        handle.remove()
        problems = [f"LESA hooks left: {_lesa_hooks(pipe.transformer)}"] if _lesa_hooks(pipe.transformer) else []
        if not torch.equal(_output(pipe.transformer, inputs), reference):
            problems.append("the output changed")
        return problems

    expect_behaviour("accelerate-removed-then-lesa", "runtime", check)


def test_reattach_after_removal_with_offload(host: PluginHost) -> None:
    """Attach, offload, remove, attach again, remove: the offload hook survives both and LESA works both
    times (a stale chain once made the second attachment's tap unreachable)."""

    def check() -> list[str]:
        pipe, inputs, reference = _fresh()
        hook = None
        problems = []
        for round_ in range(2):
            handle = lesa_core.attach(pipe, TAYLOR, host=host)
            if hook is None:
                hook = _counting(pipe.transformer)
            _sample(pipe)
            if handle.stats()["cond"]["forecast_steps"] == 0:
                problems.append(f"round {round_}: nothing forecast")
            handle.remove()
        assert hook is not None
        before = hook.calls
        if not torch.equal(_output(pipe.transformer, inputs), reference) or hook.calls != before + 1:
            problems.append("offload hook or output lost")
        return problems

    expect_behaviour("reattach-with-offload", "runtime", check)


def test_remove_keeps_diffusers_group_offloading(host: PluginHost) -> None:
    """diffusers' own hooks on the same modules (group offloading, applied after attaching) stay."""
    from diffusers.hooks import apply_group_offloading

    def check() -> list[str]:
        pipe, inputs, reference = _fresh()
        handle = lesa_core.attach(pipe, TAYLOR, host=host)
        apply_group_offloading(pipe.transformer, onload_device=torch.device("cpu"),
                               offload_device=torch.device("cpu"), offload_type="block_level", num_blocks_per_group=1)
        _sample(pipe)
        handle.remove()
        left = hook_names(pipe.transformer)
        problems = []
        if _lesa_hooks(pipe.transformer):
            problems.append(f"LESA hooks left: {_lesa_hooks(pipe.transformer)}")
        if not left or any(names != ["group_offloading"] for names in left.values()):
            problems.append(f"diffusers' hooks changed: {left}")
        if not torch.equal(_output(pipe.transformer, inputs), reference):
            problems.append("the output changed")
        return problems

    expect_behaviour("remove-keeps-group-offloading", "runtime", check)
