"""``python -m genmodels``: the ``genmodels`` command."""

import sys

from .cli import main

sys.exit(main())
