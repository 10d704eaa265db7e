#!/usr/bin/env python
"""Trains a config's method for a grid of seeds × learning rates × λ as ONE vmapped program.

  python scripts/sweep.py --config configs/moons.py:method=dann \\
      --config.sweep.learning_rates='(0.001, 0.003)' \\
      --config.sweep.trade_offs='(0.3, 1.0)' --workdir workdirs/sweep

Every member (its seed's data order and initialisation, its learning rate
and adaptation weight λ) ends where its own single run would, to float
tolerance; see :mod:`tljax.train.sweep`. Writes ``WORKDIR/sweep.json`` and
``WORKDIR/sweep.md`` (target test accuracy per learning rate and λ, mean ±
std over seeds) and prints the table.
"""

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from tljax.train.sweep import format_sweep, run_sweep

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
config_flags.DEFINE_config_file(
    "config", os.path.join(_REPO, "configs", "moons.py"),
    "Experiment config file, optionally with an argument (path.py:key=value).",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", os.path.join("workdirs", "sweep"),
                               "Where the sweep's checkpoints and results go.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)
  results = run_sweep(flags.FLAGS.config, _WORKDIR.value)
  print(format_sweep(results))
  print(f"\n{len(results['members'])} members in "
        f"{results['wall_seconds']:.0f} s; results in "
        f"{os.path.abspath(_WORKDIR.value)}")


if __name__ == "__main__":
  sys.exit(app.run(main))
