"""Argument checks and numerics shared by the losses of :mod:`tljax.relational`.

Each check raises a ``ValueError`` naming the argument. Shapes are checked
when traced (they are static); finiteness only when the array is concrete,
i.e. outside ``jax.jit``/``jax.grad``/``jax.vmap``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from tljax.align._arrays import check_finite, check_matrix
from tljax.checks import is_traced


def check_features(
    features: Any,
    argument: str,
    *,
    columns: str = "dim",
    min_examples: int = 1,
    why: str = "",
    flatten: bool = False,
) -> jax.Array:
  """Finite ``(batch, columns)`` features as float.

  With ``flatten``, any ``(batch, ...)`` array of at least 2 axes, reshaped
  to ``(batch, features)``.
  """
  if flatten:
    try:
      features = jnp.asarray(features)
    except (TypeError, ValueError) as error:
      raise ValueError(
          f"{argument} must be an array of numbers: {error}"
      ) from None
    if features.ndim < 2 or 0 in features.shape:
      raise ValueError(
          f"{argument} must have shape (batch, ...) with at least 2 axes and "
          f"no empty axis, got shape {features.shape}."
      )
    features = features.reshape(features.shape[0], -1)
  features = check_matrix(
      features, argument, columns=columns, min_rows=min_examples, why=why
  )
  check_finite(features, argument)
  return features


def check_same_batch(
    student: jax.Array,
    teacher: jax.Array,
    student_argument: str,
    teacher_argument: str,
) -> None:
  if student.shape[0] != teacher.shape[0]:
    raise ValueError(
        f"{teacher_argument} must have the same batch size as "
        f"{student_argument} ({student.shape[0]}, one row per example of the "
        f"same batch), got {teacher.shape[0]}."
    )


def safe_norm(vectors: jax.Array) -> jax.Array:
  """The Euclidean norm over the last axis, with a zero gradient at zero.

  ``jnp.linalg.norm`` has an infinite derivative at the zero vector (NaN
  after the chain rule); masking the square root keeps gradients finite when
  two examples coincide.
  """
  squared = jnp.sum(jnp.square(vectors), axis=-1)
  positive = squared > 0
  return jnp.where(positive, jnp.sqrt(jnp.where(positive, squared, 1.0)), 0.0)


def safe_normalize(vectors: jax.Array) -> jax.Array:
  """Unit vectors along the last axis; a zero vector stays zero (zero gradient)."""
  norms = safe_norm(vectors)[..., None]
  positive = norms > 0
  return jnp.where(positive, vectors / jnp.where(positive, norms, 1.0), 0.0)


def rescale(features: jax.Array) -> jax.Array:
  """``features`` divided by their largest absolute value (a constant).

  For the scale-invariant potentials only (RKD's distances and angles, SP's
  row-normalised Gram matrix): the loss does not change, but squares and
  products no longer overflow float32 for features of order 1e20 and more
  (nor underflow to 0 for order 1e-20 and less). As the loss is invariant
  to the scale, stopping the scale's gradient leaves the gradient exact.
  All-zero features are returned as they are.
  """
  largest = jax.lax.stop_gradient(jnp.max(jnp.abs(features)))
  return features / jnp.where(largest > 0, largest, 1.0)


def scaled_differences(features: jax.Array) -> jax.Array:
  """``x_i − x_j`` at ``[j, i]`` (``(b, b, dim)``), divided by their largest |value|.

  For the scale-invariant potentials of RKD, which are unchanged by the
  division (a constant for the gradient, so the gradient is exact too); it
  keeps the squared distances finite for features of order 1e20 and more
  and non-zero for order 1e-20 and less. The features are halved first (an
  exact operation) so a difference cannot overflow, and the differences are
  taken before dividing, so that a pair of equal rows (the diagonal, or two
  coinciding examples) gives exactly 0 however the compiler arranges the
  computation.
  """
  half = 0.5 * features
  differences = half[None, :, :] - half[:, None, :]
  largest = jax.lax.stop_gradient(jnp.max(jnp.abs(differences)))
  return differences / jnp.where(largest > 0, largest, 1.0)


def check_finite_result(value: jax.Array, message: str) -> jax.Array:
  """``value``, or a ``ValueError`` with ``message`` if concrete and not finite.

  For losses whose true value can exceed the float range for finite inputs
  (e.g. logits of order 1e38): the overflow is reported instead of returning
  infinity or NaN. A traced value (under ``jax.jit``/``jax.grad``) passes.
  """
  if not is_traced(value) and not bool(jnp.all(jnp.isfinite(value))):
    raise ValueError(message)
  return value


def huber(residuals: jax.Array) -> jax.Array:
  """The Huber (smooth-L1) loss with ``δ = 1``, elementwise."""
  absolute = jnp.abs(residuals)
  return jnp.where(absolute < 1.0, 0.5 * jnp.square(residuals), absolute - 0.5)
