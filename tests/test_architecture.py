"""Architecture invariants that are cheap to check mechanically (docs/architecture.md)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_PACKAGES = ("lesa_adapters", "lesa_predictors", "lesa_schedulers", "lesa_example_plugin",
                   "lesa_example_wan")


def test_importing_lesa_core_loads_no_plugin_package_and_no_diffusers() -> None:
    code = (
        "import sys, json, lesa_core, lesa_core.runtime, lesa_core.cli, lesa_core.bundle, lesa_core.composite;"
        "print(json.dumps(sorted(m for m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    loaded = json.loads(out)
    offenders = [m for m in loaded if m.split(".")[0] in {*PLUGIN_PACKAGES, "diffusers", "transformers"}]
    assert offenders == [], f"lesa_core imported {offenders} at import time"


def _python_files(*folders: str) -> list[Path]:
    files: list[Path] = []
    for folder in folders:
        files += [p for p in (ROOT / folder).rglob("*.py") if ".venv" not in p.parts]
    return files


def test_lesa_core_source_never_imports_plugin_packages() -> None:
    for path in _python_files("lesa_core"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in PLUGIN_PACKAGES, f"{path}: imports {name}"


def test_no_pickle_loading_anywhere() -> None:
    """Weights never load from pickle: no pickle/dill imports, every torch.load passes weights_only=True."""
    for path in _python_files("lesa_core", "adapters", "predictors", "schedulers", "docs/examples", "benchmarks"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    assert alias.name.split(".")[0] not in {"pickle", "dill", "cloudpickle"}, f"{path}: {alias.name}"
            if isinstance(node, ast.ImportFrom) and node.module:
                assert node.module.split(".")[0] not in {"pickle", "dill", "cloudpickle"}, f"{path}: {node.module}"
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load":
                target = node.func.value
                if isinstance(target, ast.Name) and target.id == "torch":
                    kwargs = {k.arg: k.value for k in node.keywords}
                    ok = isinstance(kwargs.get("weights_only"), ast.Constant) and kwargs["weights_only"].value is True
                    assert ok, f"{path}:{node.lineno}: torch.load without weights_only=True"


def test_nothing_patches_a_class() -> None:
    """No assignment to ``<something>.__class__.<attr>`` or ``type(x).<attr>`` in project code."""
    for path in _python_files("lesa_core", "adapters", "predictors", "schedulers", "docs/examples"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Assign, ast.AugAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Attribute):
                        assert target.value.attr != "__class__", f"{path}:{node.lineno} patches a class"
