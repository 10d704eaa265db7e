r"""Minimum class confusion (MCC)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from tljax.align._arrays import (
    check_finite_result,
    check_hyperparameter,
    check_matrix,
)
from tljax.align.entropy import entropy_weights

__all__ = ["minimum_class_confusion"]


def minimum_class_confusion(
    target_logits: jax.Array, *, temperature: float = 2.5
) -> jax.Array:
  r"""The MCC loss: the normalised between-class confusion of target predictions.

  Jin, Wang, Long and Wang, "Minimum class confusion for versatile domain
  adaptation", ECCV 2020, as the Transfer-Learning-Library's
  ``MinimumClassConfusionLoss``. For ``n`` target examples and ``K``
  classes:

  1. temperature-scaled predictions ``Ŷ = softmax(Z / T)``;
  2. entropy-based example weights ``W = diag(w)``, ``w_i = 1 + exp(−H(Ŷ_i))``
     normalised to mean 1 (:func:`tljax.align.entropy_weights`; constant),
     so confident examples count more;
  3. the class confusion ``C = Ŷᵀ W Ŷ`` (``K × K``), and its category
     normalisation ``C̃_jj' = C_jj' / Σ_j'' C_jj''``;
  4. the loss, the mean between-class confusion::

       L_MCC = 1/K Σ_j Σ_{j'≠j} C̃_jj'.

  ``C`` is symmetric, so normalising by row or by column sums (the
  library divides column ``j'`` by the sum of row ``j'``) gives the same
  loss. ``T = 2.5`` as in the paper's experiments. MCC is added to the source
  classification loss alone or on top of another method's.

  Numerics: the logits are shifted by their row maximum before the division
  by ``T``, so a small ``T`` or large logits cannot overflow the softmax; and
  a class that no example predicts (its probabilities all rounded to 0,
  hence a zero row of ``C``) contributes no confusion, where the library's
  ``0 / 0`` gives NaN.

  Args:
    target_logits: ``(n, K)`` classifier logits on target examples.
    temperature: ``T > 0``.

  Returns:
    The scalar loss, in ``[0, (K − 1)/K]``.

  Raises:
    ValueError: if ``target_logits`` is not a non-empty finite matrix or
      ``temperature`` is not a positive (float-representable) number.
  """
  check_hyperparameter(temperature, "temperature", positive=True)
  logits = check_matrix(
      target_logits, "target_logits", columns="num_classes", finite=True
  )
  return check_finite_result(
      _minimum_class_confusion(logits, temperature),
      "minimum_class_confusion is not finite for these target_logits and "
      "temperature.",
  )


@jax.jit
def _minimum_class_confusion(logits, temperature):
  num_classes = logits.shape[1]
  shifted = logits - jax.lax.stop_gradient(
      jnp.max(logits, axis=1, keepdims=True)
  )
  predictions = jax.nn.softmax(shifted / temperature, axis=1)
  weights = entropy_weights(predictions)
  confusion = (predictions * weights[:, None]).T @ predictions
  sums = jnp.sum(confusion, axis=1, keepdims=True)
  positive = sums > 0
  confusion = jnp.where(
      positive, confusion / jnp.where(positive, sums, 1.0), 0.0
  )
  return (jnp.sum(confusion) - jnp.trace(confusion)) / num_classes
