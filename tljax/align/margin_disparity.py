r"""Margin disparity discrepancy (MDD) for classification."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from tljax.align._arrays import (
    check_example_weights,
    check_finite_result,
    check_hyperparameter,
    check_matrix,
    check_same_columns,
    check_same_shape,
)

__all__ = ["margin_disparity_discrepancy"]


def margin_disparity_discrepancy(
    source_logits: jax.Array,
    source_adversarial_logits: jax.Array,
    target_logits: jax.Array,
    target_adversarial_logits: jax.Array,
    *,
    margin: float = 4.0,
    source_weights: jax.Array | None = None,
    target_weights: jax.Array | None = None,
) -> jax.Array:
  r"""The MDD surrogate between a main and an adversarial classifier head.

  Zhang, Liu, Long and Jordan, "Bridging theory and algorithm for domain
  adaptation", ICML 2019, following the Transfer-Learning-Library's
  ``ClassificationMarginDisparityDiscrepancy`` (and the authors' code,
  thuml/MDD). With ``ĥ = argmax`` of the main head ``f``'s logits (pseudo
  labels, no gradient) and ``p' = softmax`` of the adversarial head ``f'``::

    D_γ = γ · 1/n_S Σ_i w^S_i log p'^S_i[ĥ^S_i]
          + 1/n_T Σ_j w^T_j log(1 − p'^T_j[ĥ^T_j])

  i.e. ``−γ`` times the cross-entropy of ``f'`` against ``f``'s labels on
  the source, plus the modified log-loss ``log(1 − p')`` on the target;
  ``γ`` is the margin factor (``exp(ρ)`` in the paper; 4 by default, as
  that code). The adversarial head *maximises* ``D_γ`` (agree with ``f`` on
  the source, disagree on the target) and the features minimise it, so a
  recipe uses::

    loss = cross_entropy(source_logits, labels) − trade_off · D_γ

  with ``f'`` applied to ``gradient_reversal(features, coeff)``
  (the Transfer-Learning-Library schedules ``coeff`` from 0 to 0.1 and uses
  ``trade_off = 1``).

  Deviations from that code: ``log(1 − p'[ĥ])`` is computed exactly and
  stably as ``logsumexp`` over the other classes minus ``logsumexp`` over all
  (whose gradient is bounded), instead of ``log(clamp(1 − p' + 1e-6,
  max=1))``; and the two domains are averaged separately, which allows
  different batch sizes (with equal ones it is that code's mean).

  Args:
    source_logits: ``(n_S, K)`` main-head logits on the source.
    source_adversarial_logits: ``(n_S, K)`` adversarial-head logits on the
      source.
    target_logits: ``(n_T, K)`` main-head logits on the target.
    target_adversarial_logits: ``(n_T, K)`` adversarial-head logits on the
      target.
    margin: ``γ >= 0``.
    source_weights: optional ``(n_S,)`` non-negative per-example weights.
    target_weights: optional ``(n_T,)`` non-negative per-example weights.

  Returns:
    The scalar ``D_γ`` (<= 0).

  Raises:
    ValueError: on non-finite logits, logits of mismatched shapes, fewer
      than 2 classes, a negative ``margin``, weights of the wrong shape or
      sign, or (when concrete) a value too large for the float type (log
      probabilities below about −3e38 in float32).
  """
  check_hyperparameter(margin, "margin")
  arrays = {}
  for argument, logits in (
      ("source_logits", source_logits),
      ("source_adversarial_logits", source_adversarial_logits),
      ("target_logits", target_logits),
      ("target_adversarial_logits", target_adversarial_logits),
  ):
    arrays[argument] = check_matrix(
        logits, argument, columns="num_classes", finite=True
    )
    if arrays[argument].shape[1] < 2:
      raise ValueError(
          f"{argument} must have at least 2 classes, got shape "
          f"{arrays[argument].shape}."
      )
  check_same_shape(
      arrays["source_logits"],
      arrays["source_adversarial_logits"],
      "source_logits",
      "source_adversarial_logits",
  )
  check_same_shape(
      arrays["target_logits"],
      arrays["target_adversarial_logits"],
      "target_logits",
      "target_adversarial_logits",
  )
  check_same_columns(
      arrays["source_logits"],
      arrays["target_logits"],
      "source_logits",
      "target_logits",
      what="number of classes",
  )

  if source_weights is not None:
    source_weights = check_example_weights(
        source_weights,
        "source_weights",
        length=arrays["source_logits"].shape[0],
        length_of="source_logits",
    )
  if target_weights is not None:
    target_weights = check_example_weights(
        target_weights,
        "target_weights",
        length=arrays["target_logits"].shape[0],
        length_of="target_logits",
    )
  return check_finite_result(
      _margin_disparity_discrepancy(
          *arrays.values(), margin, source_weights, target_weights
      ),
      "margin_disparity_discrepancy is not finite: the adversarial logits (or "
      "margin, or the weights) are too large for the float type.",
  )


@jax.jit
def _margin_disparity_discrepancy(
    source_logits,
    source_adversarial,
    target_logits,
    target_adversarial,
    margin,
    source_weights,
    target_weights,
):
  source_labels = jnp.argmax(source_logits, axis=1)
  target_labels = jnp.argmax(target_logits, axis=1)

  # log p'[ĥ] on the source: minus the cross-entropy against the pseudo labels.
  source_terms = jnp.take_along_axis(
      jax.nn.log_softmax(source_adversarial, axis=1),
      source_labels[:, None],
      axis=1,
  )[:, 0]
  # log(1 − p'[ĥ]) on the target: log of the probability of the other classes.
  others = jnp.arange(target_adversarial.shape[1]) != target_labels[:, None]
  target_terms = jax.nn.logsumexp(
      jnp.where(others, target_adversarial, -jnp.inf), axis=1
  ) - jax.nn.logsumexp(target_adversarial, axis=1)

  if source_weights is not None:
    source_terms = source_terms * source_weights
  if target_weights is not None:
    target_terms = target_terms * target_weights
  return margin * jnp.mean(source_terms) + jnp.mean(target_terms)
