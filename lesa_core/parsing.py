"""Strict, bounded parsing of the documents LESA reads: run configs (YAML, TOML, JSON), bundle metadata,
trajectory-store and checkpoint JSON, ``lesa_call.json``.

* **Duplicate keys are refused** in YAML, JSON and TOML (YAML and JSON parsers silently keep the last
  value; TOML refuses them itself). YAML merge keys (``<<: *base``) still override, as YAML intends.
* **Bounded**: a document may nest at most :data:`MAX_DEPTH` levels and hold at most :data:`MAX_NODES`
  values *counted with every alias expanded* (a YAML alias bomb of a few hundred bytes expands to
  billions of values and is refused here, in linear time, before anything walks it); recursive YAML
  aliases are refused; a file may be at most :data:`MAX_FILE_BYTES` long.
* :func:`short_repr` bounds what an error message quotes of a value.

Every refusal is a :class:`DocumentError` (a ``ValueError``) naming what was wrong; the caller turns it
into the :class:`~lesa_core.errors.LesaError` of its context (a config, a bundle, a store) with what to do.
"""

from __future__ import annotations

import json
import reprlib
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["MAX_DEPTH", "MAX_FILE_BYTES", "MAX_NODES", "DocumentError", "check_bounds", "parse_json",
           "parse_toml", "parse_yaml", "read_text", "short_repr"]

MAX_DEPTH = 64
"""Deepest nesting of mappings and lists (a run config nests 4 levels)."""

MAX_NODES = 200_000
"""Most values in one document, aliases expanded (a long prompt list is a few thousand)."""

MAX_FILE_BYTES = 16 * 1024 * 1024
"""Largest document read (a run config is a few KB; bundle metadata a few hundred KB)."""


class DocumentError(ValueError):
    """A document that does not parse, holds duplicate keys or exceeds the bounds above."""


_REPR = reprlib.Repr()
_REPR.maxstring = 80
_REPR.maxother = 80
_REPR.maxlist = _REPR.maxtuple = _REPR.maxset = _REPR.maxdict = 6
_REPR.maxlevel = 3


def short_repr(value: Any) -> str:
    """``repr(value)`` cut to a few lines' worth (long strings, big or deep containers elided with ``...``)."""
    try:
        return _REPR.repr(value)
    except Exception:  # a value whose __repr__ fails still gets a message
        return f"<{type(value).__name__}>"


def read_text(path: Path) -> str:
    """The UTF-8 text of ``path``, refused beyond :data:`MAX_FILE_BYTES`.

    :raises DocumentError: for a file that is too large. ``OSError`` / ``UnicodeDecodeError`` pass through.
    """
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise DocumentError(f"the file is {size / 2**20:.1f} MiB; documents LESA reads are at most "
                            f"{MAX_FILE_BYTES // 2**20} MiB")
    return path.read_text(encoding="utf-8")


def check_bounds(data: Any) -> None:
    """Refuse nesting deeper than :data:`MAX_DEPTH`, more than :data:`MAX_NODES` values with shared
    (aliased) containers counted at every place they appear, and containers that contain themselves.

    Linear in the number of *distinct* containers: each is sized once and its size reused.

    :raises DocumentError: naming the bound that was exceeded.
    """
    sizes: dict[int, int] = {}
    depths: dict[int, int] = {}
    active: set[int] = set()
    # iterative post-order walk: (container, children iterator)
    stack: list[tuple[Any, list[Any]]] = []

    def children(value: Any) -> list[Any]:
        if isinstance(value, dict):
            return [*value.keys(), *value.values()]
        return list(value)

    def enter(value: Any) -> None:
        if id(value) in active:
            raise DocumentError("a value contains itself (a recursive YAML alias); write the structure out")
        active.add(id(value))
        stack.append((value, children(value)))
        if len(stack) > MAX_DEPTH:
            raise DocumentError(f"nested more than {MAX_DEPTH} levels deep")

    if not isinstance(data, (dict, list, tuple)):
        return
    enter(data)
    while stack:
        value, todo = stack[-1]
        while todo:
            child = todo.pop()
            if isinstance(child, (dict, list, tuple)):
                if id(child) in sizes:
                    if len(stack) + depths[id(child)] > MAX_DEPTH:
                        raise DocumentError(f"nested more than {MAX_DEPTH} levels deep")
                    continue
                enter(child)
                break
        else:
            stack.pop()
            active.discard(id(value))
            total, deepest = 1, 0
            for child in children(value):
                if isinstance(child, (dict, list, tuple)):
                    total += sizes[id(child)]
                    deepest = max(deepest, depths[id(child)])
                else:
                    total += 1
            if total > MAX_NODES:
                raise DocumentError(f"holds more than {MAX_NODES:,} values (YAML aliases counted wherever they "
                                    "are used, i.e. expanded)")
            sizes[id(value)] = total
            depths[id(value)] = deepest + 1


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise DocumentError(f"duplicate key {short_repr(key)}: a key may appear once per mapping")
        out[key] = value
    return out


def _guarded(parse: Callable[[], Any]) -> Any:
    try:
        data = parse()
    except RecursionError:
        raise DocumentError(f"nested more than {MAX_DEPTH} levels deep") from None
    check_bounds(data)
    return data


def parse_json(text: str) -> Any:
    """JSON with duplicate keys refused and the bounds checked.

    :raises DocumentError: for duplicates or exceeded bounds. ``json.JSONDecodeError`` for bad syntax.
    """
    return _guarded(lambda: json.loads(text, object_pairs_hook=_no_duplicates))


def parse_toml(text: str) -> Any:
    """TOML (which refuses duplicate keys itself) with the bounds checked.

    :raises DocumentError: for exceeded bounds. ``tomllib.TOMLDecodeError`` for bad syntax or duplicates.
    """
    return _guarded(lambda: tomllib.loads(text))


def parse_yaml(text: str) -> Any:
    """YAML (safe tags only) with duplicate keys refused and the bounds checked; aliases are allowed
    within :data:`MAX_NODES` values once expanded.

    :raises DocumentError: for duplicates, recursive aliases or exceeded bounds. ``yaml.YAMLError`` for
        bad syntax.
    """
    import yaml

    loader = yaml.SafeLoader(text)
    loader.construct_mapping = _strict_mapping(loader)  # type: ignore[method-assign]
    try:
        return _guarded(loader.get_single_data)
    finally:
        loader.dispose()


def _strict_mapping(loader: Any) -> Callable[..., dict[Any, Any]]:
    """``loader.construct_mapping`` that refuses a key written twice in one mapping (keys brought in by a
    ``<<`` merge may be overridden, as YAML intends)."""
    import yaml

    original = loader.construct_mapping

    def construct_mapping(node: Any, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = loader.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                except TypeError:  # an unhashable key: the constructor refuses it with its own message
                    continue
                if duplicate:
                    mark = key_node.start_mark
                    raise DocumentError(f"duplicate key {short_repr(key)} (line {mark.line + 1}): a key may "
                                        "appear once per mapping")
                seen.add(key)
        result: dict[Any, Any] = original(node, deep=deep)
        return result

    return construct_mapping
