"""``python -m genmodels.cli``: the ``genmodels`` command (what the multi-process launcher runs)."""

import sys

from .launcher import end_with_launcher
from .main import main

end_with_launcher()  # a process of `genmodels train --num-processes N` ends with its launcher
sys.exit(main())
