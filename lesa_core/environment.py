"""The environment variables LESA reads, each validated: a value LESA cannot use is a
:class:`~lesa_core.errors.UsageError` naming the variable and what it accepts (never silently taken as
"off", never a ``TypeError`` from deep inside an import).

======================================  =========================================================
``LESA_DISABLE_PLUGIN_AUTOLOAD``        flag: do not load the ``lesa`` entry points
``LESA_TRACE_PLUGINS``                  flag: print every hook call
``LESA_PLUGINS``                        comma-separated module paths to register as plugins
``LESA_DISABLED_PLUGINS``               comma-separated entry-point names to block
``LESA_CUDA_GRAPHS``                    flag (default on): capture coefficient computations in CUDA graphs
``LESA_DIST_TIMEOUT``                   seconds a collective waits (default 1800)
``WORLD_SIZE``, ``LOCAL_RANK``          set by ``torchrun``
======================================  =========================================================

A flag is ``1``/``true``/``yes``/``on`` or ``0``/``false``/``no``/``off`` (any case); empty or unset is
its default.
"""

from __future__ import annotations

import os
import re

from lesa_core.errors import UsageError
from lesa_core.parsing import short_repr

__all__ = ["env_flag", "env_int", "env_module_list", "env_name_list"]

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def env_flag(name: str, default: bool = False) -> bool:
    """The flag ``name`` (see the module docstring).

    :raises UsageError: for any other value.
    """
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise UsageError(f"environment variable {name}={short_repr(os.environ[name])} is not a flag; set it to 1 or 0 "
                     "(true/false, yes/no, on/off) or unset it")


def env_int(name: str, default: int, *, minimum: int = 0) -> int:
    """The integer ``name`` (at least ``minimum``), or ``default`` when unset or empty.

    :raises UsageError: for anything else.
    """
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise UsageError(f"environment variable {name}={short_repr(os.environ[name])} must be an integer >= "
                         f"{minimum}; fix or unset it")
    return value


def _items(name: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


def env_module_list(name: str) -> list[str]:
    """Comma-separated absolute module paths (``package.module``).

    :raises UsageError: naming the first entry that is not one (a relative ``.evil``, a path ``a/b.py``).
    """
    items = _items(name)
    for item in items:
        if not _MODULE.fullmatch(item):
            raise UsageError(f"environment variable {name} names {short_repr(item)}, which is not an absolute module "
                             "path; use dotted module names such as my_package.lesa_plugin, separated by commas")
    return items


def env_name_list(name: str) -> list[str]:
    """Comma-separated names (entry-point names: letters, digits, ``_ - .``).

    :raises UsageError: naming the first entry with other characters.
    """
    items = _items(name)
    for item in items:
        if not re.fullmatch(r"[\w.\-]+", item):
            raise UsageError(f"environment variable {name} names {short_repr(item)}, which is not a plugin name; use "
                             "the entry-point names `lesa plugins` shows, separated by commas")
    return items
