"""Array checks and helpers shared by the transferability scores.

Shapes and dtypes are checked always (also under ``jax.jit``); values
(finiteness, label ranges, how many classes occur, probability rows) only
when the arrays are concrete, i.e. outside ``jax.jit``. Each failure raises a
``ValueError`` that names the argument.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

# Shared with the other packages (re-exported here for the scores).
from tljax.checks import (
    check_finite_result,
    check_int,  # noqa: F401
    check_labels,
    check_probability_rows,
    is_traced,
    to_array,
)


def as_jax_array(array: Any) -> jax.Array:
  """``jnp.asarray(array)``, without NumPy's overflow warning on a narrowing cast.

  (Values past the float32 range become infinite; :func:`check_finite`
  reports them, naming the argument.)
  """
  with np.errstate(over="ignore"):
    return jnp.asarray(array)


def check_finite(array: Any, original: Any, argument: str) -> None:
  """Concrete ``original`` holds no NaN or infinity, also once cast to ``array``'s dtype.

  ``array`` is ``original`` converted for the computation (e.g. float64 to
  float32 when x64 is off); the check runs on ``original`` in NumPy, so it
  works while tracing other arguments.
  """
  if is_traced(original):
    return
  values = np.asarray(original)
  if not np.all(np.isfinite(values)):
    raise ValueError(f"{argument} must be finite (no NaN or infinity).")
  dtype = np.dtype(array.dtype)
  if values.dtype == dtype or not np.issubdtype(values.dtype, np.floating):
    return  # no narrowing cast that could overflow (integers fit any float)
  with np.errstate(over="ignore"):
    if not np.all(np.isfinite(values.astype(dtype))):
      raise ValueError(
          f"{argument} must be finite, but overflows {dtype} (largest magnitude "
          f"{np.max(np.abs(values)):.6g}); rescale it."
      )


def as_parameter(value: Any, dtype: Any, argument: str) -> jax.Array:
  """A checked hyper-parameter (finite, >= 0) as a scalar of the computation's dtype.

  Raises:
    ValueError: naming ``argument`` if a concrete positive ``value`` rounds
      to 0 or to infinity in ``dtype`` (e.g. 1e-60 or 1e60 in float32).
  """
  if is_traced(value):
    return jnp.asarray(value, dtype)
  number = float(np.asarray(value))
  with np.errstate(over="ignore", under="ignore"):
    converted = np.asarray(number, np.dtype(dtype))
  if not np.isfinite(converted) or (number > 0 and converted == 0):
    info = np.finfo(np.dtype(dtype))
    raise ValueError(
        f"{argument} must be representable in {np.dtype(dtype).name} (between "
        f"{float(info.tiny):.3g} and {float(info.max):.3g}), got {number}."
    )
  return jnp.asarray(converted)


def max_abs_scale(array: jax.Array) -> jax.Array:
  """``max |array|``, or 1 where that is 0 or subnormal: a safe divisor.

  Dividing by it brings the entries into ``[-1, 1]``, so that squares and
  Gram matrices neither overflow (features of magnitude 1e30 in float32) nor
  underflow (1e-30).
  """
  largest = jnp.max(jnp.abs(array))
  return jnp.where(largest >= jnp.finfo(array.dtype).tiny, largest, 1.0).astype(
      array.dtype
  )


def as_float(array: Any) -> jax.Array:
  """The array in float32, or wider if it already is (float64 under x64)."""
  array = jnp.asarray(array)
  return array.astype(jnp.promote_types(array.dtype, jnp.float32))


def check_real_dtype(array: jax.Array, argument: str) -> None:
  """Floats or integers (not booleans or complex numbers)."""
  dtype = array.dtype
  if not (
      jnp.issubdtype(dtype, jnp.floating)
      or (jnp.issubdtype(dtype, jnp.integer) and dtype != jnp.bool_)
  ):
    raise ValueError(f"{argument} must hold real numbers, got dtype {dtype}.")


def check_features(
    features: Any, argument: str, *, min_rows: int = 2
) -> jax.Array:
  """A real ``(num_examples, feature_dim)`` matrix, finite when concrete."""
  traced = is_traced(features)
  original = to_array(features, argument)
  features = as_jax_array(original)
  if (
      features.ndim != 2
      or features.shape[0] < min_rows
      or features.shape[1] < 1
  ):
    raise ValueError(
        f"{argument} must have shape (num_examples, feature_dim) with at least "
        f"{min_rows} rows and 1 column, got shape {features.shape}."
    )
  check_real_dtype(features, argument)
  features = as_float(features)
  if not traced:
    check_finite(features, original, argument)
  return features


def nan_if_out_of_range(score: Any, labels: Any, num_classes: int) -> Any:
  """``score``, or NaN where traced ``labels`` leave ``[0, num_classes)``.

  :func:`check_labels` raises on concrete labels out of range; under
  ``jax.jit`` their values are unknown while tracing, so such a label makes
  the score NaN instead of a silently wrong number (a one-hot of an
  out-of-range label is a zero row: the example would count for no class).
  """
  if not is_traced(labels):
    return score
  outside = jnp.any((labels < 0) | (labels >= num_classes))
  return jnp.where(outside, jnp.nan, score)


def check_probabilities(probabilities: Any, argument: str) -> jax.Array:
  """A ``(num_examples, num_classes)`` matrix whose rows are distributions."""
  traced = is_traced(probabilities)
  probabilities = jnp.asarray(to_array(probabilities, argument))
  if probabilities.ndim != 2 or 0 in probabilities.shape:
    raise ValueError(
        f"{argument} must have shape (num_examples, num_source_classes) with both "
        f"sizes positive, got shape {probabilities.shape}."
    )
  if not jnp.issubdtype(probabilities.dtype, jnp.floating):
    raise ValueError(
        f"{argument} must hold floats, got dtype {probabilities.dtype}."
    )
  if not traced:
    check_probability_rows(probabilities, argument)
  return as_float(probabilities)


def dot(left: jax.Array, right: jax.Array) -> jax.Array:
  """``left @ right`` in full float32 precision.

  GPUs may otherwise run float32 matrix products in TF32 (a 10-bit mantissa),
  too coarse for the Gram matrices whose eigenvalues and log-determinants the
  scores use.
  """
  return jnp.matmul(left, right, precision=jax.lax.Precision.HIGHEST)


def gram(matrix: jax.Array) -> jax.Array:
  """``matrixᵀ matrix`` in full float32 precision, exactly symmetric.

  A matrix product does not know that its two operands are the same, so it
  computes both triangles of the result. Here the columns are split in two
  halves ``[A B]`` and only ``AᵀA``, ``AᵀB`` and ``BᵀB`` are multiplied
  (3/4 of the multiply-adds, as BLAS's ``syrk`` saves by computing one
  triangle); ``BᵀA`` is the transpose of ``AᵀB``. Each entry is the same
  dot product as in ``dot(matrix.T, matrix)``, up to the order of the sums.
  """
  columns = matrix.shape[1]
  if columns < 64:
    return dot(matrix.T, matrix)
  half = columns // 2
  left, right = matrix[:, :half], matrix[:, half:]
  cross = dot(left.T, right)
  return jnp.block([[dot(left.T, left), cross], [cross.T, dot(right.T, right)]])


def class_statistics(
    features: jax.Array, labels: jax.Array, num_classes: int
) -> tuple[jax.Array, jax.Array]:
  """Per-class counts ``(C,)`` and means ``(C, D)``; an empty class's mean is 0."""
  one_hot = jax.nn.one_hot(labels, num_classes, dtype=features.dtype)
  counts = jnp.sum(one_hot, axis=0)
  means = dot(one_hot.T, features) / jnp.maximum(counts, 1)[:, None]
  return counts, means
