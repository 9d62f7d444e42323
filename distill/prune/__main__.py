"""``python -m distill.prune``: see :mod:`distill.prune.cli`."""

import sys

from distill.prune.cli import main

sys.exit(main())
