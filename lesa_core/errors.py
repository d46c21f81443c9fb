"""The exceptions LESA raises, one type per kind of mistake.

Every message says what was wrong *and* what to do next. All types derive from
:class:`LesaError`, so ``except LesaError`` catches everything this package raises on purpose.
"""

from __future__ import annotations

from collections.abc import Iterable

from lesa_core.parsing import short_repr


class LesaError(Exception):
    """Base class of every error LESA raises deliberately."""


class ConfigError(LesaError, ValueError):
    """A run configuration is malformed: an unknown key, a bad value, an unreadable file.

    :param message: what is wrong and what is allowed.
    :param source: the file the configuration came from, if any.
    :param path: the dotted field path of the offending value (``predictor.order``), if known.
    :ivar message: ``message`` as given (without the source and path).
    """

    def __init__(self, message: str, *, source: str | None = None, path: str | None = None) -> None:
        self.message = message
        self.source = source
        self.path = path
        where = " ".join(part for part in (f"in {source}" if source else "", f"at '{path}'" if path else "") if part)
        super().__init__(f"{where}: {message}" if where else message)


class UnknownPluginError(LesaError, LookupError):
    """A plugin name that no installed plugin registered.

    The message lists the names that *are* registered for that kind.
    """

    def __init__(self, kind: str, name: str, available: Iterable[str]) -> None:
        self.kind = kind
        self.name = name
        self.available = sorted(available)
        listing = ", ".join(self.available) if self.available else "(none: is the plugin distribution installed?)"
        kinds = f"{kind[:-1]}ies" if kind.endswith("y") else f"{kind}s"
        super().__init__(
            f"unknown {kind} {short_repr(name)}. Registered {kinds}: {listing}. "
            "Run `lesa plugins` to see every installed plugin."
        )

    def __str__(self) -> str:  # LookupError/KeyError would quote the message otherwise
        return str(self.args[0])


class DuplicatePluginError(LesaError):
    """Two plugins registered the same name for the same kind."""


class PluginLoadError(LesaError):
    """An entry point of the ``lesa`` group failed to import or declares unknown hooks."""


class InvalidPluginError(PluginLoadError, ValueError, TypeError):
    """A plugin registered something invalid: a malformed name, an object of the wrong type, or its
    registration hook failed. The message names the plugin (and how to disable it)."""


class UnsupportedModelError(LesaError, TypeError):
    """No registered backbone adapter claims the model that was passed to :func:`lesa_core.attach`."""


class BundleError(LesaError):
    """A weights bundle cannot be used."""


class BundleNotFoundError(BundleError, FileNotFoundError):
    """The bundle folder or one of its files does not exist."""


class BundleCorruptError(BundleError):
    """A bundle file is truncated, damaged, tampered with or not a LESA bundle at all."""


class BundleMismatchError(BundleError):
    """A well-formed bundle that does not fit the model, tap, schedule or predictor it is applied to."""


class ScheduleMismatchError(BundleMismatchError):
    """A schedule-bound predictor is asked to run at a step count or on times it was not trained for."""


class AttachError(LesaError, RuntimeError):
    """The runtime cannot attach to (or is already attached to) a model."""


class ForwardInputError(LesaError, TypeError):
    """A forward call of a model with LESA attached lacks what the runtime reads (the latent tensor and
    the timestep), so the step can be neither decided nor forecast."""


class TrainingError(LesaError, RuntimeError):
    """Collection or training cannot proceed (missing data, incompatible checkpoint, ...)."""


class OutputError(LesaError):
    """An output folder or file cannot be written: it holds files LESA did not write (and would replace),
    it lies inside the data it is made from, it is not writable, or its disk is too full."""


class UsageError(LesaError, ValueError):
    """A command-line argument or a ``LESA_*`` environment variable has a value LESA cannot use."""
