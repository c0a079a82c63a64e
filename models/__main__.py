"""python -m models: the same as python -m models.train."""

import sys

from .train import main

sys.exit(main())
