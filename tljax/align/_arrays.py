"""Array checks shared by the losses of :mod:`tljax.align`.

Each check raises a ``ValueError`` naming the argument. Shapes are checked
when traced (they are static); values (non-negative weights, probability
rows) only when the array is concrete, i.e. outside ``jax.jit``/``jax.grad``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tljax.checks import check_probability_rows, is_traced


def as_float(array: Any) -> jax.Array:
  """The array in float32, or wider if it already is (float64 under x64)."""
  array = jnp.asarray(array)
  return array.astype(jnp.promote_types(array.dtype, jnp.float32))


def _check_real(array: Any, argument: str) -> jax.Array:
  try:
    array = jnp.asarray(array)
  except TypeError as error:
    raise ValueError(f"{argument} must be an array of numbers: {error}") from None
  if not (
    jnp.issubdtype(array.dtype, jnp.floating)
    or jnp.issubdtype(array.dtype, jnp.integer)
  ):
    raise ValueError(
      f"{argument} must hold real numbers, got dtype {array.dtype}."
    )
  return array


def check_matrix(
  array: Any,
  argument: str,
  *,
  rows: str = "batch",
  columns: str = "dim",
  min_rows: int = 1,
  why: str = "",
) -> jax.Array:
  """A ``(rows, columns)`` real matrix with both sizes positive, as float."""
  array = _check_real(array, argument)
  if array.ndim != 2 or 0 in array.shape:
    raise ValueError(
      f"{argument} must have shape ({rows}, {columns}) with both sizes "
      f"positive, got shape {array.shape}."
    )
  if array.shape[0] < min_rows:
    reason = f" ({why})" if why else ""
    raise ValueError(
      f"{argument} must have at least {min_rows} rows{reason}, got "
      f"{array.shape[0]}."
    )
  return as_float(array)


def check_same_columns(
  source: jax.Array,
  target: jax.Array,
  source_argument: str,
  target_argument: str,
  *,
  what: str = "feature dimension",
) -> None:
  if source.shape[1] != target.shape[1]:
    raise ValueError(
      f"{target_argument} must have the same {what} as {source_argument} "
      f"({source.shape[1]}), got {target.shape[1]} (shapes {source.shape} "
      f"and {target.shape})."
    )


def check_same_shape(
  first: jax.Array, second: jax.Array, first_argument: str, second_argument: str
) -> None:
  if first.shape != second.shape:
    raise ValueError(
      f"{second_argument} must have the same shape as {first_argument} "
      f"{first.shape}, got {second.shape}."
    )


def check_choice(value: Any, argument: str, allowed: Sequence[str]) -> str:
  if not isinstance(value, str) or value not in allowed:
    raise ValueError(
      f"{argument} must be one of {', '.join(map(repr, allowed))}, got {value!r}."
    )
  return value


def check_bool(value: Any, argument: str) -> bool:
  if not isinstance(value, (bool, np.bool_)):
    raise ValueError(f"{argument} must be True or False, got {value!r}.")
  return bool(value)


def check_domain_logits(logits: Any, argument: str) -> jax.Array:
  """Domain logits of shape ``(batch,)`` or ``(batch, 1)``, returned as ``(batch,)``."""
  logits = _check_real(logits, argument)
  if not (
    (logits.ndim == 1 or (logits.ndim == 2 and logits.shape[1] == 1))
    and logits.shape[0] > 0
  ):
    raise ValueError(
      f"{argument} must have shape (batch,) or (batch, 1) with batch > 0 (one "
      f"domain logit per example), got shape {logits.shape}."
    )
  return as_float(logits).reshape(-1)


def check_example_weights(
  weights: Any, argument: str, *, length: int, length_of: str
) -> jax.Array:
  """Per-example weights of shape ``(length,)``; non-negative when concrete."""
  weights = _check_real(weights, argument)
  if weights.shape != (length,):
    raise ValueError(
      f"{argument} must have shape ({length},) (one weight per example of "
      f"{length_of}), got shape {weights.shape}."
    )
  if not is_traced(weights):
    values = np.asarray(weights, np.float64)
    if not np.all(np.isfinite(values)) or np.any(values < 0):
      raise ValueError(f"{argument} must be finite and non-negative.")
  return as_float(weights)


def check_probabilities(
  probabilities: Any, argument: str, *, min_rows: int = 1
) -> jax.Array:
  """A ``(batch, classes)`` matrix of probability rows (checked when concrete)."""
  probabilities = check_matrix(
    probabilities, argument, columns="num_classes", min_rows=min_rows
  )
  check_probability_rows(probabilities, argument)
  return probabilities


def check_finite(array: jax.Array, argument: str) -> None:
  """Finite values, checked when concrete (for the closed-form methods)."""
  if not is_traced(array) and not bool(np.all(np.isfinite(np.asarray(array)))):
    raise ValueError(f"{argument} must be finite (it holds NaN or infinity).")


def covariance(features: jax.Array) -> jax.Array:
  """The unbiased ``(dim, dim)`` covariance of the rows of ``features`` (>= 2 rows)."""
  centred = features - jnp.mean(features, axis=0)
  return centred.T @ centred / (features.shape[0] - 1)


def median(values: jax.Array) -> jax.Array:
  """The median of a 1-D array (sorting once compiles faster than ``jnp.median``)."""
  ordered = jnp.sort(values)
  size = values.shape[0]
  return 0.5 * (ordered[(size - 1) // 2] + ordered[size // 2])


def squared_distances(first: jax.Array, second: jax.Array) -> jax.Array:
  """``‖a_i − b_j‖²`` for every row pair, clipped at 0 against rounding."""
  first_norms = jnp.sum(jnp.square(first), axis=1)
  second_norms = jnp.sum(jnp.square(second), axis=1)
  distances = first_norms[:, None] + second_norms[None, :] - 2.0 * first @ second.T
  return jnp.maximum(distances, 0.0)
