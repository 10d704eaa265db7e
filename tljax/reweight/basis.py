"""Gaussian-basis density-ratio models: what KLIEP, uLSIF and RuLSIF fit."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from tljax.reweight._common import check_points, gaussian_basis, normalize

__all__ = ["DensityRatioFit"]


class DensityRatioFit(NamedTuple):
  r"""A fitted ratio ``r̂(x) = Σ_l α_l exp(−‖x − c_l‖² / (2 σ²))`` (a JAX pytree).

  Returned by :func:`~tljax.reweight.kliep`, :func:`~tljax.reweight.ulsif`
  and :func:`~tljax.reweight.rulsif`; ``α >= 0``, so ``r̂ >= 0``.

  Attributes:
    weights: ``(n_s,)`` the fitted ratio at the source examples, the
      importance weights.
    alpha: ``(b,)`` the non-negative coefficients ``α``.
    centers: ``(b, d)`` the Gaussian centres ``c_l`` (target examples).
    sigma: the chosen Gaussian width ``σ``.
    regularization: the chosen ``λ`` (uLSIF, RuLSIF; 0 for KLIEP).
    cv_scores: the model-selection scores over the candidate grid, ``NaN``
      where no selection was needed (a single candidate): KLIEP's
      likelihood cross-validation score per width, ``(num_sigmas,)``,
      higher is better; uLSIF's and RuLSIF's leave-one-out squared loss per
      ``(σ, λ)``, ``(num_sigmas, num_lambdas)``, lower is better.
  """

  weights: jax.Array
  alpha: jax.Array
  centers: jax.Array
  sigma: jax.Array
  regularization: jax.Array
  cv_scores: jax.Array

  def ratio(self, points: Any) -> jax.Array:
    """The fitted ratio ``r̂`` at ``(m, d)`` ``points``, shape ``(m,)``.

    Evaluated, like the fit, on ``points`` and ``centers`` translated and
    scaled by a power of two (``σ`` scaled to match), so that data at
    ``1e30`` or ``1e-30`` do not overflow or underflow the squared distances.

    Raises:
      ValueError: on non-matrix or non-finite points, or a feature dimension
        other than the fitted data's.
    """
    dtype = self.centers.dtype
    points = check_points(points, "points", self.centers.shape[1], dtype)
    normalization, (points, centers) = normalize(points, self.centers)
    sigma = jnp.asarray(normalization.length(self.sigma, dtype), dtype)
    return _evaluate(points, centers, sigma, self.alpha)


@jax.jit
def _evaluate(points, centers, sigma, alpha):
  return jnp.matmul(
      gaussian_basis(points, centers, sigma),
      alpha,
      precision=jax.lax.Precision.HIGHEST,
  )
