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
import contextlib
import gc
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


@contextlib.contextmanager
def _frozen_heap():
  """The objects alive now (JAX, tljax, their modules) left out of garbage collection.

  Checkpoint reads and writes collect garbage (see
  :func:`tljax.checkpoint._quiet_background_errors`); with JAX imported a
  full collection walks some 300,000 long-lived objects (~0.25 s of CPU),
  five times per run and three per report picture: some 10-15 s of the
  main job's CPU time. Frozen, a collection walks only what the command
  made since.
  The heap is unfrozen when the command ends.
  """
  gc.collect()
  gc.freeze()
  try:
    yield
  finally:
    gc.unfreeze()


def compilation_cache(workdir: str) -> str:
  """JAX's persistent compilation cache, in ``workdir/jax_cache`` unless one is set.

  Every run jits its own train step, initialisation and evaluation; the
  seeds of a recipe compile the same programs, so with the cache only the
  first seed of each recipe compiles them (a rerun of the command none):
  about 4 s of CPU time saved on each of 6 of the main job's 9 runs. A hit
  loads the same
  executable, so no result changes. A cache the user chose
  (``JAX_COMPILATION_CACHE_DIR``, or ``jax_compilation_cache_dir`` set
  before) is kept. Of a multi-process run only process 0, the work dir's
  writer, calls it. Returns the cache's directory.
  """
  import jax

  directory = jax.config.jax_compilation_cache_dir
  if directory:
    return directory
  directory = os.path.join(os.path.abspath(workdir), "jax_cache")
  os.makedirs(directory, exist_ok=True)
  jax.config.update("jax_compilation_cache_dir", directory)
  # The evaluation's programs compile in well under the default second.
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  return directory


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
  if parallel.is_primary():  # the work dir's one writer (the others compile)
    compilation_cache(workdir)
  with _frozen_heap():
    with config_errors(config):
      results = run_experiment(config, workdir)
    print()
    print(format_table(results["table"]))
    if results["negative_transfer"]:
      print()
      print(format_gaps(results["negative_transfer"]))
    if args.report and jax.process_index() == 0:
      from tljax.report import report_experiment  # matplotlib: when asked

      report_experiment(workdir, progress=True)
      print(f"\nreport: {os.path.join(os.path.abspath(workdir), 'report.md')}")
  print(f"\nresults in {os.path.abspath(workdir)}")
  return 0


def report(args: argparse.Namespace) -> int:
  """``tljax report``: :func:`tljax.report.command_line.run`."""
  from tljax.report import command_line

  with _frozen_heap():
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
  compilation_cache(workdir)  # each member's initialisation, a rerun's step
  with _frozen_heap(), config_errors(config):
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
