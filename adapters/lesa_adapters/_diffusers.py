"""The LESA runtime on diffusers transformers, and the declarative base class of their adapters.

This is the **only** module of the project that touches diffusers' hook internals (``HookRegistry``,
``ModelHook``, ``StateManager``, ``CacheContext``, the private ``StateManager._context`` and
``_state_cache``). Its behaviour is pinned to diffusers 0.42.x (:data:`SUPPORTED_DIFFUSERS`).
diffusers itself is imported lazily, when a runtime is attached, so loading the adapter plugins is
cheap.

Public API (re-exported by :mod:`lesa_adapters`):

* :class:`DiffusersBackbone` — subclass it and declare, as class attributes, which model classes it
  claims, the block lists forming the body, where each block class takes and returns its streams
  (:class:`BlockIO`), its taps (:class:`BodyOutputTap`, :class:`ModuleOutputTap`,
  :class:`ModelOutputTap`) and the timestep scale. ``attach`` is inherited.
* :class:`BlockIO`, the tap classes, the hook-name constants.

How one step runs
-----------------

A *leader* hook replaces the transformer's ``forward`` (``ModelHook.new_forward``). Per call it

1. finds the per-context state (``StateManager``; a ``"default"`` context when the caller set none),
2. detects a new trajectory (see *Reset* below) and asks the context's :class:`CachePolicy` once,
3. on a forecast step builds a :class:`ForecastInput` from the context's history and forecasts under
   ``torch.no_grad()``; with ``guard_non_finite`` a non-finite forecast turns the step into a full one,
4. runs the model: on a full step normally (the tap is recorded); on a forecast step with the body
   reduced to pass-throughs — every body block returns its inputs at its output positions, the stem
   modules listed in :attr:`DiffusersBackbone.forecast_skips` return their first argument — and the
   forecast substituted at the tap (``hidden``: the last block's image-stream output; ``normed``: the
   output of ``norm_out``); for a :class:`ModelOutputTap` the whole forward is skipped and the forecast
   is returned in the model's return format (``return_dict`` honoured),
5. appends the tap to the history (at most ``predictor.history_size`` entries; forecasts too in
   ``"steps"`` history mode), updates the statistics and calls the observer.

Reading t on the host
---------------------

The policy gets ``StepInfo.t`` only when it is known on the host without a device synchronisation:
from ``CacheContext.sigma`` (the flow time, which diffusers' Wan pipelines and
:func:`lesa_core.sampler.sample` provide), or from the ``timestep`` argument when it is a CPU tensor.
Otherwise ``t`` is ``None`` for the decision and is read (one ``.item()``-like sync) only on full steps,
where the body dominates, for ``Predictor.check_time`` and new-loop detection. Forecast steps never
read a device value on the host (with ``guard_non_finite: false``; the guard itself needs one sync).

Reset
-----

A context starts a new trajectory (history, policy and statistics of the old one are dropped; the
statistics are kept as a snapshot) when

* the pipeline ends a call: every diffusers pipeline calls ``_reset_stateful_cache()`` at the end
  (``maybe_free_model_hooks``), which reaches the leader's ``reset_state``;
* ``CacheContext.step_index`` is 0 or does not increase, or ``num_inference_steps`` changes;
* t (when known on the host) jumps back up, or — with no step index — repeats the trajectory's only
  step (a call that ended after its first step, e.g. by an exception in a step callback);
* the latent's shape or device changes (a new resolution or batch size);
* a forward call raises (Ctrl-C, out of memory, a bad argument, a schedule mismatch): the trajectory
  cannot go on, so the next call starts a fresh one;
* the user calls ``handle.reset()``.

A bare loop on a GPU that passes no ``cache_context`` step information and never resets can only be
detected on full steps; use :func:`lesa_core.sampler.sample`, ``cache_context(name, step_index=i)``
or ``handle.reset()`` between trajectories.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import logging
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from lesa_core.errors import AttachError, ForwardInputError
from lesa_core.interfaces import (
    Attachment,
    BackboneAdapter,
    Decision,
    ForecastInput,
    RuntimeComponents,
    StepEvent,
    StepInfo,
    TapSpec,
)

__all__ = [
    "BLOCK_HOOK",
    "DEFAULT_CONTEXT",
    "LEADER_HOOK",
    "STEM_HOOK",
    "SUPPORTED_DIFFUSERS",
    "TAP_HOOK",
    "BlockIO",
    "BodyOutputTap",
    "DiffusersAttachment",
    "DiffusersBackbone",
    "ModelOutputTap",
    "ModuleOutputTap",
    "standard_taps",
]

logger = logging.getLogger("lesa")

SUPPORTED_DIFFUSERS = ">=0.42,<0.43"
"""The diffusers versions whose hook internals this module is written against."""

LEADER_HOOK = "lesa"
"""Name of the hook on the transformer itself (decides, forecasts, keeps the per-context state)."""
BLOCK_HOOK = "lesa_block"
"""Name of the hook on every body block (pass-through on forecast steps)."""
STEM_HOOK = "lesa_stem"
"""Name of the hook on the stem modules of :attr:`DiffusersBackbone.forecast_skips`."""
TAP_HOOK = "lesa_tap"
"""Name of the hook on the module of a :class:`ModuleOutputTap`."""
DEFAULT_CONTEXT = "default"
"""The cache-context name used when the caller sets none."""

_T_EPS = 1e-6


# ============================================================================ declarations


@dataclass(frozen=True)
class BlockIO:
    """Where one block class takes and returns its two streams (image tokens and text tokens).

    :ivar hidden_out: position of the image stream in the block's returned tuple; ``None`` if the
        block returns the image-stream tensor alone (Wan).
    :ivar encoder_out: position of the text stream in the returned tuple; ``None`` if not returned.
    :ivar hidden_arg: keyword name of the image-stream input.
    :ivar hidden_pos: its position when passed positionally (gradient checkpointing passes all
        arguments positionally).
    :ivar encoder_arg: keyword name of the text-stream input, if any.
    :ivar encoder_pos: its position when passed positionally.
    """

    hidden_out: int | None
    encoder_out: int | None = None
    hidden_arg: str = "hidden_states"
    hidden_pos: int = 0
    encoder_arg: str | None = "encoder_hidden_states"
    encoder_pos: int | None = 1

    def __post_init__(self) -> None:
        if self.hidden_out is None:
            if self.encoder_out is not None:
                raise ValueError("a block that returns the image stream alone cannot return the text stream")
        elif self.encoder_out is not None:
            if {self.hidden_out, self.encoder_out} != {0, 1}:
                raise ValueError("a two-stream block must return its streams at positions 0 and 1")
            if self.encoder_arg is None:
                raise ValueError("a block that returns the text stream must take it (encoder_arg)")
        elif self.hidden_out != 0:
            raise ValueError("a one-stream tuple must hold the image stream at position 0")

    def hidden_input(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
        """The image-stream argument of one call."""
        return _argument(args, kwargs, self.hidden_arg, self.hidden_pos)

    def passthrough(self, hidden: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
        """What the block returns on a forecast step: ``hidden`` and its text-stream input, in place."""
        if self.hidden_out is None:
            return hidden
        if self.encoder_out is None:
            return (hidden,)
        assert self.encoder_arg is not None
        encoder = _argument(args, kwargs, self.encoder_arg, self.encoder_pos)
        return (hidden, encoder) if self.hidden_out == 0 else (encoder, hidden)

    def hidden_output(self, output: Any) -> Tensor:
        """The image stream of a block's real output."""
        return output if self.hidden_out is None else output[self.hidden_out]


