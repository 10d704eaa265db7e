r"""The exact optimal transport plan of a small problem (the earth mover's plan).

For weights ``a`` (``n``), ``b`` (``m``) of equal mass and a cost matrix
``C``, the Kantorovich problem is the linear programme::

  min_{P >= 0, P 1 = a, Pᵀ 1 = b}  ⟨P, C⟩,

POT's ``ot.emd``. JDOT (Courty et al., NeurIPS 2017) and DeepJDOT
(Damodaran et al., ECCV 2018) use this plan, not an entropic one, and treat
it as a constant: no gradient flows through it.

Solved on the host with SciPy, called from JAX through
:func:`jax.pure_callback` (so it runs inside :func:`jax.jit`; under
:func:`jax.vmap` it solves one problem after the other):

* equal sizes and uniform weights (a mini-batch's case): the optimum is
  attained at a permutation matrix divided by ``n`` (Birkhoff–von Neumann:
  the vertices of the set of doubly stochastic matrices are permutations),
  found by ``scipy.optimize.linear_sum_assignment`` (the Jonker–Volgenant
  shortest augmenting path, ``O(n³)``);
* otherwise: the transport LP by ``scipy.optimize.linprog(method="highs")``
  (HiGHS, with crossover, so a vertex of the transport polytope).

Both hold the ``n × m`` matrices in memory and are meant for the sizes of a
mini-batch or a small data set (a few thousand points).
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
import scipy.optimize
import scipy.sparse

from tljax.align._arrays import check_example_weights, check_matrix
from tljax.checks import is_traced

__all__ = ["exact_plan"]

# Relative tolerance on sum(a) == sum(b) (POT's ot.emd checks 6 decimals).
_MASS_TOLERANCE = 1e-6


def exact_plan(
    cost_matrix: jax.Array,
    source_weights: jax.Array | None = None,
    target_weights: jax.Array | None = None,
) -> jax.Array:
  r"""The exact OT plan ``argmin_{P ∈ Π(a, b)} ⟨P, C⟩``, as POT's ``ot.emd``.

  Jittable (a :func:`jax.pure_callback` to SciPy; see the module docstring
  for the two solvers). The plan is a constant for differentiation: the
  inputs pass through :func:`jax.lax.stop_gradient`, so a loss
  ``⟨P, C(θ)⟩`` has gradient ``⟨P, ∂C/∂θ⟩``, as in JDOT and DeepJDOT.
  When the optimum is not unique, one optimal vertex is returned (not
  necessarily POT's).

  Args:
    cost_matrix: the ``(n, m)`` finite cost ``C``.
    source_weights: ``(n,)`` non-negative weights ``a``; ``None`` for
      uniform ``1/n``.
    target_weights: ``(m,)`` non-negative weights ``b``; ``None`` for
      uniform ``1/m``. ``a`` and ``b`` must have the same positive sum (to
      1e-6 relative; ``b`` is then rescaled to ``a``'s sum exactly, as POT
      does), which is the plan's total mass.

  Returns:
    The ``(n, m)`` plan, of ``cost_matrix``'s float dtype.

  Raises:
    ValueError: on a cost that is not a finite ``(n, m)`` matrix, weights
      not of shape ``(n,)``/``(m,)``, negative or not finite, or whose sums
      differ or are zero. Values are checked when concrete (a traced call
      checks shapes only; the solver then raises on bad values at run time).
  """
  cost = check_matrix(
      cost_matrix,
      "cost_matrix",
      rows="num_source",
      columns="num_target",
      finite=True,
  )
  num_source, num_target = cost.shape
  dtype = cost.dtype
  # Uniform weights are made in the callback, in float64: a float64 NumPy
  # constant inside jax.jit can reach the program rounded to float32 under
  # the thread-local jax.enable_x64.
  weights = {}
  if source_weights is not None:
    weights["source"] = check_example_weights(
        source_weights,
        "source_weights",
        length=num_source,
        length_of="cost_matrix",
    ).astype(dtype)
  if target_weights is not None:
    weights["target"] = check_example_weights(
        target_weights,
        "target_weights",
        length=num_target,
        length_of="cost_matrix's columns",
    ).astype(dtype)
  if not any(is_traced(value) for value in weights.values()):
    _check_masses(*_host_weights(weights, num_source, num_target))
  assignment = not weights and num_source == num_target
  # A float64 plan travels back as pairs of uint32: JAX converts a
  # callback's float64 result to float32 when the thread running it has x64
  # off (jax.enable_x64 is thread-local), then rejects it.
  wide = np.dtype(dtype).itemsize == 8
  result_shape = (
      jax.ShapeDtypeStruct((num_source, num_target, 2), np.uint32)
      if wide
      else jax.ShapeDtypeStruct((num_source, num_target), dtype)
  )

  def callback(cost, weights):
    cost = np.asarray(cost, np.float64)
    if assignment:
      plan = _assignment_plan(cost)
    else:
      plan = _linprog_plan(cost, *_host_weights(weights, *cost.shape))
    plan = np.ascontiguousarray(plan, np.dtype(dtype))
    return plan.view(np.uint32).reshape(result_shape.shape) if wide else plan

  plan = jax.pure_callback(
      callback,
      result_shape,
      jax.lax.stop_gradient(cost),
      jax.lax.stop_gradient(weights),
      vmap_method="sequential",
  )
  return jax.lax.bitcast_convert_type(plan, dtype) if wide else plan


def _host_weights(
    weights: dict, num_source: int, num_target: int
) -> tuple[np.ndarray, np.ndarray]:
  """The given weights in float64, uniform (``1/n``) where not given."""
  source = weights.get("source")
  target = weights.get("target")
  return (
      np.full(num_source, 1.0 / num_source)
      if source is None
      else np.asarray(source, np.float64),
      np.full(num_target, 1.0 / num_target)
      if target is None
      else np.asarray(target, np.float64),
  )


def _check_masses(source_weights: np.ndarray, target_weights: Any) -> None:
  source_mass = float(np.sum(source_weights, dtype=np.float64))
  target_mass = float(np.sum(target_weights, dtype=np.float64))
  if not source_mass > 0:
    raise ValueError("source_weights must have a positive sum, got all zeros.")
  if not target_mass > 0:
    raise ValueError("target_weights must have a positive sum, got all zeros.")
  if abs(source_mass - target_mass) > _MASS_TOLERANCE * max(
      source_mass, target_mass
  ):
    raise ValueError(
        f"source_weights and target_weights must have the same sum (the "
        f"plan's mass), got {source_mass:.9g} and {target_mass:.9g}."
    )


def _assignment_plan(cost: np.ndarray) -> np.ndarray:
  """A permutation over ``n``: optimal for uniform weights on ``n × n``."""
  size = cost.shape[0]
  rows, columns = scipy.optimize.linear_sum_assignment(cost)
  plan = np.zeros_like(cost)
  plan[rows, columns] = 1.0 / size
  return plan


def _linprog_plan(
    cost: np.ndarray, source_weights: np.ndarray, target_weights: np.ndarray
) -> np.ndarray:
  """The transport LP by HiGHS; ``P`` flattened row-major as the variables."""
  num_source, num_target = cost.shape
  _check_masses(source_weights, target_weights)  # a traced call's values
  source_mass = source_weights.sum()
  target_weights = target_weights * (source_mass / target_weights.sum())
  row_sums = scipy.sparse.kron(
      scipy.sparse.eye(num_source), np.ones((1, num_target))
  )
  column_sums = scipy.sparse.kron(
      np.ones((1, num_source)), scipy.sparse.eye(num_target)
  )
  result = scipy.optimize.linprog(
      cost.ravel(),
      A_eq=scipy.sparse.vstack([row_sums, column_sums]).tocsr(),
      b_eq=np.concatenate([source_weights, target_weights]),
      bounds=(0, None),
      method="highs",
  )
  if result.status != 0:
    raise ValueError(f"the transport LP failed: {result.message}")
  return np.maximum(result.x, 0.0).reshape(num_source, num_target)
