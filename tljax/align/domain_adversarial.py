r"""The domain classifier's loss of domain-adversarial training (DANN)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from tljax.align._arrays import (
    check_domain_logits,
    check_example_weights,
    check_finite_result,
)

__all__ = ["domain_adversarial_loss"]


def domain_adversarial_loss(
    source_domain_logits: jax.Array,
    target_domain_logits: jax.Array,
    *,
    source_weights: jax.Array | None = None,
    target_weights: jax.Array | None = None,
) -> jax.Array:
  r"""Binary cross-entropy of a domain classifier, source labelled 1, target 0.

  Ganin et al., "Domain-adversarial training of neural networks", JMLR 2016:
  the domain classifier ``D`` minimises::

    L_d = ½ [ 1/n_S Σ_i w^S_i · −log σ(d^S_i)
            + 1/n_T Σ_j w^T_j · −log(1 − σ(d^T_j)) ]

  with ``d = D(R_λ(f))`` its logits on features passed through
  :func:`tljax.align.gradient_reversal`, so the same minimisation trains the
  features to maximise it. The halves average each domain separately, as the
  Transfer-Learning-Library's ``DomainAdversarialLoss``; the weights
  multiply each example's term and the sum is still divided by the batch
  size (PyTorch's weighted ``binary_cross_entropy``). Pass weights that
  come from the model through ``jax.lax.stop_gradient`` if they are to act
  as constants.

  The classifier's *logits* are taken, not probabilities, and the loss is
  computed as ``softplus(−d)`` and ``softplus(d)``, which stays finite where
  a sigmoid saturates.

  Args:
    source_domain_logits: ``(n_S,)`` or ``(n_S, 1)`` logits on source examples.
    target_domain_logits: ``(n_T,)`` or ``(n_T, 1)`` logits on target examples.
    source_weights: optional ``(n_S,)`` non-negative per-example weights.
    target_weights: optional ``(n_T,)`` non-negative per-example weights.

  Returns:
    The scalar loss (``log 2`` for a classifier that outputs 0 everywhere).

  Raises:
    ValueError: on non-finite logits, logits of the wrong shape or an empty
      batch, weights of the wrong shape or with negative or non-finite
      entries, or (when concrete) a loss too large for the float type.
  """
  source = check_domain_logits(source_domain_logits, "source_domain_logits")
  target = check_domain_logits(target_domain_logits, "target_domain_logits")
  if source_weights is not None:
    source_weights = check_example_weights(
        source_weights,
        "source_weights",
        length=source.shape[0],
        length_of="source_domain_logits",
    )
  if target_weights is not None:
    target_weights = check_example_weights(
        target_weights,
        "target_weights",
        length=target.shape[0],
        length_of="target_domain_logits",
    )
  return check_finite_result(
      _domain_adversarial_loss(source, target, source_weights, target_weights),
      "domain_adversarial_loss is not finite: the domain logits (times their "
      "weights) are too large for the float type.",
  )


@jax.jit
def _domain_adversarial_loss(source, target, source_weights, target_weights):
  source_losses = jax.nn.softplus(-source)
  target_losses = jax.nn.softplus(target)
  if source_weights is not None:
    source_losses = source_losses * source_weights
  if target_weights is not None:
    target_losses = target_losses * target_weights
  return 0.5 * (jnp.mean(source_losses) + jnp.mean(target_losses))
