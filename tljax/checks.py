"""Argument checks shared across tljax: each raises a ValueError naming the argument.

Hyper-parameter checks let a traced value through, so functions stay usable
under ``jax.vmap`` sweeps over their hyper-parameters.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def is_traced(value: Any) -> bool:
  return isinstance(value, jax.core.Tracer)


def check_finite_result(result: Any, message: str) -> Any:
  """``result`` (an array or a pytree of arrays) if it is finite or traced.

  The last line of defence of a function whose finite inputs can still give
  a result beyond its dtype: a concrete leaf holding NaN or infinity raises
  ``ValueError(message)``. Traced leaves (under ``jax.jit`` / ``jax.vmap``)
  pass unchecked, so jitted code never waits on this check.
  """
  for leaf in jax.tree.leaves(result):
    if not is_traced(leaf) and not bool(np.all(np.isfinite(np.asarray(leaf)))):
      raise ValueError(message)
  return result


def check_non_negative(value: Any, argument: str) -> Any:
  """A finite number >= 0; a traced value (a vmapped sweep) passes as is."""
  if is_traced(value):
    return value
  if isinstance(value, bool) or not _is_real_scalar(value):
    raise ValueError(
        f"{argument} must be a non-negative number, got {value!r}."
    )
  number = float(value)
  if not math.isfinite(number) or number < 0:
    raise ValueError(f"{argument} must be a finite number >= 0, got {number}.")
  return value


def check_finite_number(value: Any, argument: str) -> float:
  """``float(value)`` if ``value`` is a finite real number (bools are not)."""
  if isinstance(value, bool) or not _is_real_scalar(value):
    raise ValueError(f"{argument} must be a finite number, got {value!r}.")
  number = float(value)
  if not math.isfinite(number):
    raise ValueError(f"{argument} must be a finite number, got {number}.")
  return number


def check_positive(value: Any, argument: str) -> Any:
  """A finite number > 0; a traced value passes as is."""
  if is_traced(value):
    return value
  if isinstance(value, bool) or not _is_real_scalar(value):
    raise ValueError(f"{argument} must be a positive number, got {value!r}.")
  number = float(value)
  if not math.isfinite(number) or number <= 0:
    raise ValueError(f"{argument} must be a finite number > 0, got {number}.")
  return value


def _is_real_scalar(value: Any) -> bool:
  try:
    array = np.asarray(value)
  except (TypeError, ValueError):
    return False
  return array.ndim == 0 and (
      np.issubdtype(array.dtype, np.floating)
      or np.issubdtype(array.dtype, np.integer)
  )


def check_int(value: Any, argument: str, *, minimum: int) -> int:
  """``int(value)`` if ``value`` is an integer ``>= minimum`` (bools are not)."""
  if (
      isinstance(value, bool)
      or not isinstance(value, (int, np.integer))
      or value < minimum
  ):
    raise ValueError(f"{argument} must be an int >= {minimum}, got {value!r}.")
  return int(value)


def check_probability_rows(probabilities: Any, argument: str) -> None:
  """Rows of a concrete ``(batch, classes)`` array are distributions (traced: skipped).

  Raises:
    ValueError: naming ``argument`` if a value is negative or non-finite or a
      row does not sum to 1 (to 1e-3).
  """
  if is_traced(probabilities):
    return
  values = np.asarray(probabilities, np.float64)
  if not np.all(np.isfinite(values)) or np.any(values < 0):
    raise ValueError(f"{argument} must be finite and non-negative.")
  sums = values.sum(axis=1)
  if not np.allclose(sums, 1.0, atol=1e-3):
    worst = int(np.argmax(np.abs(sums - 1.0)))
    raise ValueError(
        f"{argument} rows must sum to 1 (probabilities, e.g. "
        f"jax.nn.softmax(logits)); row {worst} sums to {sums[worst]:.6g}."
    )


def to_array(value: Any, argument: str) -> Any:
  """``value`` as an array (a jax array or tracer as is, anything else via NumPy).

  Raises:
    ValueError: naming ``argument`` if ``value`` is not an array of numbers
      (ragged nesting, strings, objects, ``None``).
  """
  if isinstance(value, jax.Array):  # also tracers
    return value
  try:
    array = np.asarray(value)
  except (TypeError, ValueError) as error:
    raise ValueError(
        f"{argument} must be an array of numbers, got {type(value).__name__} ({error})."
    ) from None
  if array.dtype.kind not in "biufc" and not jnp.issubdtype(
      array.dtype, jnp.floating
  ):
    # (ml_dtypes such as bfloat16 have NumPy kind "V" but are floats.)
    raise ValueError(
        f"{argument} must be an array of numbers, got dtype {array.dtype} "
        f"({type(value).__name__})."
    )
  return array


def check_key(
    key: Any, argument: str = "key", *, allow_none: bool = False
) -> jax.Array:
  """A single ``jax.random`` key, as a typed key.

  Accepts a typed key of shape ``()`` (``jax.random.key(seed)``), returned as
  is, or a legacy raw ``uint32[2]`` key (``jax.random.PRNGKey(seed)``),
  wrapped into the typed key that draws the same numbers. With
  ``allow_none``, ``None`` stands for the fixed ``jax.random.key(0)``.
  Tracers pass (the check reads only dtype and shape).
  """
  if key is None and allow_none:
    return jax.random.key(0)
  dtype = getattr(key, "dtype", None)
  shape = getattr(key, "shape", None)
  if (
      isinstance(key, jax.Array)
      and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)
      and shape == ()
  ):
    return key
  if dtype == jnp.uint32 and shape == (2,):
    return jax.random.wrap_key_data(jnp.asarray(key))
  got = (
      f"dtype {dtype} and shape {shape}"
      if dtype is not None
      else f"{type(key).__name__} {key!r}"
  )
  raise ValueError(
      f"{argument} must be {'None or ' if allow_none else ''}a "
      f"single jax.random key (jax.random.key(seed)), got {got}."
  )


def check_labels(
    labels: Any,
    argument: str,
    *,
    length: int,
    length_of: str,
    num_classes: int | None = None,
    num_classes_argument: str = "num_classes",
    min_present: int = 1,
) -> tuple[jax.Array, int]:
  """Integer class labels of shape ``(length,)`` and the number of classes.

  ``num_classes=None`` takes ``max(labels) + 1``, which needs concrete labels;
  under ``jax.jit`` pass the number of classes (checked as
  ``num_classes_argument``, an int >= ``min_present``). When concrete, the
  labels must lie in ``[0, num_classes)`` and at least ``min_present``
  distinct classes must occur. Messages name ``argument``, and ``length_of``
  (the argument whose rows the labels label).
  """
  labels = to_array(labels, argument)
  values = None if is_traced(labels) else np.asarray(labels)
  labels = jnp.asarray(labels)
  if labels.shape != (length,):
    raise ValueError(
        f"{argument} must have shape ({length},) (one label per row of "
        f"{length_of}), got shape {labels.shape}."
    )
  if not jnp.issubdtype(labels.dtype, jnp.integer) or labels.dtype == jnp.bool_:
    raise ValueError(
        f"{argument} must hold integers, got dtype {labels.dtype}."
    )
  if num_classes is None:
    if values is None:
      raise ValueError(
          f"{num_classes_argument} must be given when {argument} is traced "
          "(inside jax.jit), since the number of classes sets array shapes."
      )
    negative = values[values < 0]
    if negative.size:
      raise ValueError(
          f"{argument} must be >= 0, got {sorted(set(negative.tolist()))}."
      )
    largest = int(values.max())
    if largest >= np.iinfo(np.int32).max:
      raise ValueError(
          f"{argument} must be < {np.iinfo(np.int32).max} (class indices), got {largest}."
      )
    num_classes = largest + 1
  else:
    num_classes = check_int(
        num_classes, num_classes_argument, minimum=min_present
    )
  if values is not None:
    bad = values[(values < 0) | (values >= num_classes)]
    if bad.size:
      raise ValueError(
          f"{argument} must lie in [0, {num_classes}) ({num_classes_argument}="
          f"{num_classes}), got {sorted(set(bad.tolist()))}."
      )
    present = np.unique(values).size
    if present < min_present:
      raise ValueError(
          f"{argument} must contain at least {min_present} distinct classes, got "
          f"{present}."
      )
  return labels, num_classes
