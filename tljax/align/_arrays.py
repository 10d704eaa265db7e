"""Array checks shared by the losses of :mod:`tljax.align`.

Each check raises a ``ValueError`` naming the argument. Shapes and dtypes
are checked when traced (they are static); values (finiteness, non-negative
weights, probability rows, the range of hyper-parameters) only when the array
or number is concrete, i.e. outside ``jax.jit``/``jax.grad``/``jax.vmap``, so
the checks add nothing to a compiled step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

# check_finite_result is shared with the other packages (re-exported here).
from tljax.checks import (
    check_finite_result,
    check_non_negative,  # noqa: F401
    check_positive,
    check_probability_rows,
    is_traced,
)


def as_float(array: Any) -> jax.Array:
  """The array in float32, or wider if it already is (float64 under x64)."""
  array = jnp.asarray(array)
  return array.astype(jnp.promote_types(array.dtype, jnp.float32))


def compute_dtype() -> np.dtype:
  """The dtype Python floats are computed in: float32, or float64 under x64."""
  return np.dtype(jnp.asarray(1.0).dtype)


def _check_real(array: Any, argument: str) -> jax.Array:
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
  return array


def check_matrix(
    array: Any,
    argument: str,
    *,
    rows: str = "batch",
    columns: str = "dim",
    min_rows: int = 1,
    why: str = "",
    finite: bool = False,
) -> jax.Array:
  """A ``(rows, columns)`` real matrix with both sizes positive, as float.

  With ``finite``, its values (after the conversion to float) must also be
  finite, checked when concrete.
  """
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
  array = as_float(array)
  if finite:
    check_finite(array, argument)
  return array


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
    first: jax.Array,
    second: jax.Array,
    first_argument: str,
    second_argument: str,
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
  logits = as_float(logits).reshape(-1)
  check_finite(logits, argument)
  return logits


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
  weights = as_float(weights)
  if not is_traced(weights):
    values = np.asarray(weights, np.float64)
    if not np.all(np.isfinite(values)) or np.any(values < 0):
      raise ValueError(f"{argument} must be finite and non-negative.")
  return weights


def check_probabilities(
    probabilities: Any, argument: str, *, min_rows: int = 1
) -> jax.Array:
  """A ``(batch, classes)`` matrix of probability rows (checked when concrete)."""
  probabilities = check_matrix(
      probabilities,
      argument,
      columns="num_classes",
      min_rows=min_rows,
      finite=True,
  )
  check_probability_rows(probabilities, argument)
  return probabilities


def check_finite(array: jax.Array, argument: str) -> None:
  """Finite values, checked when concrete (a traced array passes)."""
  if not is_traced(array) and not bool(np.all(np.isfinite(np.asarray(array)))):
    raise ValueError(
        f"{argument} must be finite (it holds NaN or infinity, or values too "
        f"large for {np.asarray(array).dtype})."
    )


def check_hyperparameter(
    value: Any, argument: str, *, positive: bool = False
) -> Any:
  """A finite number ``>= 0`` (``> 0`` with ``positive``), representable in float.

  A concrete value must be a real scalar that stays finite (and, if
  ``positive``, non-zero) once converted to :func:`compute_dtype`; a traced
  one (a ``jax.vmap`` sweep, a value computed inside ``jax.jit``) must be a
  real scalar, and its value is not checked.
  """
  if is_traced(value):
    if jnp.ndim(value) != 0 or not (
        jnp.issubdtype(value.dtype, jnp.floating)
        or jnp.issubdtype(value.dtype, jnp.integer)
    ):
      raise ValueError(
          f"{argument} must be a real scalar, got a traced value of shape "
          f"{jnp.shape(value)} and dtype {value.dtype}."
      )
    return value
  (check_positive if positive else check_non_negative)(value, argument)
  number = float(value)
  info = np.finfo(compute_dtype())
  if number > float(info.max):
    raise ValueError(
        f"{argument} must be at most {float(info.max):.4g} (it overflows "
        f"{info.dtype}), got {number}."
    )
  if positive and number < float(info.tiny):
    raise ValueError(
        f"{argument} must be at least {float(info.tiny):.4g} (the smallest "
        f"normal {info.dtype} number), got {number}."
    )
  return value


def power_of_two_scale(array: jax.Array, axis: Any = None) -> jax.Array:
  """A power of two ``s`` with ``max |array| / s`` in ``[1, 2)`` (constant).

  The maximum is over ``axis`` (all entries by default); ``s = 1`` where it
  is 0. Dividing by ``s`` is exact, so a computation on ``array / s`` rounds
  as one on ``array`` would, but cannot overflow or underflow (for squares
  of entries of order 1e30 in float32, say). Its gradient is stopped.
  """
  magnitude = jax.lax.stop_gradient(jnp.max(jnp.abs(array), axis=axis))
  _, exponent = jnp.frexp(magnitude)  # magnitude = m 2^e, m in [0.5, 1)
  scale = jnp.ldexp(jnp.ones_like(magnitude), exponent - 1)
  return jnp.where(
      (magnitude > 0) & jnp.isfinite(scale) & (scale > 0), scale, 1.0
  )


def covariance(features: jax.Array) -> jax.Array:
  """The unbiased ``(dim, dim)`` covariance of the rows of ``features`` (>= 2 rows).

  The rows are first shifted by the first one (covariance is
  shift-invariant), so a constant feature has a variance of exactly 0 rather
  than the rounding error of its mean, squared.
  """
  shifted = features - jax.lax.stop_gradient(features[0])
  centred = shifted - jnp.mean(shifted, axis=0)
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
  distances = (
      first_norms[:, None] + second_norms[None, :] - 2.0 * first @ second.T
  )
  return jnp.maximum(distances, 0.0)
