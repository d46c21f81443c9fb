"""The generic adapter's runtime: declarations derived from the model on its first call, and proven.

:class:`DeferredAttachment` is what ``GenericAdapter.attach`` returns. It installs one placeholder hook
on the transformer; on the first forward call it

1. **probes**: runs the real forward once with plain forward hooks on every block of every direct
   ``nn.ModuleList`` child, recording which lists ran (in what order), each block's inputs and outputs,
   the model output and, when the model has them, the ``norm_out`` / ``proj_out`` outputs;
2. **derives** the declarations (:func:`derive`): the body (the lists that ran, in execution order), a
   :class:`BlockIO` per block class (the image stream is the ``hidden_states`` argument, else the first;
   the text stream ``encoder_hidden_states`` when the block takes it; the returned positions matched by
   identity with the next block's input, else by shape), the taps (``hidden``; ``normed`` on
   ``norm_out`` with ``proj_out`` as head only if ``proj_out`` alone reproduces the output's values;
   ``output``), the output layout and the timestep units (0..1000 if the call's timestep exceeds 1.5);
3. **proves** them (:func:`prove`): with the engine attached under the derived declarations, an every-step
   full call must return the probe's output bit for bit, and a forecast step whose forecast is the tap
   just recorded must return the same output (to float tolerance) — the N = 1 equivalence the runtime
   relies on. A derivation that fails either is refused with an :class:`~lesa_core.errors.AttachError`
   naming what did not match;
4. attaches the ordinary :class:`~lesa_adapters.engine.attachment.DiffusersAttachment` with the run's
   components under the derived declarations, and runs the call through it.

The first call thus costs three forwards. The placeholder keeps the caller's cache context, so a first
call made inside ``cache_context(...)`` counts in that context.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from lesa_adapters.engine.arguments import argument
from lesa_adapters.engine.declarations import (
    BlockIO,
    BodyOutputTap,
    DiffusersBackbone,
    ModelOutputTap,
    ModuleOutputTap,
)
from lesa_adapters.engine.names import LEADER_HOOK
from lesa_adapters.engine.registries import forget_registry, registry_of
from lesa_core.errors import AttachError, ForwardInputError
from lesa_core.interfaces import (
    Attachment,
    CachePolicy,
    Decision,
    ForecastInput,
    PluginConfig,
    Predictor,
    RuntimeComponents,
    StepInfo,
    TapSpec,
)
from lesa_core.interfaces.predictor import PredictorConfig

if TYPE_CHECKING:
    from lesa_adapters.engine.attachment import DiffusersAttachment

__all__ = ["DeferredAttachment", "Derived", "Probe", "derive", "probe", "prove"]


@dataclasses.dataclass
class Probe:
    """What one real forward showed: per block call (list name, block, args, kwargs, output), in order."""

    calls: list[tuple[str, nn.Module, tuple[Any, ...], dict[str, Any], Any]]
    output: Tensor
    normed: Tensor | None
    projected: Tensor | None
    timestep: Any


@dataclasses.dataclass(frozen=True)
class Derived:
    """The declarations derived from a :class:`Probe` (the class attributes of a ``DiffusersBackbone``)."""

    body: tuple[str, ...]
    block_io: Mapping[str, BlockIO]
    taps: Mapping[str, TapSpec]
    output_channels_first: bool
    timestep_scale: float
    hidden_size: int
    output_channels: int


def body_lists(model: nn.Module) -> dict[str, nn.ModuleList]:
    """The direct ``nn.ModuleList`` children of ``model`` holding at least one module."""
    return {
        name: child
        for name, child in model.named_children()
        if isinstance(child, nn.ModuleList) and len(child) > 0
    }


def _output_tensor(output: Any) -> Tensor:
    if isinstance(output, Tensor):
        return output
    sample = getattr(output, "sample", None)
    return sample if isinstance(sample, Tensor) else output[0]


def probe(
    model: nn.Module,
    forward: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    timestep: Any,
) -> Probe:
    """Run ``forward(*args, **kwargs)`` once under ``torch.no_grad()``, recording every block call of the
    model's block lists and the outputs of ``norm_out`` and ``proj_out`` (plain PyTorch hooks, removed)."""
    calls: list[tuple[str, nn.Module, tuple[Any, ...], dict[str, Any], Any]] = []
    seen: dict[str, Tensor] = {}
    handles = []
    for name, stack in body_lists(model).items():
        for block in stack:

            def record(
                module: nn.Module, a: tuple[Any, ...], k: dict[str, Any], out: Any, name: str = name
            ) -> None:
                calls.append((name, module, a, k, out))

            handles.append(block.register_forward_hook(record, with_kwargs=True))
    for attr in ("norm_out", "proj_out"):
        sub = getattr(model, attr, None)
        if isinstance(sub, nn.Module):

            def keep(module: nn.Module, a: tuple[Any, ...], out: Any, attr: str = attr) -> None:
                if isinstance(out, Tensor):
                    seen[attr] = out.detach().clone()

            handles.append(sub.register_forward_hook(keep))
    try:
        with torch.no_grad():
            output = _output_tensor(forward(*args, **kwargs)).detach().clone()
    finally:
        for handle in handles:
            handle.remove()
    return Probe(calls, output, seen.get("norm_out"), seen.get("proj_out"), timestep)


