r"""Correlation alignment: the Deep CORAL loss and closed-form CORAL re-colouring.

Both match second-order statistics: the covariance of the source features
is brought to that of the target features, the first by a loss on learned
features (:func:`coral`), the second by a linear map of fixed features
(:func:`coral_recolor`). Covariances are the unbiased ones::

  C = 1/(n − 1) (X − 1 μᵀ)ᵀ (X − 1 μᵀ),   μ = Xᵀ 1 / n.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from tljax.align._arrays import (
    check_choice,
    check_finite_result,
    check_hyperparameter,
    check_matrix,
    check_same_columns,
    covariance,
    power_of_two_scale,
)

__all__ = ["CORAL_CONVENTIONS", "coral", "coral_recolor"]

#: ``convention`` of :func:`coral`: the paper's loss, or TLlib's code's.
CORAL_CONVENTIONS = ("paper", "tllib")


def coral(
    source_features: jax.Array,
    target_features: jax.Array,
    *,
    convention: str = "paper",
) -> jax.Array:
  r"""The Deep CORAL loss: the distance between source and target covariances.

  Sun and Saenko, "Deep CORAL: correlation alignment for deep domain
  adaptation", ECCV 2016 Workshops, eq. 1::

    ℓ_CORAL = ‖C_S − C_T‖²_F / (4 d²)

  with ``C_S``, ``C_T`` the unbiased covariances of the ``d``-dimensional
  source and target features of the batch (eq. 2–3). The paper adds it to
  the classification loss on the last layer's outputs with a weight chosen
  so the two losses are of the same size at the end of training.

  The Transfer-Learning-Library's docstring states the same formula, but its
  ``CorrelationAlignmentLoss`` (``tllib/alignment/coral.py``) computes the
  mean squared entry of each difference, means included, with the same
  unbiased covariances::

    ℓ_TLlib = mean_k (μ_S,k − μ_T,k)² + mean_kl (C_S − C_T)²_kl
            = ‖μ_S − μ_T‖² / d + ‖C_S − C_T‖²_F / d²,

  so ``ℓ_CORAL = (ℓ_TLlib − ‖μ_S − μ_T‖² / d) / 4``: TLlib's value is 4
  times the paper's covariance term plus a mean term the paper does not
  have, and a trade-off weight tuned with one does not carry over to the
  other. ``convention='tllib'`` gives TLlib's value (to reproduce its
  numbers); ``'paper'``, the default, the paper's.

  Args:
    source_features: ``(n_S, d)`` source features, ``n_S >= 2``.
    target_features: ``(n_T, d)`` target features, ``n_T >= 2``.
    convention: ``'paper'`` (``ℓ_CORAL``) or ``'tllib'`` (``ℓ_TLlib``).

  The features are divided by a power of two (exactly) before the
  covariances are taken and the loss multiplied back, and each batch is
  shifted by its first row, so constant features have a covariance of
  exactly 0 at any scale (not the rounding error of their mean, which the
  4th power would blow up). Otherwise, for features beyond about 1e10 in
  float32 even the rounding error of the covariances overflows the loss,
  which then raises.

  Returns:
    The scalar loss (float32 or wider).

  Raises:
    ValueError: on non-matrix or non-finite features, fewer than 2 examples
      in either domain, different feature dimensions, a ``convention`` other
      than ``'paper'`` or ``'tllib'``, or (when concrete) a loss too large
      for the float type (it grows as the 4th power of the features' scale).
  """
  convention = check_choice(convention, "convention", CORAL_CONVENTIONS)
  source, target = _check_pair(source_features, target_features)
  return check_finite_result(
      _coral(source, target, tllib=convention == "tllib"),
      "coral is not finite: source_features and target_features are too large "
      "(the loss grows as their 4th power); rescale them.",
  )


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
  when ``λ = 0`` and both covariances are full rank (more examples than
  dimensions and no constant feature).

  Numerics (deviations from Algorithm 1 only where it has no finite answer):
  ``C_S^{−1/2}`` is the pseudo-inverse square root, i.e. eigenvalues below
  ``d · ε · λ_max`` (``ε`` the float's resolution) count as 0; it equals the
  inverse square root whenever ``C_S`` is well conditioned, and keeps the
  result finite when ``λ = 0`` and ``C_S`` is singular (then the result's
  covariance is ``cov(D_T)`` only on the source's non-degenerate
  directions). And each domain is divided by a power of two ``s`` (with
  ``λ / s²``; the result is multiplied back by the target's), which is
  exact: ``s = 1`` unless the domain's features exceed 1 in magnitude (or
  ``λ = 0``, for which the map is scale-equivariant), so features of order
  1e30 (or 1e-30 with ``λ = 0``) in float32 neither overflow nor underflow
  the covariances.

  Args:
    source: ``(n_S, d)`` source features, ``n_S >= 2``.
    target: ``(n_T, d)`` target features, ``n_T >= 2``.
    eps: the ridge ``λ`` added to both covariances, >= 0.

  Returns:
    The ``(n_S, d)`` re-coloured source features.

  Raises:
    ValueError: on non-matrix or non-finite features, fewer than 2 examples
      in either domain, different feature dimensions, a negative (or
      non-finite) ``eps``, or (when concrete) a result too large for the
      float type.
  """
  check_hyperparameter(eps, "eps")
  source, target = _check_pair(
      source, target, source_argument="source", target_argument="target"
  )
  return check_finite_result(
      _coral_recolor(source, target, eps),
      "coral_recolor is not finite: source and target are too large for the "
      "float type; rescale them.",
  )


@functools.partial(jax.jit, static_argnames=("tllib",))
def _coral(source, target, *, tllib):
  dim = source.shape[1]
  scale = power_of_two_scale(jnp.concatenate([source, target]))
  source, target = source / scale, target / scale
  difference = covariance(source) - covariance(target)
  # ‖C_S − C_T‖²_F / d² (TLlib), or a quarter of it (the paper).
  loss = jnp.sum(jnp.square(difference)) / ((1.0 if tllib else 4.0) * dim * dim)
  # A zero loss stays 0 even where scale⁴ overflows (0 · ∞ would be NaN).
  loss = jnp.where(loss > 0, loss * scale * scale * scale * scale, 0.0)
  if not tllib:
    return loss
  mean_difference = jnp.mean(source, axis=0) - jnp.mean(target, axis=0)
  mean_term = jnp.sum(jnp.square(mean_difference)) / dim
  return loss + jnp.where(mean_term > 0, mean_term * scale * scale, 0.0)


@jax.jit
def _coral_recolor(source, target, eps):
  identity = jnp.eye(source.shape[1], dtype=source.dtype)

  def scaled_covariance(features):
    """``X / s`` and ``cov(X / s) + λ / s² I``: ``(C + λ I) / s²``."""
    data_scale = power_of_two_scale(features)
    # λ / s² must not overflow: only scale down (s >= 1) unless λ = 0.
    scale = jnp.where(eps > 0, jnp.maximum(data_scale, 1.0), data_scale)
    features = features / scale
    # s >= 1 where λ > 0, so s² cannot underflow to 0 (for λ = 0 it may).
    scaled_eps = jnp.where(eps > 0, eps / (scale * scale), 0.0)
    return features, covariance(features) + scaled_eps * identity, scale

  # D_S (C_S + λI)^{−1/2} (C_T + λI)^{1/2} = s_T D_S' (C_S' + λ/s_S²)^{−1/2} (…)^{1/2}
  source, source_covariance, _ = scaled_covariance(source)
  _, target_covariance, target_scale = scaled_covariance(target)
  whitening = _symmetric_power(source_covariance, -0.5)
  colouring = _symmetric_power(target_covariance, 0.5)
  return (source @ whitening @ colouring) * target_scale


def _check_pair(
    source,
    target,
    *,
    source_argument="source_features",
    target_argument="target_features",
):
  why = "a covariance needs two examples"
  source = check_matrix(
      source, source_argument, min_rows=2, why=why, finite=True
  )
  target = check_matrix(
      target, target_argument, min_rows=2, why=why, finite=True
  )
  check_same_columns(source, target, source_argument, target_argument)
  return source, target


def _symmetric_power(matrix: jax.Array, power: float) -> jax.Array:
  """``V diag(λ^power) Vᵀ`` of a symmetric positive (semi-)definite matrix.

  For a negative power, eigenvalues below ``d · ε · λ_max`` (zero up to
  rounding) get 0, as a pseudo-inverse: a singular matrix gives a finite
  result.
  """
  eigenvalues, eigenvectors = jnp.linalg.eigh((matrix + matrix.T) / 2)
  # Rounding can leave a zero eigenvalue slightly negative.
  eigenvalues = jnp.maximum(eigenvalues, 0.0)
  if power < 0:
    cutoff = (
        matrix.shape[0] * jnp.finfo(matrix.dtype).eps * jnp.max(eigenvalues)
    )
    kept = eigenvalues > cutoff
    powers = jnp.where(kept, jnp.where(kept, eigenvalues, 1.0) ** power, 0.0)
  else:
    powers = eigenvalues**power
  return (eigenvectors * powers) @ eigenvectors.T
