r"""Similarity-preserving distillation: match the teacher's batch similarity matrix."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from tljax.relational._checks import (
    check_features,
    check_same_batch,
    rescale,
    safe_normalize,
)

__all__ = ["similarity_preserving"]


def similarity_preserving(student: jax.Array, teacher: jax.Array) -> jax.Array:
  r"""The similarity-preserving (SP) distillation loss.

  Tung and Mori, "Similarity-preserving knowledge distillation", ICCV 2019,
  eq. 1–4. With ``A`` the batch's activations reshaped to ``(b, ·)``::

    G = A Aᵀ,   G̃_[i,:] = G_[i,:] / ‖G_[i,:]‖₂,
    ℓ_SP = ‖G̃_T − G̃_S‖²_F / b².

  Each ``(b, b)`` matrix holds the (row-normalised) similarities between the
  examples of the batch, so the student's and the teacher's feature maps
  may have any, different shapes beyond the batch axis. A row of zeros (an
  all-zero activation) stays zero, with zero gradient. The loss is
  invariant to scaling either side's features, which the computation uses:
  each side is divided by its largest absolute value (a constant for the
  gradient) before ``A Aᵀ``, so activations of order 1e20 do not overflow
  float32 (nor order 1e-20 underflow to 0); loss and gradient are those of
  the formula. The paper sums it over
  pairs of layers and adds it to the cross-entropy with a weight ``γ``
  (3000 on CIFAR-10); the teacher's gradient is stopped here.

  Args:
    student: ``(batch, ...)`` student activations (features or feature maps,
      at least 2 axes).
    teacher: ``(batch, ...)`` teacher activations of the same examples.

  Returns:
    The scalar loss (float32 or wider), ``>= 0``.

  Raises:
    ValueError: on arrays with fewer than 2 axes or an empty axis, on
      non-finite values (when concrete), or on different batch sizes.
  """
  student = check_features(student, "student", flatten=True)
  teacher = check_features(teacher, "teacher", flatten=True)
  check_same_batch(student, teacher, "student", "teacher")
  return _similarity_preserving(student, teacher)


def _normalized_gram(features):
  # Dividing by the largest |value| leaves the row-normalised Gram matrix as
  # it is but keeps A Aᵀ finite (and non-zero) for huge (tiny) activations.
  features = rescale(features)
  return safe_normalize(features @ features.T)


@jax.jit
def _similarity_preserving(student, teacher):
  teacher = jax.lax.stop_gradient(teacher)
  batch = student.shape[0]
  difference = _normalized_gram(teacher) - _normalized_gram(student)
  return jnp.sum(jnp.square(difference)) / batch**2