@dataclass(frozen=True)
class BodyOutputTap(TapSpec):
    """The image-stream output of the last body block, before the output norm (LESA's FLUX tap).

    :ivar forecast_computes: what a forecast step still runs (documentation).
    """

    forecast_computes: str = "the stem (for the timestep embedding the head needs) and the head"


@dataclass(frozen=True)
class ModuleOutputTap(TapSpec):
    """The output of one submodule of the head, e.g. ``norm_out`` (LESA's Qwen-Image tap).

    :ivar module: dotted name of the submodule (``model.get_submodule(module)``).
    :ivar forecast_computes: what a forecast step still runs (documentation).
    :ivar head: dotted name of the submodule that alone maps this tap to the model output, token-wise
        and without conditioning (``proj_out`` after ``norm_out``), or ``None`` if the rest of the head
        is more than that (see :meth:`BackboneAdapter.tap_head`).
    """

    module: str = "norm_out"
    forecast_computes: str = "the stem and the part of the head after the tapped module"
    head: str | None = None


@dataclass(frozen=True)
class ModelOutputTap(TapSpec):
    """The model output (LESA's HunyuanVideo tap): a forecast step skips the whole forward.

    :ivar forecast_computes: what a forecast step still runs (documentation).
    """

    forecast_computes: str = "nothing: the forecast is returned as the model output"


