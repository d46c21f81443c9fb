"""Reading a forward call's arguments by name or position, and where a model's ``forward`` puts them."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from torch import nn

__all__ = ["argument", "first_argument", "parameter_positions"]


def argument(args: tuple[Any, ...], kwargs: Mapping[str, Any], name: str, position: int | None) -> Any:
    """The argument ``name`` of one call: by keyword, else at ``position``, else ``None``."""
    if name in kwargs:
        return kwargs[name]
    if position is not None and position < len(args):
        return args[position]
    return None


def first_argument(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
    """The first argument of one call, positional or (failing that) the first keyword one."""
    if args:
        return args[0]
    return next(iter(kwargs.values()), None)


def parameter_positions(model: nn.Module) -> tuple[dict[str, int], dict[str, Any]]:
    """Positions and defaults of the model's forward parameters (``self`` excluded)."""
    params = list(inspect.signature(type(model).forward).parameters.values())[1:]
    positions = {p.name: i for i, p in enumerate(params)
                 if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)}
    defaults = {p.name: p.default for p in params if p.default is not p.empty}
    return positions, defaults
