"""Tools for the FLUX-class embedded model (:mod:`lesa_embedded.flux`): ``build`` (the untrained
skeleton, and assembling the shipped pipeline folder), ``train`` and ``evaluate``
(``docs/embedded-model.md``)."""
