"""LESA's embedded models: small trained diffusers pipelines shipped with their weights, one
subpackage per model, each registered as a LESA model source through the ``lesa`` entry-point group.

* :mod:`lesa_embedded.flux`: the FLUX-class text-to-image model, model source ``embedded`` (the
  workflow commands' default model). See ``docs/embedded-model.md``.

Importing this package imports nothing else. The tools that build and train the models are not part
of this distribution: they live in ``tools/embedded/`` of the repository, with their extra
dependencies in ``tools/embedded/requirements.txt``.
"""
