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
call :func:`main` with their subcommand, and ``python -m tljax`` is the same
command.

Each subcommand imports what it runs only when it runs.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import errno
import importlib.util
import logging
import os
import sys
import textwrap
import traceback
import warnings

from ml_collections import ConfigDict

from tljax import configs as packaged_configs
from tljax import errors
from tljax.config import check_config  # keys, types, values: no JAX

PROG = "tljax"
CONFIGS_DIR = os.path.dirname(os.path.abspath(packaged_configs.__file__))
DEFAULT_CONFIG = os.path.join("configs", "digits.py")
# tljax.train.rank_sources.FEATURE_LAYERS, written out so that the help
# needs no JAX (a test keeps them equal).
FEATURE_LAYERS = ("bottleneck", "backbone")
_TRUE = ("1", "true", "yes", "on")
TRACEBACK_ENV = "TLJAX_TRACEBACK"
_FALSE = ("0", "false", "no", "off")


class CommandError(Exception):
  """A bad command line; its message is printed as ``tljax <command>: error: ...``."""


# --- Configs: file, argument, --set overrides ----------------------------------


def available_configs() -> list[str]:
  """The config files packaged with tljax (``tljax.configs``), by file name."""
  return sorted(
      name
      for name in os.listdir(CONFIGS_DIR)
      if name.endswith(".py") and not name.startswith("_")
  )


def packaged_config(path: str) -> str | None:
  """The packaged config ``path`` names (``configs/moons.py`` or ``moons.py``)."""
  parts = os.path.normpath(path).split(os.sep)
  if parts[0] == "configs":
    parts = parts[1:]
  if len(parts) != 1 or parts[0] not in available_configs():
    return None
  return os.path.join(CONFIGS_DIR, parts[0])


def _config_path(path: str | None) -> str:
  if path is None:
    return packaged_config(DEFAULT_CONFIG)
  if os.path.isfile(path):
    return path
  found = None if os.path.isabs(path) else packaged_config(path)
  if found is None:
    raise CommandError(
        f"--config {path!r}: config file not found in the current directory "
        f"({os.getcwd()}) nor among the packaged configs "
        f"{['configs/' + name for name in available_configs()]}"
    )
  return found


def load_config_file(spec: str | None) -> ConfigDict:
  """``get_config(arg)`` of ``PATH[:ARG]`` (no ``:ARG``: ``get_config()``)."""
  path, argument = spec, None
  if spec is not None and ".py:" in spec:
    path, argument = spec.split(".py:", 1)
    path += ".py"
  path = _config_path(path)
  name = "tljax_config_" + os.path.splitext(os.path.basename(path))[0]
  module_spec = importlib.util.spec_from_file_location(name, path)
  if module_spec is None:
    raise CommandError(f"config file {path!r} is not a Python file")
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  if not hasattr(module, "get_config"):
    raise CommandError(f"config file {path!r} defines no get_config(arg)")
  try:
    config = (
        module.get_config() if argument is None else module.get_config(argument)
    )
  except ValueError as error:
    raise CommandError(
        f"bad config argument {argument!r} for {path}: " f"{error}"
    ) from error
  if not isinstance(config, ConfigDict):
    raise CommandError(
        f"get_config() of {path!r} returned "
        f"{type(config).__name__}, not an ml_collections "
        "ConfigDict"
    )
  return config


def _literal(text: str):
  """A Python literal (number, tuple, None, ...) if ``text`` is one, else the string."""
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def _sequence(text: str) -> tuple:
  """``(0, 1)``, ``[0, 1]``, ``0,1``, ``0`` or ``""`` (empty) as a tuple."""
  if not text.strip():
    return ()
  value = _literal(text)
  if isinstance(value, (tuple, list)):
    return tuple(value)
  if isinstance(value, str) and "," in value:
    return tuple(_literal(item.strip()) for item in value.split(","))
  return (value,)


def convert_value(key: str, text: str, field_type: type):
  """``text`` as a value of ``field_type`` (the field's current type) for config key ``key``."""
  if text.strip().lower() == "none":
    return None
  try:
    if field_type is bool:
      if text.lower() in _TRUE:
        return True
      if text.lower() in _FALSE:
        return False
      raise ValueError(f"expected one of {list(_TRUE + _FALSE)}")
    if field_type is int:
      return int(text)
    if field_type is float:
      return float(text)
    if field_type is str:
      return text
    if field_type in (tuple, list):
      return field_type(_sequence(text))
  except ValueError as error:
    raise CommandError(
        f"--set {key}={text}: config key {key!r} takes a "
        f"value of type {field_type.__name__}; {error}"
    ) from error
  return _literal(text)


