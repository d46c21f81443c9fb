"""LESA workflows: what people run to see LESA work — compare methods side by side on a model
(:mod:`.evaluate`), write reports (:mod:`.report`), benchmark speed and quality (:mod:`.bench`), and the
``lesa sample``, ``lesa bench`` and ``lesa demo`` commands (:mod:`.commands`).

A distribution of its own, registered through the ``lesa`` entry-point group like any plugin: the core
(``lesa_core``) never imports it. It may name the built-in plugins (it compares them) because it
depends on their distributions.
"""
