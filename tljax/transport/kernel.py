r"""The kernel-domain solver of :mod:`tljax.transport.sinkhorn` (``solver="kernel"``).

Sinkhorn's scaling iterations (Cuturi, NeurIPS 2013; POT's ``ot.sinkhorn``,
``method='sinkhorn'``): with a kernel ``K`` fixed, ``v ← b / Kᵀu`` and
``u ← a / K v``, two matrix-vector products per iteration and no
exponential, where the log-domain updates take one of every entry in each
pass. Three additions, each from the literature, keep it stable in float32
and cut the passes:

* **Warm start in the log domain.** The first iteration (``g`` then ``f``
  from zero) is the log-domain one, and the kernel is built from its
  potentials: ``K_ij = exp((f_i + g_j − C_ij) / ε)``, so ``K`` is the
  first plan itself (rows summing to ``a``), rather than ``exp(−C/ε)``,
  which underflows in float32 once ``C/ε`` passes ~87.
* **Absorption** (Schmitzer, "Stabilized sparse scaling algorithms for
  entropy regularized transport problems", SIAM J. Sci. Comput. 2019; POT's
  ``sinkhorn_stabilized``): at each error check, when a scaling leaves
  ``[e^{-τ}, e^{τ}]`` (``τ`` = :data:`ABSORB_LOG_SCALING`), it is absorbed
  into the potentials (``f += ε log u``, ``g += ε log v``) and the kernel
  rebuilt, so scalings never overflow.
* **Over-relaxation** (Thibault, Chizat, Dossal and Papadakis,
  "Overrelaxed Sinkhorn–Knopp algorithm for regularized optimal
  transport", Algorithms 2021): ``u ← u^{1−ω} (a / K v)^ω`` (and ``v``
  alike), with ``ω`` from the convergence rate ``θ`` of the plain
  iterations, ``ω = 2 / (1 + √(1 − θ))`` (Lehmann, von Renesse, Sambale
  and Uschmajew, "A note on overrelaxation in the Sinkhorn algorithm",
  Optim. Lett. 2022, eq. 5; ott-jax's ``Momentum(start=...)``): plain
  iterations up to :data:`OVERRELAXATION_START`, ``θ`` the per-iteration
  ratio of the last two errors (capped at 0.99, as ott's), then ``ω`` fixed.
  Safeguards (tljax's): an error that grows between checks sets ``ω`` back
  to 1 for the rest of the solve, and the third check at which it grows
  ends the solve (not converged): the error is then at the float type's
  floor, about 6e-7 (L1) at ``n = m = 5,000`` in float32, where the
  log-domain solver's is similar. Same fixed point as plain Sinkhorn, so
  the same plan to the threshold; fewer iterations (2.5× fewer at
  ``n = 5,000`` in docs/benchmarks.md).

Error checks every 10 iterations as the log-domain mode: each block of 10
ends with a plain ``u`` update, so ``P 1 = a`` holds to rounding and the
error is the target marginal's, ``‖v ⊙ Kᵀu − b‖₁``, whose product the next
update reuses. ``Kᵀu`` is a row product on a transposed copy of ``K``, made
when the kernel is built: on XLA's CPU backend ``u @ K`` sums each column
in one long float32 accumulation (relative error 9e-7 at ``n = 5,000``,
an error floor above a 1e-6 threshold), and ``K.T @ u`` transposes the
matrix at every call (15× slower); ``Kᵀ @ u`` is as fast as ``K @ v`` and
8× more accurate.

Memory: the cost, the kernel and its transpose, three ``n × m`` arrays
(as POT's ``'sinkhorn'``: the cost, ``K`` and ``K / a``). The solve is a constant for gradients (its inputs
are gradient-stopped): the log-domain default is the differentiable one.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from tljax.transport.result import SinkhornResult, sinkhorn_result

#: Scalings are absorbed into the potentials once ``|log u|`` or
#: ``|log v|`` passes this (POT's ``sinkhorn_stabilized`` absorbs at
#: ``u > 1e3``, ``log 1e3 ≈ 6.9``); far from float32's limit of ~88.
ABSORB_LOG_SCALING = 7.0

#: Plain iterations before over-relaxation; the two error checks at
#: 10 and 20 give the convergence rate.
OVERRELAXATION_START = 20

#: The solve stops, not converged, once the error has grown at this many
#: checks: it is then at the float type's floor (rounding in the kernel
#: products), which no further iteration lowers.
STALL_INCREASES = 3

_CHECK_EVERY = 10


class _State(NamedTuple):
  source_potential: jax.Array  # f, absorbed
  target_potential: jax.Array  # g, absorbed
  kernel: jax.Array  # exp((f + g - C) / eps)
  kernel_t: jax.Array  # its transpose, laid out for row products
  u: jax.Array
  v: jax.Array
  column_sums: jax.Array  # K^T u, for the next v update and the error
  error: jax.Array
  omega: jax.Array
  increases: jax.Array  # checks at which the error grew
  iterations: jax.Array


def _safe_ratio(weights, denominator):
  """``weights / denominator``, 0 where the weight is 0 (an empty point)."""
  positive = weights > 0
  return jnp.where(
      positive, weights / jnp.where(positive, denominator, 1.0), 0.0
  )


def _relax(old, new, omega):
  """``old^{1−ω} new^ω``, in logs; 0 stays 0 (zero-weight points)."""
  positive = (old > 0) & (new > 0)
  safe_old = jnp.where(positive, old, 1.0)
  safe_new = jnp.where(positive, new, 1.0)
  relaxed = jnp.exp(
      (1.0 - omega) * jnp.log(safe_old) + omega * jnp.log(safe_new)
  )
  return jnp.where(positive, relaxed, new)


def _log(x, at_zero):
  """``log x``, and ``at_zero`` where ``x`` is 0 (a zero-weight point)."""
  return jnp.where(x > 0, jnp.log(jnp.where(x > 0, x, 1.0)), at_zero)


def _absorbed(cost, f, g, u, v, epsilon) -> dict:
  """The state's fields with potentials ``f``, ``g`` and unit scalings.

  The kernel and its transposed copy (module docstring) rebuilt from the
  potentials; scalings 1, 0 at zero-weight points (where ``u``, ``v`` are 0).
  """
  kernel = jnp.exp((f[:, None] + g[None, :] - cost) / epsilon)
  kernel_t = kernel.T
  u = (u > 0).astype(cost.dtype)
  return dict(
      source_potential=f,
      target_potential=g,
      kernel=kernel,
      kernel_t=kernel_t,
      u=u,
      v=(v > 0).astype(cost.dtype),
      column_sums=kernel_t @ u,
  )


@functools.partial(jax.jit, static_argnames=("threshold", "max_iterations"))
def solve_kernel(
    cost: jax.Array,
    source_weights: jax.Array,
    target_weights: jax.Array,
    epsilon: jax.Array,
    *,
    threshold: float,
    max_iterations: int,
) -> SinkhornResult:
  """The entropic plan of ``cost`` by the kernel-domain solver (module docstring).

  Checked arrays in (``max_iterations`` a multiple of 10); the potentials
  returned are ``f + ε log u`` and ``g + ε log v``, so that
  ``P_ij = exp((f_i + g_j − C_ij) / ε)`` as in the log-domain mode
  (``−inf`` for a zero-weight point).
  """
  cost, source_weights, target_weights, epsilon = jax.lax.stop_gradient(
      (cost, source_weights, target_weights, jnp.asarray(epsilon, cost.dtype))
  )
  dtype = cost.dtype
  log_a = _log(source_weights, -jnp.inf)
  log_b = _log(target_weights, -jnp.inf)
  # Iteration 1 in the log domain: g then f from f = 0.
  g = epsilon * (log_b - jax.nn.logsumexp(-cost / epsilon, axis=0))
  f = epsilon * (
      log_a - jax.nn.logsumexp((g[None, :] - cost) / epsilon, axis=1)
  )
  # Zero-weight points: potential 0 in the kernel, scaling 0 instead.
  f = jnp.where(source_weights > 0, f, 0.0)
  g = jnp.where(target_weights > 0, g, 0.0)
  state = _State(
      **_absorbed(cost, f, g, source_weights, target_weights, epsilon),
      error=jnp.asarray(jnp.inf, dtype),
      omega=jnp.ones((), dtype),
      increases=jnp.zeros((), jnp.int32),
      iterations=jnp.ones((), jnp.int32),
  )

  def iteration(last_of_block, state):
    omega = state.omega
    v = _relax(state.v, _safe_ratio(target_weights, state.column_sums), omega)
    new_u = _safe_ratio(source_weights, state.kernel @ v)
    u = jax.lax.select(last_of_block, new_u, _relax(state.u, new_u, omega))
    return state._replace(u=u, v=v, column_sums=state.kernel_t @ u)

  def block(state):
    # Iterations up to the next multiple of 10; the last one plain in u.
    start = state.iterations
    stop = (start // _CHECK_EVERY + 1) * _CHECK_EVERY
    state = jax.lax.fori_loop(
        start,
        stop,
        lambda i, s: iteration(i == stop - 1, s),
        state,
    )
    error = jnp.sum(jnp.abs(state.v * state.column_sums - target_weights))
    # Over-relaxation from the plain rate (Lehmann et al.), once; back to
    # plain iterations if the error grows.
    rate = jnp.minimum(error / state.error, 0.99) ** (1.0 / _CHECK_EVERY)
    lehmann = 2.0 / (1.0 + jnp.sqrt(1.0 - rate))
    omega = jnp.where(
        stop == OVERRELAXATION_START,
        jnp.where(jnp.isfinite(lehmann), lehmann, 1.0),
        state.omega,
    )
    grew = error > state.error
    omega = jnp.where(grew, 1.0, omega).astype(dtype)
    state = state._replace(
        error=error,
        omega=omega,
        increases=state.increases + grew.astype(jnp.int32),
        iterations=stop,
    )
    return jax.lax.cond(
        (jnp.max(jnp.abs(_log(state.u, 0.0))) > ABSORB_LOG_SCALING)
        | (jnp.max(jnp.abs(_log(state.v, 0.0))) > ABSORB_LOG_SCALING),
        _absorb,
        lambda s: s,
        state,
    )

  def _absorb(state):
    return state._replace(
        **_absorbed(
            cost,
            state.source_potential + epsilon * _log(state.u, 0.0),
            state.target_potential + epsilon * _log(state.v, 0.0),
            state.u,
            state.v,
            epsilon,
        )
    )

  def running(state):
    return (
        (state.error >= threshold)
        & (state.iterations < max_iterations)
        & (state.increases < STALL_INCREASES)
    )

  state = jax.lax.while_loop(running, block, state)
  return sinkhorn_result(
      state.u[:, None] * state.kernel * state.v[None, :],
      state.source_potential + epsilon * _log(state.u, -jnp.inf),
      state.target_potential + epsilon * _log(state.v, -jnp.inf),
      cost,
      source_weights,
      target_weights,
      epsilon,
      state.error < threshold,
      state.iterations,
  )
