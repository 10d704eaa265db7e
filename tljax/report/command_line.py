"""What ``tljax report`` runs (``scripts/report.py`` calls the same command).

:func:`run` reports every ``WORKDIR`` by what it is (:func:`report_one`) and,
with several experiment directories or ``--output``, writes and prints one
comparison report; a relative ``--output`` is a path under the first
experiment directory (:func:`output_path`), not the current directory. The
arguments (``WORKDIR...``, ``--features``, ``--max_points``, ``--output``)
are defined with the other subcommands' in
:func:`tljax.cli.arguments.add_report_arguments`, so that ``tljax --help``
needs neither this package nor JAX.
"""

from __future__ import annotations

import argparse
import os
import sys

from tljax.report.ranking import RANK_SOURCES_JSON, plot_rank_sources
from tljax.report.reports import (
    experiment_report,
    report_experiment,
    run_report,
)
from tljax.report.runs import experiment_runs
from tljax.rundir_format import is_run_dir
from tljax.train.progress import Stages


def report_one(
    workdir: str,
    features: str | None,
    max_points: int,
    progress: bool = False,
) -> str:
  """Pictures and report of one directory; returns ``"run"``, ``"experiment"`` or ``"ranking"``.

  With ``progress``, a line on standard error as each picture or table
  starts (:class:`tljax.train.progress.Stages`).
  """
  if os.path.isfile(workdir) or os.path.isfile(
      os.path.join(workdir, RANK_SOURCES_JSON)
  ):
    for path in plot_rank_sources(workdir):
      print(path)
    return "ranking"
  if is_run_dir(workdir):
    print(
        run_report(
            workdir,
            features=features,
            max_points=max_points,
            progress=Stages("report", enabled=progress),
        )
    )
    return "run"
  if os.path.isdir(workdir) and experiment_runs(workdir):
    print(
        report_experiment(
            workdir,
            features=features,
            max_points=max_points,
            progress=progress,
        )
    )
    return "experiment"
  raise ValueError(
      f"WORKDIR {workdir!r} is not a run directory, an "
      "experiment directory or a rank_sources.py output"
  )


def output_path(output: str, workdir: str) -> str:
  """Where ``--output`` is written: under ``workdir`` unless absolute.

  A relative path is taken under the experiment directory ``workdir`` (its
  folders made), so that a comparison stays with the runs it compares
  instead of landing in whatever the current directory is.
  """
  if os.path.isabs(output):
    return output
  path = os.path.join(workdir, output)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  return path


def run(args: argparse.Namespace, prog: str) -> int:
  """Reports ``args.workdirs``; returns the exit status (2 on bad input, named by ``prog``)."""
  features = None if args.features == "none" else args.features
  try:
    kinds = [
        report_one(workdir, features, args.max_points, progress=True)
        for workdir in args.workdirs
    ]
    experiments = [
        workdir
        for workdir, kind in zip(args.workdirs, kinds)
        if kind == "experiment"
    ]
    if len(experiments) > 1 or (args.output and experiments):
      output = output_path(args.output, experiments[0]) if args.output else None
      Stages("report")(f"comparing {len(experiments)} experiments")
      markdown = experiment_report(experiments, output)
      print()
      print(markdown, end="")
      if output:
        print(f"\ncomparison in {os.path.abspath(output)}")
    elif args.output:
      raise ValueError(
          "--output needs at least one experiment directory to " "compare"
      )
  except ValueError as error:
    print(f"{prog}: error: {error}", file=sys.stderr)
    return 2
  return 0
