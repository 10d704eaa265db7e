#!/usr/bin/env python
"""Pictures and markdown reports of finished runs and experiments: ``tljax report``.

Each WORKDIR may be

* a run directory (``WORKDIR/<method>/seed_<n>``): writes its
  ``training_curves.png``, ``features.png`` (next to the same seed's
  ``source_only`` run when the experiment has one), ``importance_weights.png``
  (``importance_weighting`` runs) and ``report.md`` into it;
* an experiment directory (``tljax train``'s ``--workdir``): does that
  for every run in it and writes ``WORKDIR/report.md`` (mean ± std per method
  over seeds, links to the runs' reports);
* a ``tljax rank-sources`` work dir (or its ``rank_sources.json``),
  written with ``--verify``: plots every score against the measured accuracy,
  ``rank_sources_<method>.png`` next to the JSON.

With several experiment directories (or ``--output``) it also writes one
comparison report, one column per experiment, to ``--output`` and prints it.

  python scripts/report.py workdirs/digits
  python scripts/report.py workdirs/digits/jan/seed_0 --features tsne
  python scripts/report.py workdirs/dann workdirs/jan --output comparison.md
  python scripts/report.py workdirs/rank_sources
"""

import sys

from tljax import cli


def main(argv=None) -> int:
  """``tljax report ARGV`` (default: this process's arguments)."""
  return cli.main(["report", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
  sys.exit(main())
