"""``python -m genmodels.metrics retrain DATASET --out PATH``: retrain a feature network bit for bit."""

import sys

from .features import main

if __name__ == "__main__":  # doctest collection imports this module too
    sys.exit(main())
