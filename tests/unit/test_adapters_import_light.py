"""Loading the adapter plugins does not import diffusers: the runtime imports it when it attaches."""

from __future__ import annotations

import json
import subprocess
import sys


def test_adapter_modules_and_plugin_host_do_not_import_diffusers() -> None:
    code = (
        "import sys, json, lesa_adapters, lesa_adapters.flux, lesa_adapters.qwen_image, lesa_adapters.hunyuan_video;"
        "from lesa_core.plugins import PluginHost;"
        "host = PluginHost.create(autoload=False, plugins=[lesa_adapters.flux, lesa_adapters.qwen_image,"
        " lesa_adapters.hunyuan_video]);"
        "import torch; host.adapters.get('flux').claims(torch.nn.Linear(1, 1));"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('diffusers', 'transformers'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert json.loads(out) == []
