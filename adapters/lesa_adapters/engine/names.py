"""The engine's names: the diffusers versions it is written against, its hook names, the default context."""

from __future__ import annotations

__all__ = ["BLOCK_HOOK", "DEFAULT_CONTEXT", "LEADER_HOOK", "STEM_HOOK", "SUPPORTED_DIFFUSERS", "TAP_HOOK"]

SUPPORTED_DIFFUSERS = ">=0.42,<0.43"
"""The diffusers versions whose hook internals this package is written against."""

LEADER_HOOK = "lesa"
"""Name of the hook on the transformer itself (decides, forecasts, keeps the per-context state)."""
BLOCK_HOOK = "lesa_block"
"""Name of the hook on every body block (pass-through on forecast steps)."""
STEM_HOOK = "lesa_stem"
"""Name of the hook on the stem modules of :attr:`DiffusersBackbone.forecast_skips`."""
TAP_HOOK = "lesa_tap"
"""Name of the hook on the module of a :class:`ModuleOutputTap`."""
DEFAULT_CONTEXT = "default"
"""The cache-context name used when the caller sets none."""