def standard_taps(hidden: bool = True, normed: str | None = "norm_out", output: bool = True,
                  head: str | None = "proj_out") -> dict[str, TapSpec]:
    """The usual taps of a DiT: ``hidden`` (last block), ``normed`` (after ``normed``), ``output``.

    ``head`` names the output projection that alone follows ``normed`` (``None``: something else does,
    e.g. a reshaping the projection's token layout does not match).
    """
    taps: dict[str, TapSpec] = {}
    if hidden:
        taps["hidden"] = BodyOutputTap(
            "hidden", "image-token hidden state after the last body block, before the output norm")
    if normed is not None:
        taps["normed"] = ModuleOutputTap(
            "normed", f"hidden state after `{normed}` (output norm and modulation), before `proj_out`",
            module=normed, head=head)
    if output:
        taps["output"] = ModelOutputTap("output", "the model output (the velocity), in the model's layout")
    return taps


def _identity(feature: Tensor) -> Tensor:
    return feature


def _loaded_class(path: str) -> type | None:
    """The class ``package.module:Name`` if its top-level package is already imported, else ``None``.

    An instance of a class whose package was never imported cannot exist, so ``claims`` never
    imports a heavy package just to answer "no".
    """
    module_name, _, attr = path.partition(":")
    if module_name.split(".")[0] not in sys.modules:
        return None
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    found = getattr(module, attr, None)
    return found if isinstance(found, type) else None


