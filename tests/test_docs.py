"""Docs cannot fall behind the code: every hook is documented with its signature."""

from __future__ import annotations

import inspect
from pathlib import Path

from lesa_core import hookspecs

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_every_hookspec_is_documented_with_its_signature() -> None:
    text = (DOCS / "plugin-hooks.md").read_text()
    hooks = [name for name in dir(hookspecs) if name.startswith("lesa_")]
    assert hooks, "no hookspecs found"
    for name in hooks:
        assert f"## {name}\n" in text, f"docs/plugin-hooks.md has no section for {name}"
        params = ", ".join(inspect.signature(getattr(hookspecs, name)).parameters)
        assert f"def {name}({params}" in text.replace(": Registry", "").replace(": Any", "").replace(
            "[type[BackboneAdapter]]", "").replace("[type[Predictor]]", "").replace(
            "[type[StageRouter]]", "").replace("[type[CachePolicy]]", "").replace("[type[ModelSource]]", ""), f"signature of {name} not in the docs"


def test_documented_hooks_exist() -> None:
    text = (DOCS / "plugin-hooks.md").read_text()
    documented = [line[3:].strip() for line in text.splitlines() if line.startswith("## lesa_")]
    assert sorted(documented) == sorted(n for n in dir(hookspecs) if n.startswith("lesa_"))


def test_every_test_named_in_the_reliability_doc_exists() -> None:
    """docs/reliability.md lists each promise with the test that guards it: each named test must exist."""
    import re

    text = (DOCS / "reliability.md").read_text()
    named = re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", text)
    assert len(named) >= 30, "docs/reliability.md names too few tests"
    missing = [f"{path}::{name}" for path, name in named
               if f"def {name}(" not in (DOCS.parent / path).read_text()]
    assert missing == [], f"docs/reliability.md names tests that do not exist: {missing}"
