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
the built-in ``taylor`` and ``kan`` predictors, ``interval`` policy and ``threshold`` router; default: the
process-wide host). Set the class attribute ``adapter_name`` to test a named adapter that does not claim
models on its own (``"generic"``). The suite drives the bare model step by step, the way a sampling loop
does: the ``timestep`` argument is rewritten per step with the adapter's ``timestep_from_time``, and each
call runs in ``model.cache_context(name, step_index=i, num_inference_steps=n)`` when the model has one.

It checks: attach/remove leaves the model bit-identical; every step full is exact; every tap forecasts;
tap heads give the model output; cache contexts never share state — and, for an adapter declaring
``batched_guidance``, neither do the guidance branches batched in one call (with or without
``cache_context``); attaching twice is refused; and a **training smoke test**: two prompts collected
(one trajectory per guidance branch), both stages trained, the bundle attached with the exact full-step
count, and at N = 1 bit-identical to the model without LESA (:class:`~lesa_core.testing.training.TransformerRunner`
drives the bare model).
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

    #: the registered name of the adapter under test, for one that is chosen by name only (``generic``);
    #: ``None``: the adapter that claims the model
    adapter_name: str | None = None

    @pytest.fixture
    def adapter(self, adapter_model: nn.Module, adapter_host: PluginHost | None) -> BackboneAdapter:
        from lesa_core.plugins import get_plugin_host

        host = adapter_host or get_plugin_host()
        if self.adapter_name is not None:
            return host.adapters.get(self.adapter_name)(adapter_model)
        return host.resolve_adapter(adapter_model)(adapter_model)

    def _attach(self, model: nn.Module, host: PluginHost | None, config: dict[str, Any],
                observer: Any = None) -> Any:
        from lesa_core.assembly import assemble

        if self.adapter_name is not None:
            config = {**config, "adapter": self.adapter_name}
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
            pytest.skip("the model has no cache_context: its guidance branches can only be separated as batch rows "
                        "(test_batched_guidance_rows_never_share_state)")
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

    def test_batched_guidance_rows_never_share_state(
        self, adapter_model: nn.Module, adapter: BackboneAdapter, adapter_inputs: dict[str, Any],
        adapter_host: PluginHost | None,
    ) -> None:
        """The guidance branches of one batched call (the same latents once per branch, each branch its own
        conditioning row) are separate trajectories: each is reported as its own context, and a forecast
        reads only its own branch's history — with or without ``cache_context``."""
        branches = adapter.batched_guidance
        if len(branches) < 2:
            pytest.skip("the adapter declares no batched_guidance")
        from lesa_core.testing.training import TransformerRunner

        runner = TransformerRunner(adapter_model, adapter, adapter_inputs, guidance=True)
        events: list[StepEvent] = []
        config = _config(order=0, interval=2, warmup=1)  # reuse after one full step: the branch's last tap
        with self._attached(adapter_model, adapter_host, config, events.append) as attachment:
            runner.run(["p"], [0], 4)
            stats = attachment.stats()
        assert {e.context for e in events} == set(branches)
        (summary,) = stats.values()
        assert summary["decisions"] == "FcFc" and summary.get("row_groups") == list(branches)
        by = {(e.context, e.step_index): e for e in events}
        for name in branches:
            assert by[name, 0].tap.shape[0] == 1  # one row per branch
            assert torch.equal(by[name, 1].tap, by[name, 0].tap)
            assert torch.equal(by[name, 3].tap, by[name, 2].tap)
            for other in branches:
                if other != name:
                    assert not torch.equal(by[name, 1].tap, by[other, 0].tap)

    def test_training_smoke(
        self, adapter_model: nn.Module, adapter: BackboneAdapter, adapter_inputs: dict[str, Any],
        adapter_host: PluginHost | None, tmp_path: Any,
    ) -> None:
        """Collect two prompts (every guidance branch a trajectory of its own), train both stages, attach the
        bundle: the exact full-step count, and at N = 1 the model's own output bit for bit."""
        from lesa_core.handle import attach
        from lesa_core.testing.training import TransformerRunner
        from lesa_core.trainer import TrajectoryStore, train

        guidance = len(adapter.batched_guidance) >= 2
        runner = TransformerRunner(adapter_model, adapter, adapter_inputs, guidance=guidance)
        steps = NUM_STEPS
        config: dict[str, Any] = {
            **_config(interval=3, warmup=2), "tap": adapter.default_tap,
            "predictor": {"name": "kan", "taps": 2, "hidden": [4]},
            "training": {"num_steps": steps, "seed": 0, "stage1": {"epochs": 1, "batch_size": 2, "lr": 1e-3},
                         "stage2": {"epochs": 1, "batch_size": 2, "lr": 1e-3}},
        }
        if self.adapter_name is not None:
            config["adapter"] = self.adapter_name
        vanilla = runner.run(["a"], [7], steps)
        bundle, report = train(adapter_model, config, ["a", "b"], runner=runner, out=tmp_path / "bundle",
                               data_dir=tmp_path / "data", host=adapter_host, show_progress=False)
        assert len(report.losses["stage1"]) == 1 and len(report.losses["stage2"]) == 1
        taps = TrajectoryStore(tmp_path / "data" / "trajectories").load()
        has_context = callable(getattr(adapter_model, "cache_context", None))
        expected = set(adapter.batched_guidance) if guidance else {"cond" if has_context else "default"}
        assert set(taps) == expected
        assert all(t.shape[:2] == (2, steps) for t in taps.values())
        with attach(adapter_model, str(bundle), host=adapter_host) as handle:
            cached = runner.run(["a"], [7], steps)
            (stats,) = handle.stats().values()
        assert stats["decisions"] == "FFccFccF" and stats["full_steps"] == 4
        assert torch.isfinite(cached).all()
        every_step = {"bundle": str(bundle), "policy": {"name": "interval", "interval": 1, "warmup": 1,
                                                       "force_full": []}}
        with attach(adapter_model, every_step, host=adapter_host) as handle:
            exact = runner.run(["a"], [7], steps)
            (stats,) = handle.stats().values()
        assert stats["full_steps"] == steps and torch.equal(exact, vanilla)

    def test_attaching_twice_is_refused(
        self, adapter_model: nn.Module, adapter_host: PluginHost | None,
    ) -> None:
        with self._attached(adapter_model, adapter_host, _config()), pytest.raises(AttachError):
            self._attach(adapter_model, adapter_host, _config())
