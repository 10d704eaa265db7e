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
import os
import sys

from tljax import report
from tljax.report.ranking import RANK_SOURCES_JSON
from tljax.report.runs import experiment_runs, is_run_dir


def parse_args(argv):
  parser = argparse.ArgumentParser(
      prog="report.py",
      description=__doc__.split("\n\n")[0],
      formatter_class=argparse.RawDescriptionHelpFormatter,
      epilog="\n\n".join(__doc__.split("\n\n")[1:]))
  parser.add_argument(
      "workdirs", nargs="+", metavar="WORKDIR",
      help="run dirs, experiment dirs, rank_sources.py work dirs or "
      "rank_sources.json files")
  parser.add_argument(
      "--features", choices=("pca", "tsne", "none"), default="pca",
      help="2-D projection of the feature pictures; 'none' skips them "
      "(they load the data and the checkpoints). Default: %(default)s.")
  parser.add_argument(
      "--max_points", type=int, default=500, metavar="N",
      help="test examples per domain in the feature pictures "
      "(default: %(default)s)")
  parser.add_argument(
      "--output", default=None, metavar="PATH",
      help="the comparison report across the experiment dirs (markdown); "
      "with several experiment dirs it is also printed")
  return parser.parse_args(argv)


def report_one(workdir: str, features: str | None, max_points: int) -> str:
  """Pictures and report of one directory; returns ``"run"``, ``"experiment"`` or ``"ranking"``."""
  if os.path.isfile(workdir) or os.path.isfile(
      os.path.join(workdir, RANK_SOURCES_JSON)):
    for path in report.plot_rank_sources(workdir):
      print(path)
    return "ranking"
  if is_run_dir(workdir):
    print(report.run_report(workdir, features=features, max_points=max_points))
    return "run"
  if os.path.isdir(workdir) and experiment_runs(workdir):
    print(report.report_experiment(workdir, features=features,
                                   max_points=max_points))
    return "experiment"
  raise ValueError(f"WORKDIR {workdir!r} is not a run directory, an "
                   "experiment directory or a rank_sources.py output")


def main(argv=None) -> int:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  features = None if args.features == "none" else args.features
  try:
    kinds = [report_one(workdir, features, args.max_points)
             for workdir in args.workdirs]
    experiments = [workdir for workdir, kind in zip(args.workdirs, kinds)
                   if kind == "experiment"]
    if len(experiments) > 1 or (args.output and experiments):
      markdown = report.experiment_report(experiments, args.output)
      print()
      print(markdown, end="")
      if args.output:
        print(f"\ncomparison in {os.path.abspath(args.output)}")
    elif args.output:
      raise ValueError("--output needs at least one experiment directory to "
                       "compare")
  except ValueError as error:
    print(f"report.py: error: {error}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
