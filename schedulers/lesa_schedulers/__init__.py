"""LESA cache policies and stage routers, registered through the ``lesa`` entry-point group."""
