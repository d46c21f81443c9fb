"""A trained bundle as an object, with the ``from_pretrained`` / ``save_pretrained`` pair users know
from the Hub.

::

    from lesa_core import LesaBundle

    bundle = LesaBundle.from_pretrained("my-bundle/")     # a local folder, or a Hub repo id when online
    bundle.save_pretrained("copy-of-my-bundle/")         # the same two files, byte for byte
    with bundle.attach(pipe):                            # checks the bundle fits the pipeline's model
        image = pipe(prompt).images[0]

The folder layout is :mod:`lesa_core.bundle`'s (``lesa_bundle.json`` + ``lesa_predictor.safetensors``);
nothing is ever unpickled. ``from_pretrained`` rebuilds the predictor from the stored run config with
the installed plugins and loads the weights strictly, without a model: the model check happens at
:meth:`LesaBundle.attach`, which refuses a model, tap or step count the bundle does not fit.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from lesa_core.assembly import attach, bundle_run_config
from lesa_core.bundle import BundleMetadata, load_weights, read_metadata, resolve_bundle_path, save_bundle
from lesa_core.composite import build_predictor
from lesa_core.config import RunConfig, resolve_plugins
from lesa_core.plugins import PluginHost, get_plugin_host


@dataclass(frozen=True)
class LesaBundle:
    """A trained predictor, its metadata and the run config it was trained with.

    :ivar predictor: the predictor (eval mode, no gradients).
    :ivar metadata: what ``lesa_bundle.json`` holds (model, tap, schedule, plugins, digest).
    :ivar run_config: the stored run config.
    :ivar path: the folder it was loaded from (a Hub id resolves to the local snapshot).
    """

    predictor: nn.Module
    metadata: BundleMetadata
    run_config: RunConfig
    path: Path

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, *, host: PluginHost | None = None) -> LesaBundle:
        """Load a bundle folder, or a Hub repo id ``owner/name`` (through ``huggingface_hub``, online).

        :raises BundleNotFoundError: / :raises BundleCorruptError: for a missing or damaged bundle.
        :raises UnknownPluginError: if a plugin it was trained with is not installed (listing those that are).
        """
        path = resolve_bundle_path(name_or_path)
        meta = read_metadata(path)
        run = bundle_run_config(meta, path)
        plugins = resolve_plugins(run, host or get_plugin_host(), source=str(path))
        predictor = build_predictor(plugins.predictor_cls, plugins.predictor_config, plugins.router, meta.channels)
        load_weights(path, predictor, meta)
        return cls(predictor.eval().requires_grad_(False), meta, run, path)

    def save_pretrained(self, path: str | Path) -> Path:
        """Write the bundle to ``path`` (atomically; an existing bundle there is replaced)."""
        return save_bundle(path, self.predictor, self.metadata)

    def attach(self, target: Any, **overrides: Any) -> Any:
        """:func:`lesa_core.attach` this bundle to a pipeline or transformer.

        :param overrides: run-config fields to change for this attachment (e.g.
            ``policy={"name": "interval", "interval": 10, "warmup": 3}``); predictor and router are the
            bundle's.
        """
        return attach(target, {"bundle": str(self.path), **overrides})
