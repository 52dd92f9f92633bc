"""``python -m refserver.conformance``: see :mod:`refserver.conformance.cli`."""

import sys

from .cli import main

sys.exit(main())
