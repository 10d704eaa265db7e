r"""Correlation alignment: the Deep CORAL loss and closed-form CORAL re-colouring.

Both match second-order statistics: the covariance of the source features
is brought to that of the target features, the first by a loss on learned
features (:func:`coral`), the second by a linear map of fixed features
(:func:`coral_recolor`). Covariances are the unbiased ones::

  C = 1/(n − 1) (X − 1 μᵀ)ᵀ (X − 1 μᵀ),   μ = Xᵀ 1 / n.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from tljax.align._arrays import (check_finite, check_matrix,
                                 check_same_columns, covariance)
from tljax.checks import check_non_negative

__all__ = ["coral", "coral_recolor"]


def coral(source_features: jax.Array, target_features: jax.Array) -> jax.Array:
  r"""The Deep CORAL loss: the distance between source and target covariances.

  Sun and Saenko, "Deep CORAL: correlation alignment for deep domain
  adaptation", ECCV 2016 Workshops, eq. 1::

    ℓ_CORAL = ‖C_S − C_T‖²_F / (4 d²)

  with ``C_S``, ``C_T`` the unbiased covariances of the ``d``-dimensional
  source and target features of the batch (eq. 2–3). The paper adds it to
  the classification loss on the last layer's outputs with a weight chosen
  so the two losses are of the same size at the end of training.

  Args:
    source_features: ``(n_S, d)`` source features, ``n_S >= 2``.
    target_features: ``(n_T, d)`` target features, ``n_T >= 2``.

  Returns:
    The scalar loss (float32 or wider).

  Raises:
    ValueError: on non-matrix features, fewer than 2 examples in either
      domain, or different feature dimensions.
  """
  source, target = _check_pair(source_features, target_features)
  return _coral(source, target)


def coral_recolor(
  source: jax.Array, target: jax.Array, *, eps: float = 1.0
) -> jax.Array:
  r"""CORAL: whiten the source features, then re-colour them with the target covariance.

  Sun, Feng and Saenko, "Return of frustratingly easy domain adaptation",
  AAAI 2016, Algorithm 1::

    C_S = cov(D_S) + λ I,   C_T = cov(D_T) + λ I,
    D_S* = D_S C_S^{−1/2} C_T^{1/2}

  (``λ = eps``, 1 in the paper), with symmetric matrix square roots from an
  eigendecomposition. As in the paper, the features are not centred: the
  map is linear and is applied to ``D_S`` itself (its mean moves to
  ``μ_S C_S^{−1/2} C_T^{1/2}``). A classifier is then trained on ``D_S*``
  and applied to the unchanged target features.

  The regulariser makes the covariance of the result
  ``C_T^{1/2} C_S^{−1/2} cov(D_S) C_S^{−1/2} C_T^{1/2}
  = C_T − λ C_T^{1/2} C_S^{−1} C_T^{1/2}``, which is ``cov(D_T)`` exactly
  when ``λ = 0`` (then both covariances must be full rank: more examples
  than dimensions and no constant feature).

  Args:
    source: ``(n_S, d)`` source features, ``n_S >= 2``.
    target: ``(n_T, d)`` target features, ``n_T >= 2``.
    eps: the ridge ``λ`` added to both covariances, >= 0.

  Returns:
    The ``(n_S, d)`` re-coloured source features.

  Raises:
    ValueError: on non-matrix or non-finite features, fewer than 2 examples
      in either domain, different feature dimensions, or a negative ``eps``.
  """
  check_non_negative(eps, "eps")
  source, target = _check_pair(source, target, source_argument="source",
                               target_argument="target")
  check_finite(source, "source")
  check_finite(target, "target")
  return _coral_recolor(source, target, eps)


@jax.jit
def _coral(source, target):
  dim = source.shape[1]
  difference = covariance(source) - covariance(target)
  return jnp.sum(jnp.square(difference)) / (4.0 * dim * dim)


@jax.jit
def _coral_recolor(source, target, eps):
  identity = jnp.eye(source.shape[1], dtype=source.dtype)
  source_covariance = covariance(source) + eps * identity
  target_covariance = covariance(target) + eps * identity
  whitening = _symmetric_power(source_covariance, -0.5)
  colouring = _symmetric_power(target_covariance, 0.5)
  return source @ whitening @ colouring


def _check_pair(
  source, target, *, source_argument="source_features",
  target_argument="target_features"
):
  why = "a covariance needs two examples"
  source = check_matrix(source, source_argument, min_rows=2, why=why)
  target = check_matrix(target, target_argument, min_rows=2, why=why)
  check_same_columns(source, target, source_argument, target_argument)
  return source, target


def _symmetric_power(matrix: jax.Array, power: float) -> jax.Array:
  """``V diag(λ^power) Vᵀ`` of a symmetric positive (semi-)definite matrix."""
  eigenvalues, eigenvectors = jnp.linalg.eigh((matrix + matrix.T) / 2)
  # Rounding can leave a zero eigenvalue slightly negative.
  eigenvalues = jnp.maximum(eigenvalues, 0.0)
  return (eigenvectors * eigenvalues**power) @ eigenvectors.T
