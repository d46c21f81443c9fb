"""Public access to diffusers' per-module hook registries, for the engine and for code that drives
diffusers' own caches (the benchmarks, the tests) without reading diffusers internals itself.

diffusers keeps a module's hooks in a ``HookRegistry`` stored on the module as ``_diffusers_hook``,
and a stateful hook's per-context states in its ``StateManager``'s ``_state_cache``. Only this module
reads those private names (the leader hook reads its own manager's current context); it does not
import diffusers.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from torch import nn

if TYPE_CHECKING:
    from diffusers.hooks.hooks import HookRegistry, StateManager

__all__ = ["forget_registry", "hook_names", "hook_states", "manager_states", "registry_of",
           "reset_stateful_hooks"]

_REGISTRY = "_diffusers_hook"


def registry_of(module: nn.Module) -> HookRegistry | None:
    """The hook registry of ``module`` itself, or ``None`` if diffusers never gave it one."""
    registry: HookRegistry | None = getattr(module, _REGISTRY, None)
    return registry


def forget_registry(module: nn.Module) -> None:
    """Delete ``module``'s hook registry (a module that had none before an attachment gets none back)."""
    delattr(module, _REGISTRY)


def manager_states(manager: StateManager) -> list[Any]:
    """The states a ``StateManager`` holds, one per cache context seen since its last reset."""
    return list(manager._state_cache.values())


def hook_names(model: nn.Module) -> dict[str, list[str]]:
    """The diffusers hooks installed on ``model`` and its submodules: module name (``""`` for ``model``)
    to hook names in registration order; modules without hooks are left out."""
    found: dict[str, list[str]] = {}
    for name, module in model.named_modules():
        registry = registry_of(module)
        if registry is not None and registry.hooks:
            found[name] = list(registry.hooks)
    return found


def hook_states(model: nn.Module, hook_name: str) -> Iterator[Any]:
    """Every per-context state of the stateful hook ``hook_name`` (e.g. diffusers' ``"taylorseer_cache"``
    or LESA's ``"lesa"``) on ``model`` and its submodules, in module order."""
    for module in model.modules():
        registry = registry_of(module)
        hook = registry.get_hook(hook_name) if registry is not None else None
        manager = getattr(hook, "state_manager", None)
        if manager is not None:
            yield from manager_states(manager)


def reset_stateful_hooks(model: nn.Module) -> None:
    """Reset every stateful diffusers hook on ``model`` and its submodules, as a pipeline does at the
    end of each call (``ModelMixin._reset_stateful_cache``): cache hooks forget their trajectories."""
    reset = getattr(model, "_reset_stateful_cache", None)
    if reset is not None:
        reset()
        return
    for module in model.modules():  # not a diffusers model: reset each registry of its submodules
        registry = registry_of(module)
        if registry is not None:
            registry.reset_stateful_hooks(recurse=False)
