"""The layers of the project as a table, and a check that every import follows it.

Two tables (docs/architecture.md draws both):

* :data:`CORE_LAYERS` — the layers inside ``lesa_core``, lowest first. A module may import its own layer
  and the layers below it; an import of a higher layer is a violation, wherever it stands (module top,
  inside a function, under ``TYPE_CHECKING``).
* :data:`DISTRIBUTIONS` — which of the project's import packages each distribution may import. The core
  imports none of the others; the plugin distributions import the core only; the workflows may import
  every plugin distribution they compare.

:func:`layer_violations` is the checker; :func:`test_the_checker_catches_an_upward_import` shows that it
fails on a deliberately added upward import.
"""

from __future__ import annotations

import ast
import shutil
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CORE_LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundation", ("lesa_core.errors", "lesa_core.interfaces", "lesa_core.registry", "lesa_core.hookspecs",
                    "lesa_core.progress", "lesa_core.metrics", "lesa_core.distributed", "lesa_core.parsing", "lesa_core.environment",
                    "lesa_core.outputs", "lesa_core.replay")),
    ("plugin host", ("lesa_core.plugins",)),
    ("config and bundles", ("lesa_core.config", "lesa_core.bundle", "lesa_core.composite", "lesa_core.run",
                            "lesa_core.sources")),
    ("front door", ("lesa_core.assembly", "lesa_core.handle", "lesa_core.pretrained", "lesa_core.sampler")),
    ("trainer", ("lesa_core.trainer",)),
    ("command line", ("lesa_core.cli",)),
    ("test kit", ("lesa_core.testing",)),
    ("package facade", ("lesa_core",)),
]
"""Layers of ``lesa_core``, lowest first; each entry names module prefixes (a package covers its
submodules). The most specific prefix decides a module's layer."""

PROJECT_PACKAGES = ("lesa_core", "lesa_adapters", "lesa_predictors", "lesa_schedulers", "lesa_workflows",
                    "lesa_embedded", "lesa_example_plugin", "lesa_example_wan")

DISTRIBUTIONS: dict[str, tuple[str, frozenset[str]]] = {
    # folder: (import package, project packages it may import besides itself)
    "lesa_core": ("lesa_core", frozenset()),
    "predictors": ("lesa_predictors", frozenset({"lesa_core"})),
    "schedulers": ("lesa_schedulers", frozenset({"lesa_core"})),
    "adapters": ("lesa_adapters", frozenset({"lesa_core"})),
    "embedded": ("lesa_embedded", frozenset({"lesa_core"})),
    "workflows": ("lesa_workflows", frozenset({"lesa_core", "lesa_predictors", "lesa_schedulers", "lesa_adapters"})),
    "docs/examples/lesa-example-plugin": ("lesa_example_plugin", frozenset({"lesa_core"})),
    "docs/examples/lesa-example-wan": ("lesa_example_wan", frozenset({"lesa_core", "lesa_adapters"})),
}
"""Each distribution's import package and the project packages it may import (its declared
dependencies). Third-party imports are not this table's business (diffusers at import time is checked
in test_architecture.py)."""


def layer_of(module: str) -> int:
    """Index in :data:`CORE_LAYERS` of a ``lesa_core`` module (the longest matching prefix wins)."""
    best, best_len = -1, -1
    for index, (_, prefixes) in enumerate(CORE_LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    if best < 0:
        raise AssertionError(f"{module} belongs to no layer of CORE_LAYERS; add it to the table")
    return best


def module_name(path: Path, source_root: Path) -> str:
    parts = list(path.relative_to(source_root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path, module: str) -> Iterator[tuple[int, str]]:
    """``(line, dotted name)`` for every import in the file, relative ones resolved; ``from pkg import name``
    yields ``pkg.name`` (a submodule, or a name whose longest importable prefix is ``pkg``)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}"


def _existing_module(name: str, source_root: Path) -> str | None:
    """``name`` or its longest prefix that is a module or package under ``source_root``."""
    parts = name.split(".")
    while parts:
        candidate = source_root.joinpath(*parts)
        if candidate.with_suffix(".py").is_file() or (candidate / "__init__.py").is_file():
            return ".".join(parts)
        parts.pop()
    return None


def layer_violations(source_root: Path) -> list[str]:
    """Every import in ``source_root/lesa_core`` that goes up :data:`CORE_LAYERS` or leaves the core for
    another project package."""
    found: list[str] = []
    for path in sorted((source_root / "lesa_core").rglob("*.py")):
        module = module_name(path, source_root)
        here = layer_of(module)
        for line, target in imported_modules(path, module):
            top = target.split(".")[0]
            where = f"{path.relative_to(source_root)}:{line}"
            if top in PROJECT_PACKAGES and top != "lesa_core":
                found.append(f"{where}: the core imports {target} (another distribution)")
                continue
            if top != "lesa_core":
                continue
            resolved = _existing_module(target, source_root)
            if resolved is None:
                continue
            there = layer_of(resolved)
            if there > here:
                found.append(f"{where}: {module} ({CORE_LAYERS[here][0]}) imports {resolved} "
                             f"({CORE_LAYERS[there][0]}), a higher layer")
    return sorted(set(found))


def test_the_core_follows_its_layer_table() -> None:
    assert layer_violations(ROOT) == []


def test_every_core_module_is_in_the_table() -> None:
    for path in (ROOT / "lesa_core").rglob("*.py"):
        layer_of(module_name(path, ROOT))


def test_the_checker_catches_an_upward_import(tmp_path: Path) -> None:
    """The same check on a copy of the core with one deliberately added upward import (an interface
    importing the trainer) and one import of another distribution fails, naming both."""
    shutil.copytree(ROOT / "lesa_core", tmp_path / "lesa_core", ignore=shutil.ignore_patterns("__pycache__"))
    policy = tmp_path / "lesa_core" / "interfaces" / "policy.py"
    policy.write_text(policy.read_text() + "\n\ndef _sneaky():\n    from lesa_core.trainer import train\n")
    config = tmp_path / "lesa_core" / "config.py"
    config.write_text(config.read_text() + "\nimport lesa_workflows.report\n")
    found = layer_violations(tmp_path)
    assert len(found) == 2, found
    assert "interfaces/policy.py" in found[0] or "interfaces/policy.py" in found[1]
    assert any("lesa_core.interfaces.policy (foundation) imports lesa_core.trainer (trainer)" in f for f in found)
    assert any("the core imports lesa_workflows.report" in f for f in found)


def _distribution_imports(folder: str) -> Iterator[tuple[str, str]]:
    package, _ = DISTRIBUTIONS[folder]
    source_root = ROOT / folder if folder != "lesa_core" else ROOT
    for path in sorted((source_root / package).rglob("*.py")):
        module = module_name(path, source_root)
        for line, target in imported_modules(path, module):
            yield f"{path.relative_to(ROOT)}:{line}", target.split(".")[0]


def test_distributions_import_only_what_they_depend_on() -> None:
    found = []
    for folder, (package, allowed) in DISTRIBUTIONS.items():
        if not (ROOT / folder).exists():
            continue
        for where, top in _distribution_imports(folder):
            if top in PROJECT_PACKAGES and top != package and top not in allowed:
                found.append(f"{where}: {package} imports {top}")
    assert sorted(set(found)) == []
