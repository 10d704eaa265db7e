"""Finding runs in experiment directories, with errors that name the argument.

One run directory (``WORKDIR/<method>/seed_<n>``, written by
:func:`tljax.train.loop.train_and_evaluate`) is read through
:class:`tljax.train.rundir.Run`; an experiment directory (written by
:func:`tljax.train.experiment.run_experiment`) holds one run directory per
method and seed, ``config.json`` and ``results.json``. This module finds the
runs of an experiment and a run's siblings (the same seed's baselines).
"""

from __future__ import annotations

import json
import os

from tljax.rundir_format import (
    EXPERIMENT_CONFIG_FILE,
    RESULTS_FILE,
    SEED_DIR,
    is_run_dir,
    seed_of_dir,
)
from tljax.train.rundir import Run


def check_dir(path, argument: str) -> str:
  """``path`` as a string, if it is an existing directory."""
  if not isinstance(path, (str, os.PathLike)):
    raise ValueError(f"{argument} must be a directory path, got {path!r}")
  path = os.fspath(path)
  if not os.path.isdir(path):
    raise ValueError(
        f"{argument} {path!r} does not exist or is not a " "directory"
    )
  return path


def read_json(path: str):
  with open(path, encoding="utf-8") as stream:
    return json.load(stream)


def experiment_dir(run_dir) -> str | None:
  """The experiment directory ``run_dir`` belongs to (``<exp>/<method>/seed_<n>``)."""
  if seed_of_dir(run_dir) is None:
    return None
  return os.path.dirname(os.path.dirname(os.path.abspath(run_dir)))


def sibling_run(run_dir, method: str) -> str | None:
  """The same seed's finished ``method`` run in ``run_dir``'s experiment, if any."""
  root = experiment_dir(run_dir)
  if root is None:
    return None
  sibling = os.path.join(
      root, method, os.path.basename(os.path.normpath(run_dir))
  )
  if os.path.abspath(sibling) == os.path.abspath(run_dir):
    return None
  if not is_run_dir(sibling) or not Run.open(sibling).finished:
    return None
  return sibling


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
  return {
      method: [path for _, path in sorted(found[method])]
      for method in method_order(workdir, found)
  }


def check_experiment_dir(workdir, argument: str = "workdir") -> str:
  """``workdir``, if it holds at least one run directory."""
  workdir = check_dir(workdir, argument)
  if not experiment_runs(workdir):
    raise ValueError(
        f"{argument} {workdir!r} holds no run directories "
        "(<method>/seed_<n>/run_config.json): it is not a tljax "
        "experiment directory"
    )
  return workdir
