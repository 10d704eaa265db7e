r"""Subspace alignment (SA) of principal subspaces, in closed form."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from tljax.align._arrays import (
    check_finite_result,
    check_matrix,
    check_same_columns,
    covariance,
    power_of_two_scale,
)
from tljax.checks import check_int

__all__ = ["subspace_alignment"]


def subspace_alignment(
    source: jax.Array, target: jax.Array, *, dim: int
) -> tuple[jax.Array, jax.Array]:
  r"""Align the source's principal subspace with the target's.

  Fernando, Habrard, Sebban and Tuytelaars, "Unsupervised visual domain
  adaptation using subspace alignment", ICCV 2013. With ``P_S``, ``P_T`` the
  ``(D, dim)`` orthonormal bases of the leading ``dim`` principal components
  of each domain, the alignment ``M = argmin ‖P_S M − P_T‖_F = P_Sᵀ P_T``
  maps source coordinates into the target basis::

    aligned source   = (X_S − 1 μ_Sᵀ) P_S M
    projected target = (X_T − 1 μ_Tᵀ) P_T

  and a classifier trained on the first is applied to the second. When the
  two subspaces coincide (``P_S P_Sᵀ = P_T P_Tᵀ``), the aligned source is the
  source expressed in the target basis, whatever the orientation and signs
  the two eigendecompositions picked.

  Each domain is centred by its own mean, as PCA does; the paper also
  z-normalises the features beforehand, which is left to the caller. The
  bases come from ``jnp.linalg.eigh`` of the unbiased covariances; the
  signs of their columns are arbitrary, and both outputs flip together with
  ``P_T``'s, so source and target stay comparable. Each domain is divided by
  a power of two (exactly) before its covariance is taken and its output
  multiplied back, so features of order 1e30 (or 1e-30) in float32 neither
  overflow nor underflow; a rank-deficient covariance (e.g. ``n <= dim`` or
  constant features) gives an arbitrary, finite, orthonormal completion of
  the basis.

  Args:
    source: ``(n_S, D)`` source features, ``n_S >= 2``.
    target: ``(n_T, D)`` target features, ``n_T >= 2``.
    dim: the subspace dimension, ``1 <= dim <= D``.

  Returns:
    ``(aligned_source, projected_target)`` of shapes ``(n_S, dim)`` and
    ``(n_T, dim)``.

  Raises:
    ValueError: on non-matrix or non-finite features, fewer than 2 examples
      in either domain, different feature dimensions, ``dim`` out of range,
      or (when concrete) a result too large for the float type.
  """
  why = "principal components need a covariance"
  source = check_matrix(source, "source", min_rows=2, why=why, finite=True)
  target = check_matrix(target, "target", min_rows=2, why=why, finite=True)
  check_same_columns(source, target, "source", "target")
  dim = check_int(dim, "dim", minimum=1)
  if dim > source.shape[1]:
    raise ValueError(
        f"dim must be at most the feature dimension {source.shape[1]}, got {dim}."
    )
  return check_finite_result(
      _subspace_alignment(source, target, dim),
      "subspace_alignment is not finite: source and target are too large for "
      "the float type; rescale them.",
  )


@functools.partial(jax.jit, static_argnames="dim")
def _subspace_alignment(source, target, dim):
  source_scale = power_of_two_scale(source)
  target_scale = power_of_two_scale(target)
  source, target = source / source_scale, target / target_scale
  source_basis = _principal_basis(source, dim)
  target_basis = _principal_basis(target, dim)
  alignment = source_basis.T @ target_basis
  aligned_source = (
      (source - jnp.mean(source, axis=0)) @ source_basis @ alignment
  )
  projected_target = (target - jnp.mean(target, axis=0)) @ target_basis
  return aligned_source * source_scale, projected_target * target_scale


def _principal_basis(features: jax.Array, dim: int) -> jax.Array:
  """The ``(D, dim)`` eigenvectors of the covariance with the largest eigenvalues."""
  _, eigenvectors = jnp.linalg.eigh(covariance(features))  # ascending
  return eigenvectors[:, ::-1][:, :dim]