def apply_override(config: ConfigDict, item: str) -> None:
  """Applies one ``--set a.b=value``, converting the value to the field's type.

  A key the config does not have raises naming it; a new key inside an
  existing group is added (free-form groups such as ``model`` take any key)
  and left to :func:`tljax.config.check_config` to accept or reject (and,
  for the names the registries know, to
  :func:`tljax.train.experiment.check_experiment_config` when the run starts).
  """
  key, separator, text = item.partition("=")
  if not separator or not key:
    raise CommandError(f"--set {item!r} must look like key=value")
  *parents, last = key.split(".")
  node = config
  for part in parents:
    if not isinstance(node, ConfigDict) or part not in node:
      allowed = sorted(node.keys()) if isinstance(node, ConfigDict) else []
      raise CommandError(
          f"--set {item}: config key {key!r} is unknown; "
          f"allowed keys here: {allowed}"
      )
    node = node[part]
  if not isinstance(node, ConfigDict):
    raise CommandError(
        f"--set {item}: config key {'.'.join(parents)!r} is a "
        "value, not a group of keys"
    )
  if last in node:
    if isinstance(node[last], ConfigDict):
      raise CommandError(
          f"--set {item}: config key {key!r} is a group; set "
          f"one of its keys: {sorted(node[last].keys())}"
      )
    value = convert_value(key, text, node.get_type(last))
  else:
    value = _literal(text)
  try:
    node[last] = value
  except (AttributeError, KeyError, TypeError) as error:
    raise CommandError(f"--set {item}: {error}") from error


def load_config(spec: str | None, overrides=()) -> ConfigDict:
  """The config file's config with ``overrides`` applied, checked."""
  config = load_config_file(spec)
  for item in overrides:
    apply_override(config, item)
  try:
    check_config(config)
  except ValueError as error:
    raise CommandError(str(error)) from error
  return config


@contextlib.contextmanager
def config_errors():
  """A ``ValueError`` raised while running becomes a :class:`CommandError`.

  Some values are checked only where they are used (a model option by the
  model, an optimizer setting by its builder), after the run has started;
  tljax raises a ``ValueError`` naming the key for them, which the command
  prints as one line with exit status 2 like the checks made up front.
  """
  try:
    yield
  except errors.RUN_FAILURES:
    raise  # not a config value: reported by main() with exit status 1
  except ValueError as error:
    raise CommandError(str(error)) from error


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


# --- Subcommands -----------------------------------------------------------------


def train(args: argparse.Namespace) -> int:
  """``tljax train``: the experiment, its table and gaps, then its report."""
  config = load_config(args.config, args.set)
  workdir = args.workdir or _default_workdir(args.config)
  import jax
  from tljax.train import parallel
  from tljax.train.experiment import format_gaps, format_table, run_experiment

  _quiet_logging()
  # Multi-host: before JAX touches a device (see tljax.train.parallel).
  parallel.maybe_initialize_distributed(config)
  with config_errors():
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
  workdir = args.workdir or _default_workdir(args.config, "_sweep")
  from tljax.train import parallel
  from tljax.train.sweep import format_sweep, run_sweep

  _quiet_logging()
  parallel.maybe_initialize_distributed(config)
  with config_errors():
    results = run_sweep(config, workdir)
  print()
  print(format_sweep(results))
  print(f"\nresults in {os.path.abspath(workdir)}")
  return 0


def _comma_list(text: str) -> list[str]:
  """``a,b,c`` as ``["a", "b", "c"]`` (blanks dropped), as absl list flags split."""
  return [item.strip() for item in text.split(",") if item.strip()]


def _int_list(text: str) -> list[int]:
  try:
    return [int(item) for item in _comma_list(text)]
  except ValueError:
    raise argparse.ArgumentTypeError(
        f"expected comma-separated integers, got {text!r}"
    ) from None


