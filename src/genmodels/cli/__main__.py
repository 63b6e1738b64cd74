"""``python -m genmodels.cli``: the ``genmodels`` command (what the multi-process launcher runs)."""

import sys

from .main import main

sys.exit(main())