def _parameters(block: nn.Module) -> list[str]:
    return [p.name for p in list(inspect.signature(type(block).forward).parameters.values())[1:]]


def _block_io(
    block: nn.Module,
    calls: list[tuple[int, tuple[Any, ...], dict[str, Any], Any]],
    next_inputs: dict[int, Any],
) -> BlockIO:
    """The :class:`BlockIO` of one block class from its calls (index in the probe, args, kwargs, output)."""
    params = _parameters(block)
    name = type(block).__qualname__
    hidden_arg = "hidden_states" if "hidden_states" in params else (params[0] if params else "hidden_states")
    hidden_pos = params.index(hidden_arg) if hidden_arg in params else 0
    encoder_arg = "encoder_hidden_states" if "encoder_hidden_states" in params else None
    encoder_pos = params.index(encoder_arg) if encoder_arg is not None else None
    _, args, kwargs, output = calls[0]
    hidden = argument(args, kwargs, hidden_arg, hidden_pos)
    if not isinstance(hidden, Tensor):
        raise AttachError(
            f"adapter 'generic': block {name} takes no tensor as `{hidden_arg}`; write an adapter "
            "for this model (docs/adding-a-backbone.md)"
        )
    if isinstance(output, Tensor):
        return BlockIO(
            hidden_out=None,
            hidden_arg=hidden_arg,
            hidden_pos=hidden_pos,
            encoder_arg=encoder_arg,
            encoder_pos=encoder_pos,
        )
    if not isinstance(output, (tuple, list)) or not 1 <= len(output) <= 2:
        raise AttachError(
            f"adapter 'generic': block {name} returns {type(output).__name__}; only a tensor or a "
            "tuple of one or two streams can be passed through"
        )
    if len(output) == 1:
        return BlockIO(
            hidden_out=0,
            hidden_arg=hidden_arg,
            hidden_pos=hidden_pos,
            encoder_arg=encoder_arg,
            encoder_pos=encoder_pos,
        )
    if encoder_arg is None:
        raise AttachError(
            f"adapter 'generic': block {name} returns two streams but takes no `encoder_hidden_states`"
        )
    positions = [i for i, out in enumerate(output) if isinstance(out, Tensor) and out.shape == hidden.shape]
    for i, _, _, output_i in calls:  # identity: the next block's image stream is this one's output
        following = next_inputs.get(i)
        matched = [p for p in (0, 1) if following is not None and output_i[p] is following]
        if len(matched) == 1:
            positions = matched
            break
    if len(positions) != 1:
        raise AttachError(
            f"adapter 'generic': cannot tell which output of block {name} is the image stream; "
            "write an adapter for this model (docs/adding-a-backbone.md)"
        )
    return BlockIO(
        hidden_out=positions[0],
        encoder_out=1 - positions[0],
        hidden_arg=hidden_arg,
        hidden_pos=hidden_pos,
        encoder_arg=encoder_arg,
        encoder_pos=encoder_pos,
    )


