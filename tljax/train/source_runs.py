"""Source runs: a trained tljax run (or a converted checkpoint) as a model and its parameters.

A source run is a run directory (``WORKDIR/<method>/seed_<n>``, with
``run_config.json`` and a checkpoint) whose model is to be reused on a target
task: :func:`load_source_run` rebuilds the architecture from the run's config
for the target's input shape, reads the latest checkpoint and keeps only the
model's parameters (``backbone``, ``bottleneck``, ``head``; not what a method
trained next to them, such as a domain discriminator), checking every shape.
A pretrained checkpoint of the ecosystem, ``"<format>[:<arch>]=<path>"``
(:mod:`tljax.models.convert.spec`), is a source too
(:func:`load_converted_source`): its upstream architecture and head, for the
target's input shape.
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
from tljax.config import base_config
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
    pretrained: for a converted checkpoint, its ``"<format>[:<arch>]=<path>"``
      (then ``run_dir`` is the same string and ``method`` is
      ``"pretrained"``); None for a run.
  """

  name: str
  run_dir: str
  config: ml_collections.ConfigDict
  method: str
  model: models_lib.Model
  params: dict
  model_state: dict
  pretrained: str | None = None


def default_name(run_dir: str) -> str:
  """``.../zoo/rot90/source_only/seed_0`` → ``rot90``; else the dir's name.

  A converted checkpoint's spec: its ``arch``, else the file's directory
  (``timm=/ckpt/resnet50.a1_in1k/model.safetensors`` → ``resnet50.a1_in1k``).
  """
  if models_lib.convert.is_pretrained_spec(run_dir):
    spec = models_lib.parse_pretrained(run_dir, "source")
    if spec.arch:
      return spec.arch
    directory = os.path.basename(os.path.dirname(os.path.abspath(spec.path)))
    return directory or os.path.splitext(os.path.basename(spec.path))[0]
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


def load_converted_source(
    spec: str, *, input_shape: Sequence[int], name: str | None = None
) -> SourceRun:
  """A converted checkpoint (``"<format>[:<arch>]=<path>"``) as a source.

  Its upstream architecture, input convention and head (the upstream
  classes), built for the target's ``input_shape`` (a ViT's position
  embedding resized to it). Its ``config`` is a base config whose ``model``
  is that architecture and whose ``init_from.pretrained`` is ``spec``, so a
  verification run fine-tunes from the checkpoint.

  Raises:
    ValueError: a bad spec, a file the converter refuses, a checkpoint
      without a classification head (a CLIP tower: its source-head scores,
      LEEP and NCE, have no classes to read), or inputs that are not RGB.
    FileNotFoundError: no such file.
  """
  input_shape = tuple(int(size) for size in input_shape)
  options = {}
  if len(input_shape) == 3 and input_shape[0] == input_shape[1]:
    options["image_size"] = input_shape[0]
  converted = models_lib.load_converted(spec, argument="source", **options)
  if converted.num_classes is None:
    raise ValueError(
        f"source {spec!r} has no classification head; rank-sources reads "
        "every source's head (LEEP, NCE), so rank only checkpoints with one"
    )
  if input_shape[-1:] != converted.input_shape[-1:]:
    raise ValueError(
        f"source {spec!r} takes images of shape {converted.input_shape}; the "
        f"target's inputs have shape {input_shape}"
    )
  model = converted.create_model(input_shape=input_shape)
  config = base_config()
  config.model = ml_collections.ConfigDict(
      {
          "name": converted.model_name,
          **converted.model_options,
          "input_mean": tuple(converted.input_mean),
          "input_std": tuple(converted.input_std),
      }
  )
  config.init_from.pretrained = str(spec)
  return SourceRun(
      name=name or default_name(spec),
      run_dir=str(spec),
      config=config,
      method="pretrained",
      model=model,
      params=converted.params,
      model_state=converted.model_state,
      pretrained=str(spec),
  )
