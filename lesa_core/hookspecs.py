"""Hook specifications of the pluggy project ``lesa``.

Plugins implement these with :data:`lesa_core.hookimpl`; the host (:mod:`lesa_core.plugins`) calls
them **once, when a run is assembled** — never per denoising step. A plugin distribution exposes a
module under the ``lesa`` entry-point group::

    [project.entry-points.lesa]
    my_predictor = "my_package.my_predictor"

and that module implements any subset of the hooks below. Implementations may accept fewer
arguments than the specification (pluggy's opt-in arguments), which lets hooks grow compatibly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from lesa_core.interfaces import BackboneAdapter, CachePolicy, Predictor, StageRouter
    from lesa_core.interfaces.model import ModelSource
    from lesa_core.registry import Registry

PROJECT_NAME = "lesa"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)

# ----------------------------------------------------------------------------- registration


@hookspec
def lesa_register_adapters(registry: Registry[type[BackboneAdapter]]) -> None:
    """Register backbone adapter classes.

    :param registry: call ``registry.add(name, AdapterClass)`` once per adapter. A name that is
        already registered raises :class:`~lesa_core.errors.DuplicatePluginError`.
    """


@hookspec
def lesa_register_predictors(registry: Registry[type[Predictor]]) -> None:
    """Register predictor families (subclasses of :class:`~lesa_core.interfaces.Predictor`).

    :param registry: call ``registry.add(name, PredictorClass)`` once per family.
    """


@hookspec
def lesa_register_stage_routers(registry: Registry[type[StageRouter]]) -> None:
    """Register stage routers (subclasses of :class:`~lesa_core.interfaces.StageRouter`).

    :param registry: call ``registry.add(name, RouterClass)`` once per router.
    """


@hookspec
def lesa_register_cache_policies(registry: Registry[type[CachePolicy]]) -> None:
    """Register cache policies (subclasses of :class:`~lesa_core.interfaces.CachePolicy`).

    :param registry: call ``registry.add(name, PolicyClass)`` once per policy.
    """


@hookspec
def lesa_register_models(registry: Registry[type[ModelSource]]) -> None:
    """Register named model sources for the workflow commands (``lesa demo --model NAME``).

    :param registry: call ``registry.add(name, ModelSourceClass)``; the class is instantiated
        without arguments.
    """


# ----------------------------------------------------------------------------- resolution


@hookspec(firstresult=True)
def lesa_resolve_adapter(model: Any) -> type[BackboneAdapter] | None:
    """Pick the adapter class for ``model`` (a transformer such as ``FluxTransformer2DModel``).

    Return the adapter class if this plugin handles the model (decide with ``isinstance``, not
    class-name prefixes), else ``None``. The first non-``None`` answer wins; implement with
    ``@hookimpl(tryfirst=True)`` to override a built-in adapter.

    :param model: the model the user wants to accelerate.
    :return: an adapter class registered through :func:`lesa_register_adapters`, or ``None``.
    """


# ----------------------------------------------------------------------------- command line


@hookspec
def lesa_register_commands(subparsers: Any) -> None:
    """Add sub-commands to the ``lesa`` command line.

    :param subparsers: the ``argparse`` sub-parsers action of the ``lesa`` parser. Add a parser
        with ``subparsers.add_parser(name, help=...)`` and ``set_defaults(func=callable)``; the
        callable receives the parsed ``argparse.Namespace`` and returns an exit code.
    """
