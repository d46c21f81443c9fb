"""Every adapter of ``family_specs.FAMILY_SPECS`` on its real diffusers pipeline, built offline from tiny parts.

Per family: the adapter is registered and claims the transformer; an interval schedule runs the body on
exactly the scheduled steps for every transformer call of the step (cond and uncond), counted by a
plain torch hook inside the first and the last body block (not by LESA's statistics); every step full
(N = 1) is bit-identical to no LESA for every tap, and so is the pipeline after ``remove()``; every tap
forecasts (finite, and the output moves away from the exact one); a forecast equal to the true feature
reproduces the full step bit for bit (the declarations are exact). The coverage table of
``docs/adapters.md`` is checked against the registered adapters and this table.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
import torch
from family_specs import FAMILY_SPECS, FamilySpec
from runtime_support import run_config
from torch import nn

import lesa_core
from lesa_core.plugins import PluginHost

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:In CPU autocast:UserWarning"),
]  # Mochi's RoPE on CPU

STEPS = 20
# interval N = 7, warmup E = 3, step 3 forced (as test_runtime_pipelines at 50 steps): 6 full passes of 20
SCHEDULED_FULL = [0, 1, 2, 3, 9, 16]


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test here runs on one torch thread (tiny models: threads only add overhead)."""


@pytest.fixture(scope="module")
def host() -> PluginHost:
    """The built-in predictor, policy and router and every family's adapter module, nothing else."""
    import lesa_predictors.taylor
    import lesa_schedulers.policies.interval
    import lesa_schedulers.routers.threshold

    adapters = [importlib.import_module(f"lesa_adapters.{spec.adapter}") for spec in FAMILY_SPECS]
    return PluginHost.create(
        autoload=False,
        plugins=[
            lesa_predictors.taylor,
            lesa_schedulers.policies.interval,
            lesa_schedulers.routers.threshold,
            *adapters,
        ],
    )


@pytest.fixture(params=FAMILY_SPECS, ids=[spec.adapter for spec in FAMILY_SPECS])
def spec(request: pytest.FixtureRequest) -> FamilySpec:
    return request.param


def _runs_only_when_computing(block: nn.Module) -> nn.Module:
    """A submodule of ``block`` with parameters: it runs only when the block really computes."""
    for child in block.children():
        if any(True for _ in child.parameters()):
            return child
    raise AssertionError(f"{type(block).__name__} has no submodule with parameters")


class BodyRuns:
    """Which transformer calls really ran the first and the last body block (plain torch hooks)."""

    def __init__(self, transformer: nn.Module, blocks: list[nn.Module]) -> None:
        self.call = -1
        self.ran: dict[str, list[int]] = {"first": [], "last": []}
        self._handles = [transformer.register_forward_pre_hook(self._next_call)]
        for key, block in (("first", blocks[0]), ("last", blocks[-1])):
            self._handles.append(_runs_only_when_computing(block).register_forward_hook(self._recorder(key)))

    def _next_call(self, module: nn.Module, args: Any) -> None:
        self.call += 1

    def _recorder(self, key: str) -> Callable[..., None]:
        def record(module: nn.Module, args: Any, output: Any) -> None:
            if not self.ran[key] or self.ran[key][-1] != self.call:  # once per call (Latte reuses blocks)
                self.ran[key].append(self.call)

        return record

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


def test_adapter_is_registered_and_claims_the_transformer(spec: FamilySpec, host: PluginHost) -> None:
    transformer = spec.transformer()
    assert host.resolve_adapter(transformer) is host.adapters.get(spec.adapter)
    assert host.adapters.get(spec.adapter)(transformer).body_blocks()


