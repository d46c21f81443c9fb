"""The plugin host: loads the ``lesa`` entry-point group and exposes typed registries.

Plugins are collected **once, when a run is assembled** (:func:`get_plugin_host` is lazy and cached);
nothing on the per-step path calls pluggy. Core code talks to plugins only through the typed
:class:`PluginHost` facade, never through raw ``pm.hook`` calls.

Environment switches:

``LESA_DISABLE_PLUGIN_AUTOLOAD=1``
    do not load the ``lesa`` entry-point group (only ``LESA_PLUGINS`` and explicit registrations).
``LESA_DISABLED_PLUGINS=name,other``
    block these entry-point names (pluggy ``set_blocked``).
``LESA_PLUGINS=package.module,other.module``
    import and register these modules as plugins in addition to the entry points.
``LESA_TRACE_PLUGINS=1``
    print every hook call with its arguments and results to stderr.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pluggy

from lesa_core import hookspecs
from lesa_core.environment import env_flag, env_module_list, env_name_list
from lesa_core.errors import InvalidPluginError, LesaError, PluginLoadError, UnsupportedModelError
from lesa_core.interfaces import BackboneAdapter, CachePolicy, Predictor, StageRouter
from lesa_core.interfaces.model import ModelSource
from lesa_core.parsing import short_repr
from lesa_core.registry import Registry

ENTRY_POINT_GROUP = "lesa"

hookimpl = pluggy.HookimplMarker(hookspecs.PROJECT_NAME)
"""Marker for hook implementations: ``@hookimpl def lesa_register_predictors(registry): ...``."""

_REGISTRATION_HOOKS = {
    "adapter": "lesa_register_adapters",
    "predictor": "lesa_register_predictors",
    "router": "lesa_register_stage_routers",
    "policy": "lesa_register_cache_policies",
    "model": "lesa_register_models",
}


@dataclass(frozen=True)
class PluginInfo:
    """One registered object, as ``lesa plugins --json`` reports it."""

    kind: str
    name: str
    distribution: str | None
    version: str | None
    plugin: str | None
    default: bool = False

    def as_dict(self) -> dict[str, str | bool | None]:
        return {"kind": self.kind, "name": self.name, "distribution": self.distribution,
                "version": self.version, "default": self.default}


class PluginHost:
    """Typed facade over a pluggy ``PluginManager`` for the ``lesa`` project.

    Build one with :meth:`create` (or use the cached :func:`get_plugin_host`). Tests build a fresh
    host with ``PluginHost.create(autoload=False, plugins=[module, ...])``.
    """

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self.pm = pm
        self.adapters: Registry[type[BackboneAdapter]] = Registry("adapter", BackboneAdapter)
        self.predictors: Registry[type[Predictor]] = Registry("predictor", Predictor)
        self.routers: Registry[type[StageRouter]] = Registry("router", StageRouter)
        self.policies: Registry[type[CachePolicy]] = Registry("policy", CachePolicy)
        self.models: Registry[type[ModelSource]] = Registry("model", ModelSource)
        self._registered: set[int] = set()

    # -- construction -----------------------------------------------------------------------
    @classmethod
    def create(cls, *, autoload: bool | None = None, plugins: Iterable[Any] = ()) -> PluginHost:
        """Create a host, load plugins and collect their registrations.

        :param autoload: load the ``lesa`` entry-point group; default: unless
            ``LESA_DISABLE_PLUGIN_AUTOLOAD`` is set.
        :param plugins: extra plugin objects (usually modules) to register.
        :raises PluginLoadError: if an entry point fails to import or implements unknown hooks.
        """
        pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        pm.add_hookspecs(hookspecs)
        trace = env_flag("LESA_TRACE_PLUGINS")
        blocked_names = env_name_list("LESA_DISABLED_PLUGINS")
        extra_modules = env_module_list("LESA_PLUGINS")
        if autoload is None:
            autoload = not env_flag("LESA_DISABLE_PLUGIN_AUTOLOAD")
        if trace:
            _install_tracing(pm)
        for blocked in blocked_names:
            pm.set_blocked(blocked)
        if autoload:
            _load_entry_points(pm)
        for module_name in extra_modules:
            try:
                module = importlib.import_module(module_name)
            except Exception as exc:  # ImportError, or whatever the module raises while it is imported
                raise PluginLoadError(
                    f"LESA_PLUGINS names '{module_name}', which cannot be imported ({type(exc).__name__}: "
                    f"{short_repr(str(exc))}). Fix the module path or remove it from LESA_PLUGINS."
                ) from exc
            if pm.is_registered(module) or pm.is_blocked(module_name):
                continue
            pm.register(module, name=module_name)
        host = cls(pm)
        for plugin in plugins:
            if not pm.is_registered(plugin):
                pm.register(plugin)
        host._check_pending()
        host._collect(pm.get_plugins())
        return host

    def register(self, plugin: Any, name: str | None = None) -> None:
        """Register one more plugin object and collect its registrations."""
        self.pm.register(plugin, name=name)
        self._check_pending()
        self._collect([plugin])

    def _check_pending(self) -> None:
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            raise PluginLoadError(
                f"{exc}. A plugin implements a hook that lesa does not define: check the hook name "
                "against `lesa_core.hookspecs`, or block the plugin with LESA_DISABLED_PLUGINS."
            ) from exc

    def _collect(self, plugins: Iterable[Any]) -> None:
        """Call the registration hooks of ``plugins`` one by one, recording who registered what."""
        wanted = [p for p in plugins if id(p) not in self._registered]
        if not wanted:
            return
        dists = {id(plugin): dist for plugin, dist in self.pm.list_plugin_distinfo()}
        registries: dict[str, Registry[Any]] = {"adapter": self.adapters, "predictor": self.predictors,
                      "router": self.routers, "policy": self.policies, "model": self.models}
        for kind, hook_name in _REGISTRATION_HOOKS.items():
            registry = registries[kind]
            caller = getattr(self.pm.hook, hook_name)
            for impl in reversed(caller.get_hookimpls()):  # registration order
                if not any(impl.plugin is p for p in wanted):
                    continue
                dist_name, version = _distribution_of(impl.plugin, dists.get(id(impl.plugin)))
                registry._set_source(impl.plugin_name, dist_name, version)
                try:
                    impl.function(**{arg: registry for arg in impl.argnames})
                except LesaError:
                    raise
                except Exception as exc:
                    raise InvalidPluginError(
                        f"plugin '{impl.plugin_name}' ({dist_name or 'unknown distribution'}) failed in its "
                        f"{hook_name} hook: {type(exc).__name__}: {exc}. Fix or update the plugin, or disable it "
                        f"with LESA_DISABLED_PLUGINS={impl.plugin_name}."
                    ) from exc
                finally:
                    registry._set_source(None, None, None)
        self._registered.update(id(p) for p in wanted)

    # -- queries ----------------------------------------------------------------------------
    def resolve_adapter(self, model: Any) -> type[BackboneAdapter]:
        """The adapter class for ``model``, chosen by the ``lesa_resolve_adapter`` hook.

        :raises UnsupportedModelError: naming the model class and the registered adapters.
        """
        adapter: type[BackboneAdapter] | None = self.pm.hook.lesa_resolve_adapter(model=model)
        if adapter is None:
            cls = type(model)
            raise UnsupportedModelError(
                f"no registered adapter handles {cls.__module__}.{cls.__qualname__}. Registered adapters: "
                f"{', '.join(self.adapters.names()) or '(none)'}. Pass a transformer or pipeline of a "
                "supported family, or write an adapter (docs/adding-a-backbone.md)."
            )
        return adapter

    def plugin_infos(self) -> list[PluginInfo]:
        """Every registered object of every kind, sorted by kind then name."""
        rows: list[PluginInfo] = []
        for registry in (self.adapters, self.predictors, self.routers, self.policies, self.models):
            for entry in registry.entries():
                rows.append(PluginInfo(entry.kind, entry.name, entry.distribution, entry.version, entry.plugin,
                                       entry.default))
        return rows

    def add_commands(self, subparsers: Any) -> None:
        """Let plugins add ``lesa`` sub-commands."""
        self.pm.hook.lesa_register_commands(subparsers=subparsers)


def _load_entry_points(pm: pluggy.PluginManager) -> None:
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
            continue
        try:
            pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP, name=ep.name)
        except Exception as exc:
            raise PluginLoadError(
                f"the lesa plugin entry point '{ep.name}' ({ep.value}) failed to load: "
                f"{type(exc).__name__}: {exc}. Reinstall its distribution, or disable it with "
                f"LESA_DISABLED_PLUGINS={ep.name}."
            ) from exc


def _distribution_of(plugin: Any, dist: Any) -> tuple[str | None, str | None]:
    if dist is not None:
        return str(dist.project_name), str(dist.version)
    module = getattr(plugin, "__name__", None) or type(plugin).__module__
    top = module.split(".")[0]
    names = importlib.metadata.packages_distributions().get(top, [])
    if not names:
        return None, None
    name = names[0]
    try:
        return name, importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return name, None


def _install_tracing(pm: pluggy.PluginManager) -> None:
    def before(hook_name: str, impls: Any, kwargs: Any) -> None:
        print(f"[lesa] {hook_name}({', '.join(kwargs)}) -> {[i.plugin_name for i in impls]}", file=sys.stderr)

    def after(outcome: Any, hook_name: str, impls: Any, kwargs: Any) -> None:
        print(f"[lesa] {hook_name} returned {outcome.get_result()!r}", file=sys.stderr)

    pm.add_hookcall_monitoring(before, after)


_HOST: PluginHost | None = None


def get_plugin_host(*, refresh: bool = False) -> PluginHost:
    """The process-wide plugin host, created on first use (never at import)."""
    global _HOST
    if _HOST is None or refresh:
        _HOST = PluginHost.create()
    return _HOST
