"""The workflow sub-commands of ``lesa``, added through the ``lesa_register_commands`` hook:
``sample`` (:mod:`.sample`), ``demo`` (:mod:`.demo`) and ``bench`` (:mod:`.bench`)."""

from __future__ import annotations

from typing import Any

from lesa_core import hookimpl


@hookimpl
def lesa_register_commands(subparsers: Any) -> None:
    from lesa_workflows.commands import bench, demo, sample

    for command in (sample, demo, bench):
        command.register(subparsers)
