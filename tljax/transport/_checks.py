"""Argument checks shared by :mod:`tljax.transport`; each error names the argument.

Shapes and dtypes are checked when traced, values (finiteness, non-negative
weights) when concrete, as in :mod:`tljax.align`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tljax.align._arrays import (
    check_example_weights,
    check_matrix,
    check_same_columns,
)
from tljax.checks import check_int, is_traced


def check_pair(
    source: Any,
    target: Any,
    source_argument: str,
    target_argument: str,
    *,
    min_rows: int = 1,
) -> tuple[jax.Array, jax.Array]:
  """Two finite ``(rows, dim)`` float matrices with the same ``dim``."""
  source = check_matrix(source, source_argument, min_rows=min_rows, finite=True)
  target = check_matrix(target, target_argument, min_rows=min_rows, finite=True)
  check_same_columns(source, target, source_argument, target_argument)
  dtype = jnp.promote_types(source.dtype, target.dtype)
  return source.astype(dtype), target.astype(dtype)


def check_weights(
    weights: Any, argument: str, *, length: int, length_of: str, dtype: Any
) -> jax.Array | np.ndarray:
  """Uniform ``1/length`` if ``None``, else non-negative weights scaled to sum 1.

  The sum must be positive (checked when concrete).
  """
  if weights is None:
    # NumPy: no eager JAX operation (each would compile) for the common case.
    return np.full((length,), 1.0 / length, np.dtype(dtype))
  weights = check_example_weights(
      weights, argument, length=length, length_of=length_of
  ).astype(dtype)
  if not is_traced(weights) and not float(np.sum(np.asarray(weights))) > 0:
    raise ValueError(f"{argument} must have a positive sum, got all zeros.")
  return weights / jnp.sum(weights)


def check_iterations(value: Any, argument: str) -> int:
  return check_int(value, argument, minimum=1)


def check_threshold(value: Any, argument: str = "threshold") -> float:
  """A concrete positive finite number (it configures the solver's loop)."""
  if (
      isinstance(value, bool)
      or not isinstance(value, (int, float, np.integer, np.floating))
      or not np.isfinite(value)
      or value <= 0
  ):
    raise ValueError(
        f"{argument} must be a finite number > 0 (a Python number, not a "
        f"traced array), got {value!r}."
    )
  return float(value)
