"""The ``tljax`` command: train, report, rank sources and sweep from a shell.

  tljax train --config configs/moons.py:method=jan --set steps=500
  tljax report workdirs/moons
  tljax rank-sources --sources RUN,RUN --labels_per_class 10
  tljax sweep --config configs/moons.py --set sweep.learning_rates='(1e-3,3e-3)'

``tljax train`` and ``tljax sweep`` read a Python config file (its
``get_config(arg)``, big_vision style) and override any field with
``--set key=value``; the value is converted to the field's type. A relative
config path is looked up in the current directory first, then among the
configs packaged with tljax (``tljax.configs``, the repository's
``configs/`` directory), so ``--config configs/moons.py`` (or ``moons.py``)
works from any directory of any install; with no ``--config`` the packaged
``digits.py`` runs. ``tljax report`` is :mod:`tljax.report.command_line`;
``tljax rank-sources`` is :func:`tljax.train.rank_sources.rank_sources`.
``scripts/train.py``, ``sweep.py``, ``report.py`` and ``rank_sources.py``
call :func:`main` with their subcommand, and ``python -m tljax`` (or
``python -m tljax.cli``) is the same command.

Modules: :mod:`tljax.cli.config_file` (finding, loading, overriding and
checking a config file), :mod:`tljax.cli.registered` (the names of the
recipes and models, checked before JAX is imported),
:mod:`tljax.cli.arguments` (each subcommand's flags and help),
:mod:`tljax.cli.commands` (what each subcommand runs; it imports what it runs
only when it runs, so ``tljax --help`` and a config error answer without
loading JAX) and this one (the parser, :func:`main` and how a failure is
reported). Their public names are importable from here.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
import traceback
import warnings

from tljax import errors
from tljax.cli.arguments import (
    FEATURE_LAYERS,
    PROG,
    RANK_SOURCES_EPILOG,
    REPORT_EPILOG,
    SWEEP_EPILOG,
    TRACEBACK_ENV,
    TRAIN_EPILOG,
    add_config_arguments,
    add_rank_sources_arguments,
    add_report_arguments,
    add_traceback_argument,
    wrap,
)
from tljax.cli.commands import rank_sources, report, sweep, train
from tljax.cli.config_file import (
    CONFIGS_DIR,
    DEFAULT_CONFIG,
    TRUE_WORDS,
    CommandError,
    apply_override,
    available_configs,
    check_workdir,
    config_errors,
    convert_value,
    load_config,
    load_config_file,
    packaged_config,
)

__all__ = [
    "CONFIGS_DIR",
    "DEFAULT_CONFIG",
    "FEATURE_LAYERS",
    "INTERRUPTED_STATUS",
    "PROG",
    "TRACEBACK_ENV",
    "CommandError",
    "apply_override",
    "available_configs",
    "build_parser",
    "check_workdir",
    "config_errors",
    "convert_value",
    "load_config",
    "load_config_file",
    "main",
    "packaged_config",
    "rank_sources",
    "report",
    "sweep",
    "train",
]


def build_parser() -> argparse.ArgumentParser:
  """The ``tljax`` argument parser, one subparser per command."""
  formatter = argparse.RawDescriptionHelpFormatter
  parser = argparse.ArgumentParser(
      prog=PROG,
      formatter_class=formatter,
      description=wrap(
          "Transfer learning in JAX: train experiments from "
          "Python configs, report them, rank source models and "
          "sweep hyper-parameters."
      ),
      epilog=f"Run '{PROG} COMMAND --help' for a command's options and "
      "examples.",
  )
  commands = parser.add_subparsers(
      dest="command", metavar="COMMAND", required=True
  )

  train_parser = commands.add_parser(
      "train",
      formatter_class=formatter,
      epilog=TRAIN_EPILOG,
      help="train a config's method and baselines over seeds; print the table",
      description=wrap(
          "Trains config.method and config.baselines for every seed, "
          "prints the results table and the "
          "negative-transfer gaps, then writes the pictures and report.md."
      ),
  )
  add_config_arguments(train_parser)
  train_parser.add_argument(
      "--workdir",
      default=None,
      metavar="DIR",
      help="where runs, checkpoints and results go; an existing run there "
      "resumes (default: workdirs/<config file name>)",
  )
  train_parser.add_argument(
      "--noreport",
      dest="report",
      action="store_false",
      help="skip the pictures and report.md at the end",
  )
  train_parser.set_defaults(run=train)

  report_parser = commands.add_parser(
      "report",
      formatter_class=formatter,
      epilog=REPORT_EPILOG,
      help="pictures and markdown reports of finished runs and experiments",
      description=wrap(
          "Pictures (training curves, features, weights, rankings) and "
          "report.md of finished runs and experiments."
      ),
  )
  add_report_arguments(report_parser)
  add_traceback_argument(report_parser)
  report_parser.set_defaults(run=report)

  rank_parser = commands.add_parser(
      "rank-sources",
      formatter_class=formatter,
      epilog=RANK_SOURCES_EPILOG,
      help="rank source runs by transferability scores; --verify transfers "
      "and measures",
      description=wrap(
          "Ranks candidate source runs for a target task by transferability "
          "scores (LogME, LEEP, NCE, H-score, GBC, TransRate) on k labeled "
          "target examples per class; with --verify also transfers from "
          "every source and measures how well each score predicted the "
          "result (tljax.train.rank_sources)."
      ),
  )
  add_rank_sources_arguments(rank_parser)
  rank_parser.set_defaults(run=rank_sources)

  sweep_parser = commands.add_parser(
      "sweep",
      formatter_class=formatter,
      epilog=SWEEP_EPILOG,
      help="train a grid of seeds, learning rates and trade-offs as one "
      "vmapped program",
      description=wrap(
          "Trains config.method for every seed, learning rate and trade-off "
          "(lambda) of the config's sweep grid together "
          "(tljax.train.sweep.run_sweep) and prints the table."
      ),
  )
  add_config_arguments(sweep_parser)
  sweep_parser.add_argument(
      "--workdir",
      default=None,
      metavar="DIR",
      help="where the sweep's checkpoints and results go; a rerun resumes "
      "(default: workdirs/<config file name>_sweep)",
  )
  sweep_parser.set_defaults(run=sweep)
  return parser


# The shell's status for a process ended by SIGINT (128 + 2).
INTERRUPTED_STATUS = 130


def _one_line_warning(message, category, filename, lineno, line=None):
  del filename, lineno, line
  return f"{PROG}: warning ({category.__name__}): {message}\n"


def main(argv=None) -> int:
  """Runs ``tljax ARGS``; returns the exit status.

  0: done. 1: the run failed (a work dir in use, a diverged run, an
  untrustworthy checkpoint, unreadable data, a disk error), said in one
  line. 2: a bad command line, config value or work dir (a file, or not
  writable), said in one line. 130: interrupted (Ctrl-C), after the
  training loop saved a checkpoint of the step it was in; the same command
  resumes. With ``--traceback`` (or ``TLJAX_TRACEBACK=1``) the full stack is
  shown too.
  """
  argv = list(sys.argv[1:] if argv is None else argv)
  parser = build_parser()
  for item in argv:
    if item == "--":
      break
    if item.startswith("--config."):
      # big_vision's --config.key=value: one syntax, --set, in tljax.
      field, _, value = item[len("--config.") :].partition("=")
      parser.error(
          f"{item}: config fields are set with --set {field}={value or '...'}"
          " (--config names the config file)"
      )
  args = parser.parse_args(argv)
  show_traceback = (
      getattr(args, "traceback", False)
      or os.environ.get(TRACEBACK_ENV, "").lower() in TRUE_WORDS
  )
  if not show_traceback:
    warnings.formatwarning = _one_line_warning
    _mute_background_failures()
  try:
    return args.run(args)
  except KeyboardInterrupt as error:
    if show_traceback:
      traceback.print_exc()
    print(
        f"{PROG} {args.command}: {_interrupted_message(error)}", file=sys.stderr
    )
    return INTERRUPTED_STATUS
  except CommandError as error:
    if show_traceback:
      traceback.print_exc()
    print(f"{PROG} {args.command}: error: {error}", file=sys.stderr)
    return 2
  except errors.RUN_FAILURES as error:
    if show_traceback:
      traceback.print_exc()
    print(
        f"{PROG} {args.command}: error: {_failure_message(error)}",
        file=sys.stderr,
    )
    if not show_traceback:
      print(
          f"(--traceback or {TRACEBACK_ENV}=1 shows where it happened)",
          file=sys.stderr,
      )
    return 1


def _interrupted_message(error: KeyboardInterrupt) -> str:
  """Ctrl-C in one line: where the run stopped, when the loop saved it.

  The training loop answers the first SIGINT by finishing its step, saving
  it and raising :class:`tljax.train.interrupt.Interrupted` (its ``step``);
  a Ctrl-C anywhere else (loading data, compiling, writing the report) is
  Python's bare ``KeyboardInterrupt``, and the finished runs and saved
  checkpoints are what the rerun starts from.
  """
  step = getattr(error, "step", None)
  if step is None:
    return (
        "interrupted; run the same command to resume (from the finished "
        "runs and the last checkpoints)"
    )
  return (
      f"interrupted at step {step}; checkpoint saved; run the same command "
      "to resume"
  )


def _mute_background_failures() -> None:
  """Keeps what a failure's background threads log out of the one-line report.

  When a checkpoint write fails (a full disk), Orbax's save threads log the
  same error with its stack many times over (absl at ERROR, asyncio's
  "exception was never retrieved", "Exception ignored in" coroutines) before
  the failure reaches :func:`main`, which reports it in one line. Those
  channels are muted for the command's lifetime; ``--traceback`` keeps them.
  """
  for name in ("absl", "asyncio"):
    logging.getLogger(name).setLevel(logging.CRITICAL)
  sys.unraisablehook = lambda unraisable: None


def _failure_message(error: BaseException) -> str:
  """One line for a run failure; an ``OSError`` names the file and the cause."""
  if isinstance(error, OSError) and not isinstance(
      error, tuple(kind for kind in errors.RUN_FAILURES if kind is not OSError)
  ):
    if error.strerror:
      where = f" ({error.filename})" if error.filename else ""
      hint = {
          errno.ENOSPC: "; free some space, or use another work dir",
          errno.EDQUOT: "; free some space, or use another work dir",
          errno.EROFS: "; use a writable work dir (--workdir)",
          errno.EACCES: "; use a writable work dir (--workdir)",
          errno.EPERM: "; use a writable work dir (--workdir)",
      }.get(error.errno, "")
      prefix = (
          ""
          if isinstance(error, errors.CheckpointSaveError)
          else "cannot write or read a file: "
      )
      return f"{prefix}{error.strerror}{where}{hint}"
  text = str(error).strip() or type(error).__name__
  return " ".join(text.split("\n")[0].split())
