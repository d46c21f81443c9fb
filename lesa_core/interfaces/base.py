"""Shared base of every plugin's parameter model."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class PluginConfig(BaseModel):
    """Base of the parameter models that plugins nest as ``Config``.

    Unknown keys are errors (``extra="forbid"``) and instances are immutable, so a configuration that
    validated once stays valid. Store dtypes and devices as strings, never as torch objects: the
    config must round-trip through JSON into a bundle.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
