"""The on-disk layout of a run directory: file names, and reading its record.

A run directory (``WORKDIR/<method>/seed_<n>`` in an experiment, or any
directory given to ``tljax train``) holds:

* ``run_config.json`` (:data:`RUN_CONFIG_FILE`): the run's record,
  ``{"config", "method", "seed", "init_from"}``, written before the first
  step; its presence is what makes a directory a tljax run directory;
* ``metrics.jsonl`` (:data:`METRICS_FILE`): one JSON record per logged step;
* ``summary.json`` (:data:`SUMMARY_FILE`): the final results, written last,
  so a run without it has not finished;
* ``checkpoints/`` (:data:`CHECKPOINT_SUBDIR`): one Orbax step directory per
  kept checkpoint (:mod:`tljax.checkpoint`).

This module sits at the bottom of tljax and imports neither JAX nor Orbax,
so that :mod:`tljax.params` (which restores checkpoints) and the run-directory
owner :class:`tljax.train.rundir.Run` (which everything above reads runs
through) share one description of the layout.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

from tljax.errors import RunDirNotFoundError

__all__ = [
    "CHECKPOINT_SUBDIR",
    "METRICS_FILE",
    "RUN_CONFIG_FILE",
    "SEED_DIR",
    "SUMMARY_FILE",
    "checkpoint_steps",
    "check_run_dir",
    "is_run_dir",
    "read_run_config",
    "resolve_checkpoint_dir",
    "seed_of_dir",
]

RUN_CONFIG_FILE = "run_config.json"
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
CHECKPOINT_SUBDIR = "checkpoints"
#: An experiment's work dir (above its ``<method>/seed_<n>/`` runs).
EXPERIMENT_CONFIG_FILE = "config.json"
RESULTS_FILE = "results.json"
#: The name of a run directory inside an experiment's ``<method>/``.
SEED_DIR = re.compile(r"seed_(\d+)")


def is_run_dir(path: str | os.PathLike) -> bool:
  """Whether ``path`` holds a run record (:data:`RUN_CONFIG_FILE`)."""
  return os.path.isfile(os.path.join(path, RUN_CONFIG_FILE))


def check_run_dir(path: Any, argument: str = "run_dir") -> str:
  """``path`` as a string, if it is an existing tljax run directory.

  Raises:
    RunDirNotFoundError: (a ``FileNotFoundError`` and a ``ValueError``)
      naming ``argument`` and the path, if it does not exist, is not a
      directory or has no :data:`RUN_CONFIG_FILE`.
    ValueError: if ``path`` is not a ``str`` or ``os.PathLike``.
  """
  if not isinstance(path, (str, os.PathLike)):
    raise ValueError(f"{argument} must be a directory path, got {path!r}")
  path = os.fspath(path)
  if not os.path.isdir(path):
    raise RunDirNotFoundError(
        f"{argument} {path!r} does not exist or is not " "a directory"
    )
  if not is_run_dir(path):
    raise RunDirNotFoundError(
        f"{argument} {path!r} has no {RUN_CONFIG_FILE}: it is not a tljax run "
        "directory (WORKDIR/<method>/seed_<n>, or the work dir of tljax train)"
    )
  return path


def read_run_config(path: Any, argument: str = "run_dir") -> dict:
  """The record ``{"config", "method", "seed", "init_from"}`` of a run directory.

  Raises:
    RunDirNotFoundError: see :func:`check_run_dir`.
    ValueError: naming the file if it is not JSON or not a run record (a
      mapping with a ``"config"`` mapping).
  """
  path = check_run_dir(path, argument)
  record_path = os.path.join(path, RUN_CONFIG_FILE)
  try:
    with open(record_path, encoding="utf-8") as stream:
      record = json.load(stream)
  except (json.JSONDecodeError, UnicodeDecodeError) as error:
    raise ValueError(
        f"{argument} {path!r}: {RUN_CONFIG_FILE} is not valid "
        f"JSON ({error})"
    ) from None
  if not isinstance(record, dict) or not isinstance(record.get("config"), dict):
    raise ValueError(
        f"{argument} {path!r}: {RUN_CONFIG_FILE} is not a tljax "
        "run config (no 'config' key)"
    )
  return record


def seed_of_dir(path: str | os.PathLike) -> int | None:
  """``n`` of a directory named ``seed_<n>``; ``None`` for any other name."""
  match = SEED_DIR.fullmatch(os.path.basename(os.path.normpath(path)))
  return int(match.group(1)) if match else None


def resolve_checkpoint_dir(path: str | os.PathLike) -> str:
  """A run's work dir or its ``checkpoints`` dir -> the checkpoints dir.

  The path need not exist (it is returned as is when it has no
  ``checkpoints`` sub-directory).

  Raises:
    ValueError: if ``path`` is not a non-empty string or ``os.PathLike`` of
      one.
  """
  try:
    path = os.fspath(path)
  except TypeError:
    raise ValueError(
        f"path must be a directory path (str or os.PathLike), "
        f"got {type(path).__name__} {path!r}"
    ) from None
  if not isinstance(path, str) or not path:
    raise ValueError(f"path must be a non-empty str path, got {path!r}")
  nested = os.path.join(path, CHECKPOINT_SUBDIR)
  return nested if os.path.isdir(nested) else path


def checkpoint_steps(checkpoint_dir: str | os.PathLike) -> list[int]:
  """The steps of the complete checkpoints in ``checkpoint_dir``, ascending.

  Orbax writes a step into a temporary directory and renames it to the bare
  step number once complete, so only numeric directory names count; a
  missing directory has none.
  """
  try:
    names = os.listdir(checkpoint_dir)
  except (FileNotFoundError, NotADirectoryError):
    return []
  return sorted(
      int(name)
      for name in names
      if name.isdigit() and os.path.isdir(os.path.join(checkpoint_dir, name))
  )
