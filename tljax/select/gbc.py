"""GBC: the Gaussian Bhattacharyya coefficient between target classes."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from tljax.checks import check_non_negative
from tljax.select._checks import (
    as_parameter,
    check_features,
    check_labels,
    class_statistics,
    dot,
    max_abs_scale,
    nan_if_out_of_range,
)

__all__ = ["gbc"]

_COVARIANCES = ("diagonal", "spherical")


def gbc(
    features: Any,
    labels: Any,
    *,
    covariance: str = "diagonal",
    variance_floor: float = 1e-4,
    num_classes: int | None = None,
) -> jax.Array:
  r"""GBC, minus the summed Bhattacharyya overlap of Gaussian class fits.

  Pándy, Agostinelli, Uijlings, Ferrari and Mensink, "Transferability
  estimation using Bhattacharyya class separability", CVPR 2022. Each class
  ``c`` is fitted with a Gaussian ``N(μ_c, Σ_c)`` (its mean and the per-
  dimension variance of its examples, so ``Σ_c`` is diagonal), and

    D_B(c, c') = 1/8 (μ_c − μ_c')ᵀ Σ⁻¹ (μ_c − μ_c')
                 + 1/2 log(det Σ / √(det Σ_c det Σ_c')),   Σ = (Σ_c + Σ_c') / 2,
    GBC = − Σ_{c ≠ c'} exp(−D_B(c, c')),

  summed over ordered pairs of distinct classes (each unordered pair twice),
  as in the authors' code. It is at most 0; higher (classes overlapping less)
  is better.

  As in the authors' code (google-research ``stable_transfer/transferability/
  gbc.py``): variances are the biased (``1/n_c``) ones, floored at
  ``variance_floor`` so that constant features do not give ``log 0``, and
  ``covariance="spherical"`` replaces each class's variances by their mean.
  Deviation: for spherical fits that code adds the log-determinant term of a
  single dimension (``log`` of the mean variance, not ``D`` times it); here
  the spherical Gaussian is ``D``-dimensional, so its log-determinant is ``D``
  times that. The authors reduce features to 64 dimensions by PCA first; that
  is left to the caller. Classes absent from ``labels`` (possible with an
  explicit ``num_classes``) have no Gaussian and are left out.

  Numerics: GBC does not change when the features are translated, or scaled
  by ``s`` together with ``variance_floor`` by ``s²``; the features are
  centred and scaled to ``max |f| = 1`` that way (only the floor, capped at
  ``1/eps²`` relative to the at most unit variances, is changed where that
  makes no difference in floating point), so features of any magnitude work.
  With ``variance_floor=0`` a class may have zero variance in a dimension:
  the distance is then the limit for equal variances → 0: no contribution
  where both classes are the same point, infinite (coefficient 0) where they
  are different points or only one of them is a point.

  Args:
    features: ``(N, D)`` features of the target examples.
    labels: ``(N,)`` integer labels in ``[0, num_classes)``, at least two
      distinct classes.
    covariance: ``"diagonal"`` (per-dimension variances) or ``"spherical"``
      (one variance per class).
    variance_floor: lower bound on each variance, >= 0 (the authors' 1e-4);
      it is in squared feature units, so rescale it with the features.
    num_classes: the number of classes; ``None`` takes ``max(labels) + 1``.
      Needed under ``jax.jit``, where a label out of range makes the score
      NaN.

  Returns:
    The scalar GBC score (float32, or float64 for float64 features).

  Raises:
    ValueError: on a malformed argument; the message names it.
  """
  if not isinstance(covariance, str) or covariance not in _COVARIANCES:
    raise ValueError(
        f"covariance must be one of {_COVARIANCES}, got {covariance!r}."
    )
  check_non_negative(variance_floor, "variance_floor")
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
  variance_floor = as_parameter(
      variance_floor, features.dtype, "variance_floor"
  )
  score = _gbc(
      features,
      labels,
      variance_floor,
      num_classes=num_classes,
      spherical=covariance == "spherical",
  )
  return nan_if_out_of_range(score, labels, num_classes)


@functools.partial(jax.jit, static_argnames=("num_classes", "spherical"))
def _gbc(features, labels, variance_floor, *, num_classes, spherical):
  # GBC is unchanged by translating the features and by scaling them by s
  # together with the variance floor by s²: bring them to max |f| = 1, so
  # that squares neither overflow nor underflow.
  first = max_abs_scale(features)
  features = features / first
  features = features - jnp.mean(features, axis=0)
  second = max_abs_scale(features)
  features = features / second
  # A floor this large relative to the (at most 1) variances sets them all
  # equal; capped, it stays finite without changing the result in float.
  variance_floor = jnp.minimum(
      variance_floor / first / first / second / second,
      1 / jnp.square(jnp.finfo(features.dtype).eps),
  )
  counts, means = class_statistics(features, labels, num_classes)
  deviations = features - means[labels]
  one_hot = jax.nn.one_hot(labels, num_classes, dtype=features.dtype)
  variances = (
      dot(one_hot.T, jnp.square(deviations)) / jnp.maximum(counts, 1)[:, None]
  )
  variances = jnp.maximum(variances, variance_floor)
  if spherical:
    variances = jnp.broadcast_to(
        jnp.mean(variances, axis=1, keepdims=True), variances.shape
    )
  log_variances = jnp.log(variances)
  present = counts > 0

  def row(inputs):
    """Bhattacharyya coefficients of one class against every class."""
    mean, variance, log_variance = inputs
    average = (variance + variances) / 2
    # Zero variances (variance_floor=0): the limits of equal variances → 0,
    # i.e. no distance from a dimension where both classes are the same
    # point, an infinite one where they are different points (or only one
    # of them is a point: the log-determinant term is then +inf).
    positive = average > 0
    squared = jnp.square(mean - means)
    mahalanobis = jnp.where(
        positive,
        squared / jnp.where(positive, average, 1.0),
        jnp.where(squared > 0, jnp.inf, 0.0),
    )
    log_ratio = jnp.where(
        positive,
        jnp.log(jnp.where(positive, average, 1.0))
        - 0.5 * (log_variance + log_variances),
        0.0,
    )
    distance = jnp.sum(mahalanobis, axis=1) / 8 + 0.5 * jnp.sum(
        log_ratio, axis=1
    )
    return jnp.exp(-distance)

  coefficients = jax.lax.map(row, (means, variances, log_variances))
  pairs = (
      present[:, None] & present[None, :] & ~jnp.eye(num_classes, dtype=bool)
  )
  return -jnp.sum(jnp.where(pairs, coefficients, 0.0))