def derive(model: nn.Module, found: Probe) -> Derived:
    """The declarations of ``model`` from what ``found`` showed (see the module docstring).

    :raises AttachError: if no block list ran, a list ran only in part, or a block's streams cannot be told.
    """
    kind = type(model).__qualname__
    if not found.calls:
        raise AttachError(
            f"adapter 'generic': no block of {kind}'s block lists ran in its forward; write an "
            "adapter for this model (docs/adding-a-backbone.md)"
        )
    order: list[str] = []
    for name, *_ in found.calls:
        if name not in order:
            order.append(name)
    stacks = body_lists(model)
    for name in order:
        ran = {id(block) for n, block, *_ in found.calls if n == name}
        if len(ran) != len(stacks[name]) or len(found.calls) != len({id(c[1]) for c in found.calls}):
            raise AttachError(
                f"adapter 'generic': the blocks of {kind}.{name} did not each run once in the forward "
                "call; write an adapter for this model (docs/adding-a-backbone.md)"
            )
    if [n for n, *_ in found.calls] != sorted((n for n, *_ in found.calls), key=order.index):
        raise AttachError(f"adapter 'generic': {kind}'s block lists {order} interleave; write an adapter")
    by_class: dict[type, list[tuple[int, tuple[Any, ...], dict[str, Any], Any]]] = {}
    next_inputs: dict[int, Any] = {}
    for i, (_, block, args, kwargs, output) in enumerate(found.calls):
        by_class.setdefault(type(block), []).append((i, args, kwargs, output))
        if i + 1 < len(found.calls):
            _, nxt, nargs, nkwargs, _ = found.calls[i + 1]
            params = _parameters(nxt)
            arg = "hidden_states" if "hidden_states" in params else (params[0] if params else "hidden_states")
            next_inputs[i] = argument(nargs, nkwargs, arg, params.index(arg) if arg in params else 0)
    block_io = {
        klass.__name__: _block_io(found.calls[calls_of[0][0]][1], calls_of, next_inputs)
        for klass, calls_of in by_class.items()
    }
    _, tail, *_, tail_out = found.calls[-1]
    tap = block_io[type(tail).__name__].hidden_output(tail_out)
    output = found.output
    channels_first = output.ndim != 3
    taps: dict[str, TapSpec] = {
        "hidden": BodyOutputTap(
            "hidden", "image-token hidden state after the last body block (derived by introspection)"
        )
    }
    if found.normed is not None and found.normed.shape == tap.shape:
        head = None
        proj = getattr(model, "proj_out", None)
        if isinstance(proj, nn.Linear) and found.projected is not None:
            with torch.no_grad():
                mapped = proj(found.normed)
            if mapped.numel() == output.numel() and torch.allclose(
                mapped.flatten().sort().values, output.flatten().sort().values, rtol=1e-4, atol=1e-5
            ):
                head = "proj_out"
        taps["normed"] = ModuleOutputTap(
            "normed", "hidden state after `norm_out` (derived by introspection)", module="norm_out", head=head
        )
    taps["output"] = ModelOutputTap("output", "the model output, in the model's layout")
    timestep = found.timestep
    peak = (
        float(timestep.detach().float().abs().max()) if isinstance(timestep, Tensor) else abs(float(timestep))
    )
    return Derived(
        body=tuple(order),
        block_io=block_io,
        taps=taps,
        output_channels_first=channels_first,
        timestep_scale=0.001 if peak > 1.5 else 1.0,
        hidden_size=int(tap.shape[-1]),
        output_channels=int(output.shape[1] if channels_first else output.shape[-1]),
    )


class _Reuse(Predictor):
    """The proof's forecaster: the last recorded tap, unchanged."""

    @property
    def history_size(self) -> int:
        return 1

    def forward(self, inputs: ForecastInput) -> Tensor:
        return inputs.features[-1]


class _FullThenForecast(CachePolicy):
    """The proof's policy: step 0 full, every later step a forecast."""

    def decide(self, info: StepInfo) -> Decision:
        return Decision.COMPUTE if info.index == 0 else Decision.FORECAST

    def reset(self) -> None:
        return None


def derived_adapter(base: DiffusersBackbone, derived: Derived) -> DiffusersBackbone:
    """An adapter instance for ``base.model`` whose class declares ``derived``."""
    attributes = {
        "body": derived.body,
        "block_io": dict(derived.block_io),
        "taps": dict(derived.taps),
        "output_channels_first": derived.output_channels_first,
        "timestep_scale": derived.timestep_scale,
        "hidden_size": lambda self: derived.hidden_size,
        "output_channels": lambda self: derived.output_channels,
    }
    klass = type(f"Derived{type(base.model).__name__}Adapter", (type(base),), attributes)
    adapter: DiffusersBackbone = klass(base.model)
    return adapter