def rank_sources(args: argparse.Namespace) -> int:
  """``tljax rank-sources``: scores (and with --verify, transfers) the sources."""
  from tljax.train import rank_sources as ranking

  _quiet_logging()
  ranking.enable_compilation_cache(
      os.path.join(os.path.abspath(args.workdir), "jax_cache")
  )
  try:
    target = ranking.TargetSpec(
        name=args.target,
        labels_per_class=args.labels_per_class or None,
        validation_per_class=args.validation_per_class,
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


def _add_rank_sources_arguments(parser: argparse.ArgumentParser) -> None:
  """The flags of ``tljax rank-sources`` (lists are comma-separated)."""
  _add_traceback_argument(parser)
  add = parser.add_argument
  add(
      "--sources",
      type=_comma_list,
      required=True,
      metavar="RUN[,RUN...]",
      help="source run dirs (WORKDIR/<method>/seed_<n>)",
  )
  add(
      "--names",
      type=_comma_list,
      default=None,
      metavar="NAME[,NAME...]",
      help="labels of the sources (default: from the dirs)",
  )
  add(
      "--target",
      default="uci_digits",
      help="target domain name " "(default: %(default)s)",
  )
  add(
      "--labels_per_class",
      type=int,
      default=10,
      metavar="K",
      help="labeled target examples per class (0: all; default: %(default)s)",
  )
  add(
      "--validation_per_class",
      type=int,
      default=0,
      metavar="K",
      help="target validation examples per class, drawn first (changes which "
      "examples are labeled; default: %(default)s)",
  )
  add(
      "--seeds",
      type=_int_list,
      default=[0],
      metavar="SEED[,SEED...]",
      help="seeds: label draws (and verification runs; default: 0)",
  )
  add(
      "--features",
      default="bottleneck",
      choices=FEATURE_LAYERS,
      help="which features the feature-based scores read "
      "(default: %(default)s)",
  )
  add(
      "--scores",
      type=_comma_list,
      default=None,
      metavar="SCORE[,SCORE...]",
      help="scores to compute: logme, leep, nce, h_score, "
      "shrinkage_h_score, gbc, transrate (default: all)",
  )
  add(
      "--verify",
      action="store_true",
      help="transfer from every source and measure",
  )
  add(
      "--noverify",
      dest="verify",
      action="store_false",
      help="only score (the default)",
  )
  add(
      "--methods",
      type=_comma_list,
      default=["finetune"],
      metavar="METHOD[,METHOD...]",
      help="transfer methods for --verify (default: finetune)",
  )
  add(
      "--learning_rates",
      type=_comma_list,
      default=["0.01"],
      metavar="RATE[,METHOD=RATE...]",
      help="learning rate of every verification run, or method=rate entries "
      "(target_only included; default: 0.01)",
  )
  add(
      "--steps",
      type=int,
      default=300,
      help="steps of every verification run (default: %(default)s)",
  )
  add(
      "--batch_size",
      type=int,
      default=32,
      help="target batch size, at most 10 k (default: %(default)s)",
  )
  add(
      "--workdir",
      default=os.path.join("workdirs", "rank_sources"),
      metavar="DIR",
      help="verification runs and results " "(default: %(default)s)",
  )
  add("--data_dir", default=None, metavar="DIR", help="TFDS data dir")
  add(
      "--output",
      default=None,
      metavar="PATH",
      help="also write the markdown here",
  )


# --- The parser ------------------------------------------------------------------


def _add_traceback_argument(parser: argparse.ArgumentParser) -> None:
  parser.add_argument(
      "--traceback",
      action="store_true",
      help="on an error, also print the full stack (for bug reports; "
      f"{TRACEBACK_ENV}=1 does the same)",
  )


def _add_config_arguments(parser: argparse.ArgumentParser) -> None:
  _add_traceback_argument(parser)
  parser.add_argument(
      "--config",
      metavar="PATH[:ARG]",
      default=None,
      help="a Python config file whose get_config(arg) returns the experiment "
      "config, optionally with its argument after a colon "
      "(configs/moons.py:method=jan,rotation=50). A relative path is looked "
      "up in the current directory, then among the configs packaged with "
      "tljax (configs/digits.py, configs/moons.py, configs/unsupervised.py). "
      f"Default: the packaged {DEFAULT_CONFIG}.",
  )
  parser.add_argument(
      "--set",
      action="append",
      default=[],
      metavar="KEY=VALUE",
      help="override a config field (repeatable); dotted keys reach into "
      "groups (optimizer.learning_rate=0.03) and the value is converted to "
      "the field's type: numbers, true/false, None, tuples as '(0, 1)' or "
      "0,1 and '()' for empty. An unknown key is an error naming it.",
  )


_TRAIN_EPILOG = f"""\
examples:
  {PROG} train                                   # configs/digits.py: JAN, MNIST -> UCI digits
  {PROG} train --config configs/moons.py:method=dann,rotation=50 --workdir workdirs/dann50
  {PROG} train --config configs/digits.py:method=finetune --set steps=500 \\
      --set target.labels_per_class=10 --set seeds='(0, 1)'
  {PROG} train --config configs/moons.py --set tensorboard=true --noreport

Runs go to WORKDIR/<method>/seed_<n>; the table to WORKDIR/results.md and
results.json. Running the same command again resumes every run.
"""

_REPORT_EPILOG = f"""\
Each WORKDIR may be a run dir (WORKDIR/<method>/seed_<n>), an experiment dir
(tljax train's --workdir: every run's report and WORKDIR/report.md), or a
rank-sources work dir (written with --verify). Several experiment dirs, or
--output, also give one comparison report.

examples:
  {PROG} report workdirs/digits
  {PROG} report workdirs/digits/jan/seed_0 --features tsne
  {PROG} report workdirs/dann workdirs/jan --output comparison.md
  {PROG} report workdirs/rank_sources
"""

_RANK_SOURCES_EPILOG = f"""\
Writes WORKDIR/rank_sources.md and rank_sources.json and prints the tables.

examples:
  {PROG} rank-sources --sources workdirs/a/source_only/seed_0,workdirs/b/source_only/seed_0 \\
      --labels_per_class 10
  {PROG} rank-sources --sources ... --verify --seeds 0,1,2 --workdir workdirs/rank_sources
  {PROG} report workdirs/rank_sources      # its pictures, after --verify
"""

_SWEEP_EPILOG = f"""\
The grid is config.seeds x config.sweep.learning_rates x the values in
config.sweep.hparams of each hyper-parameter the recipe traces (e.g.
trade_off; empty: the config's own values); every member trains in one
jitted, vmapped step (tljax.train.sweep).

examples:
  {PROG} sweep --config configs/moons.py:method=dann \\
      --set sweep.learning_rates='(1e-3, 3e-3)' --set sweep.hparams.trade_off='(0.3, 1.0)'
  {PROG} sweep --config configs/moons.py:method=jan,seeds=3 --set steps=500 \\
      --workdir workdirs/jan_sweep
"""


def _wrap(text: str) -> str:
  return textwrap.fill(text, width=79)


def build_parser() -> argparse.ArgumentParser:
  """The ``tljax`` argument parser, one subparser per command."""
  formatter = argparse.RawDescriptionHelpFormatter
  parser = argparse.ArgumentParser(
      prog=PROG,
      formatter_class=formatter,
      description=_wrap(
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
      epilog=_TRAIN_EPILOG,
      help="train a config's method and baselines over seeds; print the table",
      description=_wrap(
          "Trains config.method and config.baselines for every seed, "
          "prints the results table and the "
          "negative-transfer gaps, then writes the pictures and report.md."
      ),
  )
  _add_config_arguments(train_parser)
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
      epilog=_REPORT_EPILOG,
      help="pictures and markdown reports of finished runs and experiments",
      description=_wrap(
          "Pictures (training curves, features, weights, rankings) and "
          "report.md of finished runs and experiments."
      ),
  )
  from tljax.report import command_line

  command_line.add_arguments(report_parser)
  _add_traceback_argument(report_parser)
  report_parser.set_defaults(run=report)

  rank_parser = commands.add_parser(
      "rank-sources",
      formatter_class=formatter,
      epilog=_RANK_SOURCES_EPILOG,
      help="rank source runs by transferability scores; --verify transfers "
      "and measures",
      description=_wrap(
          "Ranks candidate source runs for a target task by transferability "
          "scores (LogME, LEEP, NCE, H-score, GBC, TransRate) on k labeled "
          "target examples per class; with --verify also transfers from "
          "every source and measures how well each score predicted the "
          "result (tljax.train.rank_sources)."
      ),
  )
  _add_rank_sources_arguments(rank_parser)
  rank_parser.set_defaults(run=rank_sources)

  sweep_parser = commands.add_parser(
      "sweep",
      formatter_class=formatter,
      epilog=_SWEEP_EPILOG,
      help="train a grid of seeds, learning rates and trade-offs as one "
      "vmapped program",
      description=_wrap(
          "Trains config.method for every seed, learning rate and trade-off "
          "(lambda) of the config's sweep grid together "
          "(tljax.train.sweep.run_sweep) and prints the table."
      ),
  )
  _add_config_arguments(sweep_parser)
  sweep_parser.add_argument(
      "--workdir",
      default=None,
      metavar="DIR",
      help="where the sweep's checkpoints and results go; a rerun resumes "
      "(default: workdirs/<config file name>_sweep)",
  )
  sweep_parser.set_defaults(run=sweep)
  return parser


def _one_line_warning(message, category, filename, lineno, line=None):
  del filename, lineno, line
  return f"{PROG}: warning ({category.__name__}): {message}\n"


def main(argv=None) -> int:
  """Runs ``tljax ARGS``; returns the exit status.

  0: done. 1: the run failed (a work dir in use, a diverged run, an
  untrustworthy checkpoint, unreadable data, a disk error), said in one
  line. 2: a bad command line or config value, said in one line. With
  ``--traceback`` (or ``TLJAX_TRACEBACK=1``) the full stack is shown too.
  """
  argv = list(sys.argv[1:] if argv is None else argv)
  args = build_parser().parse_args(argv)
  show_traceback = (
      getattr(args, "traceback", False)
      or os.environ.get(TRACEBACK_ENV, "").lower() in _TRUE
  )
  if not show_traceback:
    warnings.formatwarning = _one_line_warning
    _mute_background_failures()
  try:
    return args.run(args)
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


if __name__ == "__main__":
  sys.exit(main())
