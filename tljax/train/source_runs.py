"""Source runs: a trained tljax run rebuilt as a model and its parameters.

A source run is a run directory (``WORKDIR/<method>/seed_<n>``, with
``run_config.json`` and a checkpoint) whose model is to be reused on a target
task: :func:`load_source_run` rebuilds the architecture from the run's config
for the target's input shape, reads the latest checkpoint and keeps only the
model's parameters (``backbone``, ``bottleneck``, ``head``; not what a method
trained next to them, such as a domain discriminator), checking every shape.
:mod:`tljax.train.source_scores` scores such runs and
:mod:`tljax.train.rank_sources` fine-tunes from them.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Sequence

import jax
import ml_collections
import numpy as np

from tljax import models as models_lib
from tljax.params import flatten, unflatten
from tljax.train.rundir import Run


@dataclasses.dataclass(frozen=True)
class SourceRun:
  """A trained source model, rebuilt from its run directory.

  Attributes:
    name: a short label for tables.
    run_dir: the run's directory (absolute).
    config: the run's experiment config (from ``run_config.json``).
    method: the method the run trained.
    model: the architecture, built for the target's input shape.
    params: its parameters (only the model's: ``backbone``, ``bottleneck``,
      ``head``).
    model_state: its BatchNorm statistics.
  """

  name: str
  run_dir: str
  config: ml_collections.ConfigDict
  method: str
  model: models_lib.Model
  params: dict
  model_state: dict


def default_name(run_dir: str) -> str:
  """``.../zoo/rot90/source_only/seed_0`` → ``rot90``; else the dir's name."""
  parts = os.path.normpath(os.path.abspath(run_dir)).split(os.sep)
  if len(parts) >= 3 and re.fullmatch(r"seed_\d+", parts[-1]):
    return parts[-3]
  return parts[-1]


def model_config(config) -> dict:
  """The ``config.model`` fields as a plain dict (comparable across runs)."""
  model = config["model"]
  return dict(model.to_dict() if hasattr(model, "to_dict") else model)


def load_source_run(
    run_dir: str, *, input_shape: Sequence[int], name: str | None = None
) -> SourceRun:
  """Rebuilds a source run's model and reads its latest checkpoint.

  Args:
    run_dir: a tljax run directory with ``run_config.json`` and a checkpoint.
    input_shape: one target example's shape; the model is built for it.
    name: a label (default :func:`default_name`).

  Raises:
    FileNotFoundError: no such directory, no ``run_config.json``
      (:class:`~tljax.errors.RunDirNotFoundError`) or no checkpoint
      (:class:`~tljax.errors.CheckpointNotFoundError`).
    ValueError: the checkpoint does not fit the architecture or the inputs.
  """
  run = Run.open(run_dir, argument="source run dir")
  run_dir, config = run.path, run.config
  params, model_state = run.restore()
  flat = flatten(params)
  if "head/bias" not in flat:
    raise ValueError(
        f"source run {run_dir!r} has no 'head/bias' parameter; "
        "is it a tljax classifier?"
    )
  model = run.model_for(
      input_shape=input_shape, num_classes=int(np.shape(flat["head/bias"])[0])
  )
  # Parameters a method added next to the model's (a domain discriminator)
  # are not the model's.
  shapes, state_shapes = jax.eval_shape(model.init, jax.random.key(0))
  params = {key: value for key, value in params.items() if key in shapes}
  model_state = {
      key: value for key, value in model_state.items() if key in state_shapes
  }
  for what, given, expected in (
      ("parameter", params, shapes),
      ("model state entry", model_state, state_shapes),
  ):
    given_flat, expected_flat = flatten(given), flatten(expected)
    for path, leaf in expected_flat.items():
      if path not in given_flat:
        raise ValueError(
            f"source run {run_dir!r}: {what} {path!r} of model "
            f"{config.model.name!r} is missing from the checkpoint"
        )
      if tuple(np.shape(given_flat[path])) != tuple(leaf.shape):
        raise ValueError(
            f"source run {run_dir!r}: {what} {path!r} has shape "
            f"{tuple(np.shape(given_flat[path]))} in the checkpoint but "
            f"{tuple(leaf.shape)} in model {config.model.name!r} for target "
            f"inputs of shape {tuple(input_shape)}"
        )
  return SourceRun(
      name=name or default_name(run_dir),
      run_dir=run_dir,
      config=config,
      method=str(run.recipe),
      model=model,
      params=unflatten(flatten(params)),
      model_state=unflatten(flatten(model_state)),
  )
