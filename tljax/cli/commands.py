"""What each ``tljax`` subcommand runs.

``train`` (:func:`tljax.train.experiment.run_experiment`), ``report``
(:func:`tljax.report.command_line.run`), ``rank-sources``
(:func:`tljax.train.rank_sources.rank_sources`) and ``sweep``
(:func:`tljax.train.sweep.run_sweep`). Each imports what it runs inside the
function, only when it runs, so that ``tljax --help`` and a config error
answer without loading JAX. ``tests/test_layering.py`` allows tljax imports
inside functions in this module only.
"""

from __future__ import annotations

import argparse
import os

from tljax.cli.arguments import PROG
from tljax.cli.config_file import (
    DEFAULT_CONFIG,
    CommandError,
    check_workdir,
    config_errors,
    load_config,
)
from tljax.cli.registered import check_registered_names


def _default_workdir(spec: str | None, suffix: str = "") -> str:
  path = (spec or DEFAULT_CONFIG).split(".py:", 1)[0]
  name = os.path.splitext(os.path.basename(path))[0]
  return os.path.join("workdirs", name + suffix)


def _quiet_logging() -> None:
  from absl import logging  # pylint: disable=redefined-outer-name
  # Orbax logs every step of every checkpoint save at INFO (and, unless
  # --traceback, its background failures are muted: see main()).
  if logging.get_verbosity() > logging.WARNING:  # more verbose
    logging.set_verbosity(logging.WARNING)


def train(args: argparse.Namespace) -> int:
  """``tljax train``: the experiment, its table and gaps, then its report."""
  config = load_config(args.config, args.set)
  check_registered_names(config)  # before JAX, as the registries would
  workdir = args.workdir or _default_workdir(args.config)
  check_workdir(workdir)
  import jax
  from tljax.train import parallel
  from tljax.train.experiment import format_gaps, format_table, run_experiment

  _quiet_logging()
  # Multi-host: before JAX touches a device (see tljax.train.parallel).
  parallel.maybe_initialize_distributed(config)
  with config_errors(config):
    results = run_experiment(config, workdir)
  print()
  print(format_table(results["table"]))
  if results["negative_transfer"]:
    print()
    print(format_gaps(results["negative_transfer"]))
  if args.report and jax.process_index() == 0:
    from tljax.report import report_experiment  # matplotlib: only when asked

    report_experiment(workdir)
    print(f"\nreport: {os.path.join(os.path.abspath(workdir), 'report.md')}")
  print(f"\nresults in {os.path.abspath(workdir)}")
  return 0


def report(args: argparse.Namespace) -> int:
  """``tljax report``: :func:`tljax.report.command_line.run`."""
  from tljax.report import command_line

  return command_line.run(args, prog=f"{PROG} report")


def sweep(args: argparse.Namespace) -> int:
  """``tljax sweep``: the config's sweep grid trained as one vmapped program."""
  config = load_config(args.config, args.set)
  check_registered_names(config)  # before JAX, as the registries would
  workdir = args.workdir or _default_workdir(args.config, "_sweep")
  check_workdir(workdir)
  from tljax.train import parallel
  from tljax.train.sweep import format_sweep, run_sweep

  _quiet_logging()
  parallel.maybe_initialize_distributed(config)
  with config_errors(config):
    results = run_sweep(config, workdir)
  print()
  print(format_sweep(results))
  print(f"\nresults in {os.path.abspath(workdir)}")
  return 0


def rank_sources(args: argparse.Namespace) -> int:
  """``tljax rank-sources``: scores (and with --verify, transfers) the sources."""
  check_workdir(args.workdir)
  from tljax.train import rank_sources as ranking

  _quiet_logging()
  ranking.enable_compilation_cache(
      os.path.join(os.path.abspath(args.workdir), "jax_cache")
  )
  try:
    target = ranking.TargetSpec(
        name=ranking.target_name(args.target),
        labels_per_class=args.labels_per_class or None,
        validation_per_class=args.validation_per_class,
        kwargs=ranking.image_target_kwargs(args.image_size),
        data_dir=args.data_dir,
    )
    settings = ranking.TrainSettings(
        steps=args.steps,
        batch_size=args.batch_size,
        learning_rates=ranking.parse_learning_rates(args.learning_rates),
    )
    _, markdown = ranking.rank_sources(
        args.sources,
        target,
        seeds=args.seeds,
        names=args.names,
        layer=args.features,
        scores=args.scores or ranking.SCORE_NAMES,
        verify_methods=args.methods if args.verify else (),
        settings=settings,
        workdir=args.workdir,
    )
  except (FileNotFoundError, ValueError) as error:
    raise CommandError(str(error)) from error
  if args.output:
    with open(args.output, "w", encoding="utf-8") as stream:
      stream.write(markdown)
  print(markdown)
  print(f"results in {os.path.abspath(args.workdir)}")
  return 0
