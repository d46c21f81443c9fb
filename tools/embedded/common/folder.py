"""The skeleton (a pipeline folder's configs, scheduler and tokenizers, no weights) and the assembled
fp16 pipeline folder that ships."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch


def write_skeleton_folder(pipe: Any, out: str | os.PathLike) -> Path:
    """``pipe.save_pretrained(out)`` with every weight file removed: model_index.json, configs, scheduler
    and tokenizers stay."""
    out = Path(out)
    pipe.save_pretrained(out)
    for pattern in ("*.safetensors", "*.safetensors.index.json"):
        for f in out.rglob(pattern):
            f.unlink()
    return out


def mark_configs_fp32(out: Path, components: tuple[str, ...]) -> None:
    """Record ``dtype: float32`` in these components' ``config.json`` (and their text / vision
    sub-configs): transformers 5 loads with ``dtype="auto"`` (the checkpoint's fp16) unless told
    otherwise, while diffusers loads fp32; so a plain ``from_pretrained(out)`` gives one dtype everywhere."""
    for name in components:
        cfg_path = out / name / "config.json"
        cfg = json.loads(cfg_path.read_text())
        cfg["dtype"] = "float32"
        for sub in ("text_config", "vision_config"):
            if isinstance(cfg.get(sub), dict):
                cfg[sub]["dtype"] = "float32"
        cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def save_pipeline_folder(
    pipe: Any, out: str | os.PathLike, text_encoders: tuple[str, ...], dtype: torch.dtype = torch.float16
) -> Path:
    """``pipe`` cast to ``dtype`` and saved as safetensors in ``out``, its text encoders marked fp32."""
    out = Path(out)
    pipe.to(dtype)
    out.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(out, safe_serialization=True)
    mark_configs_fp32(out, text_encoders)
    return out


def build_cli(
    doc: str | None, pipeline: str, tokenizers: str, write_skeleton, assemble, argv: list[str] | None
) -> None:
    """The build tools' command line: ``skeleton --out`` and ``assemble --skeleton --weights --out``."""
    import argparse

    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("skeleton", help=f"write the untrained skeleton (configs + {tokenizers})")
    s.add_argument("--out", required=True)
    a = sub.add_parser("assemble", help=f"skeleton + trained weights -> fp16 {pipeline} folder")
    a.add_argument("--skeleton", required=True)
    a.add_argument("--weights", required=True)
    a.add_argument("--out", required=True)
    args = p.parse_args(argv)
    print(
        write_skeleton(args.out)
        if args.cmd == "skeleton"
        else assemble(args.skeleton, args.weights, args.out)
    )
