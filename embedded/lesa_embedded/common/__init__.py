"""What every shipped embedded model shares: procedural caption sets, folder loading, the model source.

* :mod:`.captions` — attribute combinations with one canonical caption each, a fixed seeded held-out
  split, caption parsing, even spreads and seeded shuffles of caption lists;
* :mod:`.loading` — load a pipeline folder shipped inside a package, offline, in ``eval()`` mode;
* :mod:`.source` — :class:`ShippedPipelineSource`, the :class:`~lesa_core.interfaces.model.ModelSource`
  base of the shipped models (``embedded``, ``embedded-qwen``, ...).

Importing this package imports neither diffusers nor transformers.
"""
