"""Partial restore of a source run's checkpoint into a new target model.

Following big_vision's ``load`` for transfer: the checkpoint's parameters are
merged into freshly initialised ones; every mismatch (a parameter missing from
either side, or a different shape or dtype) is an error naming the parameter,
unless the name matches a ``dont_load`` pattern, in which case the fresh
initialisation is kept. The usual ``dont_load`` is the classification head,
whose shape differs when the target has another number of classes.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence

import jax.numpy as jnp
import numpy as np

from tljax.params.tree import flatten, merge, unflatten

CHECKPOINT_SUBDIR = "checkpoints"


def _compile(patterns: Sequence[str], argument: str) -> list[re.Pattern]:
  if isinstance(patterns, str):
    patterns = (patterns,)
  compiled = []
  for pattern in patterns:
    try:
      compiled.append(re.compile(pattern))
    except (re.error, TypeError) as error:
      raise ValueError(f"{argument} has an invalid pattern {pattern!r}: "
                       f"{error}") from None
  return compiled


def _matches(name: str, patterns: list[re.Pattern]) -> bool:
  return any(pattern.fullmatch(name) for pattern in patterns)


def _merge_tree(init: Mapping, loaded: Mapping, dont_load: list[re.Pattern],
                what: str) -> dict:
  init_flat, loaded_flat = flatten(init), flatten(loaded)
  merged = {}
  for name, init_value in init_flat.items():
    if _matches(name, dont_load):
      merged[name] = init_value
      continue
    if name not in loaded_flat:
      raise ValueError(f"{what} {name!r} is missing from the checkpoint; add it "
                       "to dont_load to keep its initial value")
    value = loaded_flat[name]
    if tuple(np.shape(value)) != tuple(np.shape(init_value)):
      raise ValueError(
          f"{what} {name!r} has shape {tuple(np.shape(value))} in the "
          f"checkpoint but {tuple(np.shape(init_value))} in the model; add it "
          "to dont_load to keep its initial value")
    if np.dtype(value.dtype) != np.dtype(init_value.dtype):
      raise ValueError(f"{what} {name!r} has dtype {value.dtype} in the "
                       f"checkpoint but {init_value.dtype} in the model")
    merged[name] = jnp.asarray(value)
  unexpected = [name for name in loaded_flat
                if name not in init_flat and not _matches(name, dont_load)]
  if unexpected:
    raise ValueError(f"checkpoint has unexpected {what}s {unexpected} that the "
                     "model does not have; add them to dont_load to ignore them")
  return unflatten(merged)


def transferred_names(params: Mapping, dont_load: Sequence[str]) -> frozenset:
  """Names of the parameters :func:`load_pretrained` restores (not in ``dont_load``)."""
  patterns = _compile(dont_load, "dont_load")
  return frozenset(name for name in flatten(params)
                   if not _matches(name, patterns))


def resolve_checkpoint_dir(path: str | os.PathLike) -> str:
  """A run's work dir or its ``checkpoints`` dir -> the checkpoints dir."""
  path = os.fspath(path)
  nested = os.path.join(path, CHECKPOINT_SUBDIR)
  return nested if os.path.isdir(nested) else path


def read_checkpoint(checkpoint_dir: str | os.PathLike, *,
                    step: int | None = None) -> tuple[dict, dict]:
  """The full ``(params, model_state)`` of a tljax run's checkpoint, as saved.

  Args:
    checkpoint_dir: a tljax run's work dir or its ``checkpoints`` dir.
    step: which checkpoint (default: the latest).
  """
  from tljax.train.checkpoint import Checkpointer  # the train core imports params

  directory = resolve_checkpoint_dir(checkpoint_dir)
  if not os.path.isdir(directory):
    raise FileNotFoundError(f"checkpoint_dir {directory!r} does not exist")
  checkpointer = Checkpointer(directory, max_to_keep=None)
  try:
    raw = checkpointer.restore_raw(step)
  finally:
    checkpointer.close()
  params = merge(raw.get("trainable") or {}, raw.get("frozen") or {})
  return params, dict(raw.get("model_state") or {})


def load_pretrained(init_params: Mapping, checkpoint_dir: str | os.PathLike, *,
                    dont_load: Sequence[str] = ("head/.*",),
                    init_model_state: Mapping | None = None,
                    zero_init: Sequence[str] = (), step: int | None = None):
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

  Returns:
    The restored parameters, or ``(params, model_state)`` when
    ``init_model_state`` is given.

  Raises:
    ValueError: naming the parameter path on any mismatch not covered by
      ``dont_load``.
    FileNotFoundError: if there is no checkpoint.
  """
  loaded_params, loaded_model_state = read_checkpoint(checkpoint_dir, step=step)
  return merge_pretrained(init_params, loaded_params, dont_load=dont_load,
                          init_model_state=init_model_state,
                          loaded_model_state=loaded_model_state,
                          zero_init=zero_init)


def merge_pretrained(init_params: Mapping, loaded_params: Mapping, *,
                     dont_load: Sequence[str] = ("head/.*",),
                     init_model_state: Mapping | None = None,
                     loaded_model_state: Mapping | None = None,
                     zero_init: Sequence[str] = ()):
  """:func:`load_pretrained` on a checkpoint already read (:func:`read_checkpoint`).

  Same arguments, rules, errors and return value, with the checkpoint's
  ``loaded_params`` and ``loaded_model_state`` given instead of its directory.
  """
  dont_load_patterns = _compile(dont_load, "dont_load")
  zero_patterns = _compile(zero_init, "zero_init")
  loaded_model_state = loaded_model_state or {}
  names = (set(flatten(init_params)) | set(flatten(loaded_params))
           | set(flatten(init_model_state or {}))
           | set(flatten(loaded_model_state)))
  unused = [pattern.pattern for pattern in dont_load_patterns
            if not any(pattern.fullmatch(name) for name in names)]
  if unused:
    raise ValueError(f"dont_load patterns {unused} match no parameter of the "
                     "model or the checkpoint (a typo would silently load what "
                     "it meant to skip)")
  params = _merge_tree(init_params, loaded_params, dont_load_patterns,
                       "parameter")
  if zero_patterns:
    params = unflatten({
        name: jnp.zeros_like(value) if _matches(name, zero_patterns) else value
        for name, value in flatten(params).items()})
  if init_model_state is None:
    return params
  model_state = _merge_tree(init_model_state, loaded_model_state,
                            dont_load_patterns, "model state entry")
  return params, model_state
