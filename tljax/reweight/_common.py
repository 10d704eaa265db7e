"""Checks, Gaussian kernels and the median heuristic shared by :mod:`tljax.reweight`.

Every check raises a ``ValueError`` naming the argument. The estimators fit
on concrete data (they are not traced), so values — finiteness, positive
bandwidths — are always checked.

Numerical robustness: the estimators depend on the data only through
distances, and the Gaussian kernel ``exp(−γ ‖x − y‖²)`` is unchanged when
the data are translated and scaled by ``c`` and ``γ`` by ``c²``. They
therefore fit on the data mapped by :func:`normalize` — the pooled mean
subtracted and then divided by a power of two, so that every value lies in
``(−2, 2)`` — which keeps the squared distances of data at ``1e30`` (whose
squares overflow float32) or ``1e-30`` (whose squares underflow) exact up
to rounding. The map is exact for a power of two and commutes with the
floating-point rounding, so on ordinary data it only moves the results by
the rounding of the translation.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

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
  source = check_matrix(
      source, "source", rows="n_source", min_rows=min_rows, why=why
  )
  target = check_matrix(
      target, "target", rows="n_target", min_rows=min_rows, why=why
  )
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


def check_grid(values: Any, argument: str) -> np.ndarray | None:
  """``None``, or a non-empty 1-D float64 array of positive finite numbers."""
  if values is None:
    return None
  if isinstance(values, (str, bytes)):
    raise ValueError(
        f"{argument} must be a positive number or a sequence of them, "
        f"got {values!r}."
    )
  try:
    array = np.asarray(values)
  except (TypeError, ValueError):
    raise ValueError(
        f"{argument} must be a positive number or a sequence of them, got {values!r}."
    ) from None
  if array.dtype == np.bool_ or not (
      np.issubdtype(array.dtype, np.floating)
      or np.issubdtype(array.dtype, np.integer)
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
    raise ValueError(
        f"{argument} must be finite and > 0, got {array.tolist()}."
    )
  return array


def check_optional_positive(value: Any, argument: str) -> Any:
  return None if value is None else check_positive(value, argument)


def check_representable(
    value: Any, argument: str, dtype, *, factor: float = 1.0
) -> None:
  """``factor · value`` (a checked finite number or array) stays finite in ``dtype``.

  The hyper-parameters are cast to the data's floating dtype; a value beyond
  its largest finite number (``3.4e38`` for float32) would become infinity.
  """
  if is_traced(value):
    return
  largest = float(jnp.finfo(dtype).max)
  values = np.asarray(value, np.float64) * factor
  if not np.all(values <= largest):
    limit = largest / factor
    raise ValueError(
        f"{argument} must be at most {limit:.4g} (the largest {np.dtype(dtype).name} "
        f"number{'' if factor == 1 else f' / {factor:g}'}), got {value!r}."
    )


# --- Normalisation -------------------------------------------------------------


def power_of_two_exponent(largest: float) -> int:
  """``k`` with ``2**k <= largest < 2**(k+1)``; 0 for 0."""
  if not largest > 0:
    return 0
  return int(np.frexp(largest)[1]) - 1


class Normalization:
  """The map ``x ↦ (x · 2^−e₀ − m) · 2^−e₁`` fitted on some arrays' rows.

  ``e₀`` brings the largest absolute value into ``[1, 2)``, ``m`` is the
  pooled mean of the scaled rows and ``e₁`` brings the largest deviation
  from it into ``[1, 2)`` (0 if all rows coincide). Distances are multiplied
  by ``2^−exponent``, ``exponent = e₀ + e₁``; powers of two scale exactly.
  Computed on the device in the arrays' dtype (no float64 copy of the data).
  """

  def __init__(self, *arrays: jax.Array):
    self.first_exponent = power_of_two_exponent(
        max(float(_largest_magnitude(array)) for array in arrays)
    )
    first = _power_of_two_factors(-self.first_exponent, arrays[0].dtype)
    total = sum(_scaled_sum(array, *first) for array in arrays)
    self.mean = total / sum(array.shape[0] for array in arrays)
    self.second_exponent = power_of_two_exponent(
        max(
            float(_largest_deviation(array, *first, self.mean))
            for array in arrays
        )
    )
    self.exponent = self.first_exponent + self.second_exponent

  def __call__(self, array: jax.Array) -> jax.Array:
    """``array`` mapped, in its own dtype (values beyond the dtype's range saturate)."""
    return _map(
        array,
        *_power_of_two_factors(-self.first_exponent, array.dtype),
        self.mean.astype(array.dtype),
        *_power_of_two_factors(-self.second_exponent, array.dtype),
    )

  def length(self, value: Any, dtype) -> np.ndarray:
    """A length (a width ``σ``) in the mapped units, clipped into the dtype's range."""
    return _clip_positive(
        np.ldexp(np.asarray(value, np.float64), -self.exponent), dtype
    )

  def inverse_gamma(self, value: Any, dtype) -> np.ndarray:
    """``γ`` (per squared length) of the mapped units back in the original units."""
    return _clip_positive(
        np.ldexp(np.asarray(value, np.float64), -2 * self.exponent), dtype
    )

  def gamma(self, value: Any, dtype) -> np.ndarray:
    """``γ`` (per squared length) of the original units in the mapped units."""
    return _clip_positive(
        np.ldexp(np.asarray(value, np.float64), 2 * self.exponent), dtype
    )

  def inverse_length(self, value: Any, dtype) -> np.ndarray:
    """A length of the mapped units back in the original units."""
    return _clip_positive(
        np.ldexp(np.asarray(value, np.float64), self.exponent), dtype
    )


def normalize(*arrays: jax.Array) -> tuple[Normalization, list[jax.Array]]:
  """The :class:`Normalization` fitted on ``arrays`` and the arrays it maps."""
  normalization = Normalization(*arrays)
  return normalization, [normalization(array) for array in arrays]


def _power_of_two_factors(exponent: int, dtype) -> tuple[jax.Array, jax.Array]:
  """Two factors whose product is ``2**exponent``, each within ``dtype``'s range."""
  half = exponent // 2
  return (
      jnp.asarray(2.0**half, dtype),
      jnp.asarray(2.0 ** (exponent - half), dtype),
  )


@jax.jit
def _largest_magnitude(array):
  return jnp.max(jnp.abs(array))


@jax.jit
def _scaled_sum(array, factor, second_factor):
  return jnp.sum(array * factor * second_factor, axis=0)


@jax.jit
def _largest_deviation(array, factor, second_factor, mean):
  return jnp.max(jnp.abs(array * factor * second_factor - mean))


@jax.jit
def _map(array, factor, second_factor, mean, scale, second_scale):
  largest = jnp.finfo(array.dtype).max
  mapped = (array * factor * second_factor - mean) * scale * second_scale
  return jnp.clip(mapped, -largest, largest)


def _clip_positive(values: np.ndarray, dtype) -> np.ndarray:
  """Non-negative float64 ``values`` clipped at ``dtype``'s largest finite number."""
  with np.errstate(over="ignore"):
    return np.minimum(values, float(jnp.finfo(dtype).max))


# --- Kernels -------------------------------------------------------------------


def matmul(left: jax.Array, right: jax.Array) -> jax.Array:
  """``left @ right`` in full float32 precision (no TF32 on GPUs)."""
  return jnp.matmul(left, right, precision=jax.lax.Precision.HIGHEST)


def squared_distances(first: jax.Array, second: jax.Array) -> jax.Array:
  """``‖a_i − b_j‖²`` for every row pair, clipped at 0 against rounding."""
  first_norms = jnp.sum(jnp.square(first), axis=1)
  second_norms = jnp.sum(jnp.square(second), axis=1)
  distances = (
      first_norms[:, None]
      + second_norms[None, :]
      - 2.0 * matmul(first, second.T)
  )
  return jnp.maximum(distances, 0.0)


def gaussian_kernel(
    first: jax.Array, second: jax.Array, gamma: jax.Array
) -> jax.Array:
  """``exp(−γ ‖a_i − b_j‖²)``, shape ``(len(first), len(second))``.

  1 where the distance is 0, also for ``γ = ∞`` (a width that underflowed).
  """
  distances = squared_distances(first, second)
  return jnp.exp(-jnp.where(distances > 0, gamma * distances, 0.0))


def gaussian_basis(
    points: jax.Array, centers: jax.Array, sigma: jax.Array
) -> jax.Array:
  """``φ_l(x) = exp(−‖x − c_l‖² / (2 σ²))``, shape ``(len(points), len(centers))``."""
  return gaussian_kernel(points, centers, 1.0 / (2.0 * jnp.square(sigma)))


def median_squared_distance(
    source: jax.Array,
    target: jax.Array,
    key: jax.Array,
    max_points: int = MEDIAN_MAX_POINTS,
) -> jax.Array:
  """The median of ``‖z_i − z_j‖²`` over the pairs ``i < j`` of the pooled data.

  Over all pairs when the pooled data has at most ``max_points`` rows,
  otherwise over the pairs of ``max_points`` rows drawn without replacement
  with ``key`` (a quadratic number of pairs is out of reach at 50,000
  points). Deviation from the plain median, for degenerate data: when more
  than half the pairs coincide (duplicated points, constant features; a
  squared distance at the rounding level of ``‖a‖² + ‖b‖²`` counts as 0) the
  median is 0, and the median of the positive squared distances is used
  instead; when all points coincide, 1 (any width gives the same kernel;
  the estimators call this on :func:`normalize`-d data, whose scale is 1).
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
  distances = squared_distances(pooled, pooled)[rows, cols]
  # ‖a‖² + ‖b‖² − 2a·b carries a rounding error of order eps (‖a‖² + ‖b‖²):
  # below that, points count as coinciding (so that duplicates reach the
  # fallback below rather than a width at rounding level).
  norms = jnp.sum(jnp.square(pooled), axis=1)
  noise = 8 * jnp.finfo(pooled.dtype).eps * (norms[rows] + norms[cols])
  values = jnp.sort(jnp.where(distances > noise, distances, 0.0))
  count = values.shape[0]
  median = 0.5 * (values[(count - 1) // 2] + values[count // 2])
  positive = jnp.sum(values > 0)
  start = count - positive  # the positive values are the last ones
  positive_median = 0.5 * (
      values[start + jnp.maximum(positive - 1, 0) // 2]
      + values[jnp.minimum(start + positive // 2, count - 1)]
  )
  median = jnp.where(
      median > 0, median, jnp.where(positive > 0, positive_median, 1.0)
  )
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
DEFAULT_WIDTH_MULTIPLIERS = tuple(float(10.0**e) for e in np.linspace(-1, 1, 9))


def width_grid(
    sigmas: Any,
    source: jax.Array,
    target: jax.Array,
    key: jax.Array,
    normalization: Normalization,
) -> tuple[np.ndarray, np.ndarray]:
  """The candidate widths in the original and in the normalised units.

  The checked ``sigmas``, or the default multiples of the median distance;
  ``source`` and ``target`` are the normalised data.
  """
  dtype = source.dtype
  sigmas = check_grid(sigmas, "sigmas")
  if sigmas is not None:
    check_representable(sigmas, "sigmas", dtype)
    return sigmas, normalization.length(sigmas, dtype)
  median = float(np.sqrt(median_squared_distance(source, target, key)))
  scaled = median * np.asarray(DEFAULT_WIDTH_MULTIPLIERS)
  return normalization.inverse_length(scaled, dtype), scaled


def choose_centers(
    target: jax.Array, num_centers: int, key: jax.Array
) -> jax.Array:
  """The sorted rows of ``min(num_centers, n_t)`` target examples drawn without replacement."""
  count = min(num_centers, target.shape[0])
  return jnp.sort(
      jax.random.choice(key, target.shape[0], (count,), replace=False)
  )


class BasisSetup(NamedTuple):
  """What a Gaussian-basis ratio fit (KLIEP, uLSIF, RuLSIF) starts from.

  ``source``, ``target`` and ``centers`` are in the normalised units of
  :func:`normalize`; ``widths`` are the candidate widths in the original
  units and ``scaled_widths`` the same in the normalised ones (in the data's
  dtype); ``original_centers`` are the chosen target rows as given.
  """

  source: jax.Array
  target: jax.Array
  widths: np.ndarray
  scaled_widths: jax.Array
  center_rows: jax.Array
  centers: jax.Array
  original_centers: jax.Array


def prepare_basis(
    source: jax.Array,
    target: jax.Array,
    sigmas: Any,
    num_centers: int,
    median_key: jax.Array,
    center_key: jax.Array,
) -> BasisSetup:
  """Normalises checked data and picks the candidate widths and the centres."""
  normalization, (scaled_source, scaled_target) = normalize(source, target)
  widths, scaled_widths = width_grid(
      sigmas, scaled_source, scaled_target, median_key, normalization
  )
  center_rows = choose_centers(scaled_target, num_centers, center_key)
  return BasisSetup(
      scaled_source,
      scaled_target,
      widths,
      jnp.asarray(scaled_widths, scaled_source.dtype),
      center_rows,
      scaled_target[center_rows],
      target[center_rows],
  )


def argbest(scores: np.ndarray, *, maximize: bool) -> tuple[int, ...]:
  """The index of the best score; first on ties.

  A non-finite score counts as worst: NaN, and an infinite one, which here
  only comes from rounding breakdown (a log-likelihood of ``+∞`` or a
  least-squares score of ``−∞`` cannot be reached).
  """
  values = np.asarray(scores, np.float64)
  worst = -np.inf if maximize else np.inf
  values = np.where(np.isfinite(values), values, worst)
  flat = int(np.argmax(values) if maximize else np.argmin(values))
  return tuple(int(i) for i in np.unravel_index(flat, values.shape))
