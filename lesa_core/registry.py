"""Typed registrars handed to the registration hooks.

A :class:`Registry` maps a plugin name to one object (usually a class) of one kind. Names are
lower-case identifiers; registering a name twice raises; looking up an unknown name raises an error
that lists the registered ones. Each entry remembers which distribution supplied it, for
``lesa plugins``.

A plugin may register itself as the **default** of its kind (``registry.add(name, cls, default=True)``):
what a run config that names no predictor, router, policy or model gets. The core names no plugin
itself, so the defaults are whatever the installed distributions declare; at most one per kind.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from lesa_core.errors import DuplicatePluginError, InvalidPluginError, UnknownPluginError

T = TypeVar("T")

_NAME = re.compile(r"^[a-z][a-z0-9_\-]*$")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered object and where it came from."""

    kind: str
    name: str
    obj: T
    plugin: str | None
    distribution: str | None
    version: str | None
    default: bool = False


class Registry(Generic[T]):
    """Name → object map for one plugin kind (``adapter``, ``predictor``, ``router``, ``policy``).

    :param kind: the singular name of the kind, used in messages.
    :param base: if given, every registered object must be a subclass of it.
    """

    def __init__(self, kind: str, base: type | None = None) -> None:
        self.kind = kind
        self._base = base
        self._entries: dict[str, Entry[T]] = {}
        self._source: tuple[str | None, str | None, str | None] = (None, None, None)

    # -- registration -----------------------------------------------------------------------
    def add(self, name: str, obj: T, *, default: bool = False) -> None:
        """Register ``obj`` under ``name``.

        :param default: make it the default of this kind (what a run config that names none gets).
        :raises InvalidPluginError: (a ``ValueError`` and ``TypeError``) if ``name`` is not a lower-case
            identifier or ``obj`` has the wrong type.
        :raises DuplicatePluginError: if ``name`` is already registered for this kind, or another entry
            already is the default.
        """
        by = f" (registered by plugin '{self._source[0]}')" if self._source[0] else ""
        if not isinstance(name, str) or not _NAME.match(name):
            raise InvalidPluginError(
                f"{self.kind} name {name!r}{by} is invalid: use a lower-case identifier such as 'my_{self.kind}'"
            )
        if self._base is not None and not (isinstance(obj, type) and issubclass(obj, self._base)):
            raise InvalidPluginError(
                f"{self.kind} '{name}'{by} must be a subclass of {self._base.__name__}, got {obj!r}; "
                f"register the {self.kind} class itself"
            )
        if name in self._entries:
            previous = self._entries[name]
            raise DuplicatePluginError(
                f"{self.kind} '{name}' is registered twice: by {previous.plugin or '?'} "
                f"({previous.distribution or 'unknown distribution'}) and by {self._source[0] or '?'} "
                f"({self._source[1] or 'unknown distribution'}). Uninstall one of them, or block one with "
                "LESA_DISABLED_PLUGINS=<entry-point name>."
            )
        if default and self.default is not None:
            previous = self._entries[self.default]
            raise DuplicatePluginError(
                f"two plugins declare themselves the default {self.kind}: '{previous.name}' (by {previous.plugin or '?'}, "
                f"{previous.distribution or 'unknown distribution'}) and '{name}' (by {self._source[0] or '?'}, "
                f"{self._source[1] or 'unknown distribution'}). Uninstall or block one of them "
                "(LESA_DISABLED_PLUGINS=<entry-point name>)."
            )
        plugin, dist, version = self._source
        self._entries[name] = Entry(self.kind, name, obj, plugin, dist, version, default)

    def _set_source(self, plugin: str | None, distribution: str | None, version: str | None) -> None:
        """Record which plugin is registering now (called by the host around each hook call)."""
        self._source = (plugin, distribution, version)

    # -- lookup ------------------------------------------------------------------------------
    def get(self, name: str) -> T:
        """Return the object registered as ``name``.

        :raises UnknownPluginError: listing the registered names.
        """
        try:
            return self._entries[name].obj
        except KeyError:
            raise UnknownPluginError(self.kind, name, self._entries) from None

    def entry(self, name: str) -> Entry[T]:
        """Return the full :class:`Entry` for ``name`` (raises like :meth:`get`)."""
        self.get(name)
        return self._entries[name]

    @property
    def default(self) -> str | None:
        """The name registered with ``default=True``, if any."""
        return next((e.name for e in self._entries.values() if e.default), None)

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._entries)

    def entries(self) -> list[Entry[T]]:
        """All entries, sorted by name."""
        return [self._entries[n] for n in self.names()]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"