def test_interval_schedule_runs_the_body_exactly_on_the_scheduled_steps(
    spec: FamilySpec, host: PluginHost
) -> None:
    pipe = spec.build()
    adapter = host.adapters.get(spec.adapter)(pipe.transformer)
    runs = BodyRuns(pipe.transformer, adapter.body_blocks())
    with lesa_core.attach(pipe, run_config(7, 3), host=host) as handle:
        out = spec.run(pipe, STEPS)
        stats = handle.stats()
    runs.remove()
    assert torch.isfinite(out).all()
    k = spec.calls_per_step
    assert runs.call + 1 == STEPS * k, "transformer calls per step"
    for key in ("first", "last"):
        for j, name in enumerate(spec.contexts):
            steps = [c // k for c in runs.ran[key] if c % k == j]
            assert steps == SCHEDULED_FULL, (key, name)
    assert set(stats) == set(spec.contexts)
    for name in spec.contexts:
        assert stats[name]["full_steps"] == len(SCHEDULED_FULL)
        assert stats[name]["forecast_steps"] == STEPS - len(SCHEDULED_FULL)
        assert [i for i, c in enumerate(stats[name]["decisions"]) if c == "F"] == SCHEDULED_FULL


def _taps(spec: FamilySpec, host: PluginHost, transformer: nn.Module) -> list[str]:
    return list(host.adapters.get(spec.adapter).taps)


def test_every_step_full_is_bit_identical_and_remove_restores(spec: FamilySpec, host: PluginHost) -> None:
    pipe = spec.build()
    signature = inspect.signature(pipe.transformer.forward)
    vanilla = spec.run(pipe, 4)
    for tap in _taps(spec, host, pipe.transformer):
        handle = lesa_core.attach(pipe, run_config(1, 0, tap=tap, force_full=()), host=host)
        assert torch.equal(spec.run(pipe, 4), vanilla), tap
        assert all(s["forecast_steps"] == 0 and s["full_steps"] == 4 for s in handle.stats().values()), tap
        handle.remove()
        assert torch.equal(spec.run(pipe, 4), vanilla), tap
        assert inspect.signature(pipe.transformer.forward) == signature
        assert "forward" not in pipe.transformer.__dict__


def test_every_tap_forecasts(spec: FamilySpec, host: PluginHost) -> None:
    pipe = spec.build()
    vanilla = spec.run(pipe, 6)
    for tap in _taps(spec, host, pipe.transformer):
        with lesa_core.attach(pipe, run_config(3, 2, tap=tap, force_full=()), host=host) as handle:
            out = spec.run(pipe, 6)
            stats = handle.stats()
        assert out.shape == vanilla.shape and torch.isfinite(out).all(), tap
        assert all(s["decisions"] == "FFccFc" for s in stats.values()), (tap, stats)
        assert not torch.equal(out, vanilla), tap


def _sample(output: Any) -> torch.Tensor:
    """The output tensor of a transformer call (a tuple, a ``*ModelOutput``, or Z-Image's list)."""
    sample = output[0] if isinstance(output, tuple) else getattr(output, "sample", output)
    return torch.stack(list(sample)) if isinstance(sample, list) else sample


@contextlib.contextmanager
def _step_context(transformer: Any, handle: Any, step: int, num_steps: int) -> Iterator[None]:
    """Run one replayed call as step ``step`` of ``num_steps`` in the context ``default``: through the model's
    ``cache_context`` where it has one, else (PixArt, Sana, SD3, ... in diffusers 0.42.1) by setting the
    engine leader's context, as the generic adapter's proof does."""
    cache_context = getattr(transformer, "cache_context", None)
    if callable(cache_context):
        with cache_context("default", step_index=step, num_inference_steps=num_steps):
            yield
        return
    from lesa_adapters.engine.hooks import CacheContext

    leader = handle._attachment.leader
    leader.set_context(CacheContext("default", step_index=step, num_inference_steps=num_steps))
    try:
        yield
    finally:
        leader.set_context(None)


def test_a_forecast_equal_to_the_true_feature_reproduces_the_full_step(
    spec: FamilySpec, host: PluginHost
) -> None:
    """The declarations are exact, not just runnable: the pipeline's calls of its first two steps (one
    context) are replayed as a trajectory of three steps, the second call twice (each call carries its
    step index, so the runtime does not take the replay for a pipeline calling one step twice); the third
    step forecasts with order-0 Taylor (reuse), so its forecast *is* the true feature of the identical
    second call, and the output must be that call's bit for bit, for every tap. This fails if a block passes through the wrong
    stream, a ``forecast_skips`` module feeds the head, or the forecast lands anywhere but at the tap.
    A tap's declared head (``proj_out`` after ``norm_out``) maps the full step's tap to its output, and
    its declared width (``tap_channels``) is the feature's."""
    pipe = spec.build()
    transformer = pipe.transformer
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    hook = transformer.register_forward_pre_hook(lambda m, a, k: calls.append((a, k)), with_kwargs=True)
    spec.run(pipe, 2)
    hook.remove()
    first, second = calls[0], calls[spec.calls_per_step]  # steps 0 and 1 of the first context
    adapter = host.adapters.get(spec.adapter)(transformer)
    for tap in _taps(spec, host, transformer):
        events: list[Any] = []
        config = run_config(2, 2, tap=tap, order=0, force_full=())
        with lesa_core.attach(transformer, config, host=host, observer=events.append) as handle:
            outputs = []
            for step, (args, kwargs) in enumerate((first, second, second)):
                with _step_context(transformer, handle, step, 3):
                    outputs.append(_sample(transformer(*args, **kwargs)))
            (stats,) = handle.stats().values()
        assert stats["decisions"] == "FFc", tap
        assert torch.equal(outputs[2], outputs[1]), tap
        # the declared width is the feature's: channels last, or at dim 1 (CogVideoX: 2) of a channel-first output
        # step 1's tap; with batched guidance each branch's rows come as an event of their own, in row order
        feature = torch.cat([event.tap for event in events if event.step_index == 1])
        width = adapter.tap_channels(tap)
        if tap == "output" and adapter.output_channels_first:
            assert width in feature.shape[1:3], (tap, width, feature.shape)
        else:
            assert feature.shape[-1] == width, (tap, width, feature.shape)
        head = adapter.tap_head(tap)  # maps the tap to the output: the same values, up to the layout
        if head is not None:
            with torch.no_grad():
                mapped = head(feature)
            torch.testing.assert_close(
                mapped.flatten().sort().values,
                outputs[1].flatten().sort().values,
                rtol=1e-4,
                atol=1e-5,
                msg=tap,
            )


# ----------------------------------------------------------------------------- the coverage table in the docs

DOCS_TABLE = Path(__file__).resolve().parents[2] / "docs" / "adapters.md"
# the families tested in test_runtime_pipelines.py (with their text encoders), not in FAMILY_SPECS
RUNTIME_FAMILIES = {
    "flux": ("distilled", "FluxPipeline"),
    "qwen_image": ("separate", "QwenImagePipeline"),
    "hunyuan_video": ("distilled", "HunyuanVideoPipeline"),
}


def _coverage_rows() -> dict[str, list[str]]:
    """The coverage table of docs/adapters.md: adapter name → its cells."""
    rows: dict[str, list[str]] = {}
    for line in DOCS_TABLE.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("| ") and len(cells) == 6 and cells[1].startswith("`"):
            rows[cells[1].strip("`")] = cells
    return rows


def _family_adapter(module_name: str) -> Any:
    """The adapter class a ``lesa_adapters`` module exports first."""
    module = importlib.import_module(module_name)
    return getattr(module, module.__all__[0])


def test_coverage_table_matches_the_registered_adapters_and_the_family_table() -> None:
    """docs/adapters.md lists every adapter lesa-adapters registers, with its classes, taps (default in
    bold), the guidance its tested pipeline uses and that pipeline; twenty families or more."""
    registered = {
        ep.name: ep.value
        for ep in entry_points(group="lesa")
        if ep.value.startswith("lesa_adapters.") and _family_adapter(ep.value).model_classes
    }  # every adapter that claims classes (not the opt-in generic one)
    rows = _coverage_rows()
    assert sorted(rows) == sorted(registered)
    assert len(rows) >= 20, "twenty families or more (issue #16)"
    specs = {spec.adapter: spec for spec in FAMILY_SPECS}
    assert set(specs) | set(RUNTIME_FAMILIES) == set(registered), "every adapter runs a pipeline test"
    for name, (_, _, classes, taps, guidance, tested) in rows.items():
        cls = _family_adapter(registered[name])
        assert classes == ", ".join(f"`{path.split(':')[1]}`" for path in cls.model_classes), name
        assert taps == ", ".join(f"**`{t}`**" if t == cls.default_tap else f"`{t}`" for t in cls.taps), name
        expected = (
            (specs[name].guidance, specs[name].pipeline_class) if name in specs else RUNTIME_FAMILIES[name]
        )
        assert (guidance, tested) == (expected[0], f"`{expected[1]}`"), name


def test_z_image_latent_list_is_stacked_and_unequal_shapes_are_refused(host: PluginHost) -> None:
    """Z-Image's forward takes a list of latents: equal shapes stand for one batch; unequal ones (no
    trajectory shape) are refused with a clear ForwardInputError, not a crash inside the runtime."""
    from lesa_adapters.z_image import ZImageAdapter
    from lesa_core.errors import ForwardInputError

    spec = next(spec for spec in FAMILY_SPECS if spec.adapter == "z_image")
    transformer = spec.transformer()
    adapter = ZImageAdapter(transformer)
    latents = [torch.zeros(4, 1, 4, 4), torch.ones(4, 1, 4, 4)]
    assert torch.equal(adapter.latent_tensor(latents), torch.stack(latents))
    with (
        lesa_core.attach(transformer, run_config(3, 2), host=host),
        pytest.raises(ForwardInputError, match="`x`"),
    ):
        transformer(
            [torch.zeros(4, 1, 4, 4), torch.zeros(4, 1, 8, 8)],
            torch.tensor([0.5, 0.5]),
            [torch.zeros(6, 16), torch.zeros(6, 16)],
        )


@pytest.mark.skipif(
    importlib.util.find_spec("lesa_example_wan") is None,
    reason="pip install -e docs/examples/lesa-example-wan",
)
def test_the_wan_example_overrides_the_built_in_wan2_in_either_registration_order() -> None:
    """Both register (``wan`` and ``wan2``); an installed third-party adapter claims Wan models first,
    because the built-in resolves last; without it, ``wan2`` claims them."""
    import lesa_adapters.wan2
    import lesa_example_wan
    from lesa_core.testing import tiny

    model = tiny.tiny_wan_transformer()
    for plugins in ([lesa_adapters.wan2, lesa_example_wan], [lesa_example_wan, lesa_adapters.wan2]):
        host = PluginHost.create(autoload=False, plugins=plugins)
        assert {"wan", "wan2"} <= set(host.adapters.names())
        assert host.resolve_adapter(model) is lesa_example_wan.WanAdapter
    alone = PluginHost.create(autoload=False, plugins=[lesa_adapters.wan2])
    assert alone.resolve_adapter(model) is lesa_adapters.wan2.Wan2Adapter