class DiffusersBackbone(BackboneAdapter):
    """Declarative adapter base for diffusers transformers; subclasses declare data, not code.

    :cvar model_classes: the classes this adapter claims, as ``"package.module:ClassName"``
        (checked with ``isinstance``, subclasses included).
    :cvar body: attribute names of the ``nn.ModuleList`` s forming the body, in execution order.
    :cvar block_io: per block class name (any class in the block's MRO), where it takes and
        returns its streams.
    :cvar forecast_skips: stem submodules whose output only feeds the body; on forecast steps they
        return their first argument instead of computing (the value is never used by the head).
    :cvar output_channels_first: the model output is ``(B, C, ...)`` (video models) rather than
        ``(B, tokens, C)``; decides :meth:`output_channels`.
    :cvar taps: the offered taps (:func:`standard_taps` by default); the kind of each
        :class:`TapSpec` subclass decides how the runtime implements it.
    """

    model_classes: ClassVar[tuple[str, ...]] = ()
    body: ClassVar[tuple[str, ...]] = ()
    block_io: ClassVar[Mapping[str, BlockIO]] = {}
    forecast_skips: ClassVar[tuple[str, ...]] = ()
    output_channels_first: ClassVar[bool] = False
    taps: ClassVar[Mapping[str, TapSpec]] = standard_taps()
    default_tap: ClassVar[str] = "hidden"

    # -- identity -----------------------------------------------------------------------------
    @classmethod
    def claims(cls, model: Any) -> bool:
        for path in cls.model_classes:
            klass = _loaded_class(path)
            if klass is not None and isinstance(model, klass):
                return True
        return False

    @classmethod
    def resolve(cls, model: Any) -> type[DiffusersBackbone] | None:
        """``cls`` if it claims ``model``, else ``None``: the body of a ``lesa_resolve_adapter`` hook."""
        return cls if cls.claims(model) else None

    # -- structure ----------------------------------------------------------------------------
    def body_blocks(self) -> list[nn.Module]:
        """Every body block, in execution order.

        :raises AttachError: if a declared block list is missing or not an ``nn.ModuleList``.
        """
        blocks: list[nn.Module] = []
        for name in self.body:
            stack = getattr(self.model, name, None)
            if not isinstance(stack, nn.ModuleList):
                raise AttachError(
                    f"{type(self).__name__} declares body list '{name}', but {type(self.model).__qualname__} "
                    f"has no nn.ModuleList of that name; fix `body` ({', '.join(self.body)})"
                )
            blocks.extend(stack)
        if not blocks:
            raise AttachError(f"{type(self.model).__qualname__} has no body blocks in {list(self.body)}")
        return blocks

    def io_for(self, block: nn.Module) -> BlockIO:
        """The :class:`BlockIO` of ``block``'s class (looked up along its MRO by class name).

        :raises AttachError: naming the class and the declared ones.
        """
        for klass in type(block).__mro__:
            io = self.block_io.get(klass.__name__)
            if io is not None:
                return io
        raise AttachError(
            f"{type(self).__name__} has no BlockIO for block class {type(block).__qualname__}; declared: "
            f"{', '.join(sorted(self.block_io)) or '(none)'}. Add it to `block_io`."
        )

    def hidden_size(self) -> int:
        """Width of the body's hidden state (``num_attention_heads × attention_head_dim``)."""
        config = getattr(self.model, "config", None)
        heads = getattr(config, "num_attention_heads", None)
        head_dim = getattr(config, "attention_head_dim", None)
        if heads is not None and head_dim is not None:
            return int(heads) * int(head_dim)
        inner = getattr(self.model, "inner_dim", None)
        if inner is None:
            raise AttachError(f"cannot tell the hidden size of {type(self.model).__qualname__}; override hidden_size()")
        return int(inner)

    def output_channels(self) -> int:
        """Channels of the model output: ``config.out_channels`` for channel-first outputs, else the
        width of ``proj_out``."""
        config = getattr(self.model, "config", None)
        if self.output_channels_first:
            out = getattr(config, "out_channels", None) or getattr(config, "in_channels", None)
            if out is None:
                raise AttachError(f"cannot tell the output channels of {type(self.model).__qualname__}")
            return int(out)
        proj = getattr(self.model, "proj_out", None)
        if isinstance(proj, nn.Linear):
            return int(proj.out_features)
        raise AttachError(f"cannot tell the output width of {type(self.model).__qualname__}; override output_channels()")

    def tap_channels(self, tap: str) -> int:
        spec = self.taps[self.check_tap(tap)]
        return self.output_channels() if isinstance(spec, ModelOutputTap) else self.hidden_size()

    def tap_head(self, tap: str) -> Callable[[Tensor], Tensor] | None:
        spec = self.taps[self.check_tap(tap)]
        if isinstance(spec, ModelOutputTap):
            return _identity
        if isinstance(spec, ModuleOutputTap) and spec.head is not None:
            head: Callable[[Tensor], Tensor] = self.model.get_submodule(spec.head)
            return head
        return None

    # -- time and outputs -----------------------------------------------------------------------
    def step_time(self, timestep: Any) -> Tensor:
        """``()`` float32 flow time of one forward call, on the timestep's device, without a sync.

        The batch is assumed to share one time; the first sample's is used. Override for models whose
        ``timestep`` is per token (Wan 2.2 TI2V).
        """
        if not isinstance(timestep, Tensor):
            timestep = torch.tensor(float(timestep))
        return self.time_from_timestep(timestep).reshape(-1)[0]

    def wrap_output(self, sample: Tensor, return_dict: bool) -> Any:
        """The model's return value for output ``sample`` (``Transformer2DModelOutput`` or a 1-tuple)."""
        if not return_dict:
            return (sample,)
        from diffusers.models.modeling_outputs import Transformer2DModelOutput

        return Transformer2DModelOutput(sample=sample)

    def unwrap_output(self, output: Any) -> Tensor:
        """The output tensor of a real forward's return value (inverse of :meth:`wrap_output`)."""
        return output if isinstance(output, Tensor) else output[0]

    # -- attaching ---------------------------------------------------------------------------
    def attach(self, components: RuntimeComponents) -> DiffusersAttachment:
        return DiffusersAttachment(self, components)


# ============================================================================ runtime


def _starts_over(state: _ContextState, host_t: float, given_index: int | None) -> bool:
    """``True`` if a call at flow time ``host_t`` cannot continue ``state``'s trajectory: t went back up,
    or (no step index given) t repeats the only step so far — a call that ended after its first step,
    e.g. by an exception in a step callback, is followed by the next call's first step."""
    if state.last_t is None:
        return False
    if host_t > state.last_t + _T_EPS:
        return True
    return given_index is None and state.steps_done == 1 and abs(host_t - state.last_t) <= _T_EPS


def _argument(args: tuple[Any, ...], kwargs: Mapping[str, Any], name: str, position: int | None) -> Any:
    if name in kwargs:
        return kwargs[name]
    if position is not None and position < len(args):
        return args[position]
    return None


