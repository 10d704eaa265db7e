#!/usr/bin/env python
"""Trains a transfer experiment and prints its results table.

With no flags it runs the digits experiment (configs/digits.py): a LeNet trained
on labeled MNIST digits, evaluated on the UCI optical digits, next to the
source-only and target-only references, over 3 seeds.

  python scripts/train.py
  python scripts/train.py --config configs/digits.py:method=finetune,seeds=1 \
      --config.steps=500 --workdir /tmp/ft
"""

import os
import re
import sys

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from tljax import errors
from tljax.config import base_config, check_config
from tljax.train import parallel
from tljax.train.experiment import format_gaps, format_table, run_experiment

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_CONFIG_ERRORS = (AttributeError, KeyError, TypeError, ValueError)


def _fail(message: str, status: int = 2) -> None:
  print(f"train.py: error: {message}", file=sys.stderr)
  sys.exit(status)


def _override_error(error: Exception) -> None:
  """Names the unknown ``--config.a.b`` key and the keys allowed at its level."""
  reference = base_config()
  model_keys = set(reference.model)
  try:  # the model group is free-form: its keys are the config file's
    from tljax.cli import load_config_file
    spec = os.path.join(_REPO, "configs", "digits.py")
    for index, argument in enumerate(sys.argv[1:], start=1):
      if argument.startswith("--config="):
        spec = argument.split("=", 1)[1]
      elif argument == "--config" and index + 1 < len(sys.argv):
        spec = sys.argv[index + 1]
    model_keys |= set(load_config_file(spec).model)
  except Exception:  # pylint: disable=broad-except  (the message only)
    pass
  for argument in sys.argv[1:]:
    match = re.match(r"--config\.([\w.]+)=", argument)
    if not match:
      continue
    node, path = reference, match.group(1).split(".")
    if path[0] == "model" and len(path) == 2 and path[1] not in model_keys:
      _fail(f"--config.{match.group(1)}: the config file sets no "
            f"'model.{path[1]}', and --config can only change keys the file "
            f"has; add it to the file, or run `tljax train --set "
            f"model.{path[1]}=...`, which can add model options")
    for depth, key in enumerate(path):
      if not hasattr(node, "keys") or path[0] == "model":
        break
      if key not in node:
        _fail(f"config key {'.'.join(path[:depth + 1])!r} is unknown; allowed "
              f"keys here: {sorted(node.keys())}")
      node = node[key]
  _fail(f"bad --config: {error}")


def _parse_flags(argv):
  try:
    return flags.FLAGS(argv)
  except flags.Error as error:
    _fail(str(error).strip().splitlines()[-1])
  except _CONFIG_ERRORS as error:
    _override_error(error)


try:  # ml_collections applies --config.* overrides to the default right here.
  config_flags.DEFINE_config_file(
      "config", os.path.join(_REPO, "configs", "digits.py"),
      "Experiment config file, optionally with an argument "
      "(path.py:key=value,...).", lock_config=True)
except _CONFIG_ERRORS as error:
  _override_error(error)
_WORKDIR = flags.DEFINE_string(
    "workdir", os.path.join("workdirs", "digits"),
    "Where runs, checkpoints and results go; an existing run there resumes.")
_REPORT = flags.DEFINE_bool(
    "report", True, "Write pictures and report.md for every run and the "
    "experiment at the end (tljax.report; --noreport skips them).")


def load_config():
  """The parsed config (overrides applied), or a one-line error naming the key."""
  try:
    config = flags.FLAGS.config
  except _CONFIG_ERRORS as error:
    _override_error(error)
  try:
    check_config(config)
  except ValueError as error:
    _fail(str(error))
  return config


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:
    # Orbax logs every step of every checkpoint save at INFO.
    logging.set_verbosity(logging.WARNING)
  config = load_config()
  # Multi-host: before JAX touches a device (see tljax.train.parallel).
  parallel.maybe_initialize_distributed(config)
  try:
    results = run_experiment(config, _WORKDIR.value)
  except errors.RUN_FAILURES as error:  # a busy work dir, divergence, a bad
    _fail(" ".join(str(error).split()), status=1)  # checkpoint, a disk error
  except ValueError as error:  # a value checked where it is used (a model
    _fail(str(error))           # option, an optimizer setting): one line
  print()
  print(format_table(results["table"]))
  if results["negative_transfer"]:
    print()
    print(format_gaps(results["negative_transfer"]))
  if _REPORT.value and jax.process_index() == 0:
    from tljax.report import report_experiment  # matplotlib: only when asked
    report_experiment(_WORKDIR.value)
    print(f"\nreport: {os.path.join(os.path.abspath(_WORKDIR.value), 'report.md')}")
  print(f"\nresults in {os.path.abspath(_WORKDIR.value)}")


if __name__ == "__main__":
  sys.exit(app.run(main, flags_parser=_parse_flags))
