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

from tljax.checks import check_int, check_probability_rows, is_traced


def as_float(array: Any) -> jax.Array:
  """The array in float32, or wider if it already is (float64 under x64)."""
  array = jnp.asarray(array)
  return array.astype(jnp.promote_types(array.dtype, jnp.float32))


def check_real_dtype(array: jax.Array, argument: str) -> None:
  """Floats or integers (not booleans or complex numbers)."""
  dtype = array.dtype
  if not (jnp.issubdtype(dtype, jnp.floating)
          or (jnp.issubdtype(dtype, jnp.integer) and dtype != jnp.bool_)):
    raise ValueError(f"{argument} must hold real numbers, got dtype {dtype}.")


def check_features(features: Any, argument: str, *, min_rows: int = 2) -> jax.Array:
  """A real ``(num_examples, feature_dim)`` matrix, finite when concrete."""
  traced = is_traced(features)
  features = jnp.asarray(features)
  if features.ndim != 2 or features.shape[0] < min_rows or features.shape[1] < 1:
    raise ValueError(
      f"{argument} must have shape (num_examples, feature_dim) with at least "
      f"{min_rows} rows and 1 column, got shape {features.shape}."
    )
  check_real_dtype(features, argument)
  if not traced and not np.all(np.isfinite(np.asarray(features))):
    raise ValueError(f"{argument} must be finite (no NaN or infinity).")
  return as_float(features)


def check_labels(
  labels: Any,
  argument: str,
  *,
  length: int,
  length_of: str,
  num_classes: int | None,
  num_classes_argument: str,
  min_present: int,
) -> tuple[jax.Array, int]:
  """Integer labels of shape ``(length,)`` and the number of classes.

  ``num_classes=None`` takes ``max(labels) + 1``, which needs concrete labels;
  under ``jax.jit`` pass the number of classes. When concrete, the labels
  must lie in ``[0, num_classes)`` and at least ``min_present`` distinct
  classes must occur.
  """
  values = None if is_traced(labels) else np.asarray(labels)
  labels = jnp.asarray(labels)
  if labels.shape != (length,):
    raise ValueError(
      f"{argument} must have shape ({length},) (one label per row of "
      f"{length_of}), got shape {labels.shape}."
    )
  if not jnp.issubdtype(labels.dtype, jnp.integer) or labels.dtype == jnp.bool_:
    raise ValueError(f"{argument} must hold integers, got dtype {labels.dtype}.")
  if num_classes is None:
    if values is None:
      raise ValueError(
        f"{num_classes_argument} must be given when {argument} is traced "
        "(inside jax.jit), since the number of classes sets array shapes."
      )
    negative = values[values < 0]
    if negative.size:
      raise ValueError(f"{argument} must be >= 0, got {sorted(set(negative.tolist()))}.")
    num_classes = int(values.max()) + 1
  else:
    num_classes = check_int(num_classes, num_classes_argument, minimum=min_present)
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


def check_probabilities(probabilities: Any, argument: str) -> jax.Array:
  """A ``(num_examples, num_classes)`` matrix whose rows are distributions."""
  traced = is_traced(probabilities)
  probabilities = jnp.asarray(probabilities)
  if probabilities.ndim != 2 or 0 in probabilities.shape:
    raise ValueError(
      f"{argument} must have shape (num_examples, num_source_classes) with both "
      f"sizes positive, got shape {probabilities.shape}."
    )
  if not jnp.issubdtype(probabilities.dtype, jnp.floating):
    raise ValueError(f"{argument} must hold floats, got dtype {probabilities.dtype}.")
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


def class_statistics(
  features: jax.Array, labels: jax.Array, num_classes: int
) -> tuple[jax.Array, jax.Array]:
  """Per-class counts ``(C,)`` and means ``(C, D)``; an empty class's mean is 0."""
  one_hot = jax.nn.one_hot(labels, num_classes, dtype=features.dtype)
  counts = jnp.sum(one_hot, axis=0)
  means = dot(one_hot.T, features) / jnp.maximum(counts, 1)[:, None]
  return counts, means
