"""Build, training and measuring tools for the embedded models (the ``lesa-embedded`` distribution).

Not part of any wheel. Run them from the repository root, e.g. ``python -m tools.embedded.flux.train``;
their extra dependencies are in ``tools/embedded/requirements.txt``.
"""
