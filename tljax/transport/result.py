"""What the dense entropic solvers return: :class:`SinkhornResult`."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import xlogy

__all__ = ["SinkhornResult", "sinkhorn_result"]


class SinkhornResult(NamedTuple):
  """What :func:`sinkhorn` returns.

  Attributes:
    plan: the ``(n, m)`` entropic plan ``P``.
    source_potential: the ``(n,)`` dual potential ``f`` (``−inf`` at a
      zero-weight point).
    target_potential: the ``(m,)`` dual potential ``g``; with ``f``,
      ``P_ij = exp((f_i + g_j − C_ij) / ε)``.
    transport_cost: ``⟨P, C⟩`` (what POT's ``ot.sinkhorn2`` returns).
    regularized_cost: ``⟨P, C⟩ + ε KL(P | a bᵀ)``.
    marginal_error: ``‖Pᵀ 1 − b‖₁`` at the end (``P 1 = a`` holds to
      rounding after the last update).
    converged: whether ``marginal_error`` went below ``threshold``.
    iterations: the number of Sinkhorn iterations run.
  """

  plan: jax.Array
  source_potential: jax.Array
  target_potential: jax.Array
  transport_cost: jax.Array
  regularized_cost: jax.Array
  marginal_error: jax.Array
  converged: jax.Array
  iterations: jax.Array


def sinkhorn_result(
    plan,
    source_potential,
    target_potential,
    cost_matrix,
    source_weights,
    target_weights,
    epsilon,
    converged,
    iterations,
) -> SinkhornResult:
  """The result of a solved plan and its potentials: the costs and the error."""
  transport_cost = jnp.sum(plan * cost_matrix)
  relative_entropy = jnp.sum(
      xlogy(plan, plan)
      - xlogy(plan, source_weights[:, None] * target_weights[None, :])
  )
  return SinkhornResult(
      plan=plan,
      source_potential=source_potential,
      target_potential=target_potential,
      transport_cost=transport_cost,
      regularized_cost=transport_cost + epsilon * relative_entropy,
      marginal_error=jnp.sum(jnp.abs(jnp.sum(plan, axis=0) - target_weights)),
      converged=converged,
      iterations=iterations,
  )
