r"""The linear Monge mapping between Gaussian approximations of two domains, in closed form.

Between Gaussians ``N(μ_s, Σ_s)`` and ``N(μ_t, Σ_t)`` the optimal transport
map for the squared Euclidean cost is affine (Knott and Smith, "On the
optimal mapping of distributions", J. Optim. Theory Appl. 1984)::

  T(x) = μ_t + A (x − μ_s),
  A = Σ_s^{−1/2} (Σ_s^{1/2} Σ_t Σ_s^{1/2})^{1/2} Σ_s^{−1/2}.

Flamary, Lounici and Ferrari ("Concentration bounds for linear Monge
mapping estimation and optimal transport domain adaptation", 2019) estimate
it from samples, with the empirical means and covariances, for domain
adaptation: POT's ``ot.da.LinearTransport`` and
``ot.gaussian.empirical_bures_wasserstein_mapping``, which this follows.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from tljax.align._arrays import check_finite_result, check_hyperparameter
from tljax.transport._checks import check_pair, check_weights

__all__ = ["LinearMapping", "linear_monge_mapping"]


class LinearMapping(NamedTuple):
  """An affine map of row vectors: ``x ↦ x @ matrix + offset``.

  Attributes:
    matrix: the symmetric ``(dim, dim)`` matrix ``A``.
    offset: the ``(dim,)`` offset ``μ_t − μ_s A``.
  """

  matrix: jax.Array
  offset: jax.Array


def linear_monge_mapping(
    source_features: jax.Array,
    target_features: jax.Array,
    *,
    regularization: float = 1e-8,
    bias: bool = True,
    source_weights: jax.Array | None = None,
    target_weights: jax.Array | None = None,
) -> LinearMapping:
  r"""The linear Monge mapping from the source's Gaussian approximation to the target's.

  With weights ``w`` scaled to sum 1 (uniform by default), the means
  ``μ = Σ_i w_i x_i`` and the (biased, weighted) covariances plus a ridge::

    Σ = Σ_i w_i (x_i − μ)(x_i − μ)ᵀ + λ I,

  the map of the module docstring, returned as ``x ↦ x A + b`` with
  ``b = μ_t − μ_s A``. Matrix square roots are symmetric, from an
  eigendecomposition; ``Σ_s^{−1/2}`` is the pseudo-inverse root
  (eigenvalues below ``dim · resolution · λ_max`` count as 0), which equals
  the inverse root whenever ``Σ_s`` is well conditioned (as with the
  ridge). Matches POT's ``ot.da.LinearTransport(reg=λ, bias=bias)``.

  Args:
    source_features: ``(n_s, dim)`` source points.
    target_features: ``(n_t, dim)`` target points.
    regularization: the ridge ``λ >= 0`` (POT's ``reg``, default 1e-8).
    bias: centre the domains (an affine map); ``False`` for the linear map
      between uncentred second moments (``μ = 0``, ``b = 0``).
    source_weights: ``(n_s,)`` non-negative weights; ``None`` for uniform.
    target_weights: ``(n_t,)`` weights, likewise.

  Returns:
    A :class:`LinearMapping`.

  Raises:
    ValueError: on features that are not finite non-empty matrices of the
      same ``dim``, bad weights, a negative ``regularization``, a ``bias``
      that is not a bool, or (when concrete) a map too large for the float
      type.
  """
  source, target = check_pair(
      source_features, target_features, "source_features", "target_features"
  )
  check_hyperparameter(regularization, "regularization")
  if not isinstance(bias, (bool, np.bool_)):
    raise ValueError(f"bias must be True or False, got {bias!r}.")
  source_weights = check_weights(
      source_weights,
      "source_weights",
      length=source.shape[0],
      length_of="source_features",
      dtype=source.dtype,
  )
  target_weights = check_weights(
      target_weights,
      "target_weights",
      length=target.shape[0],
      length_of="target_features",
      dtype=target.dtype,
  )
  return check_finite_result(
      _linear_monge_mapping(
          source,
          target,
          source_weights,
          target_weights,
          regularization,
          bool(bias),
      ),
      "linear_monge_mapping is not finite: the features are too large for "
      "the float type, or regularization is 0 and a covariance is singular.",
  )


@functools.partial(jax.jit, static_argnames=("bias",))
def _linear_monge_mapping(
    source, target, source_weights, target_weights, regularization, bias
):
  source_mean, source_covariance = _moments(
      source, source_weights, regularization, bias
  )
  target_mean, target_covariance = _moments(
      target, target_weights, regularization, bias
  )
  source_root, source_inverse_root = _symmetric_roots(source_covariance)
  middle, _ = _symmetric_roots(source_root @ target_covariance @ source_root)
  matrix = source_inverse_root @ middle @ source_inverse_root
  matrix = 0.5 * (matrix + matrix.T)  # symmetric up to rounding; make it so
  return LinearMapping(matrix=matrix, offset=target_mean - source_mean @ matrix)


def _moments(features, weights, regularization, bias):
  mean = weights @ features if bias else jnp.zeros(features.shape[1:])
  centred = features - mean
  covariance = (centred * weights[:, None]).T @ centred
  return mean.astype(features.dtype), covariance + regularization * jnp.eye(
      features.shape[1], dtype=features.dtype
  )


def _symmetric_roots(matrix):
  """``(M^{1/2}, pinv(M)^{1/2})`` of a symmetric positive semi-definite ``M``."""
  eigenvalues, eigenvectors = jnp.linalg.eigh(0.5 * (matrix + matrix.T))
  eigenvalues = jnp.maximum(eigenvalues, 0.0)
  cutoff = (
      matrix.shape[0]
      * jnp.finfo(matrix.dtype).eps
      * jnp.max(eigenvalues, initial=0.0)
  )
  roots = jnp.sqrt(eigenvalues)
  inverse_roots = jnp.where(
      eigenvalues > cutoff,
      1.0 / jnp.where(eigenvalues > cutoff, roots, 1.0),
      0.0,
  )
  return (
      (eigenvectors * roots) @ eigenvectors.T,
      (eigenvectors * inverse_roots) @ eigenvectors.T,
  )
