"""LESA backbone adapters for diffusers DiTs (FLUX, Qwen-Image, HunyuanVideo) and their runtime.

A third-party adapter subclasses :class:`DiffusersBackbone` and declares data::

    from lesa_adapters import BlockIO, DiffusersBackbone, standard_taps

    class MyAdapter(DiffusersBackbone):
        model_classes = ("my_package.models:MyTransformer",)
        body = ("blocks",)
        block_io = {"MyBlock": BlockIO(hidden_out=None)}      # returns the hidden state alone
        taps = standard_taps(normed=None)
        default_tap = "hidden"
        timestep_scale = 0.001                               # the pipeline passes t in 0..1000

See ``docs/adding-a-backbone.md``. Importing this package does not import diffusers; the runtime
imports it when it attaches.
"""

from __future__ import annotations

from lesa_adapters._diffusers import (
    BLOCK_HOOK,
    DEFAULT_CONTEXT,
    LEADER_HOOK,
    STEM_HOOK,
    SUPPORTED_DIFFUSERS,
    TAP_HOOK,
    BlockIO,
    BodyOutputTap,
    DiffusersAttachment,
    DiffusersBackbone,
    ModelOutputTap,
    ModuleOutputTap,
    standard_taps,
)

__all__ = [
    "BLOCK_HOOK",
    "DEFAULT_CONTEXT",
    "LEADER_HOOK",
    "STEM_HOOK",
    "SUPPORTED_DIFFUSERS",
    "TAP_HOOK",
    "BlockIO",
    "BodyOutputTap",
    "DiffusersAttachment",
    "DiffusersBackbone",
    "ModelOutputTap",
    "ModuleOutputTap",
    "standard_taps",
]
