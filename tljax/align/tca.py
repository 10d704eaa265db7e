r"""Transfer component analysis (TCA), in closed form."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from tljax.align._arrays import (
    check_choice,
    check_finite_result,
    check_hyperparameter,
    check_matrix,
    check_same_columns,
    median,
    power_of_two_scale,
    squared_distances,
)
from tljax.checks import check_int

__all__ = ["KERNELS", "tca"]

KERNELS = ("linear", "rbf")


def tca(
    source: jax.Array,
    target: jax.Array,
    *,
    dim: int,
    mu: float = 1.0,
    kernel: str = "linear",
    gamma: float | None = None,
) -> tuple[jax.Array, jax.Array]:
  r"""Embed both domains on the transfer components, which shrink their MMD.

  Pan, Tsang, Kwok and Yang, "Domain adaptation via transfer component
  analysis", IEEE Transactions on Neural Networks 2011 (unsupervised TCA).
  With ``K`` the ``N × N`` kernel matrix of the pooled ``N = n_S + n_T``
  examples, ``L = e eᵀ`` the MMD matrix (``e_i = 1/n_S`` on source rows,
  ``−1/n_T`` on target rows, so ``L_ij`` is ``1/n_S²``, ``1/n_T²`` or
  ``−1/(n_S n_T)``) and ``H = I − 11ᵀ/N`` the centring matrix, TCA solves::

    min_W tr(Wᵀ K L K W) + μ tr(WᵀW)   s.t.   Wᵀ K H K W = I,

  whose solution is the ``dim`` leading eigenvectors of
  ``(K L K + μ I)⁻¹ K H K``: embedded data with the smallest MMD between the
  domains (``tr(WᵀKLKW)`` is the squared distance of the embedded means)
  for the most variance kept. The embeddings are ``K W``.

  Solved as the symmetric generalised eigenproblem
  ``K H K w = λ (K L K + μ I) w`` (what ``scipy.linalg.eigh(KHK, KLK + μI)``
  solves), with ``K L K + μ I = (K e)(K e)ᵀ + μ I`` a rank-one update of
  ``μ I`` whose inverse square root is closed-form. Eigenvectors are
  normalised as SciPy's, ``Wᵀ (K L K + μ I) W = I``; their signs are
  arbitrary.

  Kernels: ``'linear'``, ``k(x, y) = xᵀy``; ``'rbf'``,
  ``k(x, y) = exp(−γ ‖x − y‖²)``, with ``γ = 1 / (2 σ²)`` and ``σ²`` the
  median squared distance over the pairs of the pooled data when ``gamma``
  is ``None`` (the middle kernel of :func:`tljax.align.mmd`).

  Numerics: the features are divided by a power of two ``s`` (exactly)
  before kernels are taken. The linear kernel scales as ``s²``, and the
  solution with ``μ / s⁴`` on the scaled features is the same embedding
  (``s >= 1`` there); ``√μ`` is factored out of the whitening
  ``(K L K + μ I)^{−1/2}`` and divided out of the embedding at the end. So
  the result is unchanged while features of order 1e10 in float32 no longer
  overflow ``K H K``. The RBF kernel's distances are formed without
  overflow, and with the median heuristic it is scale-invariant. An
  embedding that is itself too large for the float type (of order
  ``s² / √μ``) raises.

  Args:
    source: ``(n_S, D)`` source features.
    target: ``(n_T, D)`` target features.
    dim: the number of transfer components, ``1 <= dim <= n_S + n_T``.
    mu: the trade-off ``μ > 0``.
    kernel: ``'linear'`` or ``'rbf'``.
    gamma: the RBF ``γ > 0``; only with ``kernel='rbf'``.

  Returns:
    ``(source_embedding, target_embedding)``, ``(n_S, dim)`` and
    ``(n_T, dim)``.

  Raises:
    ValueError: on non-matrix or non-finite features, different feature
      dimensions, ``dim`` out of range, a non-positive ``mu`` or ``gamma``,
      an unknown kernel, ``gamma`` with the linear kernel, or (when
      concrete) an embedding too large for the float type.
  """
  source = check_matrix(source, "source", finite=True)
  target = check_matrix(target, "target", finite=True)
  check_same_columns(source, target, "source", "target")
  kernel = check_choice(kernel, "kernel", KERNELS)
  check_hyperparameter(mu, "mu", positive=True)
  num_source, num_target = source.shape[0], target.shape[0]
  total = num_source + num_target
  dim = check_int(dim, "dim", minimum=1)
  if dim > total:
    raise ValueError(
        f"dim must be at most the number of examples n_S + n_T = {total}, got {dim}."
    )
  if gamma is not None:
    if kernel != "rbf":
      raise ValueError(
          f"gamma is the width of the 'rbf' kernel; it cannot be used with "
          f"kernel={kernel!r}."
      )
    check_hyperparameter(gamma, "gamma", positive=True)
  return check_finite_result(
      _tca(source, target, dim, mu, kernel, gamma),
      "tca is not finite: the embedding of source and target is too large for "
      "the float type (it grows as their scale squared over sqrt(mu)); rescale "
      "them or raise mu.",
  )


@functools.partial(jax.jit, static_argnames=("dim", "kernel"))
def _tca(source, target, dim, mu, kernel, gamma):
  num_source, num_target = source.shape[0], target.shape[0]
  total = num_source + num_target
  pooled = jnp.concatenate([source, target])
  scale = power_of_two_scale(pooled)
  if kernel == "linear":
    # K = s² K' and (K L K + μ I) = s⁴ (K' L K' + μ/s⁴ I): the same embedding.
    scale = jnp.maximum(scale, 1.0)
    pooled = pooled / scale
    kernel_matrix = pooled @ pooled.T
    root_mu = jnp.sqrt(mu) / (scale * scale)  # √(μ / s⁴), s >= 1
  else:
    root_mu = jnp.sqrt(jnp.asarray(mu, pooled.dtype))
    distances = squared_distances(pooled / scale, pooled / scale)
    if gamma is None:  # scale-invariant: the kernel of the scaled features
      rows, cols = np.triu_indices(total, 1)
      variance = jnp.maximum(
          median(distances[rows, cols]), jnp.finfo(distances.dtype).tiny
      )
      gamma = 1.0 / (2.0 * variance)
    else:  # d = d' s²: it may overflow to infinity (k = 0), but 0 stays 0
      distances = jnp.where(distances > 0, distances * scale * scale, 0.0)
    kernel_matrix = jnp.exp(-gamma * distances)

  mmd_vector = jnp.concatenate(
      [
          jnp.full((num_source,), 1.0 / num_source, pooled.dtype),
          jnp.full((num_target,), -1.0 / num_target, pooled.dtype),
      ]
  )
  centred = kernel_matrix - jnp.mean(kernel_matrix, axis=0)  # H K
  scatter = centred.T @ centred  # K H K, as H = Hᵀ = H²
  projected_mean = kernel_matrix @ mmd_vector  # K e, so K L K = (K e)(K e)ᵀ
  # (K L K + μ I)^{−1/2} = root / √μ; the eigenvectors of root K H K root are
  # those of the whitened matrix, which is μ times larger and can overflow.
  root = _inverse_sqrt_rank_one_update(root_mu, projected_mean)
  whitened = root @ scatter @ root
  _, eigenvectors = jnp.linalg.eigh((whitened + whitened.T) / 2)  # ascending
  components = root @ eigenvectors[:, ::-1][:, :dim]
  embedding = (kernel_matrix @ components) / root_mu
  return embedding[:num_source], embedding[num_source:]


def _inverse_sqrt_rank_one_update(root_mu, vector):
  """``√μ (μ I + v vᵀ)^{−1/2} = I − c v vᵀ / ‖v‖²``, from ``√μ``.

  ``c = 1 − √μ / √(μ + ‖v‖²)``: ``v`` is an eigenvector with eigenvalue
  ``μ + ‖v‖²``, its orthogonal complement has eigenvalue ``μ``. (0 for
  ``v = 0``.)
  """
  squared_norm = jnp.sum(jnp.square(vector))
  positive = squared_norm > 0
  safe_norm = jnp.where(positive, squared_norm, 1.0)
  shrink = jnp.where(
      positive, 1.0 - root_mu / jnp.sqrt(root_mu * root_mu + safe_norm), 0.0
  )
  identity = jnp.eye(vector.shape[0], dtype=vector.dtype)
  return identity - shrink * jnp.outer(vector, vector) / safe_norm
