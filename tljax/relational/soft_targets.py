r"""Knowledge distillation with soft targets: match the teacher's tempered softmax.

The individual-example baseline that relational distillation builds on: the
knowledge is the teacher's output for each example on its own, not the
relations between examples.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from tljax.align._arrays import check_same_columns
from tljax.checks import check_positive
from tljax.relational._checks import (
    check_features,
    check_finite_result,
    check_same_batch,
)

__all__ = ["knowledge_distillation"]


def knowledge_distillation(
    student_logits: jax.Array,
    teacher_logits: jax.Array,
    *,
    temperature: float = 4.0,
) -> jax.Array:
  r"""The soft-target distillation loss, scaled by ``T²``.

  Hinton, Vinyals and Dean, "Distilling the knowledge in a neural network",
  NIPS 2014 Deep Learning Workshop (arXiv:1503.02531, 2015), Section 2::

    p_T = softmax(z_T / T),   p_S = softmax(z_S / T),
    ℓ_KD = T² · 1/b Σ_n KL(p_T,n ‖ p_S,n)
         = T² · 1/b Σ_n Σ_c p_T,nc (log p_T,nc − log p_S,nc)

  for a batch of ``b`` examples. The loss is multiplied by ``T²`` because
  the gradients of the soft-target term scale as ``1/T²`` (for large ``T``
  and zero-mean logits over ``C`` classes, an example's
  ``∂KL/∂z_S ≈ (z_S − z_T) / (C T²)``, the paper's Section 2.1); the factor
  keeps the relative contributions of the hard- and soft-target losses
  roughly unchanged when the temperature is changed. Up to the teacher's entropy,
  which does not depend on the student, this is the paper's cross-entropy
  with the soft targets. RKD's released CIFAR code weights the unscaled
  KL by 16 at ``T = 4``, i.e. this loss with weight 1.

  The teacher's gradient is stopped: the loss trains the student only.

  Args:
    student_logits: ``(batch, num_classes)`` student logits.
    teacher_logits: ``(batch, num_classes)`` teacher logits on the same
      examples.
    temperature: the softmax temperature ``T`` > 0 (4 by default, the value
      RKD's released code uses on CIFAR); a traced value passes unchecked.

  Numerics: the logits are shifted by their row maximum before the division
  by ``T`` (the softmax does not change), so a small ``T`` does not overflow
  ``z / T``, and a class whose teacher probability underflows to 0 adds 0
  to the divergence. When the true loss is beyond the float range (logits
  of order 1e38, ``T²`` overflowing, or a student probability of exactly 0
  where the teacher's is positive) a concrete call raises instead of
  returning infinity or NaN; a traced one returns it.

  Returns:
    The scalar loss (float32 or wider), ``>= 0``.

  Raises:
    ValueError: on non-matrix or, when concrete, non-finite logits; different
      batch sizes or numbers of classes; a temperature that is not > 0; a
      concrete loss that overflows (the message names the logits and the
      temperature).
  """
  check_positive(temperature, "temperature")
  student = check_features(
      student_logits, "student_logits", columns="num_classes"
  )
  teacher = check_features(
      teacher_logits, "teacher_logits", columns="num_classes"
  )
  check_same_batch(student, teacher, "student_logits", "teacher_logits")
  check_same_columns(
      student,
      teacher,
      "student_logits",
      "teacher_logits",
      what="number of classes",
  )
  return check_finite_result(
      _knowledge_distillation(student, teacher, temperature),
      "knowledge_distillation overflows: the loss of these student_logits and "
      "teacher_logits at this temperature is not finite in "
      f"{jnp.result_type(student.dtype, teacher.dtype)} (logits of order "
      "1e38, a temperature whose square overflows, or a student probability "
      "that underflows to 0 where the teacher's is not); rescale the logits "
      "or choose a temperature nearer 1.",
  )


@jax.jit
def _knowledge_distillation(student, teacher, temperature):
  teacher = jax.lax.stop_gradient(teacher)
  student_log_probabilities = _tempered_log_softmax(student, temperature)
  teacher_log_probabilities = _tempered_log_softmax(teacher, temperature)
  teacher_probabilities = jnp.exp(teacher_log_probabilities)
  # A class whose teacher probability underflows to 0 adds 0 (the limit of
  # p log p), never 0 · ∞ = NaN when a log-probability is -∞.
  divergence = jnp.sum(
      jnp.where(
          teacher_probabilities > 0,
          teacher_probabilities
          * (teacher_log_probabilities - student_log_probabilities),
          0.0,
      ),
      axis=1,
  )
  return temperature**2 * jnp.mean(divergence)


def _tempered_log_softmax(logits, temperature):
  """``log_softmax(logits / T)``, shifting before dividing so a small ``T``
  cannot overflow ``logits / T`` (the shift does not change the result)."""
  top = jax.lax.stop_gradient(jnp.max(logits, axis=1, keepdims=True))
  return jax.nn.log_softmax((logits - top) / temperature, axis=1)
