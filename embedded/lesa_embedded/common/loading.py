"""Load a pipeline folder shipped inside a package: offline, every component in ``eval()`` mode."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


def load_pipeline_folder(
    pipeline_class_name: str,
    folder: str | Path,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    progress_bar: bool = False,
) -> Any:
    """``diffusers.<pipeline_class_name>.from_pretrained(folder)`` with ``local_files_only`` (never the
    hub), every ``nn.Module`` component in ``eval()`` mode, moved to ``device``, its progress bar shown
    only if ``progress_bar``. Imports diffusers only when called."""
    import diffusers

    pipeline_class = getattr(diffusers, pipeline_class_name)
    pipe = pipeline_class.from_pretrained(Path(folder), dtype=dtype, local_files_only=True)
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            component.eval()
    pipe.to(device)
    pipe.set_progress_bar_config(disable=not progress_bar)
    return pipe
