"""``python -m lesa_core.cli``."""

from lesa_core.cli import main

raise SystemExit(main())
