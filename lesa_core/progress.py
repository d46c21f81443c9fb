"""Progress bars (tqdm) for long work; silent when disabled or not on a terminal-less rank."""

from __future__ import annotations

from typing import Any


def progress_bar(*, total: int, desc: str, unit: str = "it", disable: bool = False) -> Any:
    """A tqdm bar (``update(n)``, ``set_postfix(...)``, ``close()``)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=disable, dynamic_ncols=True, leave=False)
