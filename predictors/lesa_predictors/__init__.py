"""LESA predictor families, registered through the ``lesa`` entry-point group."""
