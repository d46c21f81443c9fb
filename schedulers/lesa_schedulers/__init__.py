"""LESA cache policies and stage routers, registered through the ``lesa`` entry-point group.

* :mod:`lesa_schedulers.policies` — when to compute: ``interval`` (LESA's fixed schedule; the default).
* :mod:`lesa_schedulers.routers` — which expert: ``threshold`` (hand-set boundaries; the default) and
  ``change_points`` (boundaries fitted from the collected trajectories).
"""
