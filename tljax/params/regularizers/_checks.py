"""Argument checks shared by the fine-tuning regularizers.

Shapes are checked when traced; values (finiteness, probability rows) only
when the arrays are concrete, i.e. outside ``jax.jit``. Each raises a
``ValueError`` naming the argument.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tljax.checks import check_probability_rows, is_traced


def as_float(array: Any) -> jax.Array:
  """The array in float32, or wider if it already is (float64 under x64)."""
  array = jnp.asarray(array)
  return array.astype(jnp.promote_types(array.dtype, jnp.float32))


def check_array(array: Any, argument: str) -> jax.Array:
  """A real (float or integer) array; finite when concrete."""
  if array is None:
    raise ValueError(f"{argument} must be an array of numbers, got None.")
  try:
    array = jnp.asarray(array)
  except (TypeError, ValueError) as error:
    raise ValueError(
        f"{argument} must be an array of numbers: {error}"
    ) from None
  if not (
      jnp.issubdtype(array.dtype, jnp.floating)
      or jnp.issubdtype(array.dtype, jnp.integer)
  ):
    raise ValueError(
        f"{argument} must hold real numbers, got dtype {array.dtype}."
    )
  check_finite(array, argument)
  return array


def check_finite(array: jax.Array, argument: str) -> None:
  if not is_traced(array) and not bool(np.all(np.isfinite(np.asarray(array)))):
    raise ValueError(f"{argument} must be finite (it holds NaN or infinity).")


def check_finite_result(value: jax.Array, message: str) -> jax.Array:
  """``value``; when concrete and not finite (an overflow), a ``ValueError``."""
  if not is_traced(value) and not bool(jnp.all(jnp.isfinite(value))):
    raise ValueError(message)
  return value


def check_probabilities(probabilities: Any, argument: str) -> jax.Array:
  """A ``(batch, classes)`` matrix whose rows are distributions, when concrete."""
  try:
    probabilities = jnp.asarray(probabilities)
  except (TypeError, ValueError) as error:
    raise ValueError(
        f"{argument} must be an array of numbers: {error}"
    ) from None
  if probabilities.ndim != 2 or 0 in probabilities.shape:
    raise ValueError(
        f"{argument} must have shape (num_examples, num_source_classes) with both "
        f"sizes positive, got shape {probabilities.shape}."
    )
  if not jnp.issubdtype(probabilities.dtype, jnp.floating):
    raise ValueError(
        f"{argument} must hold floats, got dtype {probabilities.dtype}."
    )
  check_probability_rows(probabilities, argument)
  return probabilities