def _first_argument(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
    if args:
        return args[0]
    return next(iter(kwargs.values()), None)


class _Shared:
    """Per-attachment flags the leader sets for the duration of one forward call.

    The block and tap hooks read them; they are plain attributes so that ``torch.compile`` guards on
    their values (two graph variants: full and forecast).
    """

    __slots__ = ("active", "forecast", "recorded", "skip_body")

    def __init__(self) -> None:
        self.active = False  # inside a forward call of the hooked model
        self.skip_body = False  # forecast step: blocks pass through, the tap hook substitutes
        self.forecast: Tensor | None = None
        self.recorded: Tensor | None = None

    def clear(self) -> None:
        self.active = False
        self.skip_body = False
        self.forecast = None
        self.recorded = None


class _ContextState:
    """One cache context's trajectory: policy, history, statistics. Created by the StateManager."""

    def __init__(self, runtime: DiffusersAttachment) -> None:
        self.runtime = runtime
        self.name: str | None = None
        self.policy = runtime.components.make_policy()
        k = runtime.history_size
        self.features: deque[Tensor] = deque(maxlen=k)
        self.times: deque[Tensor] = deque(maxlen=k)
        self.steps: deque[Tensor] = deque(maxlen=k)
        self._clear()

    def _clear(self) -> None:
        self.features.clear()
        self.times.clear()
        self.steps.clear()
        self.steps_done = 0
        self.last_index = -1
        self.last_t: float | None = None
        self.num_steps: int | None = None
        self.key: tuple[Any, ...] | None = None
        self.full = 0
        self.forecasts = 0
        self.fallbacks = 0
        self.seconds = 0.0
        self.decisions: list[str] = []

    def cache_bytes(self) -> int:
        return sum(f.numel() * f.element_size() for f in self.features)

    def summary(self) -> dict[str, Any]:
        return {
            "full_steps": self.full,
            "forecast_steps": self.forecasts,
            "fallback_steps": self.fallbacks,
            "cache_bytes": self.cache_bytes(),
            "seconds": self.seconds,
            "decisions": "".join(self.decisions),
        }

    def reset(self, *args: Any, **kwargs: Any) -> None:
        """End the trajectory: snapshot its statistics, forget history and policy state."""
        if self.steps_done and self.name is not None:
            self.runtime._finished[self.name] = self.summary()
        self._clear()
        self.policy.reset()


class _Call:
    """Bookkeeping of one forward call between :meth:`DiffusersAttachment._begin` and ``_end``."""

    __slots__ = ("decision", "fallback", "forecast", "host_t", "index", "inputs", "output", "owned",
                 "started", "state", "step_dev", "t_dev")

    def __init__(self, state: _ContextState, owned: bool, started: float) -> None:
        self.state = state
        self.owned = owned
        self.started = started
        self.decision = Decision.COMPUTE
        self.fallback = False
        self.forecast: Tensor | None = None
        self.inputs: ForecastInput | None = None
        self.output: Any = None
        self.host_t: float | None = None
        self.index = 0
        self.t_dev: Tensor | None = None
        self.step_dev: Tensor | None = None


@functools.cache
def _hooks() -> SimpleNamespace:
    """diffusers' hook classes and LESA's hooks built on them (imported on first attach)."""
    from diffusers.hooks.hooks import CacheContext, HookRegistry, ModelHook, StateManager

    class LeaderHook(ModelHook):  # type: ignore[misc]
        """On the transformer: per-step decision, forecast, history (stateful per cache context)."""

        _is_stateful = True

        def __init__(self, runtime: DiffusersAttachment) -> None:
            super().__init__()
            self.runtime = runtime
            self.state_manager = StateManager(_ContextState, init_kwargs={"runtime": runtime})

        def new_forward(self, module: nn.Module, *args: Any, **kwargs: Any) -> Any:
            return self.runtime._forward(self.fn_ref.original_forward, args, kwargs)

        def reset_state(self, module: nn.Module) -> nn.Module:
            self.state_manager.reset()
            return module

    class BlockHook(ModelHook):  # type: ignore[misc]
        """On every body block: pass the inputs through on forecast steps; the last block also taps
        (``hidden``) and substitutes the forecast."""

        def __init__(self, shared: _Shared, io: BlockIO, tail: bool) -> None:
            super().__init__()
            self.shared = shared
            self.io = io
            self.tail = tail

        def new_forward(self, module: nn.Module, *args: Any, **kwargs: Any) -> Any:
            shared = self.shared
            if not shared.skip_body:
                output = self.fn_ref.original_forward(*args, **kwargs)
                if self.tail and shared.active:
                    shared.recorded = self.io.hidden_output(output)
                return output
            hidden = shared.forecast if self.tail else self.io.hidden_input(args, kwargs)
            return self.io.passthrough(hidden, args, kwargs)

    class StemHook(ModelHook):  # type: ignore[misc]
        """On a stem module whose output only feeds the body: skipped on forecast steps."""

        def __init__(self, shared: _Shared) -> None:
            super().__init__()
            self.shared = shared

        def new_forward(self, module: nn.Module, *args: Any, **kwargs: Any) -> Any:
            if self.shared.skip_body:
                return _first_argument(args, kwargs)
            return self.fn_ref.original_forward(*args, **kwargs)

    class TapHook(ModelHook):  # type: ignore[misc]
        """On the module of a :class:`ModuleOutputTap`: records its output, or returns the forecast."""

        def __init__(self, shared: _Shared) -> None:
            super().__init__()
            self.shared = shared

        def new_forward(self, module: nn.Module, *args: Any, **kwargs: Any) -> Any:
            shared = self.shared
            if shared.skip_body:
                return shared.forecast
            output = self.fn_ref.original_forward(*args, **kwargs)
            if shared.active:
                shared.recorded = output
            return output

    return SimpleNamespace(CacheContext=CacheContext, HookRegistry=HookRegistry, LeaderHook=LeaderHook,
                           BlockHook=BlockHook, StemHook=StemHook, TapHook=TapHook)


def _parameter_positions(model: nn.Module) -> tuple[dict[str, int], dict[str, Any]]:
    """Positions and defaults of the model's forward parameters (``self`` excluded)."""
    params = list(inspect.signature(type(model).forward).parameters.values())[1:]
    positions = {p.name: i for i, p in enumerate(params)
                 if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)}
    defaults = {p.name: p.default for p in params if p.default is not p.empty}
    return positions, defaults


