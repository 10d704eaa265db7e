"""Partial restore of a source run's checkpoint into a new target model.

Following big_vision's ``load`` for transfer: the checkpoint's parameters are
merged into freshly initialised ones; every mismatch (a parameter missing from
either side, or a different shape or dtype) is an error naming the parameter,
unless the name matches a ``dont_load`` pattern, in which case the fresh
initialisation is kept. The usual ``dont_load`` is the classification head,
whose shape differs when the target has another number of classes.

A checkpoint is read from a run directory (or its ``checkpoints``
directory) as :mod:`tljax.rundir_format` lays it out; the run's other files
are read through :class:`tljax.train.rundir.Run`, above this package.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence

import jax.numpy as jnp
import numpy as np

from tljax.checkpoint import Checkpointer
from tljax.errors import CheckpointNotFoundError
from tljax.params.tree import check_tree, flatten_tree, merge, unflatten
from tljax.rundir_format import resolve_checkpoint_dir


def _compile(patterns: Sequence[str], argument: str) -> list[re.Pattern]:
  if isinstance(patterns, str):
    patterns = (patterns,)
  if isinstance(patterns, (bytes, Mapping)) or not isinstance(
      patterns, (Sequence, set, frozenset)
  ):
    raise ValueError(
        f"{argument} must be a sequence of regexes, got " f"{patterns!r}"
    )
  compiled = []
  for pattern in patterns:
    if not isinstance(pattern, str):
      raise ValueError(
          f"{argument} has a pattern {pattern!r} that is not a " "string"
      )
    try:
      compiled.append(re.compile(pattern))
    except re.error as error:
      raise ValueError(
          f"{argument} has an invalid pattern {pattern!r}: " f"{error}"
      ) from None
  return compiled


def _check_step(step) -> int | None:
  if step is None:
    return None
  if (
      isinstance(step, (bool, np.bool_))
      or not isinstance(step, (int, np.integer))
      or step < 0
  ):
    raise ValueError(
        f"step must be None (the latest) or an int >= 0, got " f"{step!r}"
    )
  return int(step)


def _check_optional_tree(tree, argument: str) -> None:
  if tree is not None:
    check_tree(tree, argument)


def _matches(name: str, patterns: list[re.Pattern]) -> bool:
  return any(pattern.fullmatch(name) for pattern in patterns)


def _dtype(value) -> np.dtype:
  dtype = getattr(value, "dtype", None)
  return np.dtype(dtype) if dtype is not None else np.result_type(value)


def _merge_tree(
    init: Mapping,
    loaded: Mapping,
    dont_load: list[re.Pattern],
    what: str,
    argument: str,
) -> dict:
  init_flat = flatten_tree(init, f"init_{argument}")
  loaded_flat = flatten_tree(loaded, f"loaded_{argument}")
  merged = {}
  for name, init_value in init_flat.items():
    if _matches(name, dont_load):
      merged[name] = init_value
      continue
    if name not in loaded_flat:
      raise ValueError(
          f"{what} {name!r} is missing from the checkpoint; add it "
          "to dont_load to keep its initial value"
      )
    value = loaded_flat[name]
    if tuple(np.shape(value)) != tuple(np.shape(init_value)):
      raise ValueError(
          f"{what} {name!r} has shape {tuple(np.shape(value))} in the "
          f"checkpoint but {tuple(np.shape(init_value))} in the model; add it "
          "to dont_load to keep its initial value"
      )
    if _dtype(value) != _dtype(init_value):
      raise ValueError(
          f"{what} {name!r} has dtype {_dtype(value)} in the "
          f"checkpoint but {_dtype(init_value)} in the model"
      )
    merged[name] = jnp.asarray(value)
  unexpected = [
      name
      for name in loaded_flat
      if name not in init_flat and not _matches(name, dont_load)
  ]
  if unexpected:
    raise ValueError(
        f"checkpoint has unexpected {what}s {unexpected} that the "
        "model does not have; add them to dont_load to ignore them"
    )
  return unflatten(merged)


def transferred_names(params: Mapping, dont_load: Sequence[str]) -> frozenset:
  """Names of the parameters :func:`load_pretrained` restores (not in ``dont_load``).

  Raises:
    ValueError: if ``params`` is not a mapping or ``dont_load`` is not a
      sequence of valid regexes.
  """
  patterns = _compile(dont_load, "dont_load")
  return frozenset(
      name
      for name in flatten_tree(params, "params")
      if not _matches(name, patterns)
  )


def read_checkpoint(
    checkpoint_dir: str | os.PathLike,
    *,
    step: int | None = None,
    allow_unverified: bool = False,
) -> tuple[dict, dict]:
  """The full ``(params, model_state)`` of a tljax run's checkpoint, as saved.

  Args:
    checkpoint_dir: a tljax run's work dir or its ``checkpoints`` dir.
    step: which checkpoint (default: the latest).
    allow_unverified: accept a checkpoint without its integrity record (one
      tljax did not write); its values are then not verified.

  Raises:
    CheckpointNotFoundError: (a ``FileNotFoundError`` and a ``ValueError``)
      if ``checkpoint_dir`` is not an existing directory, holds no
      checkpoint, or none at ``step`` (the message lists the steps there).
    ValueError: if ``checkpoint_dir`` is not a path or ``step`` is not None
      or an int >= 0.
    CheckpointError: (a ``ValueError``) if the checkpoint is truncated,
      corrupted, or has no integrity record (without ``allow_unverified``).
  """
  step = _check_step(step)
  directory = _checkpoint_directory(checkpoint_dir)
  checkpointer = Checkpointer(directory, read_only=True)
  try:
    raw = checkpointer.restore_raw(step, allow_unverified=allow_unverified)
  finally:
    checkpointer.close()
  params = merge(raw.get("trainable") or {}, raw.get("frozen") or {})
  return params, dict(raw.get("model_state") or {})


def _checkpoint_directory(checkpoint_dir) -> str:
  try:
    directory = resolve_checkpoint_dir(checkpoint_dir)
  except ValueError:
    raise ValueError(
        "checkpoint_dir must be a directory path (a non-empty str "
        f"or os.PathLike), got {checkpoint_dir!r}"
    ) from None
  if not os.path.isdir(directory):
    raise CheckpointNotFoundError(
        f"checkpoint_dir {directory!r} does not exist or is not a directory "
        "(give a tljax run's work dir or its checkpoints dir)"
    )
  return directory


def load_pretrained(
    init_params: Mapping,
    checkpoint_dir: str | os.PathLike,
    *,
    dont_load: Sequence[str] = ("head/.*",),
    init_model_state: Mapping | None = None,
    zero_init: Sequence[str] = (),
    step: int | None = None,
    allow_unverified: bool = False,
):
  """Restores a tljax checkpoint into freshly initialised parameters.

  Args:
    init_params: the target model's freshly initialised parameters.
    checkpoint_dir: a tljax run's work dir or its ``checkpoints`` dir.
    dont_load: regexes (full match over ``a/b/c`` names) of parameters and model
      state entries that keep their initial value (also silences their absence
      from the checkpoint or from the model).
    init_model_state: the target model's initial non-parameter state (BatchNorm
      statistics); when given, the checkpoint's model state is restored into it
      under the same rules, so statistics travel with their parameters.
    zero_init: regexes of parameters set to zero after loading, e.g.
      ``("head/.*",)`` for the zero-initialised head of big_vision.
    step: which checkpoint (default: the latest).
    allow_unverified: accept a checkpoint without its integrity record (see
      :func:`read_checkpoint`).

  Returns:
    The restored parameters, or ``(params, model_state)`` when
    ``init_model_state`` is given.

  Raises:
    ValueError: naming the parameter path on any mismatch not covered by
      ``dont_load``; naming the argument if one is invalid (checked before
      the checkpoint is read): a tree that is not a mapping, a pattern that
      is not a valid regex, a ``step`` that is not None or an int >= 0.
    CheckpointNotFoundError: (also a ``ValueError``) if ``checkpoint_dir``
      does not exist, holds no checkpoint, or none at ``step``.
    CheckpointError: (also a ``ValueError``) if the checkpoint cannot be
      trusted (see :func:`read_checkpoint`).
  """
  check_tree(init_params, "init_params")
  _check_optional_tree(init_model_state, "init_model_state")
  _compile(dont_load, "dont_load")
  _compile(zero_init, "zero_init")
  step = _check_step(step)
  _checkpoint_directory(checkpoint_dir)
  loaded_params, loaded_model_state = read_checkpoint(
      checkpoint_dir, step=step, allow_unverified=allow_unverified
  )
  return merge_pretrained(
      init_params,
      loaded_params,
      dont_load=dont_load,
      init_model_state=init_model_state,
      loaded_model_state=loaded_model_state,
      zero_init=zero_init,
  )


def merge_pretrained(
    init_params: Mapping,
    loaded_params: Mapping,
    *,
    dont_load: Sequence[str] = ("head/.*",),
    init_model_state: Mapping | None = None,
    loaded_model_state: Mapping | None = None,
    zero_init: Sequence[str] = (),
):
  """:func:`load_pretrained` on a checkpoint already read (:func:`read_checkpoint`).

  Same arguments, rules, errors and return value, with the checkpoint's
  ``loaded_params`` and ``loaded_model_state`` given instead of its directory.
  A ``zero_init`` pattern must match a parameter of the model, as a
  ``dont_load`` one must match a name somewhere: a typo would silently
  keep what it meant to zero.
  """
  check_tree(init_params, "init_params")
  check_tree(loaded_params, "loaded_params")
  _check_optional_tree(init_model_state, "init_model_state")
  _check_optional_tree(loaded_model_state, "loaded_model_state")
  dont_load_patterns = _compile(dont_load, "dont_load")
  zero_patterns = _compile(zero_init, "zero_init")
  loaded_model_state = loaded_model_state or {}
  init_names = set(flatten_tree(init_params, "init_params"))
  names = (
      init_names
      | set(flatten_tree(loaded_params, "loaded_params"))
      | set(flatten_tree(init_model_state or {}, "init_model_state"))
      | set(flatten_tree(loaded_model_state, "loaded_model_state"))
  )
  unused = [
      pattern.pattern
      for pattern in dont_load_patterns
      if not any(pattern.fullmatch(name) for name in names)
  ]
  if unused:
    raise ValueError(
        f"dont_load patterns {unused} match no parameter of the "
        "model or the checkpoint (a typo would silently load what "
        "it meant to skip)"
    )
  unused = [
      pattern.pattern
      for pattern in zero_patterns
      if not any(pattern.fullmatch(name) for name in init_names)
  ]
  if unused:
    raise ValueError(
        f"zero_init patterns {unused} match no parameter of the "
        "model (a typo would silently keep what it meant to "
        "zero)"
    )
  params = _merge_tree(
      init_params, loaded_params, dont_load_patterns, "parameter", "params"
  )
  if zero_patterns:
    params = unflatten(
        {
            name: jnp.zeros_like(value)
            if _matches(name, zero_patterns)
            else value
            for name, value in flatten_tree(params, "params").items()
        }
    )
  if init_model_state is None:
    return params
  model_state = _merge_tree(
      init_model_state,
      loaded_model_state,
      dont_load_patterns,
      "model state entry",
      "model_state",
  )
  return params, model_state
