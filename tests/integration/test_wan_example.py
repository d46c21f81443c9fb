"""The Wan example distribution (docs/examples/lesa-example-wan) works through the public door.

The pipeline checks (schedule, exactness, removal, consecutive calls) run on the tiny ``WanPipeline``
in ``test_runtime_pipelines.py`` (family ``wan``) and the conformance suite in
``test_adapter_conformance.py``; this module checks the installation and Wan-specific details.
"""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest
import torch
from runtime_support import HAS_WAN_EXAMPLE, make_host, run_config

import lesa_core
from lesa_core.plugins import PluginHost
from lesa_core.sampler import sample
from lesa_core.testing import tiny

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not HAS_WAN_EXAMPLE, reason="pip install -e docs/examples/lesa-example-wan")]


def test_installed_entry_point_registers_and_resolves_the_wan_adapter() -> None:
    names = {ep.name: ep.value for ep in entry_points(group="lesa")}
    assert names.get("wan") == "lesa_example_wan"
    host = PluginHost.create(autoload=True)
    entry = host.adapters.entry("wan")
    assert entry.distribution == "lesa-example-wan"
    assert host.resolve_adapter(tiny.tiny_wan_transformer()) is entry.obj


def test_example_uses_only_the_public_api() -> None:
    import ast
    from pathlib import Path

    import lesa_example_wan

    tree = ast.parse(Path(lesa_example_wan.__file__).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module != "__future__":
            assert not any(part.startswith("_") for part in node.module.split(".")), node.module


def test_per_token_timestep_uses_the_largest() -> None:
    from lesa_example_wan import WanAdapter

    adapter = WanAdapter(tiny.tiny_wan_transformer())
    timestep = torch.tensor([[0.0, 700.0, 700.0], [0.0, 700.0, 700.0]])
    assert float(adapter.step_time(timestep)) == pytest.approx(0.7)


def test_bare_wan_transformer_through_the_sampler() -> None:
    torch.set_num_threads(1)
    host = make_host()
    model = tiny.tiny_wan_transformer()
    kwargs = tiny.transformer_inputs(model, height=4, width=4, frames=2)
    latents = kwargs.pop("hidden_states")
    kwargs.pop("timestep")
    with lesa_core.attach(model, run_config(7, 3), host=host) as handle:
        out = sample(model, latents, kwargs, 50, adapter=handle.assembly.adapter)
        stats = handle.stats()["cond"]
    assert torch.isfinite(out).all()
    assert stats["full_steps"] == 10 and stats["forecast_steps"] == 40
