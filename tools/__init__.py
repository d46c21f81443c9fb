"""Repository tools that ship in no wheel (run from the repository root with ``python -m tools....``)."""
