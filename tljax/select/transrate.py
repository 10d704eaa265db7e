"""TransRate: the coding-rate mutual information of features and labels."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from tljax.checks import check_positive
from tljax.select._checks import (
    as_parameter,
    check_features,
    check_labels,
    dot,
    max_abs_scale,
    nan_if_out_of_range,
)

__all__ = ["transrate"]


def transrate(
    features: Any,
    labels: Any,
    *,
    eps: float = 1e-4,
    num_classes: int | None = None,
) -> jax.Array:
  r"""TransRate, the coding rate of the features minus that given the labels.

  Huang, Huang, Rong, Yang and Wei, "Frustratingly easy transferability
  estimation", ICML 2022. The mutual information ``H(Z) − H(Z | Y)`` between
  features and labels is estimated with the coding rate ``R`` (the bits
  needed to code the features up to distortion ``ε``) in place of entropy::

    R(Z, ε) = 1/2 log det(I_D + Zᵀ Z / (n ε)),
    TrR(Z, Y) = R(Z, ε) − Σ_c (n_c / n) R(Z_c, ε),

  where ``Z`` (``n × D``) are the features centred by their overall mean and
  ``Z_c`` (``n_c × D``) the rows of class ``c``. Higher is better.

  As in the authors' code: the features are centred once, over all
  examples (not per class), and ``R`` has ``1/(n ε)`` where the coding-rate
  literature writes ``D / (n ε²)``; ``eps=1e-4`` is their default.
  Deviation: the class terms are weighted by ``n_c / n`` (so that the second
  term estimates ``H(Z | Y) = Σ_c p(c) H(Z | Y = c)``), where the code
  averages them uniformly (``1/C``); the two agree on balanced classes.
  Empty classes (possible with an explicit ``num_classes``) have weight 0.

  Each log-determinant is taken on the smaller side, ``D × D`` or ``n × n``
  (``det(I + ZᵀZ/s) = det(I + ZZᵀ/s)``), by a Cholesky factorisation; one
  class at a time, so memory stays at one such matrix. The features are
  scaled to ``max |z| = 1`` and the scale carried in log space, and where
  the factorisation fails (``ZᵀZ / (n ε)`` beyond the float range, or
  rounded to indefinite: huge features with a small ``ε``) the
  log-determinant comes from the eigenvalues instead, as
  ``Σ_i log(1 + exp(log t + log μ_i))``; so any feature magnitude gives a
  finite score.

  Args:
    features: ``(N, D)`` features of the target examples.
    labels: ``(N,)`` integer labels in ``[0, num_classes)``, at least two
      distinct classes.
    eps: the distortion ``ε`` > 0.
    num_classes: the number of classes; ``None`` takes ``max(labels) + 1``.
      Needed under ``jax.jit``, where a label out of range makes the score
      NaN.

  Returns:
    The scalar TransRate (float32, or float64 for float64 features), in nats.

  Raises:
    ValueError: on a malformed argument; the message names it.
  """
  check_positive(eps, "eps")
  features = check_features(features, "features")
  labels, num_classes = check_labels(
      labels,
      "labels",
      length=features.shape[0],
      length_of="features",
      num_classes=num_classes,
      num_classes_argument="num_classes",
      min_present=2,
  )
  score = _transrate(
      features,
      labels,
      as_parameter(eps, features.dtype, "eps"),
      num_classes=num_classes,
  )
  return nan_if_out_of_range(score, labels, num_classes)


def _half_log_det_identity_plus(gram, log_scale):
  """``1/2 log det(I + t G)`` for a positive semi-definite ``G``, ``log t = log_scale``.

  By a Cholesky factorisation; where that fails (``t G`` overflows, or its
  rounding leaves ``I + t G`` numerically indefinite), from the eigenvalues
  ``μ_i ≥ 0`` of ``G`` as ``1/2 Σ_i log(1 + exp(log t + log μ_i))``, which
  stays finite for any ``t``.
  """
  identity = jnp.eye(gram.shape[0], dtype=gram.dtype)
  factor = jnp.linalg.cholesky(identity + gram * jnp.exp(log_scale))
  value = jnp.sum(jnp.log(jnp.diagonal(factor)))

  def from_eigenvalues():
    eigenvalues = jnp.linalg.eigvalsh(gram)
    positive = eigenvalues > 0
    log_eigenvalues = jnp.where(
        positive, jnp.log(jnp.where(positive, eigenvalues, 1.0)), -jnp.inf
    )
    return 0.5 * jnp.sum(jnp.logaddexp(0.0, log_scale + log_eigenvalues))

  return jax.lax.cond(jnp.isfinite(value), lambda: value, from_eigenvalues)


@functools.partial(jax.jit, static_argnames=("num_classes",))
def _transrate(features, labels, eps, *, num_classes):
  num_examples, dim = features.shape
  # Z = s Z' with max |Z'| = 1, so that Z'ᵀZ' neither overflows nor
  # underflows; ZᵀZ / (n ε) = Z'ᵀZ' · exp(2 log s − log(n ε)).
  first = max_abs_scale(features)
  centred = features / first
  centred = centred - jnp.mean(centred, axis=0)
  second = max_abs_scale(centred)
  centred = centred / second
  log_scale = 2 * (jnp.log(first) + jnp.log(second)) - jnp.log(eps)
  small_side = dim <= num_examples
  gram = dot(centred.T, centred) if small_side else dot(centred, centred.T)
  rate = _half_log_det_identity_plus(gram, log_scale - jnp.log(num_examples))

  def weighted_class_rate(label):
    """(n_c / n) R(Z_c, ε); the rows of other classes are zeroed."""
    member = (labels == label).astype(features.dtype)
    count = jnp.sum(member)
    if small_side:
      class_gram = dot(centred.T, centred * member[:, None])
    else:
      class_gram = gram * member[:, None] * member[None, :]
    class_scale = log_scale - jnp.log(jnp.maximum(count, 1))
    return (
        count
        / num_examples
        * _half_log_det_identity_plus(class_gram, class_scale)
    )

  class_rates = jax.lax.map(weighted_class_rate, jnp.arange(num_classes))
  return rate - jnp.sum(class_rates)
