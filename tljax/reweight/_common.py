"""Checks, Gaussian kernels and the median heuristic shared by :mod:`tljax.reweight`.

Every check raises a ``ValueError`` naming the argument. The estimators fit
on concrete data (they are not traced), so values — finiteness, positive
bandwidths — are always checked.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tljax.align._arrays import check_matrix, check_same_columns
from tljax.checks import check_positive, is_traced

#: Pooled examples above which the median heuristic looks at a random subset.
MEDIAN_MAX_POINTS = 1000


def check_domains(
  source: Any, target: Any, *, min_rows: int = 1, why: str = ""
) -> tuple[jax.Array, jax.Array]:
  """Finite ``(n_s, d)`` source and ``(n_t, d)`` target matrices in one float dtype."""
  source = check_matrix(source, "source", rows="n_source", min_rows=min_rows, why=why)
  target = check_matrix(target, "target", rows="n_target", min_rows=min_rows, why=why)
  check_same_columns(source, target, "source", "target")
  check_finite_values(source, "source")
  check_finite_values(target, "target")
  dtype = jnp.promote_types(source.dtype, target.dtype)
  return source.astype(dtype), target.astype(dtype)


def check_finite_values(array: jax.Array, argument: str) -> None:
  if is_traced(array):
    raise ValueError(
      f"{argument} must be a concrete array: the importance-weight estimators "
      "fit on data and cannot run inside jax.jit."
    )
  if not bool(np.all(np.isfinite(np.asarray(array)))):
    raise ValueError(f"{argument} must be finite (it holds NaN or infinity).")


def check_points(points: Any, argument: str, dim: int, dtype) -> jax.Array:
  """Finite ``(m, dim)`` points at which to evaluate a fitted ratio."""
  points = check_matrix(points, argument, rows="num_points")
  if points.shape[1] != dim:
    raise ValueError(
      f"{argument} must have the feature dimension of the fitted data ({dim}), "
      f"got shape {points.shape}."
    )
  check_finite_values(points, argument)
  return points.astype(dtype)


def check_key(key: Any) -> jax.Array:
  """A single ``jax.random`` key; ``None`` for the fixed ``jax.random.key(0)``."""
  if key is None:
    return jax.random.key(0)
  if isinstance(key, jax.Array):
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key) and key.shape == ():
      return key
    if key.dtype == jnp.uint32 and key.shape == (2,):
      return jax.random.wrap_key_data(key)
  raise ValueError(
    f"key must be None or a single jax.random key (jax.random.key(seed)), "
    f"got {key!r}."
  )


def check_grid(values: Any, argument: str) -> np.ndarray | None:
  """``None``, or a non-empty 1-D float64 array of positive finite numbers."""
  if values is None:
    return None
  if isinstance(values, (str, bytes)):
    raise ValueError(f"{argument} must be a positive number or a sequence of them, "
                     f"got {values!r}.")
  try:
    array = np.asarray(values)
  except (TypeError, ValueError):
    raise ValueError(
      f"{argument} must be a positive number or a sequence of them, got {values!r}."
    ) from None
  if array.dtype == np.bool_ or not (
    np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)
  ):
    raise ValueError(
      f"{argument} must be a positive number or a sequence of them, got {values!r}."
    )
  array = np.atleast_1d(array).astype(np.float64)
  if array.ndim != 1 or array.size == 0:
    raise ValueError(
      f"{argument} must be a positive number or a non-empty 1-D sequence of them, "
      f"got shape {array.shape}."
    )
  if not np.all(np.isfinite(array)) or np.any(array <= 0):
    raise ValueError(f"{argument} must be finite and > 0, got {array.tolist()}.")
  return array


def check_optional_positive(value: Any, argument: str) -> Any:
  return None if value is None else check_positive(value, argument)


# --- Kernels -------------------------------------------------------------------


def matmul(left: jax.Array, right: jax.Array) -> jax.Array:
  """``left @ right`` in full float32 precision (no TF32 on GPUs)."""
  return jnp.matmul(left, right, precision=jax.lax.Precision.HIGHEST)


def squared_distances(first: jax.Array, second: jax.Array) -> jax.Array:
  """``‖a_i − b_j‖²`` for every row pair, clipped at 0 against rounding."""
  first_norms = jnp.sum(jnp.square(first), axis=1)
  second_norms = jnp.sum(jnp.square(second), axis=1)
  distances = first_norms[:, None] + second_norms[None, :] - 2.0 * matmul(
    first, second.T
  )
  return jnp.maximum(distances, 0.0)


def gaussian_kernel(first: jax.Array, second: jax.Array, gamma: jax.Array) -> jax.Array:
  """``exp(−γ ‖a_i − b_j‖²)``, shape ``(len(first), len(second))``."""
  return jnp.exp(-gamma * squared_distances(first, second))


def gaussian_basis(points: jax.Array, centers: jax.Array, sigma: jax.Array) -> jax.Array:
  """``φ_l(x) = exp(−‖x − c_l‖² / (2 σ²))``, shape ``(len(points), len(centers))``."""
  return gaussian_kernel(points, centers, 1.0 / (2.0 * jnp.square(sigma)))


def median_squared_distance(
  source: jax.Array, target: jax.Array, key: jax.Array,
  max_points: int = MEDIAN_MAX_POINTS,
) -> jax.Array:
  """The median of ``‖z_i − z_j‖²`` over the pairs ``i < j`` of the pooled data.

  Over all pairs when the pooled data has at most ``max_points`` rows,
  otherwise over the pairs of ``max_points`` rows drawn without replacement
  with ``key`` (a quadratic number of pairs is out of reach at 50,000
  points). Floored at the smallest normal number so that identical points
  give a finite bandwidth.
  """
  pooled = jnp.concatenate([source, target])
  return _median_squared_distance(pooled, key, max_points=max_points)


@functools.partial(jax.jit, static_argnames=("max_points",))
def _median_squared_distance(pooled, key, *, max_points):
  if pooled.shape[0] > max_points:
    rows = jax.random.choice(key, pooled.shape[0], (max_points,), replace=False)
    pooled = pooled[rows]
  size = pooled.shape[0]
  if size < 2:
    return jnp.ones((), pooled.dtype)
  rows, cols = np.triu_indices(size, 1)
  values = jnp.sort(squared_distances(pooled, pooled)[rows, cols])
  count = values.shape[0]
  median = 0.5 * (values[(count - 1) // 2] + values[count // 2])
  return jnp.maximum(median, jnp.finfo(pooled.dtype).tiny)


def blocked_rows(function, rows: jax.Array, block_size: int) -> jax.Array:
  """``function`` applied to blocks of ``block_size`` rows, results concatenated.

  ``rows`` is zero-padded to a multiple of ``block_size`` and the padded
  results are dropped; ``function`` maps a ``(block_size, d)`` block to an
  array whose leading axis is ``block_size``. The blocks run one after the
  other (``jax.lax.map``), so memory holds one block's intermediates.
  """
  size = rows.shape[0]
  num_blocks = -(-size // block_size)
  padded = jnp.pad(rows, ((0, num_blocks * block_size - size), (0, 0)))
  blocks = padded.reshape(num_blocks, block_size, rows.shape[1])
  results = jax.lax.map(function, blocks)
  return results.reshape(num_blocks * block_size, *results.shape[2:])[:size]


# --- Gaussian-basis ratio models (KLIEP, uLSIF, RuLSIF) ---------------------------

#: Default Gaussian widths, as multiples of the median pooled distance:
#: nine points from 1/10 to 10, evenly spaced in log scale.
DEFAULT_WIDTH_MULTIPLIERS = tuple(float(10.0 ** e) for e in np.linspace(-1, 1, 9))


def width_grid(
  sigmas: Any, source: jax.Array, target: jax.Array, key: jax.Array
) -> np.ndarray:
  """The checked candidate widths, or the default multiples of the median distance."""
  sigmas = check_grid(sigmas, "sigmas")
  if sigmas is not None:
    return sigmas
  median = float(np.sqrt(median_squared_distance(source, target, key)))
  return median * np.asarray(DEFAULT_WIDTH_MULTIPLIERS)


def choose_centers(target: jax.Array, num_centers: int, key: jax.Array) -> jax.Array:
  """The sorted rows of ``min(num_centers, n_t)`` target examples drawn without replacement."""
  count = min(num_centers, target.shape[0])
  return jnp.sort(jax.random.choice(key, target.shape[0], (count,), replace=False))


def argbest(scores: np.ndarray, *, maximize: bool) -> tuple[int, ...]:
  """The index of the best finite-or-infinite score (NaN counts as worst); first on ties."""
  values = np.asarray(scores, np.float64)
  worst = -np.inf if maximize else np.inf
  values = np.where(np.isnan(values), worst, values)
  flat = int(np.argmax(values) if maximize else np.argmin(values))
  return tuple(int(i) for i in np.unravel_index(flat, values.shape))