def prove(
    adapter: DiffusersBackbone, tap: str, found: Probe, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    """Check the derived declarations on the probe's call: a full step returns the probe's output bit for bit,
    and a forecast step fed the tap just recorded returns it to float tolerance.

    :raises AttachError: naming the check that failed.
    """
    from lesa_adapters.engine.attachment import DiffusersAttachment
    from lesa_adapters.engine.hooks import CacheContext

    router: Any = None
    components = RuntimeComponents(
        predictor=_Reuse(PredictorConfig()),
        tap=tap,
        router=router,
        make_policy=lambda: _FullThenForecast(PluginConfig()),
        guard_non_finite=False,
    )
    kind = type(adapter.model).__qualname__
    attachment = DiffusersAttachment(adapter, components)
    try:
        outputs = []
        for step in (0, 1):
            attachment.leader.set_context(
                CacheContext("generic-proof", step_index=step, num_inference_steps=2)
            )
            with torch.no_grad():
                outputs.append(_output_tensor(adapter.model.forward(*args, **kwargs)).detach().clone())
        stats = attachment.stats().get("generic-proof", {})
    finally:
        attachment.leader.set_context(None)
        attachment.remove()
    full, forecast = outputs
    if not torch.equal(full, found.output):
        raise AttachError(
            f"adapter 'generic' cannot attach to {kind}: with its hooks on, a full step does not "
            "return the model's own output; write an adapter (docs/adding-a-backbone.md)"
        )
    if (
        stats.get("decisions") != "Fc"
        or forecast.shape != full.shape
        or not torch.allclose(forecast, full, rtol=1e-4, atol=1e-5)
    ):
        raise AttachError(
            f"adapter 'generic' cannot attach to {kind} with tap '{tap}': a forecast step fed the real tap does not "
            f"reproduce the full step (the body {list(adapter.body)} is not all that lies between the stem and the "
            "head, or a block's streams were not told apart); try tap 'output', or write an adapter "
            "(docs/adding-a-backbone.md)"
        )


class DeferredAttachment(Attachment):
    """The generic adapter's attachment: a placeholder until the first call derives, proves and attaches
    the engine (see the module docstring)."""

    def __init__(self, adapter: DiffusersBackbone, components: RuntimeComponents) -> None:
        from lesa_adapters.engine import hooks

        self.adapter = adapter
        self.components = components
        self.inner: DiffusersAttachment | None = None
        self.derived: Derived | None = None
        self._removed = False
        existing = registry_of(adapter.model)
        if existing is not None and existing.get_hook(LEADER_HOOK) is not None:
            raise AttachError(
                f"LESA is already attached to this {type(adapter.model).__qualname__}; remove the first "
                "attachment (handle.remove()) before attaching again"
            )
        self._had_forward = "forward" in adapter.model.__dict__
        self._had_registry = registry_of(adapter.model) is not None
        root = hooks.registry(adapter.model)
        self._placeholder = hooks.PlaceholderHook(self._first_call)
        root.register_hook(self._placeholder, LEADER_HOOK)

    def _first_call(self, original: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        from lesa_adapters.engine.attachment import DiffusersAttachment

        model = self.adapter.model
        context = self._placeholder.context()
        self._remove_placeholder()
        timestep = argument(
            args, kwargs, self.adapter.timestep_argument, _position(model, self.adapter.timestep_argument)
        )
        if timestep is None:
            raise ForwardInputError(
                f"adapter 'generic' needs the `{self.adapter.timestep_argument}` argument of "
                f"{type(model).__qualname__}.forward on the first call, to tell its units; pass it as the pipeline does"
            )
        found = probe(model, model.forward, args, kwargs, timestep)
        self.derived = derive(model, found)
        adapter = derived_adapter(self.adapter, self.derived)
        tap = self.components.tap
        if tap not in adapter.taps:
            raise AttachError(
                f"adapter 'generic' found taps {sorted(adapter.taps)} on {type(model).__qualname__}; "
                f"'{tap}' is not one of them"
            )
        assumed, measured = self.adapter.tap_channels(tap), adapter.tap_channels(tap)
        if assumed != measured:
            raise AttachError(
                f"adapter 'generic': tap '{tap}' of {type(model).__qualname__} is {measured} wide, and the run was "
                f"assembled for {assumed} (read from the model's config); write an adapter for this model "
                "(docs/adding-a-backbone.md) that declares hidden_size()/output_channels()"
            )
        prove(adapter, tap, found, args, kwargs)
        self.inner = DiffusersAttachment(adapter, self.components)
        self.inner.leader.set_context(context)
        return model.forward(*args, **kwargs)

    def remove(self) -> None:
        if self._removed:
            return
        self._removed = True
        if self.inner is not None:
            self.inner.remove()
        else:
            self._remove_placeholder()

    def _remove_placeholder(self) -> None:
        """Take the placeholder off, leaving the model as it was before attaching (its ``forward`` and
        hook registry included)."""
        model = self.adapter.model
        registry = registry_of(model)
        if registry is None or registry.get_hook(LEADER_HOOK) is not self._placeholder:
            return
        registry.remove_hook(LEADER_HOOK, recurse=False)
        if not registry.hooks:
            if not self._had_forward and "forward" in model.__dict__:
                del model.__dict__["forward"]
            if not self._had_registry:
                forget_registry(model)

    def reset(self) -> None:
        if self.inner is not None:
            self.inner.reset()

    def stats(self) -> dict[str, dict[str, Any]]:
        return {} if self.inner is None else self.inner.stats()


def _position(model: nn.Module, name: str) -> int | None:
    params = list(inspect.signature(type(model).forward).parameters)[1:]
    return params.index(name) if name in params else None
