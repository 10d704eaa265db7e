r"""Prediction entropy: entropy minimisation and entropy-based example weights."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import xlogy

from tljax.align._arrays import (
    check_finite_result,
    check_matrix,
    check_probabilities,
)

__all__ = ["entropy", "entropy_weights"]


def entropy(logits: jax.Array) -> jax.Array:
  r"""Mean entropy of the softmax predictions of a batch.

  ::

    H = −1/n Σ_i Σ_c p_ic log p_ic,   p_i = softmax(z_i)

  Minimised on unlabelled target examples it pushes decision boundaries away
  from dense target regions (Grandvalet and Bengio, "Semi-supervised
  learning by entropy minimization", NeurIPS 2004; the target entropy term of
  Long et al., "Unsupervised domain adaptation with residual transfer
  networks", NeurIPS 2016, and of AFN's recipe). Computed from
  ``log_softmax``, with ``0 log 0 = 0`` (also where a logit gap overflows
  to ``−∞``), so it is exact and finite for any finite logits (the
  Transfer-Learning-Library's ``entropy`` adds ``1e-5`` inside the log).

  Args:
    logits: ``(n, num_classes)`` unnormalised scores.

  Returns:
    The scalar mean entropy, in nats.

  Raises:
    ValueError: if ``logits`` is not a non-empty finite matrix.
  """
  return check_finite_result(
      _entropy(
          check_matrix(logits, "logits", columns="num_classes", finite=True)
      ),
      "entropy is not finite for these logits.",
  )


def entropy_weights(predictions: jax.Array) -> jax.Array:
  r"""CDAN+E's entropy-aware example weights, normalised to mean 1.

  Long, Cao, Wang and Jordan, "Conditional adversarial domain adaptation",
  NeurIPS 2018, entropy conditioning (CDAN+E)::

    w_i = 1 + exp(−H(g_i)),   H(g) = −Σ_c g_c log g_c,

  then ``w_i ← n w_i / Σ_j w_j`` over the batch, as the
  Transfer-Learning-Library's ``ConditionalDomainAdversarialLoss`` and
  ``MinimumClassConfusionLoss`` do (so the weights average 1). Confident
  predictions (low entropy) weigh up to twice as much as uniform ones. The
  weights are constants: their gradient is stopped, as in that code. MCC
  (:func:`tljax.align.minimum_class_confusion`) uses the same weights.

  Args:
    predictions: ``(n, num_classes)`` probabilities (rows sum to 1, checked
      when concrete), e.g. ``jax.nn.softmax(logits)``; ``0 log 0 = 0``.

  Returns:
    ``(n,)`` weights with mean 1.

  Raises:
    ValueError: if ``predictions`` is not a non-empty matrix of probability
      rows (finite, non-negative, summing to 1; checked when concrete).
  """
  return check_finite_result(
      _entropy_weights(check_probabilities(predictions, "predictions")),
      "entropy_weights are not finite for these predictions.",
  )


@jax.jit
def _entropy(logits):
  log_probabilities = jax.nn.log_softmax(logits, axis=1)
  probabilities = jnp.exp(log_probabilities)
  # 0 log 0 = 0, also where log p = −∞ (a gap beyond the float range).
  log_probabilities = jnp.where(probabilities > 0, log_probabilities, 0.0)
  return -jnp.mean(jnp.sum(probabilities * log_probabilities, axis=1))


@jax.jit
def _entropy_weights(predictions):
  predictions = jax.lax.stop_gradient(predictions)
  entropies = -jnp.sum(xlogy(predictions, predictions), axis=1)
  weights = 1.0 + jnp.exp(-entropies)
  return predictions.shape[0] * weights / jnp.sum(weights)
