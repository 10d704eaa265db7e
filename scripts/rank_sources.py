#!/usr/bin/env python
"""Ranks candidate source runs for a target task: ``tljax rank-sources``.

The workflow is library code, :mod:`tljax.train.rank_sources` (its scores
and correlations are :mod:`tljax.select.source_ranking`); this script only
runs the command, with the same flags (``--help`` lists them).

  python scripts/rank_sources.py --sources workdirs/zoo/mnist/source_only/seed_0,\\
      workdirs/zoo/rot90/source_only/seed_0 --labels_per_class 10
  python scripts/rank_sources.py --sources ... --verify --seeds 0,1,2 \\
      --workdir workdirs/rank_sources
"""

import sys

from tljax import cli


def main(argv=None) -> int:
  """``tljax rank-sources ARGV`` (default: this process's arguments)."""
  return cli.main(["rank-sources", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
  sys.exit(main())
