"""H-score and its shrinkage (regularised) variant."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from tljax.select._checks import (
    check_features,
    check_labels,
    class_statistics,
    dot,
    max_abs_scale,
    nan_if_out_of_range,
)

__all__ = ["h_score", "shrinkage_h_score"]


def h_score(
    features: Any, labels: Any, *, num_classes: int | None = None
) -> jax.Array:
  r"""H-score: how much of the feature variance the class means explain.

  Bao, Li, Huang, Zheng, Wang, Zamir and Guibas, "An information-theoretic
  approach to transferability in task transfer learning", ICIP 2019::

    H(f) = tr(cov(f)⁺ cov(E[f | y]))

  where ``cov(f)`` is the covariance of the features over the examples,
  ``E[f | y]`` replaces each example's features by the mean of its class, and
  ``⁺`` is the Moore-Penrose pseudo-inverse (as in the authors' code, so
  rank-deficient features are fine). It lies in ``[0, min(D, C − 1)]``,
  higher is better, and is invariant to invertible affine maps of the
  features.

  Both covariances use the same normalisation (the score does not depend on
  which). Eigenvalues of ``cov(f)`` below ``10 · D · eps`` times the largest
  count as zero (``jnp.linalg.pinv``'s default), where the authors' NumPy code
  uses ``rcond=1e-15`` in float64. The features are scaled to ``max |f| = 1``
  before and after centring (the score is invariant), so that features of
  any magnitude (1e30, 1e-30) neither overflow nor underflow the covariance.

  Args:
    features: ``(N, D)`` features of the target examples.
    labels: ``(N,)`` integer labels in ``[0, num_classes)``, at least two
      distinct classes.
    num_classes: the number of classes; ``None`` takes ``max(labels) + 1``.
      Needed under ``jax.jit``, where a label out of range makes the score
      NaN.

  Returns:
    The scalar H-score (float32, or float64 for float64 features).

  Raises:
    ValueError: on a malformed argument; the message names it.
  """
  features, labels, num_classes = _check(features, labels, num_classes)
  return nan_if_out_of_range(
      _h_score(features, labels, num_classes=num_classes), labels, num_classes
  )


def shrinkage_h_score(
    features: Any, labels: Any, *, num_classes: int | None = None
) -> jax.Array:
  r"""The shrinkage-based H-score, with a Ledoit-Wolf feature covariance.

  Ibrahim, Ponomareva and Mazumder, "Newer is not always better: Rethinking
  transferability metrics, their peculiarities, stability and performance"
  (OpenReview ``iz_Wwmfquno``, 2021). The H-score's ``cov(f)⁻¹`` is unstable
  when ``D`` is large next to ``N``; it is replaced by the Ledoit-Wolf
  estimate, and the between-class covariance shrunk by the same factor::

    H_α(f) = tr(cov_α(f)⁻¹ (1 − α) cov(E[f | y])),
    cov_α(f) = (1 − α) cov(f) + α (tr(cov(f)) / D) I_D,

  with ``α`` the Ledoit-Wolf shrinkage coefficient (Ledoit and Wolf, "A
  well-conditioned estimator for large-dimensional covariance matrices",
  J. Multivariate Anal. 2004) of the centred features, computed as
  ``sklearn.covariance.ledoit_wolf_shrinkage``:

    S = X̃ᵀX̃ / N,  μ = tr(S) / D,  δ = ‖S − μ I‖²_F / D,
    b = min(δ, (Σ_i ‖x̃_i‖⁴ / N − ‖S‖²_F) / (N D)),  α = b / δ.

  Higher is better; invariant to scaling and rotating the features.

  Normalisation: both covariances use ``1/N`` here, as the formula's single
  ``cov`` implies. thuml/Transfer-Learning-Library's ``regularized_h_score``
  pairs scikit-learn's ``1/N`` Ledoit-Wolf covariance with a ``1/(N − 1)``
  ``np.cov`` of the class means, so its values are ``N / (N − 1)`` times
  these. As for :func:`h_score`, the features are first scaled to
  ``max |f| = 1`` (both the Ledoit-Wolf coefficient and the score are
  scale-invariant), so that any feature magnitude works.

  Args:
    features: ``(N, D)`` features of the target examples.
    labels: ``(N,)`` integer labels in ``[0, num_classes)``, at least two
      distinct classes.
    num_classes: the number of classes; ``None`` takes ``max(labels) + 1``.
      Needed under ``jax.jit``, where a label out of range makes the score
      NaN.

  Returns:
    The scalar shrinkage H-score (float32, or float64 for float64 features).

  Raises:
    ValueError: on a malformed argument; the message names it.
  """
  features, labels, num_classes = _check(features, labels, num_classes)
  return nan_if_out_of_range(
      _shrinkage_h_score(features, labels, num_classes=num_classes),
      labels,
      num_classes,
  )


def _check(features, labels, num_classes):
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
  return features, labels, num_classes


def _covariances(features, labels, num_classes):
  """Centred features, their covariance, and that of the class means (1/N).

  The features are scaled to ``max |f| = 1`` before and after centring, which
  both scores are invariant to and which keeps the covariances from
  overflowing or underflowing (features of magnitude 1e30 or 1e-30).
  """
  features = features / max_abs_scale(features)
  centred = features - jnp.mean(features, axis=0)
  centred = centred / max_abs_scale(centred)
  counts, means = class_statistics(centred, labels, num_classes)
  num_examples = features.shape[0]
  feature_covariance = dot(centred.T, centred) / num_examples
  # cov(E[f | y]) = Σ_c (n_c / N) μ_c μ_cᵀ, the class means being centred.
  between_covariance = dot(means.T, means * (counts / num_examples)[:, None])
  return centred, feature_covariance, between_covariance


@functools.partial(jax.jit, static_argnames=("num_classes",))
def _h_score(features, labels, *, num_classes):
  _, feature_covariance, between_covariance = _covariances(
      features, labels, num_classes
  )
  inverse = jnp.linalg.pinv(feature_covariance, hermitian=True)
  return jnp.sum(inverse * between_covariance)  # tr(AB), B symmetric


@functools.partial(jax.jit, static_argnames=("num_classes",))
def _shrinkage_h_score(features, labels, *, num_classes):
  centred, feature_covariance, between_covariance = _covariances(
      features, labels, num_classes
  )
  shrinkage = _ledoit_wolf_shrinkage(centred, feature_covariance)
  dim = features.shape[1]
  mu = jnp.trace(feature_covariance) / dim
  shrunk = (1 - shrinkage) * feature_covariance + shrinkage * mu * jnp.eye(dim)
  inverse = jnp.linalg.pinv(shrunk, hermitian=True)
  return (1 - shrinkage) * jnp.sum(inverse * between_covariance)


def _ledoit_wolf_shrinkage(centred, covariance):
  """Ledoit-Wolf's α for centred ``(N, D)`` data and its ``1/N`` covariance."""
  num_examples, dim = centred.shape
  mu = jnp.trace(covariance) / dim
  delta = jnp.sum(jnp.square(covariance - mu * jnp.eye(dim))) / dim
  fourth = (
      jnp.sum(jnp.square(jnp.sum(jnp.square(centred), axis=1))) / num_examples
  )
  beta = (fourth - jnp.sum(jnp.square(covariance))) / (num_examples * dim)
  beta = jnp.clip(beta, 0.0, delta)
  return jnp.where(delta > 0, beta / jnp.where(delta > 0, delta, 1.0), 0.0)
