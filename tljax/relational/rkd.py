r"""Relational knowledge distillation (RKD): match the teacher's distances and angles.

Park, Kim, Lu and Cho, "Relational knowledge distillation", CVPR 2019. For
a batch of ``b`` examples with teacher features ``t_i`` and student
features ``s_i`` (of possibly different dimensions), a relational potential
``ψ`` maps a tuple of examples to a scalar and the loss is the Huber loss
``l_δ`` (``δ = 1``, smooth-L1) between the teacher's and the student's
potentials over all tuples:

* distance-wise (eq. 3–4), over all ordered pairs ``(i, j)``::

    ψ_D(x_i, x_j) = ‖x_i − x_j‖₂ / μ,   μ = 1/(b(b−1)) Σ_{i≠j} ‖x_i − x_j‖₂,
    ℓ_RKD-D = 1/b² Σ_{i,j} l_δ(ψ_D(t_i, t_j) − ψ_D(s_i, s_j));

* angle-wise (eq. 5–6), over all ordered triplets ``(i, j, k)``, the cosine
  of the angle at ``x_j``::

    e_ij = (x_i − x_j) / ‖x_i − x_j‖₂,   ψ_A(x_i, x_j, x_k) = ⟨e_ij, e_kj⟩,
    ℓ_RKD-A = 1/b³ Σ_{i,j,k} l_δ(ψ_A(t_i, t_j, t_k) − ψ_A(s_i, s_j, s_k)).

As in the paper's sums over ``X²`` and ``X³`` and the authors' released
code (``lenscloth/RKD``, ``metric/loss.py``), the means run over all ``b²``
pairs and ``b³`` triplets, degenerate ones included: a pair ``i = j`` has
distance 0 on both sides, a unit vector ``e_jj`` is taken as 0 (cosine 0 on
both sides) and ``i = k`` gives cosine 1 on both sides, so these add 0 to
the sums but count in the denominators (the distance loss is the mean over
the ``b(b−1)`` off-diagonal pairs times ``(b−1)/b``). Two distinct examples
at the same point are handled the same way, with zero (never NaN)
gradients: the norms and unit vectors are masked where the difference is
exactly 0.

``ψ_D`` is invariant to scaling, rotating and translating the features, and
``ψ_A`` too; neither needs the student's and the teacher's dimensions to
agree. Numerics: each side's differences ``x_i − x_j`` are divided by their
largest absolute value (a constant for the gradient), which by that
invariance changes neither the loss nor its gradient but keeps the squared
distances from overflowing float32 for features of order 1e20 and more (or
underflowing to 0 for order 1e-20 and less, which would make distinct
examples coincide). Cost: ``O(b² d)`` memory for the pairwise differences and ``O(b³)``
for the angles.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from tljax.checks import check_non_negative
from tljax.relational._checks import (
    check_features,
    check_same_batch,
    huber,
    safe_norm,
    safe_normalize,
    scaled_differences,
)

__all__ = ["rkd", "rkd_angle", "rkd_distance"]


def rkd_distance(student: jax.Array, teacher: jax.Array) -> jax.Array:
  r"""The distance-wise RKD loss (RKD-D).

  Park, Kim, Lu and Cho, "Relational knowledge distillation", CVPR 2019,
  eq. 3–4: the Huber loss between the teacher's and the student's pairwise
  Euclidean distances, each side divided by its own mean distance over the
  off-diagonal pairs, averaged over all ``b²`` pairs (see the module
  docstring). Zero when the student's features are a scaled, rotated and
  translated copy of the teacher's. The teacher's gradient is stopped.

  Args:
    student: ``(batch, student_dim)`` student features, ``batch >= 2``.
    teacher: ``(batch, teacher_dim)`` teacher features of the same examples.

  Returns:
    The scalar loss (float32 or wider), ``>= 0``.

  Raises:
    ValueError: on non-matrix or, when concrete, non-finite features, fewer
      than 2 examples, or different batch sizes.
  """
  student, teacher = _check_pair(
      student, teacher, min_examples=2, why="a distance needs two examples"
  )
  return _rkd_distance(student, teacher)


def rkd_angle(student: jax.Array, teacher: jax.Array) -> jax.Array:
  r"""The angle-wise RKD loss (RKD-A).

  Park, Kim, Lu and Cho, "Relational knowledge distillation", CVPR 2019,
  eq. 5–6: the Huber loss between the teacher's and the student's cosines
  ``⟨e_ij, e_kj⟩`` of the angle at ``x_j`` in every triplet, with
  ``e_ij = (x_i − x_j) / ‖x_i − x_j‖``, averaged over all ``b³`` triplets
  (see the module docstring). Zero when the student's features are a scaled,
  rotated and translated copy of the teacher's. The teacher's gradient is
  stopped.

  Args:
    student: ``(batch, student_dim)`` student features, ``batch >= 3``.
    teacher: ``(batch, teacher_dim)`` teacher features of the same examples.

  Returns:
    The scalar loss (float32 or wider), ``>= 0``.

  Raises:
    ValueError: on non-matrix or, when concrete, non-finite features, fewer
      than 3 examples, or different batch sizes.
  """
  student, teacher = _check_pair(
      student, teacher, min_examples=3, why="an angle needs three examples"
  )
  return _rkd_angle(student, teacher)


def rkd(
    student: jax.Array,
    teacher: jax.Array,
    *,
    distance_weight: float = 25.0,
    angle_weight: float = 50.0,
) -> jax.Array:
  r"""The combined RKD loss (RKD-DA): ``λ_D ℓ_RKD-D + λ_A ℓ_RKD-A``.

  Park, Kim, Lu and Cho, "Relational knowledge distillation", CVPR 2019,
  eq. 2 with both potentials (:func:`rkd_distance`, :func:`rkd_angle`). The
  default weights ``λ_D = 25``, ``λ_A = 50`` are those of the paper's image
  classification experiments, as set in the authors' released
  ``run_distill_classification.py`` (``--dist_ratio 25 --angle_ratio 50``):
  there the loss is taken on the L2-normalised penultimate features and
  added to the cross-entropy and to the unscaled KD term weighted by
  ``16 = 4²`` at ``T = 4``, i.e. :func:`knowledge_distillation` weighted 1.
  The released metric-learning runs use ``λ_D = 1``, ``λ_A = 2``
  (``examples/*.sh``). The teacher's gradient is stopped.

  Args:
    student: ``(batch, student_dim)`` student features, ``batch >= 3``.
    teacher: ``(batch, teacher_dim)`` teacher features of the same examples.
    distance_weight: ``λ_D`` >= 0; a traced value passes unchecked.
    angle_weight: ``λ_A`` >= 0; a traced value passes unchecked.

  Returns:
    The scalar loss (float32 or wider), ``>= 0``.

  Raises:
    ValueError: on non-matrix or, when concrete, non-finite features, fewer
      than 3 examples, different batch sizes, or a negative weight.
  """
  check_non_negative(distance_weight, "distance_weight")
  check_non_negative(angle_weight, "angle_weight")
  student, teacher = _check_pair(
      student, teacher, min_examples=3, why="an angle needs three examples"
  )
  return _rkd(student, teacher, distance_weight, angle_weight)


def _check_pair(student, teacher, *, min_examples, why):
  student = check_features(
      student, "student", min_examples=min_examples, why=why
  )
  teacher = check_features(
      teacher, "teacher", min_examples=min_examples, why=why
  )
  check_same_batch(student, teacher, "student", "teacher")
  return student, teacher


def _normalized_distances(features):
  """``‖x_i − x_j‖`` over the mean off-diagonal distance (``(b, b)``)."""
  batch = features.shape[0]
  distances = safe_norm(scaled_differences(features))
  mean = jnp.sum(distances) / (batch * (batch - 1))
  # All examples at one point: every distance is 0 and stays 0.
  return distances / jnp.where(mean > 0, mean, 1.0)


def _cosines(features):
  """``⟨e_ij, e_kj⟩`` at index ``[j, i, k]`` (``(b, b, b)``)."""
  # unit[j, i] = e_ij, the unit vector from x_j towards x_i.
  unit = safe_normalize(scaled_differences(features))
  return jnp.einsum("jid,jkd->jik", unit, unit)


@jax.jit
def _rkd_distance(student, teacher):
  teacher = jax.lax.stop_gradient(teacher)
  residuals = _normalized_distances(teacher) - _normalized_distances(student)
  return jnp.mean(huber(residuals))


@jax.jit
def _rkd_angle(student, teacher):
  teacher = jax.lax.stop_gradient(teacher)
  return jnp.mean(huber(_cosines(teacher) - _cosines(student)))


@jax.jit
def _rkd(student, teacher, distance_weight, angle_weight):
  return distance_weight * _rkd_distance(
      student, teacher
  ) + angle_weight * _rkd_angle(student, teacher)
