"""The built-ins register through the public door: installed metadata in the `lesa` group."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import entry_points


def test_builtin_entry_points_are_installed() -> None:
    names = {ep.name: ep.value for ep in entry_points(group="lesa")}
    assert names.get("taylor") == "lesa_predictors.taylor"
    assert names.get("interval") == "lesa_schedulers.policies.interval"
    assert names.get("threshold") == "lesa_schedulers.routers.threshold"
    assert names.get("embedded") == "lesa_embedded.flux.source"


def test_lesa_plugins_json_lists_builtins_and_example() -> None:
    out = subprocess.run([sys.executable, "-m", "lesa_core.cli", "plugins", "--json"], check=True,
                         capture_output=True, text=True).stdout
    rows = {(r["kind"], r["name"]): r for r in json.loads(out)}
    assert set(json.loads(out)[0]) == {"kind", "name", "distribution", "version", "default"}
    assert rows["predictor", "taylor"]["distribution"] == "lesa-predictors"
    assert rows["policy", "interval"]["distribution"] == "lesa-schedulers"
    assert rows["router", "threshold"]["distribution"] == "lesa-schedulers"
    assert rows["model", "embedded"]["distribution"] == "lesa-embedded"
    assert rows["predictor", "damped"]["distribution"] == "lesa-example-plugin"
    assert rows["router", "uniform"]["distribution"] == "lesa-example-plugin"
