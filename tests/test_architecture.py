"""Architecture invariants that are cheap to check mechanically (docs/architecture.md)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_PACKAGES = ("lesa_adapters", "lesa_predictors", "lesa_schedulers", "lesa_workflows", "lesa_embedded",
                   "lesa_example_plugin", "lesa_example_wan")


def test_importing_lesa_core_loads_no_plugin_package_and_no_diffusers() -> None:
    code = (
        "import sys, json, lesa_core, lesa_core.assembly, lesa_core.cli, lesa_core.bundle, lesa_core.composite;"
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


# That the core's source never imports another distribution (not even inside a function) is part of
# the layer table: tests/test_layers.py.


PICKLE_MODULES = {"pickle", "_pickle", "cPickle", "dill", "cloudpickle", "joblib", "shelve"}


def _is_true(node: ast.expr | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def _dotted(node: ast.expr) -> str | None:
    """``a.b.c`` for a Name/Attribute chain, else ``None``."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return ".".join([node.id, *reversed(parts)])


def pickle_loads(source: str, filename: str = "<source>") -> list[str]:
    """Every place in ``source`` that can unpickle: a pickle-family import (also through ``importlib`` or
    ``__import__``), ``torch.load`` without ``weights_only=True`` under any alias (``import torch as th``,
    ``from torch import load as tl``, ``torch.serialization.load``), ``numpy.load(allow_pickle=True)``,
    ``pandas.read_pickle``."""
    tree = ast.parse(source, filename=filename)
    aliases: dict[str, str] = {}  # local name -> the module or function it is bound to
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in PICKLE_MODULES:
                    found.append(f"{filename}:{node.lineno}: imports {alias.name}")
                aliases[alias.asname or alias.name.split(".")[0]] = alias.name if alias.asname else alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] in PICKLE_MODULES:
                found.append(f"{filename}:{node.lineno}: imports from {node.module}")
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        if name is None:
            continue
        head, _, rest = name.partition(".")
        target = ".".join(p for p in (aliases.get(head, head), rest) if p)
        kwargs = {k.arg: k.value for k in node.keywords}
        where = f"{filename}:{node.lineno}"
        if target in {"torch.load", "torch.serialization.load"} and not _is_true(kwargs.get("weights_only")):
            found.append(f"{where}: {name}(...) without weights_only=True")
        elif target in {"numpy.load", "numpy.lib.npyio.load"} and not (
                kwargs.get("allow_pickle") is None or _is_constant_false(kwargs["allow_pickle"])):
            found.append(f"{where}: {name}(..., allow_pickle=...) can unpickle")
        elif target.endswith("read_pickle") or target.split(".")[0] in PICKLE_MODULES:
            found.append(f"{where}: {name}(...)")
        elif target in {"importlib.import_module", "__import__"} and node.args and isinstance(
                node.args[0], ast.Constant) and str(node.args[0].value).split(".")[0] in PICKLE_MODULES:
            found.append(f"{where}: imports {node.args[0].value} dynamically")
    return found


def _is_constant_false(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and node.value is False


def test_no_pickle_loading_anywhere() -> None:
    """Weights never load from pickle: no pickle-family imports, every torch.load passes
    weights_only=True (under any alias), numpy.load never allows pickles (see :func:`pickle_loads`)."""
    found: list[str] = []
    for path in _python_files("lesa_core", "adapters", "predictors", "schedulers", "workflows", "embedded",
                              "tools", "docs/examples", "benchmarks", "tests", "scripts"):
        found += pickle_loads(path.read_text(), str(path.relative_to(ROOT)))
    assert found == []


PICKLE_SNIPPETS = [
    "import pickle\npickle.load(f)",
    "import _pickle",
    "from joblib import load",
    "import dill as d",
    "import torch\ntorch.load('w.pt')",
    "import torch\ntorch.load('w.pt', weights_only=False)",
    "import torch\ntorch.load('w.pt', weights_only=flag)",
    "import torch as th\nth.load('w.pt')",
    "from torch import load\nload('w.pt')",
    "from torch import load as tl\ntl('w.pt', map_location='cpu')",
    "import torch\ntorch.serialization.load('w.pt')",
    "from torch import serialization\nserialization.load('w.pt')",
    "import numpy as np\nnp.load('a.npy', allow_pickle=True)",
    "import numpy\nnumpy.load('a.npy', allow_pickle=ok)",
    "from numpy import load as nl\nnl('a.npz', allow_pickle=True)",
    "import pandas as pd\npd.read_pickle('x.pkl')",
    "import importlib\nimportlib.import_module('pickle')",
    "__import__('cloudpickle')",
]
SAFE_SNIPPETS = [
    "import torch\ntorch.load('w.pt', weights_only=True)",
    "import torch as th\nth.load('w.pt', map_location='cpu', weights_only=True)",
    "import numpy as np\nnp.load('a.npy')",
    "import numpy as np\nnp.load('a.npy', allow_pickle=False)",
    "from safetensors.torch import load_file\nload_file('w.safetensors')",
    "import json\njson.load(f)",
    "import yaml\nyaml.safe_load(text)",
]


@pytest.mark.parametrize("snippet", PICKLE_SNIPPETS)
def test_the_pickle_check_catches(snippet: str) -> None:
    assert pickle_loads(snippet), snippet


@pytest.mark.parametrize("snippet", SAFE_SNIPPETS)
def test_the_pickle_check_passes_safe_loads(snippet: str) -> None:
    assert pickle_loads(snippet) == [], snippet


def test_nothing_patches_a_class() -> None:
    """No assignment to ``<something>.__class__.<attr>`` or ``type(x).<attr>`` in project code."""
    for path in _python_files("lesa_core", "adapters", "predictors", "schedulers", "workflows", "embedded",
                              "tools", "docs/examples"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Assign, ast.AugAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Attribute):
                        assert target.value.attr != "__class__", f"{path}:{node.lineno} patches a class"


DIFFUSERS_HOOK_INTERNALS = ("_diffusers_hook", "_state_cache", "_reset_stateful_cache", "state_manager._")


def test_only_the_engine_reads_diffusers_hook_internals() -> None:
    """diffusers' hook internals are read in one package, the adapters' engine (pinned to the diffusers
    versions it was written against); everything else goes through its public helpers."""
    engine = ROOT / "adapters" / "lesa_adapters" / "engine"
    found = []
    for path in _python_files("lesa_core", "adapters", "predictors", "schedulers", "workflows", "embedded",
                              "tools", "benchmarks", "docs/examples"):
        if engine in path.parents:
            continue
        text = path.read_text()
        found += [f"{path.relative_to(ROOT)}: {name}" for name in DIFFUSERS_HOOK_INTERNALS if name in text]
    assert found == []
