"""``python -m ndereg_ref`` = the ``ndereg-ref`` console script."""

import sys

from .cli import main

sys.exit(main())
