"""LESA backbone adapters for the diffusers DiT families and their runtime.

One module per family (``flux``, ``flux2``, ``qwen_image``, ``wan2``, ``pixart``, ``sana``, ...; the
coverage table with what each is tested on is ``docs/adapters.md``), each a ``DiffusersBackbone``
subclass of pure declarations registered in the ``lesa`` entry-point group.

A third-party adapter subclasses :class:`DiffusersBackbone` and declares data::

    from lesa_adapters import BlockIO, DiffusersBackbone, standard_taps

    class MyAdapter(DiffusersBackbone):
        model_classes = ("my_package.models:MyTransformer",)
        body = ("blocks",)
        block_io = {"MyBlock": BlockIO(hidden_out=None)}      # returns the hidden state alone
        taps = standard_taps(normed=None)
        default_tap = "hidden"
        timestep_scale = 0.001                               # the pipeline passes t in 0..1000

See ``docs/adding-a-backbone.md``. The runtime is the :mod:`lesa_adapters.engine` package; importing
this package does not import diffusers, the runtime imports it when it attaches. ``hook_names``,
``hook_states`` and ``reset_stateful_hooks`` let other code (the benchmarks) drive diffusers' own
caches without reading diffusers' hook internals.
"""

from __future__ import annotations

from lesa_adapters.engine.attachment import DiffusersAttachment
from lesa_adapters.engine.declarations import (
    BlockIO,
    BodyOutputTap,
    DiffusersBackbone,
    ModelOutputTap,
    ModuleOutputTap,
    standard_taps,
)
from lesa_adapters.engine.names import (
    BLOCK_HOOK,
    DEFAULT_CONTEXT,
    LEADER_HOOK,
    STEM_HOOK,
    SUPPORTED_DIFFUSERS,
    TAP_HOOK,
)
from lesa_adapters.engine.registries import hook_names, hook_states, reset_stateful_hooks

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
    "hook_names",
    "hook_states",
    "reset_stateful_hooks",
    "standard_taps",
]
