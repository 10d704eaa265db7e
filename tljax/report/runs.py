"""Reading run and experiment directories, with errors that name the argument.

A run directory (``WORKDIR/<method>/seed_<n>``, written by
:func:`tljax.train.loop.train_and_evaluate`) holds ``run_config.json``,
``metrics.jsonl``, ``summary.json`` and ``checkpoints/``; an experiment
directory (written by :func:`tljax.train.experiment.run_experiment`) holds
one run directory per method and seed, ``config.json`` and ``results.json``.
"""

from __future__ import annotations

import json
import os
import re

from tljax.checkpoint import CHECKPOINT_SUBDIR
from tljax.train.loop import RUN_CONFIG_FILE
from tljax.train.metrics import METRICS_FILE, SUMMARY_FILE

EXPERIMENT_CONFIG_FILE = "config.json"
RESULTS_FILE = "results.json"
SEED_DIR = re.compile(r"seed_(\d+)")


def check_dir(path, argument: str) -> str:
  """``path`` as a string, if it is an existing directory."""
  if not isinstance(path, (str, os.PathLike)):
    raise ValueError(f"{argument} must be a directory path, got {path!r}")
  path = os.fspath(path)
  if not os.path.isdir(path):
    raise ValueError(f"{argument} {path!r} does not exist or is not a "
                     "directory")
  return path


def read_json(path: str):
  with open(path, encoding="utf-8") as stream:
    return json.load(stream)


def is_run_dir(path) -> bool:
  return os.path.isfile(os.path.join(path, RUN_CONFIG_FILE))


def check_run_dir(run_dir, argument: str = "run_dir") -> str:
  """``run_dir``, if it is a tljax run directory (it has ``run_config.json``)."""
  run_dir = check_dir(run_dir, argument)
  if not is_run_dir(run_dir):
    raise ValueError(f"{argument} {run_dir!r} has no {RUN_CONFIG_FILE}: it is "
                     "not a tljax run directory (WORKDIR/<method>/seed_<n>)")
  return run_dir


def read_run_config(run_dir, argument: str = "run_dir") -> dict:
  """``{"config", "method", "seed", "init_from"}`` of a run."""
  run_dir = check_run_dir(run_dir, argument)
  run_config = read_json(os.path.join(run_dir, RUN_CONFIG_FILE))
  if not isinstance(run_config, dict) or "config" not in run_config:
    raise ValueError(f"{argument} {run_dir!r}: {RUN_CONFIG_FILE} is not a "
                     "tljax run config (no 'config' key)")
  return run_config


def read_summary(run_dir, argument: str = "run_dir") -> dict:
  """The run's ``summary.json``; a ``ValueError`` if the run has not finished."""
  run_dir = check_dir(run_dir, argument)
  path = os.path.join(run_dir, SUMMARY_FILE)
  if not os.path.isfile(path):
    raise ValueError(f"{argument} {run_dir!r} has no {SUMMARY_FILE}: the run "
                     "has not finished (or it is not a tljax run directory)")
  return read_json(path)


def has_checkpoint(run_dir) -> bool:
  directory = os.path.join(run_dir, CHECKPOINT_SUBDIR)
  return os.path.isdir(directory) and any(
      name.isdigit() for name in os.listdir(directory))


def has_metrics(run_dir) -> bool:
  return os.path.isfile(os.path.join(run_dir, METRICS_FILE))


def run_seed(run_dir) -> int | None:
  match = SEED_DIR.fullmatch(os.path.basename(os.path.normpath(run_dir)))
  return int(match.group(1)) if match else None


def experiment_dir(run_dir) -> str | None:
  """The experiment directory ``run_dir`` belongs to (``<exp>/<method>/seed_<n>``)."""
  if run_seed(run_dir) is None:
    return None
  return os.path.dirname(os.path.dirname(os.path.abspath(run_dir)))


def sibling_run(run_dir, method: str) -> str | None:
  """The same seed's finished ``method`` run in ``run_dir``'s experiment, if any."""
  root = experiment_dir(run_dir)
  if root is None:
    return None
  sibling = os.path.join(root, method, os.path.basename(
      os.path.normpath(run_dir)))
  if os.path.abspath(sibling) == os.path.abspath(run_dir):
    return None
  finished = os.path.isfile(os.path.join(sibling, SUMMARY_FILE))
  return sibling if finished else None


def method_order(workdir: str, names) -> list[str]:
  """``names`` in the experiment's order: its method, its baselines, then the rest."""
  path = os.path.join(workdir, EXPERIMENT_CONFIG_FILE)
  declared = []
  if os.path.isfile(path):
    config = read_json(path)
    declared = [config.get("method"), *(config.get("baselines") or ())]
  names = set(names)
  ordered = [name for name in dict.fromkeys(declared) if name in names]
  return ordered + sorted(names - set(ordered))


def experiment_runs(workdir) -> dict[str, list[str]]:
  """``{method: [run dir per seed, ascending]}`` of an experiment directory."""
  found: dict[str, list[tuple[int, str]]] = {}
  for method in sorted(os.listdir(workdir)):
    method_dir = os.path.join(workdir, method)
    if not os.path.isdir(method_dir):
      continue
    for name in os.listdir(method_dir):
      match = SEED_DIR.fullmatch(name)
      path = os.path.join(method_dir, name)
      if match and is_run_dir(path):
        found.setdefault(method, []).append((int(match.group(1)), path))
  return {method: [path for _, path in sorted(found[method])]
          for method in method_order(workdir, found)}


def check_experiment_dir(workdir, argument: str = "workdir") -> str:
  """``workdir``, if it holds at least one run directory."""
  workdir = check_dir(workdir, argument)
  if not experiment_runs(workdir):
    raise ValueError(f"{argument} {workdir!r} holds no run directories "
                     "(<method>/seed_<n>/run_config.json): it is not a tljax "
                     "experiment directory")
  return workdir
