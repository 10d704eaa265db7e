#!/usr/bin/env python
"""Trains a grid of seeds × learning rates × λ as ONE vmapped program: ``tljax sweep``.

Every member (its seed's data order and initialisation, its learning rate
and traced hyper-parameters such as λ) ends where its own single run would, to float
tolerance; see :mod:`tljax.train.sweep`. Writes ``WORKDIR/sweep.json`` and
``WORKDIR/sweep.md`` and prints the table (``tljax sweep --help``).

  python scripts/sweep.py --config configs/moons.py:method=dann \\
      --set sweep.learning_rates='(0.001, 0.003)' \\
      --set sweep.hparams.trade_off='(0.3, 1.0)' --workdir workdirs/sweep
"""

import sys

from tljax import cli


def main(argv=None) -> int:
  """``tljax sweep ARGV`` (default: this process's arguments)."""
  return cli.main(["sweep", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
  sys.exit(main())
