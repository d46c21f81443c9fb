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

from lesa_core.bundle import BundleMetadata, build_and_load, save_bundle
from lesa_core.composite import build_predictor
from lesa_core.config import RunConfig
from lesa_core.handle import LesaHandle, attach
from lesa_core.interfaces import Predictor
from lesa_core.plugins import PluginHost
from lesa_core.run import ResolvedRun, resolve_run


@dataclass(frozen=True)
class LesaBundle:
    """A trained predictor, its metadata and the run config it was trained with.

    :ivar predictor: the predictor (eval mode, no gradients).
    :ivar run: the bundle resolved as a run (its stored config, plugins, folder and metadata).
    """

    predictor: Predictor
    run: ResolvedRun

    @property
    def metadata(self) -> BundleMetadata:
        """What ``lesa_bundle.json`` holds (model, tap, schedule, plugins, digest)."""
        assert self.run.bundle is not None
        return self.run.bundle.metadata

    @property
    def run_config(self) -> RunConfig:
        """The run config the predictor was trained with."""
        return self.run.config

    @property
    def path(self) -> Path:
        """The folder it was loaded from (a Hub id resolves to the local snapshot)."""
        assert self.run.bundle is not None
        return self.run.bundle.path

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, *, host: PluginHost | None = None) -> LesaBundle:
        """Load a bundle folder, or a Hub repo id ``owner/name`` (through ``huggingface_hub``, online).

        :raises BundleNotFoundError: / :raises BundleCorruptError: for a missing or damaged bundle.
        :raises UnknownPluginError: if a plugin it was trained with is not installed (listing those that are).
        """
        run = resolve_run(bundle=name_or_path, host=host)
        assert run.bundle is not None
        plugins, meta = run.plugins, run.bundle.metadata
        predictor = build_and_load(  # sizes checked against the weights file before anything is allocated
            run.bundle.path, meta,
            lambda: build_predictor(plugins.predictor_cls, plugins.predictor_config, plugins.router, meta.channels))
        return cls(predictor.eval().requires_grad_(False), run)

    def save_pretrained(self, path: str | Path) -> Path:
        """Write the bundle to ``path`` (atomically; a previous bundle there is replaced, any other existing
        folder refused with :class:`~lesa_core.errors.OutputError`)."""
        return save_bundle(path, self.predictor, self.metadata)

    def attach(self, target: Any, **overrides: Any) -> LesaHandle:
        """:func:`lesa_core.attach` this bundle's predictor to a pipeline or transformer (after checking
        that the bundle fits its model and tap).

        :param overrides: run-config fields to change for this attachment (e.g.
            ``policy={"name": "interval", "interval": 10, "warmup": 3}``); predictor and router are the
            bundle's.
        """
        run = resolve_run(self.run, overrides=overrides) if overrides else self.run
        return attach(target, run, predictor=self.predictor)
