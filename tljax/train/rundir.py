"""The owner of a run directory, readers' side: :class:`Run`.

``Run.open(path)`` reads what a finished or in-progress run has written
(the layout is :mod:`tljax.rundir_format`): its record (``run_config.json``:
config, recipe, seed, ``init_from``), its checkpoints (steps, a read-only
:class:`~tljax.checkpoint.Checkpointer`, a restore of any step), its
``summary.json`` once it has finished, its ``metrics.jsonl`` so far, and its
model, rebuilt from the config. Reports, rank-sources and the source runs of
a transfer read runs through it; a directory that is not a run is an error
naming the path.

  run = Run.open("work/digits/dann/seed_0")
  run.recipe, run.seed, run.checkpoint_steps(), run.summary()["target_test"]
  model = run.model()
  params, model_state = run.restore_model(model)
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import ml_collections

from tljax import models as models_lib
from tljax.checkpoint import Checkpointer
from tljax.errors import CheckpointNotFoundError
from tljax.params import read_checkpoint
from tljax.rundir_format import (
    METRICS_FILE,
    SUMMARY_FILE,
    checkpoint_steps,
    read_run_config,
    resolve_checkpoint_dir,
    seed_of_dir,
)
from tljax.train.domains import load_domains
from tljax.train.run_setup import build_model, pretrained_model

__all__ = ["Run"]


@dataclasses.dataclass(frozen=True)
class Run:
  """A run directory, opened for reading (nothing is written or locked).

  Attributes:
    path: the run directory (absolute).
    record: its ``run_config.json`` as stored: ``{"config", "method",
      "seed", "init_from"}``.
    argument: what errors call the directory (the caller's argument name).
  """

  path: str
  record: Mapping[str, Any]
  argument: str = dataclasses.field(default="path", compare=False)

  @classmethod
  def open(cls, path: str | os.PathLike, *, argument: str = "path") -> Run:
    """Opens the run directory ``path`` (finished or still training).

    Args:
      path: a tljax run directory (it holds ``run_config.json``).
      argument: the name the errors give ``path`` (the caller's argument).

    Raises:
      RunDirNotFoundError: (a ``FileNotFoundError`` and a ``ValueError``)
        naming ``argument`` and the path, if it does not exist or has no
        ``run_config.json``.
      ValueError: if ``run_config.json`` is not a tljax run record.
    """
    record = read_run_config(path, argument)
    return cls(
        path=os.path.abspath(os.fspath(path)), record=record, argument=argument
    )

  # --- The record ------------------------------------------------------------

  @property
  def config(self) -> ml_collections.ConfigDict:
    """The run's experiment config (a fresh copy on every access)."""
    return ml_collections.ConfigDict(self.record["config"])

  @property
  def recipe(self) -> str | None:
    """The registered method (recipe) the run trained, e.g. ``"dann"``."""
    method = self.record.get("method")
    return None if method is None else str(method)

  @property
  def seed(self) -> int | None:
    """The run's seed: from its record, else from a ``seed_<n>`` directory name."""
    seed = self.record.get("seed")
    return int(seed) if seed is not None else seed_of_dir(self.path)

  @property
  def init_from(self) -> dict | None:
    """Where the run's parameters started (``config.init_from`` as resolved)."""
    init_from = self.record.get("init_from")
    return dict(init_from) if init_from is not None else None

  # --- Checkpoints -----------------------------------------------------------

  @property
  def checkpoint_dir(self) -> str:
    return resolve_checkpoint_dir(self.path)

  def checkpoint_steps(self) -> list[int]:
    """The steps of the run's complete checkpoints, ascending (may be empty)."""
    if self.checkpoint_dir == self.path:  # no checkpoints/ yet
      return []
    return checkpoint_steps(self.checkpoint_dir)

  @property
  def has_checkpoint(self) -> bool:
    return bool(self.checkpoint_steps())

  def checkpointer(self) -> Checkpointer:
    """A read-only :class:`~tljax.checkpoint.Checkpointer` of the run (close it).

    Raises:
      CheckpointNotFoundError: if the run has no checkpoint yet.
    """
    self._check_has_checkpoint()
    return Checkpointer(self.checkpoint_dir, read_only=True)

  def restore(
      self, step: int | None = None, *, allow_unverified: bool = False
  ) -> tuple[dict, dict]:
    """``(params, model_state)`` of the checkpoint at ``step`` (default: latest).

    Everything the run trained, as saved (a method's own parameters, such as
    a domain discriminator, included); see :meth:`restore_model`.
    Errors as :func:`tljax.params.read_checkpoint`.
    """
    self._check_has_checkpoint()
    return read_checkpoint(
        self.path, step=step, allow_unverified=allow_unverified
    )

  def restore_model(
      self,
      model: models_lib.Model,
      step: int | None = None,
      *,
      allow_unverified: bool = False,
  ) -> tuple[dict, dict]:
    """:meth:`restore`, keeping only the top-level entries ``model`` has.

    A method's parameters next to the model's (a domain discriminator) are
    dropped; shapes are not compared here.
    """
    params, model_state = self.restore(step, allow_unverified=allow_unverified)
    shapes, state_shapes = jax.eval_shape(model.init, jax.random.key(0))
    return (
        {key: value for key, value in params.items() if key in shapes},
        {
            key: value
            for key, value in model_state.items()
            if key in state_shapes
        },
    )

  def _check_has_checkpoint(self) -> None:
    # The error read_checkpoint gives a directory without checkpoints.
    if not self.has_checkpoint:
      raise CheckpointNotFoundError(
          f"{self.argument} {self.path!r} has no " "checkpoint yet"
      )

  # --- Results ---------------------------------------------------------------

  @property
  def finished(self) -> bool:
    """Whether the run wrote its ``summary.json`` (it does so last)."""
    return os.path.isfile(os.path.join(self.path, SUMMARY_FILE))

  def summary(self) -> dict:
    """The run's ``summary.json``.

    Raises:
      ValueError: naming the path, if the run has not finished.
    """
    path = os.path.join(self.path, SUMMARY_FILE)
    if not os.path.isfile(path):
      raise ValueError(
          f"{self.argument} {self.path!r} has no {SUMMARY_FILE}: "
          "the run has not finished"
      )
    return _read_json(path)

  @property
  def has_metrics(self) -> bool:
    return os.path.isfile(os.path.join(self.path, METRICS_FILE))

  def metrics(self) -> list[dict]:
    """The records of ``metrics.jsonl`` in order; ``[]`` before the first.

    A last line still being written by a running run (no newline yet) is
    left out; any other line that is not JSON is a ``ValueError`` naming the
    file and the line.
    """
    path = os.path.join(self.path, METRICS_FILE)
    if not os.path.isfile(path):
      return []
    with open(path, encoding="utf-8") as stream:
      lines = stream.read().split("\n")
    # ``lines[-1]`` is what follows the last newline: "" or a partial record.
    records = []
    for number, line in enumerate(lines[:-1], start=1):
      if not line.strip():
        continue
      try:
        records.append(json.loads(line))
      except json.JSONDecodeError as error:
        raise ValueError(
            f"{path!r} line {number} is not JSON: " f"{error}"
        ) from None
    return records

  # --- The model -------------------------------------------------------------

  def domains(self) -> dict[str, dict[str, Any]]:
    """The run's data, loaded from its config (:func:`~tljax.train.domains.load_domains`)."""
    return load_domains(self.config)

  def model(self, domains: Mapping | None = None) -> models_lib.Model:
    """The run's architecture, rebuilt from its config as training built it.

    Args:
      domains: the run's data (:meth:`domains`), to share between runs;
        loaded when ``None``.
    """
    config = self.config
    return build_model(config, domains or load_domains(config))

  def model_for(
      self, *, input_shape: Sequence[int], num_classes: int
  ) -> models_lib.Model:
    """The run's architecture (``config.model``) for other inputs or classes.

    What a source run becomes on a target task: the same model options,
    built for the target's ``input_shape`` (one example's) and
    ``num_classes``.
    """
    if self.config.get("init_from", {}).get("pretrained"):
      # The converted checkpoint's architecture (config.model does not say).
      return pretrained_model(
          self.config,
          int(num_classes),
          tuple(int(size) for size in input_shape),
      )
    model = self.config.model
    options = {key: value for key, value in model.items() if key != "name"}
    return models_lib.create_model(
        model.name,
        num_classes=int(num_classes),
        input_shape=tuple(int(size) for size in input_shape),
        **options,
    )


def _read_json(path: str):
  try:
    with open(path, encoding="utf-8") as stream:
      return json.load(stream)
  except (json.JSONDecodeError, UnicodeDecodeError) as error:
    raise ValueError(f"{path!r} is not valid JSON ({error})") from None
