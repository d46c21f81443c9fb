"""Conformance tests every :class:`~lesa_core.interfaces.BackboneAdapter` must pass.

Subclass :class:`AdapterConformance` and provide two fixtures::

    class TestMyAdapter(AdapterConformance):
        @pytest.fixture
        def adapter_model(self):
            return build_my_tiny_transformer().eval()     # fresh, small, random-init

        @pytest.fixture
        def adapter_inputs(self, adapter_model):
            return {...}                                 # forward kwargs of one call (timestep included)

and optionally ``adapter_host`` (a :class:`~lesa_core.plugins.PluginHost` that knows the adapter and
the built-in ``taylor`` predictor, ``interval`` policy and ``threshold`` router; default: the
process-wide host). The suite drives the bare model step by step, the way a sampling loop does: the
``timestep`` argument is rewritten per step with the adapter's ``timestep_from_time``, and each call
runs in ``model.cache_context(name, step_index=i, num_inference_steps=n)`` when the model has one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from lesa_core.errors import AttachError
from lesa_core.interfaces import BackboneAdapter, Decision, StepEvent
from lesa_core.plugins import PluginHost

__all__ = ["AdapterConformance", "drive", "first_tensor"]

NUM_STEPS = 8


def first_tensor(output: Any) -> Tensor:
    """The sample tensor of a model's return value (tensor, tuple, or an output with ``sample``)."""
    if isinstance(output, Tensor):
        return output
    sample = getattr(output, "sample", None)
    if isinstance(sample, Tensor):
        return sample
    return output[0]


def _config(tap: str | None = None, *, interval: int = 3, order: int = 1, warmup: int = 2) -> dict[str, Any]:
    return {"tap": tap, "predictor": {"name": "taylor", "order": order},
            "router": {"name": "threshold", "boundaries": []},
            "policy": {"name": "interval", "interval": interval, "warmup": warmup, "force_full": []}}


def drive(model: nn.Module, adapter: BackboneAdapter, inputs: dict[str, Any], num_steps: int = NUM_STEPS,
          context: str | None = "cond", start: float = 1.0) -> list[Tensor]:
    """Call ``model`` at ``num_steps`` flow times from ``start`` down, as a sampling loop would.

    :param context: the cache-context name, or ``None`` to call without any context.
    :return: the output tensor of each call.
    """
    latent = inputs[adapter.latent_argument]
    batch = latent.shape[0]
    outputs = []
    cache_context = getattr(model, "cache_context", None)
    for i in range(num_steps):
        t = start * (1.0 - i / num_steps)
        timestep = adapter.timestep_from_time(torch.full((batch,), t, device=latent.device))
        kwargs = {**inputs, adapter.timestep_argument: timestep.to(latent.dtype)}
        ctx = (cache_context(context, step_index=i, num_inference_steps=num_steps)
               if context is not None and callable(cache_context) else contextlib.nullcontext())
        with torch.no_grad(), ctx:
            outputs.append(first_tensor(model(**kwargs)).clone())
    return outputs


