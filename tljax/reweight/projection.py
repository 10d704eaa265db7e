r"""The Euclidean projection onto KMM's feasible set: a box and a slab.

:func:`project_box_slab` projects a vector onto
``{β : 0 ≤ β_i ≤ upper, lower_sum ≤ Σβ ≤ upper_sum}``, exactly to rounding;
:func:`project_box_slab_unchecked` is the same projection on checked
arrays, jitted, which the KMM solvers (:func:`tljax.reweight.kmm`) call at
every step of their compiled loop.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tljax.checks import check_non_negative, check_positive
from tljax.reweight._common import check_finite_values, check_representable

__all__ = ["project_box_slab", "project_box_slab_unchecked"]


def project_box_slab(
    values: Any, upper: float, lower_sum: float, upper_sum: float
) -> jax.Array:
  r"""The Euclidean projection onto ``{β : 0 ≤ β_i ≤ upper, lower_sum ≤ Σβ ≤ upper_sum}``.

  The feasible set of KMM (with ``upper = B`` and ``lower_sum``,
  ``upper_sum = n_s (1 ∓ ε)``). By the KKT conditions the projection of
  ``v`` is ``clip(v − τ, 0, upper)`` for a scalar ``τ``: ``τ = 0`` when
  ``Σ clip(v, 0, upper)`` already lies in ``[lower_sum, upper_sum]``,
  otherwise the ``τ`` at which the (continuous, non-increasing, piecewise
  linear) sum ``s(τ) = Σ clip(v − τ, 0, upper)`` equals the violated bound.
  That ``τ`` is found by bisection until the bracket cannot shrink in
  floating point, then by linear interpolation of ``s`` inside it, so the
  projection is exact to rounding.

  Args:
    values: the ``(n,)`` point ``v`` to project; ``max |v| + upper`` at
      most half the dtype's largest number.
    upper: the box's upper bound, > 0, with ``n · upper`` finite in the
      dtype of ``values`` (float32 at least).
    lower_sum: the least sum, ``0 <= lower_sum <= n · upper``.
    upper_sum: the largest sum, ``>= lower_sum``, finite in that dtype.

  Returns:
    The ``(n,)`` projection.

  Raises:
    ValueError: on a non-vector or non-finite ``values``, bounds that
      leave the set empty or overflow the dtype; the message names the
      argument.
  """
  try:
    array = values if isinstance(values, jax.Array) else np.asarray(values)
  except (TypeError, ValueError) as error:
    raise ValueError(
        f"values must be an array of real numbers: {error}"
    ) from None
  if (
      array.ndim != 1
      or array.shape[0] == 0
      or array.dtype == bool
      or not (
          jnp.issubdtype(array.dtype, jnp.floating)
          or jnp.issubdtype(array.dtype, jnp.integer)
      )
  ):
    raise ValueError(
        f"values must be a non-empty 1-D array of real numbers, got shape "
        f"{array.shape} and dtype {array.dtype}."
    )
  array = jnp.asarray(array)
  check_finite_values(array, "values")
  check_positive(upper, "upper")
  check_non_negative(lower_sum, "lower_sum")
  check_non_negative(upper_sum, "upper_sum")
  if float(upper_sum) < float(lower_sum):
    raise ValueError(
        f"upper_sum must be >= lower_sum ({float(lower_sum)}), got {float(upper_sum)}."
    )
  if float(lower_sum) > array.shape[0] * float(upper):
    raise ValueError(
        f"lower_sum must be <= n * upper = {array.shape[0] * float(upper)} (else "
        f"the set is empty), got {float(lower_sum)}."
    )
  array = array.astype(jnp.promote_types(array.dtype, jnp.float32))
  dtype = array.dtype
  # The clipped sums reach n · upper; they must not overflow.
  check_representable(upper, "upper", dtype, factor=array.shape[0])
  check_representable(upper_sum, "upper_sum", dtype)
  # The bisection brackets reach min(v) − upper and max(v).
  reach = float(np.max(np.abs(np.asarray(array, np.float64)))) + float(upper)
  if not reach <= 0.5 * float(jnp.finfo(dtype).max):
    raise ValueError(
        f"values must satisfy max|values| + upper <= {0.5 * float(jnp.finfo(dtype).max):.4g} "
        f"(half the largest {np.dtype(dtype).name} number), got {reach:.4g}."
    )
  return project_box_slab_unchecked(
      array,
      jnp.asarray(upper, dtype),
      jnp.asarray(lower_sum, dtype),
      jnp.asarray(upper_sum, dtype),
  )


@jax.jit
def project_box_slab_unchecked(values, upper, lower_sum, upper_sum):
  """:func:`project_box_slab` of checked arrays of one float dtype, jitted."""

  def clipped_sum(shift):
    return jnp.sum(jnp.clip(values - shift, 0.0, upper))

  zero = jnp.zeros((), values.dtype)
  unshifted = clipped_sum(zero)
  above = unshifted > upper_sum
  below = unshifted < lower_sum
  goal = jnp.where(above, upper_sum, lower_sum)
  # s(τ) falls from n·upper at τ = min(v) − upper to 0 at τ = max(v); the sign
  # of τ is known, so bracket it on that side of 0. Inside the slab τ = 0:
  # the empty bracket skips the bisection (which would otherwise halve its
  # way down to 0 through the subnormal numbers, 150–400 sums per call).
  low = jnp.where(above, zero, jnp.where(below, jnp.min(values) - upper, zero))
  high = jnp.where(above, jnp.max(values), zero)

  def bisecting(state):
    low, high, count = state
    middle = 0.5 * (low + high)
    return (middle > low) & (middle < high) & (count < 400)

  def bisect(state):
    low, high, count = state
    middle = 0.5 * (low + high)
    too_big = clipped_sum(middle) > goal  # s(τ) > goal: τ is larger
    return (
        jnp.where(too_big, middle, low),
        jnp.where(too_big, high, middle),
        count + 1,
    )

  low, high, _ = jax.lax.while_loop(
      bisecting, bisect, (low, high, jnp.zeros((), jnp.int32))
  )
  sum_low, sum_high = clipped_sum(low), clipped_sum(high)
  gap = sum_low - sum_high
  fraction = jnp.where(
      gap > 0, (sum_low - goal) / jnp.where(gap > 0, gap, 1.0), 0.0
  )
  shift = low + jnp.clip(fraction, 0.0, 1.0) * (high - low)
  shift = jnp.where(above | below, shift, zero)
  return jnp.clip(values - shift, 0.0, upper)
