"""LESA's hooks, built on diffusers' ``ModelHook``: one on the transformer (the leader), one on every body
block, on the skipped stem modules and on a tapped module.

This module imports diffusers at its top; the attachment imports it only when it attaches, so that
``import lesa_adapters`` stays light. The hooks hold no logic of their own beyond routing: the leader
hands every call to the attachment, the others read the :class:`StepFlags` it sets.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from diffusers.hooks.hooks import CacheContext, HookRegistry, ModelHook, StateManager
from torch import nn

from lesa_adapters.engine.arguments import first_argument
from lesa_adapters.engine.declarations import BlockIO
from lesa_adapters.engine.registries import manager_states
from lesa_adapters.engine.state import ContextState, StepFlags

__all__ = ["BlockHook", "CacheContext", "LeaderHook", "PlaceholderHook", "StemHook", "TapHook", "registry"]

Forward = Callable[..., Any]
RunCall = Callable[[Forward, tuple[Any, ...], dict[str, Any]], Any]
"""The attachment's per-call entry: ``(original_forward, args, kwargs) -> output``."""


def registry(module: nn.Module) -> HookRegistry:
    """``module``'s hook registry, created if it has none."""
    return HookRegistry.check_if_exists_or_initialize(module)


class _Hook(ModelHook):
    """A hook that replaces its module's ``forward`` (``new_forward``) and may call the original."""

    @property
    def original_forward(self) -> Forward:
        """The forward this hook wraps (set by diffusers when the hook is registered)."""
        return cast(Forward, self.fn_ref.original_forward)


class LeaderHook(_Hook):
    """On the transformer: every call goes to the attachment, which decides, forecasts and keeps the
    history; the per-context :class:`ContextState` s live in this hook's ``StateManager``.

    :param run: the attachment's per-call entry.
    :param state_kwargs: the arguments of :class:`ContextState` (the ``StateManager`` makes one per
        cache context).
    """

    _is_stateful = True

    def __init__(self, run: RunCall, state_kwargs: dict[str, Any]) -> None:
        super().__init__()
        self.run = run
        # diffusers annotates the state class as an instance of ``BaseState``
        self.state_manager = StateManager(ContextState, init_kwargs=state_kwargs)  # type: ignore[arg-type]

    def new_forward(self, module: nn.Module, *args: Any, **kwargs: Any) -> Any:
        return self.run(self.original_forward, args, kwargs)

    def reset_state(self, module: nn.Module) -> nn.Module:
        self.state_manager.reset()
        return module

    # -- the state manager, for the attachment -----------------------------------------------------
    def context(self) -> CacheContext | None:
        """The cache context of the call in progress, or ``None`` if the caller set none."""
        return self.state_manager._context

    def set_context(self, context: CacheContext | None) -> None:
        self.state_manager.set_context(context)

    def state(self) -> ContextState:
        """The trajectory of the current cache context (created on first use)."""
        state: ContextState = self.state_manager.get_state()
        return state

    def states(self) -> list[ContextState]:
        """The trajectory of every cache context seen since the last reset."""
        return manager_states(self.state_manager)

    def reset(self) -> None:
        """Forget every context's trajectory (their statistics are kept as a snapshot)."""
        self.state_manager.reset()


class BlockHook(_Hook):
    """On every body block: pass the inputs through on forecast steps; the last block also taps
    (``hidden``) and substitutes the forecast; the probe block (index ``shared.probe_at``) records the
    probe and, on a probe forecast step, lets the attachment forecast (``shared.on_probe``), which turns
    the blocks after it into pass-throughs."""

    def __init__(self, shared: StepFlags, io: BlockIO, tail: bool, index: int = -1) -> None:
        super().__init__()
        self.shared = shared
        self.io = io
        self.tail = tail
        self.index = index

    def new_forward(self, module: nn.Module, *args: Any, **kwargs: Any) -> Any:
        shared = self.shared
        if not shared.skip_body:
            output = self.original_forward(*args, **kwargs)
            if shared.active:
                if self.tail:
                    shared.recorded = self.io.hidden_output(output)
                elif self.index == shared.probe_at:
                    shared.probe = self.io.hidden_output(output)
                    if shared.on_probe is not None:
                        shared.on_probe()
            return output
        if self.tail:
            shared.substituted = True
            return self.io.passthrough(shared.forecast, args, kwargs)
        return self.io.passthrough(self.io.hidden_input(args, kwargs), args, kwargs)


class StemHook(_Hook):
    """On a stem module whose output only feeds the body: skipped on forecast steps."""

    def __init__(self, shared: StepFlags) -> None:
        super().__init__()
        self.shared = shared

    def new_forward(self, module: nn.Module, *args: Any, **kwargs: Any) -> Any:
        if self.shared.skip_body:
            return first_argument(args, kwargs)
        return self.original_forward(*args, **kwargs)


class TapHook(_Hook):
    """On the module of a :class:`ModuleOutputTap`: records its output, or returns the forecast."""

    def __init__(self, shared: StepFlags) -> None:
        super().__init__()
        self.shared = shared

    def new_forward(self, module: nn.Module, *args: Any, **kwargs: Any) -> Any:
        shared = self.shared
        if shared.skip_body:
            shared.substituted = True
            return shared.forecast
        output = self.original_forward(*args, **kwargs)
        if shared.active:
            shared.recorded = output
        return output


class _NoState:
    """The placeholder's per-context state: nothing (its ``StateManager`` only keeps the context)."""

    def reset(self, *args: Any, **kwargs: Any) -> None:
        return None


class PlaceholderHook(_Hook):
    """Where the leader will be, until the first call (the generic adapter): it keeps the caller's cache
    context (``cache_context`` reaches it like the leader) and hands the first call over.

    :param first_call: ``(original_forward, args, kwargs) -> output``.
    """

    _is_stateful = True

    def __init__(self, first_call: RunCall) -> None:
        super().__init__()
        self.first_call = first_call
        self.state_manager = StateManager(_NoState)  # type: ignore[arg-type]

    def new_forward(self, module: nn.Module, *args: Any, **kwargs: Any) -> Any:
        return self.first_call(self.original_forward, args, kwargs)

    def context(self) -> CacheContext | None:
        """The cache context the caller set, or ``None``."""
        return self.state_manager._context

    def reset_state(self, module: nn.Module) -> nn.Module:
        return module
