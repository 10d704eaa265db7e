r"""Nearest-neighbour importance weighting (NNeW)."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tljax.checks import check_int, check_non_negative
from tljax.reweight._common import (
    blocked_rows,
    check_domains,
    matmul,
    normalize,
)

__all__ = ["nearest_neighbor_counts", "nearest_neighbors_weighting"]


def nearest_neighbors_weighting(
    source: Any, target: Any, *, smoothing: float = 1.0, block_size: int = 256
) -> jax.Array:
  r"""Weights from how many target examples fall in each source example's Voronoi cell.

  Loog, "Nearest neighbor-based importance weighting", IEEE MLSP 2012
  (NNeW). Each target example ``x'_j`` is assigned to its nearest
  source example (Euclidean distance; ties go to the lowest index); with
  ``N_i`` the number of target examples assigned to ``x_i`` — the target
  examples in ``x_i``'s Voronoi cell — the density ratio at ``x_i`` is
  estimated by ``(N_i / n_t) / (1 / n_s)``. The paper's smoothed variant
  (NNeW+1) adds 1 to every count, so that no source example gets weight 0
  (Laplace smoothing); ``smoothing`` is that added count (0 for plain NNeW).
  The weights are scaled to mean 1 over the source::

    w_i = n_s (N_i + s) / (n_t + n_s s),   s = smoothing,

  which is ``n_s N_i / n_t`` for ``s = 0`` (the scale does not change an
  importance-weighted fit up to its regularisation trade-off).

  The weights are computed as ``(N_i + s) / (n_t / n_s + s)``, which does
  not overflow for any finite ``s``; distances are compared on the data
  translated and scaled by a power of two (which changes no nearest
  neighbour, but keeps data at ``1e30`` from overflowing their squares).

  The nearest neighbours are found in blocks of ``block_size`` target
  examples at a time, so memory is ``O(block_size · n_s)``, never
  ``n_t × n_s``.

  Args:
    source: ``(n_s, d)`` source examples.
    target: ``(n_t, d)`` target examples.
    smoothing: the count ``s >= 0`` added to every cell; 1 (NNeW+1) by default.
    block_size: target examples per block, >= 1.

  Returns:
    ``(n_s,)`` non-negative weights with mean 1.

  Raises:
    ValueError: on an empty, non-matrix or non-finite ``source`` or
      ``target``, different feature dimensions, ``smoothing < 0`` or
      ``block_size < 1``; the message names it.
  """
  check_non_negative(smoothing, "smoothing")
  counts = nearest_neighbor_counts(source, target, block_size=block_size)
  # w_i = (N_i + s) / (n_t / n_s + s), in float64: no overflow for any
  # finite s (n_s · s would overflow float32 past 3.4e38 / n_s).
  values = np.asarray(counts, np.float64)
  smoothing = float(smoothing)
  weights = (values + smoothing) / (values.sum() / values.shape[0] + smoothing)
  return jnp.asarray(weights, counts.dtype)


def nearest_neighbor_counts(
    source: Any, target: Any, *, block_size: int = 256
) -> jax.Array:
  r"""``N_i``: how many target examples have source example ``i`` as nearest neighbour.

  See :func:`nearest_neighbors_weighting`. Returns the ``(n_s,)`` counts as
  floats (they sum to ``n_t``).

  Raises:
    ValueError: on an empty, non-matrix or non-finite ``source`` or
      ``target``, different feature dimensions or ``block_size < 1``; the
      message names it.
  """
  source, target = check_domains(source, target)
  block_size = check_int(block_size, "block_size", minimum=1)
  # Nearest neighbours do not change under a translation and a positive
  # scaling; this one (a power of two) keeps ‖x‖² of data at 1e30 finite.
  _, (source, target) = normalize(source, target)
  return _counts(source, target, block_size=min(block_size, target.shape[0]))


@functools.partial(jax.jit, static_argnames=("block_size",))
def _counts(source, target, *, block_size):
  source_norms = jnp.sum(jnp.square(source), axis=1)

  def nearest(block):
    # argmin_i ‖x'_j − x_i‖² = argmin_i (‖x_i‖² − 2 x'_j·x_i).
    return jnp.argmin(
        source_norms[None, :] - 2.0 * matmul(block, source.T), axis=1
    )

  neighbours = blocked_rows(nearest, target, block_size)
  return jnp.zeros(source.shape[0], source.dtype).at[neighbours].add(1.0)
