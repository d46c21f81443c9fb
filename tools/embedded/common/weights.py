"""Weight folders of the training tools: ``<network>.safetensors`` (fp16) + ``meta.json``; no pickle."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch


def save_weights(
    out: Path, modules: Mapping[str, torch.nn.Module], meta: dict[str, Any], drop: Iterable[str] = ()
) -> None:
    """Write each module's state dict in fp16 as ``out/<name>.safetensors`` (without the keys in ``drop``:
    tied weights, which safetensors refuses as shared storage) and ``meta`` as ``out/meta.json``."""
    from safetensors.torch import save_file

    drop = tuple(drop)
    out.mkdir(parents=True, exist_ok=True)
    for name, mod in modules.items():
        sd = {k: v.detach().to("cpu", torch.float16).contiguous() for k, v in mod.state_dict().items()}
        for key in drop:
            sd.pop(key, None)
        save_file(sd, str(out / f"{name}.safetensors"))
    (out / "meta.json").write_text(json.dumps(meta, indent=2))


def read_meta(folder: str | Path) -> dict[str, Any]:
    return json.loads((Path(folder) / "meta.json").read_text())


def load_network(module: torch.nn.Module, file: str | Path, tied: Iterable[str] = ()) -> None:
    """Load ``file`` (safetensors) into ``module`` in fp32; only the ``tied`` keys may be missing.

    :raises RuntimeError: naming the missing and unexpected keys otherwise.
    """
    from safetensors.torch import load_file

    sd = {k: v.float() for k, v in load_file(str(file)).items()}
    missing, unexpected = module.load_state_dict(sd, strict=False)
    missing = [k for k in missing if k not in tuple(tied)]
    if missing or unexpected:
        raise RuntimeError(f"{Path(file).stem}: missing {missing}, unexpected {unexpected}")


def load_networks(
    comps: Mapping[str, Any], folder: str | Path, names: Iterable[str], tied: Iterable[str] = (),
    only_present: bool = False,
) -> list[str]:  # fmt: skip
    """Load ``folder/<name>.safetensors`` into ``comps[name]`` for each of ``names`` (skipping absent files
    if ``only_present``); returns the names loaded."""
    got = []
    for name in names:
        file = Path(folder) / f"{name}.safetensors"
        if only_present and not file.exists():
            continue
        load_network(comps[name], file, tied)
        got.append(name)
    return got
