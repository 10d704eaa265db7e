#!/usr/bin/env python
"""Pictures and markdown reports of finished runs and experiments.

Each WORKDIR may be

* a run directory (``WORKDIR/<method>/seed_<n>``): writes its
  ``training_curves.png``, ``features.png`` (next to the same seed's
  ``source_only`` run when the experiment has one), ``importance_weights.png``
  (``importance_weighting`` runs) and ``report.md`` into it;
* an experiment directory (``scripts/train.py``'s ``--workdir``): does that
  for every run in it and writes ``WORKDIR/report.md`` (mean ± std per method
  over seeds, links to the runs' reports);
* a ``scripts/rank_sources.py`` work dir (or its ``rank_sources.json``),
  written with ``--verify``: plots every score against the measured accuracy,
  ``rank_sources_<method>.png`` next to the JSON.

With several experiment directories (or ``--output``) it also writes one
comparison report, one column per experiment, to ``--output`` and prints it.

  python scripts/report.py workdirs/digits
  python scripts/report.py workdirs/digits/jan/seed_0 --features tsne
  python scripts/report.py workdirs/dann workdirs/jan --output comparison.md
  python scripts/report.py workdirs/rank_sources
"""

from __future__ import annotations

import argparse
import sys

from tljax.report import command_line


def parse_args(argv):
  parser = argparse.ArgumentParser(
      prog="report.py",
      description=__doc__.split("\n\n")[0],
      formatter_class=argparse.RawDescriptionHelpFormatter,
      epilog="\n\n".join(__doc__.split("\n\n")[1:]))
  command_line.add_arguments(parser)
  return parser.parse_args(argv)


def main(argv=None) -> int:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  return command_line.run(args, prog="report.py")


if __name__ == "__main__":
  sys.exit(main())
