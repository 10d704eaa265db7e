"""Argument checks shared across tljax: each raises a ValueError naming the argument.

Hyper-parameter checks let a traced value through, so functions stay usable
under ``jax.vmap`` sweeps over their hyper-parameters.
"""

from __future__ import annotations

import math
from typing import Any

import jax
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
    raise ValueError(f"{argument} must be a non-negative number, got {value!r}.")
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
    np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)
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
        f"jax.nn.softmax(logits)); row {worst} sums to {sums[worst]:.6g}.")
