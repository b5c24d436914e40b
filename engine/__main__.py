"""``python -m engine``: headless training without the dashboard (needs no textual)."""

import sys

from engine.cli import main

sys.exit(main())
