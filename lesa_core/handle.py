"""The front door of inference: :func:`attach` a run to a model, get a removable :class:`LesaHandle`.

``attach(target, config)`` accepts a diffusers pipeline (its ``transformer`` is used) or a transformer,
and a run (a resolved run, a config object, dict or YAML/TOML path, or a bundle folder / Hub id). It
resolves the run once (:func:`lesa_core.run.resolve_run`), assembles it (:func:`lesa_core.assembly.assemble`)
and asks the adapter to attach. The returned :class:`LesaHandle` is a context manager; ``remove()``
restores the model exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any

from lesa_core.assembly import Assembly, assemble, find_transformer
from lesa_core.config import RunConfig
from lesa_core.errors import AttachError
from lesa_core.interfaces import Attachment, Predictor, StepEvent
from lesa_core.plugins import PluginHost
from lesa_core.run import ConfigLike, ResolvedRun


class LesaHandle:
    """A live LESA attachment. Use as a context manager or call :meth:`remove`.

    :ivar assembly: the assembled run (resolved run, adapter, tap, predictor).
    """

    def __init__(self, attachment: Attachment, assembly: Assembly) -> None:
        self._attachment = attachment
        self.assembly = assembly
        self._removed = False

    @property
    def predictor(self) -> Predictor:
        return self.assembly.predictor

    @property
    def config(self) -> RunConfig:
        return self.assembly.config

    @property
    def run(self) -> ResolvedRun:
        return self.assembly.run

    def stats(self) -> dict[str, dict[str, Any]]:
        """Per cache context: full and forecast steps of the most recent trajectory, timings, cache bytes."""
        return self._attachment.stats()

    def reset(self) -> None:
        """Forget every trajectory in progress."""
        self._attachment.reset()

    def remove(self) -> None:
        """Detach from the model; it then behaves bit-identically to before. Idempotent."""
        if not self._removed:
            self._attachment.remove()
            self._removed = True

    @property
    def attached(self) -> bool:
        return not self._removed

    def __enter__(self) -> LesaHandle:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.remove()


def attach(target: Any, config: ConfigLike | ResolvedRun = None, *, host: PluginHost | None = None,
           observer: Callable[[StepEvent], None] | None = None, predictor: Predictor | None = None) -> LesaHandle:
    """Accelerate ``target`` (a diffusers pipeline or transformer) with the run described by ``config``.

    :param target: a pipeline with a ``transformer`` component, or the transformer itself.
    :param config: a resolved run, a :class:`RunConfig`, a dict, a YAML/TOML/JSON path, or a bundle
        folder / Hub id. ``None`` means the registered defaults (training-free Taylor order 1, interval
        7, warm-up 3 with the built-in plugins).
    :param observer: called with a :class:`~lesa_core.interfaces.StepEvent` after every step
        (trajectory collection and closed-loop training use it).
    :param predictor: use this (already built) predictor instead of building one from the config.
    :return: a :class:`LesaHandle`; ``with attach(pipe, cfg): pipe(...)`` detaches on exit.
    :raises UnsupportedModelError: if no adapter claims the model (naming the registered ones).
    :raises ConfigError, BundleError: for bad configs or bundles that do not fit.
    :raises AttachError: if LESA (or another cache) is already attached to the model.
    """
    model = find_transformer(target)
    if getattr(model, "is_cache_enabled", False):
        raise AttachError(
            f"{type(model).__qualname__} already has a diffusers cache enabled; call `disable_cache()` first"
        )
    assembly = assemble(model, config, host=host, predictor=predictor)
    attachment = assembly.adapter.attach(assembly.components(observer))
    return LesaHandle(attachment, assembly)
