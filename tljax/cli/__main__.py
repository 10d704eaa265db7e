"""``python -m tljax.cli``: the ``tljax`` command (as ``python -m tljax``)."""

import sys

from tljax.cli import main

if __name__ == "__main__":
  sys.exit(main())
