r"""The classifier discrepancy of Maximum Classifier Discrepancy (MCD)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from tljax.align._arrays import (
    check_finite_result,
    check_matrix,
    check_same_shape,
)
from tljax.checks import check_probability_rows

__all__ = ["classifier_discrepancy"]


def classifier_discrepancy(
    probabilities_1: jax.Array, probabilities_2: jax.Array
) -> jax.Array:
  r"""Mean absolute difference between the predictions of two classifiers.

  Saito, Watanabe, Ushiku and Harada, "Maximum classifier discrepancy for
  unsupervised domain adaptation", CVPR 2018, averaged over a batch::

    d(p¹, p²) = 1/n Σ_i 1/K Σ_k |p¹_ik − p²_ik|

  for the ``K``-class probability outputs of two classifiers ``F1``, ``F2``
  on the same (target) examples. MCD trains a generator ``G`` and the two
  classifiers in three steps per mini-batch (the recipe is built elsewhere,
  from this function and the cross-entropy):

  A. ``G``, ``F1``, ``F2`` minimise the cross-entropy of both classifiers on
     labelled source examples.
  B. ``G`` fixed, ``F1`` and ``F2`` minimise their source cross-entropy
     *minus* the discrepancy on target examples: they disagree as much as
     possible on targets while staying correct on the source.
  C. ``F1`` and ``F2`` fixed, ``G`` minimises the discrepancy on target
     examples, repeated ``n`` times (4 in the authors' code): it moves
     target features to where both classifiers agree.

  Args:
    probabilities_1: ``(n, K)`` softmax outputs of the first classifier
      (rows sum to 1, checked when concrete).
    probabilities_2: ``(n, K)`` softmax outputs of the second classifier.

  Returns:
    The scalar discrepancy, in ``[0, 2/K]``.

  Raises:
    ValueError: if the inputs are not probability matrices (finite,
      non-negative, rows summing to 1; checked when concrete) of one shape.
  """
  probabilities_1 = check_matrix(
      probabilities_1, "probabilities_1", columns="num_classes"
  )
  probabilities_2 = check_matrix(
      probabilities_2, "probabilities_2", columns="num_classes"
  )
  check_same_shape(
      probabilities_1, probabilities_2, "probabilities_1", "probabilities_2"
  )
  check_probability_rows(probabilities_1, "probabilities_1")
  check_probability_rows(probabilities_2, "probabilities_2")
  return check_finite_result(
      _classifier_discrepancy(probabilities_1, probabilities_2),
      "classifier_discrepancy is not finite for these probabilities_1 and "
      "probabilities_2.",
  )


@jax.jit
def _classifier_discrepancy(probabilities_1, probabilities_2):
  return jnp.mean(jnp.abs(probabilities_1 - probabilities_2))