class AdapterConformance:
    """The adapter conformance suite (see the module docstring for the fixtures)."""

    @pytest.fixture
    def adapter_host(self) -> PluginHost | None:
        return None

    @pytest.fixture
    def adapter(self, adapter_model: nn.Module, adapter_host: PluginHost | None) -> BackboneAdapter:
        from lesa_core.plugins import get_plugin_host

        host = adapter_host or get_plugin_host()
        return host.resolve_adapter(adapter_model)(adapter_model)

    @staticmethod
    def _attach(model: nn.Module, host: PluginHost | None, config: dict[str, Any],
                observer: Any = None) -> Any:
        from lesa_core.assembly import assemble

        assembly = assemble(model, config, host=host)
        components = dataclasses.replace(assembly.components(), observer=observer)
        return assembly.adapter.attach(components)

    @contextlib.contextmanager
    def _attached(self, model: nn.Module, host: PluginHost | None, config: dict[str, Any],
                  observer: Any = None) -> Iterator[Any]:
        attachment = self._attach(model, host, config, observer)
        try:
            yield attachment
        finally:
            attachment.remove()

    # -- the suite ------------------------------------------------------------------------------
    def test_claims_its_model(self, adapter: BackboneAdapter, adapter_model: nn.Module) -> None:
        assert type(adapter).claims(adapter_model)
        assert adapter.default_tap in adapter.taps
        assert not type(adapter).claims(nn.Linear(2, 2))

    def test_attach_then_remove_leaves_model_unchanged(
        self, adapter_model: nn.Module, adapter: BackboneAdapter, adapter_inputs: dict[str, Any],
        adapter_host: PluginHost | None,
    ) -> None:
        signature = inspect.signature(adapter_model.forward)
        had_forward = "forward" in adapter_model.__dict__
        vanilla = drive(adapter_model, adapter, adapter_inputs)
        with self._attached(adapter_model, adapter_host, _config()) as attachment:
            assert inspect.signature(adapter_model.forward) == signature
            cached = drive(adapter_model, adapter, adapter_inputs)
            assert any(s["forecast_steps"] for s in attachment.stats().values())
        assert all(torch.isfinite(out).all() for out in cached)
        after = drive(adapter_model, adapter, adapter_inputs)
        assert all(torch.equal(a, b) for a, b in zip(vanilla, after, strict=True))
        assert inspect.signature(adapter_model.forward) == signature
        assert ("forward" in adapter_model.__dict__) == had_forward

    def test_every_step_full_is_exact(
        self, adapter_model: nn.Module, adapter: BackboneAdapter, adapter_inputs: dict[str, Any],
        adapter_host: PluginHost | None,
    ) -> None:
        vanilla = drive(adapter_model, adapter, adapter_inputs)
        for tap in adapter.taps:
            with self._attached(adapter_model, adapter_host, _config(tap, interval=1)) as attachment:
                outs = drive(adapter_model, adapter, adapter_inputs)
                (stats,) = attachment.stats().values()
            assert all(torch.equal(a, b) for a, b in zip(vanilla, outs, strict=True)), tap
            assert stats["full_steps"] == NUM_STEPS and stats["forecast_steps"] == 0

    @pytest.mark.parametrize("with_context", [True, False])
    def test_every_tap_forecasts(
        self, adapter_model: nn.Module, adapter: BackboneAdapter, adapter_inputs: dict[str, Any],
        adapter_host: PluginHost | None, with_context: bool,
    ) -> None:
        for tap in adapter.taps:
            events: list[StepEvent] = []
            with self._attached(adapter_model, adapter_host, _config(tap), events.append) as attachment:
                outs = drive(adapter_model, adapter, adapter_inputs, context="cond" if with_context else None)
                stats = attachment.stats()
            name = "cond" if with_context and hasattr(adapter_model, "cache_context") else "default"
            assert set(stats) == {name}, tap
            # interval 3, warm-up 2: full at 0, 1, 4, 7
            assert stats[name]["decisions"] == "FFccFccF", tap
            assert [e.decision for e in events] == [Decision.COMPUTE] * 2 + [Decision.FORECAST] * 2 + \
                [Decision.COMPUTE] + [Decision.FORECAST] * 2 + [Decision.COMPUTE]
            assert all(torch.isfinite(out).all() for out in outs), tap
            assert all(e.inputs is not None for e in events if e.decision is Decision.FORECAST)

    def test_tap_heads_give_the_model_output(
        self, adapter_model: nn.Module, adapter: BackboneAdapter, adapter_inputs: dict[str, Any],
        adapter_host: PluginHost | None,
    ) -> None:
        """A tap's head (:meth:`BackboneAdapter.tap_head`), applied to the tap of a full step, gives
        that step's model output: the same values, up to the output's layout (compared sorted)."""
        vanilla = drive(adapter_model, adapter, adapter_inputs)
        for tap in adapter.taps:
            head = adapter.tap_head(tap)
            if head is None:
                continue
            events: list[StepEvent] = []
            with self._attached(adapter_model, adapter_host, _config(tap, interval=1), events.append), \
                    torch.no_grad():
                drive(adapter_model, adapter, adapter_inputs)
            assert len(events) == len(vanilla), tap
            for event, output in zip(events, vanilla, strict=True):
                mapped = head(event.tap)
                assert mapped.numel() == output.numel(), tap
                torch.testing.assert_close(mapped.flatten().sort().values, output.flatten().sort().values,
                                           rtol=1e-4, atol=1e-5, msg=f"tap {tap}, step {event.step_index}")

    def test_contexts_never_share_state(
        self, adapter_model: nn.Module, adapter: BackboneAdapter, adapter_inputs: dict[str, Any],
        adapter_host: PluginHost | None,
    ) -> None:
        cache_context: Any = getattr(adapter_model, "cache_context", None)
        if not callable(cache_context):
            pytest.skip("the model has no cache_context")
        latent = adapter_inputs[adapter.latent_argument]
        other = {**adapter_inputs, adapter.latent_argument: torch.randn_like(latent) * 2.0}
        batch = latent.shape[0]
        events: list[StepEvent] = []
        # reuse (Taylor order 0) after one full step: a forecast equals the context's last tap
        config = _config(order=0, interval=2, warmup=1)
        with self._attached(adapter_model, adapter_host, config, events.append) as attachment:
            for i in range(4):
                t = 1.0 - i / 4
                timestep = adapter.timestep_from_time(torch.full((batch,), t)).to(latent.dtype)
                for name, inputs in (("cond", adapter_inputs), ("uncond", other)):
                    with torch.no_grad(), cache_context(name, step_index=i, num_inference_steps=4):
                        adapter_model(**{**inputs, adapter.timestep_argument: timestep})
            stats = attachment.stats()
        assert set(stats) == {"cond", "uncond"}
        assert stats["cond"]["decisions"] == stats["uncond"]["decisions"] == "FcFc"
        by = {(e.context, e.step_index): e for e in events}
        for name, other_name in (("cond", "uncond"), ("uncond", "cond")):
            assert torch.equal(by[name, 1].tap, by[name, 0].tap)
            assert torch.equal(by[name, 3].tap, by[name, 2].tap)
            assert not torch.equal(by[name, 1].tap, by[other_name, 0].tap)

    def test_attaching_twice_is_refused(
        self, adapter_model: nn.Module, adapter_host: PluginHost | None,
    ) -> None:
        with self._attached(adapter_model, adapter_host, _config()), pytest.raises(AttachError):
            self._attach(adapter_model, adapter_host, _config())