class DiffusersAttachment(Attachment):
    """The runtime attached to one diffusers transformer instance (see the module docstring).

    :raises AttachError: if LESA is already attached to the model, or the adapter's declarations do
        not fit it.
    """

    def __init__(self, adapter: DiffusersBackbone, components: RuntimeComponents) -> None:
        hooks = _hooks()
        self.adapter = adapter
        self.model = model = adapter.model
        self.components = components
        self.predictor = components.predictor
        self.history_size = int(self.predictor.history_size)
        if self.history_size < 1:
            raise AttachError(f"{type(self.predictor).__name__}.history_size must be >= 1")
        self.min_history = max(1, int(self.predictor.min_history))
        self.history_mode = self.predictor.history_mode
        self.guard = bool(components.guard_non_finite)
        self.observer: Callable[[StepEvent], None] | None = components.observer
        self.tap = adapter.check_tap(components.tap)
        self.tap_spec = adapter.taps[self.tap]
        self.skips_forward = isinstance(self.tap_spec, ModelOutputTap)
        self._finished: dict[str, dict[str, Any]] = {}
        self._step_scalars: dict[torch.device, Tensor] = {}
        self._warned_non_finite = False
        self._removed = False
        self.shared = _Shared()
        self._default_context = hooks.CacheContext(DEFAULT_CONTEXT)

        positions, defaults = _parameter_positions(model)
        self._latent = (adapter.latent_argument, positions.get(adapter.latent_argument))
        self._timestep = (adapter.timestep_argument, positions.get(adapter.timestep_argument))
        self._return_dict = ("return_dict", positions.get("return_dict"))
        self._return_dict_default = bool(defaults.get("return_dict", True))

        root = hooks.HookRegistry.check_if_exists_or_initialize(model)
        if root.get_hook(LEADER_HOOK) is not None:
            raise AttachError(
                f"LESA is already attached to this {type(model).__qualname__}; remove the first attachment "
                "(handle.remove()) before attaching again"
            )
        self._installed: list[tuple[nn.Module, str, bool, bool]] = []
        try:
            if not self.skips_forward:
                for name in adapter.forecast_skips:
                    self._install(model.get_submodule(name), hooks.StemHook(self.shared), STEM_HOOK)
                blocks = adapter.body_blocks()
                tail = isinstance(self.tap_spec, BodyOutputTap)
                for i, block in enumerate(blocks):
                    is_tail = tail and i == len(blocks) - 1
                    self._install(block, hooks.BlockHook(self.shared, adapter.io_for(block), is_tail), BLOCK_HOOK)
                if isinstance(self.tap_spec, ModuleOutputTap):
                    try:
                        tapped = model.get_submodule(self.tap_spec.module)
                    except AttributeError as exc:
                        raise AttachError(f"tap '{self.tap}' names module '{self.tap_spec.module}': {exc}") from None
                    self._install(tapped, hooks.TapHook(self.shared), TAP_HOOK)
                elif not tail:
                    raise AttachError(f"tap '{self.tap}' is of unknown kind {type(self.tap_spec).__name__}")
            self.leader = hooks.LeaderHook(self)
            self.state_manager = self.leader.state_manager
            self._install(model, self.leader, LEADER_HOOK)
        except BaseException:
            self.remove()
            raise
        root.invalidate_child_registries_cache()

    def _install(self, module: nn.Module, hook: Any, name: str) -> None:
        had_forward = "forward" in module.__dict__
        had_registry = hasattr(module, "_diffusers_hook")
        registry = _hooks().HookRegistry.check_if_exists_or_initialize(module)
        registry.register_hook(hook, name)
        self._installed.append((module, name, had_forward, had_registry))

    # -- Attachment ---------------------------------------------------------------------------
    def remove(self) -> None:
        if self._removed:
            return
        self._removed = True
        self.shared.clear()
        for module, name, had_forward, had_registry in reversed(self._installed):
            registry = getattr(module, "_diffusers_hook", None)
            if registry is None:
                continue
            if registry.get_hook(name) is not None:
                registry.remove_hook(name, recurse=False)
            if not registry.hooks:
                if not had_forward and "forward" in module.__dict__:
                    del module.__dict__["forward"]
                if not had_registry and module is not self.model:
                    del module._diffusers_hook
        self._installed.clear()
        root = getattr(self.model, "_diffusers_hook", None)
        if root is not None:
            root.invalidate_child_registries_cache()

    def reset(self) -> None:
        if hasattr(self, "state_manager"):
            self.state_manager.reset()

    def stats(self) -> dict[str, dict[str, Any]]:
        out = {name: dict(summary) for name, summary in self._finished.items()}
        if hasattr(self, "state_manager"):
            for state in list(self.state_manager._state_cache.values()):
                if state.steps_done and state.name is not None:
                    out[state.name] = state.summary()
        return out

    # -- per step -------------------------------------------------------------------------------
    def _forward(self, original: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        call = self._begin(args, kwargs)
        try:
            result = call.output if call.output is not None else original(*args, **kwargs)
        except BaseException:
            self._abort(call)
            raise
        return self._end(call, result)

    def _step_scalar(self, index: int, device: torch.device) -> Tensor:
        """``()`` float32 ``index`` on ``device``: a view into a cached ``arange`` (no per-step allocation)."""
        table = self._step_scalars.get(device)
        if table is None or index >= table.numel():
            size = max(64, 2 * index + 2, 0 if table is None else 2 * table.numel())
            table = torch.arange(size, dtype=torch.float32, device=device)
            self._step_scalars[device] = table
        return table[index]

    @torch.compiler.disable  # type: ignore[misc]
    def _begin(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> _Call:
        started = time.perf_counter()
        manager = self.state_manager
        owned = manager._context is None
        if owned:
            manager.set_context(self._default_context)
        try:
            return self._decide(args, kwargs, manager, owned, started)
        except BaseException:
            self.shared.clear()
            manager.get_state().reset()  # the call failed: its trajectory cannot go on
            if owned:
                manager.set_context(None)
            raise

    def _decide(self, args: tuple[Any, ...], kwargs: dict[str, Any], manager: Any, owned: bool,
                started: float) -> _Call:
        context = manager._context
        state: _ContextState = manager.get_state()
        if state.name is None:
            state.name = context.name
        call = _Call(state, owned, started)

        latent = _argument(args, kwargs, *self._latent)
        timestep = _argument(args, kwargs, *self._timestep)
        if not isinstance(latent, Tensor) or timestep is None:
            raise ForwardInputError(
                f"LESA needs the `{self._latent[0]}` (a tensor) and `{self._timestep[0]}` arguments of "
                f"{type(self.model).__qualname__}.forward, got {type(latent).__name__} and "
                f"{type(timestep).__name__}; pass both, as the model's pipeline does, or remove LESA "
                "(handle.remove()) to call the model some other way"
            )
        device = latent.device
        t_dev = self.adapter.step_time(timestep)
        host_t: float | None = None
        if context.sigma is not None:
            host_t = float(context.sigma)
        elif t_dev.device.type == "cpu":
            host_t = float(t_dev)
        if t_dev.device != device:
            t_dev = t_dev.to(device, non_blocking=True)
        key = (tuple(latent.shape), device)

        given_index = context.step_index
        given_steps = context.num_inference_steps
        if state.steps_done and (
            state.key != key
            or (given_index is not None and (given_index == 0 or given_index <= state.last_index))
            or (host_t is not None and _starts_over(state, host_t, given_index))
            or (given_steps is not None and state.num_steps is not None and given_steps != state.num_steps)
        ):
            state.reset()
        if not state.steps_done:
            state.key = key
            if given_steps is not None:
                self.predictor.check_num_steps(int(given_steps))
                state.num_steps = int(given_steps)
        index = int(given_index) if given_index is not None else state.steps_done
        decision = state.policy.decide(StepInfo(index, host_t, given_steps))

        step_dev = self._step_scalar(index, device)
        if decision is Decision.FORECAST:
            if len(state.features) < self.min_history:
                decision = Decision.COMPUTE  # too little history: nothing to forecast from
            else:
                inputs = ForecastInput(features=tuple(state.features), times=torch.stack(tuple(state.times)),
                                       steps=torch.stack(tuple(state.steps)), t=t_dev, step=step_dev)
                with torch.no_grad():
                    forecast = self.predictor(inputs)
                if self.guard and not bool(torch.isfinite(forecast).all()):
                    call.fallback = True
                    decision = Decision.COMPUTE
                    if not self._warned_non_finite:
                        self._warned_non_finite = True
                        logger.warning(
                            "LESA: a non-finite forecast at step %d of context '%s' was replaced by a full "
                            "step (counted as fallback_steps in stats(); logged once)", index, state.name)
                else:
                    call.forecast = forecast
                    call.inputs = inputs
        if decision is Decision.COMPUTE and host_t is None:
            host_t = float(t_dev)  # one sync per full step (the body dominates)
            if given_index is None and state.steps_done and _starts_over(state, host_t, given_index):
                state.reset()  # a new loop seen only now (GPU, no step information): start over
                state.key = key
                index = 0
                state.policy.decide(StepInfo(0, host_t, given_steps))
                step_dev = self._step_scalar(0, device)
        if decision is Decision.COMPUTE and host_t is not None:
            self.predictor.check_time(index, host_t)

        call.decision = decision
        call.index = index
        call.host_t = host_t
        call.t_dev = t_dev
        call.step_dev = step_dev
        shared = self.shared
        shared.active = True
        if call.forecast is not None:
            if self.skips_forward:
                return_dict = _argument(args, kwargs, *self._return_dict)
                call.output = self.adapter.wrap_output(
                    call.forecast, self._return_dict_default if return_dict is None else bool(return_dict))
            else:
                shared.skip_body = True
                shared.forecast = call.forecast
        return call

    @torch.compiler.disable  # type: ignore[misc]
    def _end(self, call: _Call, result: Any) -> Any:
        shared = self.shared
        state = call.state
        try:
            if call.forecast is None:
                if self.skips_forward:
                    tap = self.adapter.unwrap_output(result)
                else:
                    if shared.recorded is None:
                        raise RuntimeError(
                            f"LESA: tap '{self.tap}' was not reached during the forward of "
                            f"{type(self.model).__qualname__}; check the adapter's body/tap declarations"
                        )
                    tap = shared.recorded
                tap = tap.detach()
                if not tap.is_contiguous():
                    tap = tap.contiguous()  # a view would keep the whole joint-stream buffer alive
                state.full += 1
                if call.fallback:
                    state.fallbacks += 1
                state.decisions.append("x" if call.fallback else "F")
                keep = True
            else:
                tap = call.forecast
                state.forecasts += 1
                state.decisions.append("c")
                keep = self.history_mode == "steps"
            if keep:
                assert call.t_dev is not None and call.step_dev is not None
                state.features.append(tap)
                state.times.append(call.t_dev)
                state.steps.append(call.step_dev)
            if call.host_t is not None:
                state.last_t = call.host_t
            state.last_index = call.index
            state.steps_done += 1
            state.seconds += time.perf_counter() - call.started
            if self.observer is not None:
                assert call.t_dev is not None
                self.observer(StepEvent(state.name or DEFAULT_CONTEXT, call.index, call.t_dev, call.decision,
                                        tap, call.inputs, call.fallback))
        except BaseException:
            state.reset()
            raise
        finally:
            shared.clear()
            if call.owned:
                self.state_manager.set_context(None)
        return result

    @torch.compiler.disable  # type: ignore[misc]
    def _abort(self, call: _Call) -> None:
        self.shared.clear()
        call.state.reset()  # the forward raised (Ctrl-C, out of memory, ...): its trajectory cannot go on
        if call.owned:
            self.state_manager.set_context(None)
