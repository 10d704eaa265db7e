"""``python -m tljax``: the ``tljax`` command (see :mod:`tljax.cli`)."""

import sys

from tljax.cli import main

if __name__ == "__main__":
  sys.exit(main())
