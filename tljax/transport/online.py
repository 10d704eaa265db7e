r"""The online (memory-light) mode of :mod:`tljax.transport.sinkhorn`.

The log-domain Sinkhorn updates of ott-jax (``geometry.update_potential``)
for the squared Euclidean cost between point clouds, with the cost
recomputed ``batch_size`` rows at a time inside each log-sum-exp, so no
``n × m`` array exists: memory ``O((n + m) · batch_size)``. The iterates,
error checks and stopping rule are the dense mode's (see
:mod:`tljax.transport.sinkhorn`, whose :func:`~tljax.transport.entropic_plan`
and :func:`~tljax.transport.sinkhorn_divergence` call these with an integer
``batch_size``). The plan is never formed: :class:`OnlineSinkhornResult`
applies it block by block. ott-jax 0.6.0's own online point clouds fail on
JAX >= 0.9 (see :mod:`tljax.transport.sinkhorn`).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

__all__ = ["OnlineSinkhornResult"]


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=(
        "source_potential",
        "target_potential",
        "transport_cost",
        "regularized_cost",
        "marginal_error",
        "converged",
        "iterations",
        "source_features",
        "target_features",
        "epsilon",
    ),
    meta_fields=("batch_size",),
)
@dataclasses.dataclass(frozen=True)
class OnlineSinkhornResult:
  r"""What :func:`entropic_plan` returns in online mode (``batch_size`` given).

  The plan ``P_ij = exp((f_i + g_j − ‖x_i − y_j‖²) / ε)`` is not held: it
  is applied block by block (:meth:`apply_plan`), recomputing the cost, so
  nothing of size ``n × m`` is ever in memory. A pytree (``batch_size``
  static), so it can be returned from a jitted function.

  Attributes:
    source_potential: the ``(n,)`` dual potential ``f``.
    target_potential: the ``(m,)`` dual potential ``g``.
    transport_cost: ``⟨P, C⟩``.
    regularized_cost: ``⟨P, C⟩ + ε KL(P | a bᵀ)``.
    marginal_error: ``‖Pᵀ 1 − b‖₁`` at the end.
    converged: whether ``marginal_error`` went below ``threshold``.
    iterations: the number of Sinkhorn iterations run.
    source_features: the ``(n, dim)`` source points ``x``.
    target_features: the ``(m, dim)`` target points ``y``.
    epsilon: ``ε``.
    batch_size: the rows of the cost recomputed at a time.
  """

  source_potential: jax.Array
  target_potential: jax.Array
  transport_cost: jax.Array
  regularized_cost: jax.Array
  marginal_error: jax.Array
  converged: jax.Array
  iterations: jax.Array
  source_features: jax.Array
  target_features: jax.Array
  epsilon: jax.Array
  batch_size: int

  def apply_plan(
      self, matrix: jax.Array, *, transpose: bool = False
  ) -> jax.Array:
    r"""``P @ matrix`` (or ``Pᵀ @ matrix``) without forming ``P``.

    The barycentric mapping of the source onto the target (Courty et al.
    2017) is ``apply_plan(target) / apply_plan(ones(m))[:, None]``.

    Args:
      matrix: ``(m,)`` or ``(m, k)`` (``(n,)`` or ``(n, k)`` when
        ``transpose``).
      transpose: apply ``Pᵀ`` instead of ``P``.

    Returns:
      ``(n,)`` or ``(n, k)`` (``(m,)`` or ``(m, k)`` when ``transpose``).

    Raises:
      ValueError: on a ``matrix`` whose first dimension is not the plan's
        number of columns (rows when ``transpose``), or of more than two
        dimensions.
    """
    matrix = jnp.asarray(matrix)
    length = (
        self.source_features.shape[0]
        if transpose
        else self.target_features.shape[0]
    )
    if matrix.ndim not in (1, 2) or matrix.shape[0] != length:
      raise ValueError(
          f"matrix must have shape ({length},) or ({length}, k) "
          f"({'the source' if transpose else 'the target'} size), got "
          f"{matrix.shape}."
      )
    vector = matrix.ndim == 1
    matrix = matrix.reshape(length, -1).astype(self.source_features.dtype)
    rows, columns = self.source_features, self.target_features
    row_potential, column_potential = (
        self.source_potential,
        self.target_potential,
    )
    if transpose:
      rows, columns = columns, rows
      row_potential, column_potential = column_potential, row_potential
    result = _apply_online_plan(
        rows,
        row_potential,
        columns,
        column_potential,
        self.epsilon,
        matrix,
        batch_size=self.batch_size,
    )
    return result[:, 0] if vector else result


# --- Online mode ---------------------------------------------------------------
#
# The log-domain updates of ott-jax's Sinkhorn (geometry.update_potential:
# the log-sum-exp of (f_i + g_j − C_ij) / ε with the updated potential
# added back), evaluated over blocks of ``batch_size`` rows: each block
# recomputes its (batch_size, other side) slice of the squared Euclidean
# cost, reduces it and drops it. lax.map runs the blocks one after another,
# so one block's slice is live at a time.


def _sizes(source, target) -> tuple[int, int]:
  return source.shape[0], target.shape[0]


def _map_row_blocks(function, arrays, batch_size: int):
  """``function`` over blocks of ``batch_size`` rows of ``arrays``, concatenated.

  The rows are padded with zeros to a whole number of blocks; the padded
  rows' results are dropped.
  """
  num_rows = arrays[0].shape[0]
  batch_size = min(batch_size, num_rows)
  num_blocks = -(-num_rows // batch_size)
  padding = num_blocks * batch_size - num_rows
  blocks = tuple(
      jnp.pad(array, [(0, padding)] + [(0, 0)] * (array.ndim - 1)).reshape(
          num_blocks, batch_size, *array.shape[1:]
      )
      for array in arrays
  )
  results = jax.lax.map(lambda block: function(*block), blocks)
  return jax.tree.map(
      lambda result: result.reshape(-1, *result.shape[2:])[:num_rows], results
  )


def _map_exponent_blocks(
    reduce, rows, row_potential, columns, column_potential, batch_size, *extra
):
  """``reduce(exponent, cost, *extra_block)`` over blocks of ``batch_size`` rows.

  ``exponent`` is the block's ``(f_i + g_j − C_ij)`` (ε not yet divided) and
  ``cost`` its squared Euclidean ``C_ij``, recomputed per block; ``extra``
  are per-row arrays cut into the same blocks.
  """
  column_norms = jnp.sum(jnp.square(columns), axis=1)

  def block(block_rows, block_potential, *extra_block):
    cost = jnp.maximum(
        jnp.sum(jnp.square(block_rows), axis=1)[:, None]
        + column_norms[None, :]
        - 2.0 * block_rows @ columns.T,
        0.0,
    )
    exponent = block_potential[:, None] + column_potential[None, :] - cost
    return reduce(exponent, cost, *extra_block)

  return _map_row_blocks(block, (rows, row_potential, *extra), batch_size)


def _online_lse(rows, row_potential, columns, column_potential, epsilon, size):
  """``ε log Σ_j exp((f_i + g_j − C_ij) / ε)`` for every row ``i``."""
  return _map_exponent_blocks(
      lambda exponent, _: epsilon
      * jax.nn.logsumexp(exponent / epsilon, axis=1),
      rows,
      row_potential,
      columns,
      column_potential,
      size,
  )


def _finite_or_zero(values):
  return jnp.where(jnp.isfinite(values), values, 0.0)


def _online_iterations(
    source,
    target,
    source_weights,
    target_weights,
    epsilon,
    *,
    threshold,
    max_iterations,
    batch_size,
    symmetric=False,
):
  """ott-jax's Sinkhorn loop in the online mode.

  Returns ``(f, g, error, iterations, Σ P)``.

  As ott's: ``g`` then ``f`` updated from zero (``-inf`` at zero weights),
  blocks of 10 iterations, after each the L1 error of ``Pᵀ 1``; stop when it
  is below ``threshold`` or not finite, or after ``max_iterations`` (rounded
  up to a multiple of 10). The target-side log-sum-exp after an ``f``
  update gives that error and the next ``g`` update at once, so an
  iteration is two passes over the cost.

  ``symmetric`` (``OT_ε(α, α)``: the same points and weights on both
  sides): one potential, ``f ← (f + T(f)) / 2`` with ``T`` the Sinkhorn
  update (Feydy et al. 2019, as ott-jax's divergence does; the plain
  alternating updates oscillate on a symmetric problem), one pass per
  iteration, the error that of ``P 1``.
  """
  zero = jnp.zeros((), source.dtype)
  f = jnp.where(source_weights > 0, zero, -jnp.inf)

  def lse(rows, row_potential, columns, column_potential):
    return _online_lse(
        rows, row_potential, columns, column_potential, epsilon, batch_size
    )

  def update(log_weights, potential, potential_lse):
    # ott's update_potential: ε log w − (lse − the potential added in it).
    return epsilon * log_weights - _finite_or_zero(
        potential_lse - _finite_or_zero(potential)
    )

  if symmetric:
    log_source = jnp.log(source_weights)

    def iteration(_, state):
      f, source_lse = state
      f = (f + update(log_source, f, source_lse)) / 2
      return f, lse(source, f, source, f)

    state = (f, lse(source, f, source, f))
    marginal = source_weights
  else:
    log_source = jnp.log(source_weights)
    log_target = jnp.log(target_weights)

    def iteration(_, state):
      f, g, target_lse = state
      g = update(log_target, g, target_lse)
      f = update(log_source, f, lse(source, f, target, g))
      return f, g, lse(target, g, source, f)

    g = jnp.where(target_weights > 0, zero, -jnp.inf)
    state = (f, g, lse(target, g, source, f))
    marginal = target_weights

  def error(state):
    return jnp.sum(jnp.abs(jnp.exp(state[-1] / epsilon) - marginal))

  def keep_going(loop):
    done, _, error_value = loop
    return jnp.logical_and(
        done < max_iterations,
        jnp.logical_or(
            done == 0,
            jnp.logical_and(
                jnp.isfinite(error_value), error_value >= threshold
            ),
        ),
    )

  def ten_iterations(loop):
    done, state, _ = loop
    state = jax.lax.fori_loop(0, 10, iteration, state)
    return done + 10, state, error(state)

  done, state, error_value = jax.lax.while_loop(
      keep_going,
      ten_iterations,
      (jnp.asarray(0), state, jnp.asarray(jnp.inf, zero.dtype)),
  )
  f, g = (state[0], state[0]) if symmetric else state[:2]
  return f, g, error_value, done, jnp.sum(jnp.exp(state[-1] / epsilon))


def _online_costs(
    source, target, f, g, source_weights, target_weights, epsilon, batch_size
):
  """``(⟨P, C⟩, KL(P | a bᵀ))`` summed block by block, as the dense path's."""
  log_target = jnp.log(target_weights)

  def block(exponent, cost, log_row_weights):
    log_plan = exponent / epsilon
    plan = jnp.exp(log_plan)
    relative = jnp.where(
        plan > 0,
        plan * (log_plan - log_row_weights[:, None] - log_target[None, :]),
        0.0,
    )
    return jnp.sum(plan * cost, axis=1), jnp.sum(relative, axis=1)

  transport, relative_entropy = _map_exponent_blocks(
      block, source, f, target, g, batch_size, jnp.log(source_weights)
  )
  return jnp.sum(transport), jnp.sum(relative_entropy)


@functools.partial(
    jax.jit,
    static_argnames=("threshold", "max_iterations", "batch_size", "symmetric"),
)
def _solve_online(
    source,
    target,
    source_weights,
    target_weights,
    epsilon,
    *,
    threshold: float,
    max_iterations: int,
    batch_size: int,
    symmetric: bool = False,
) -> OnlineSinkhornResult:
  f, g, error_value, done, _ = _online_iterations(
      source,
      target,
      source_weights,
      target_weights,
      epsilon,
      threshold=threshold,
      max_iterations=max_iterations,
      batch_size=batch_size,
      symmetric=symmetric,
  )
  transport_cost, relative_entropy = _online_costs(
      source, target, f, g, source_weights, target_weights, epsilon, batch_size
  )
  return OnlineSinkhornResult(
      source_potential=f,
      target_potential=g,
      transport_cost=transport_cost,
      regularized_cost=transport_cost + epsilon * relative_entropy,
      marginal_error=error_value,
      converged=error_value < threshold,
      iterations=done,
      source_features=source,
      target_features=target,
      epsilon=epsilon,
      batch_size=batch_size,
  )


@functools.partial(jax.jit, static_argnames=("batch_size",))
def _apply_online_plan(
    rows,
    row_potential,
    columns,
    column_potential,
    epsilon,
    matrix,
    *,
    batch_size,
):
  """``P @ matrix`` with ``P_ij = exp((f_i + g_j − C_ij) / ε)``, by row blocks."""
  return _map_exponent_blocks(
      lambda exponent, _: jnp.exp(exponent / epsilon) @ matrix,
      rows,
      row_potential,
      columns,
      column_potential,
      batch_size,
  )


@functools.partial(jax.custom_vjp, nondiff_argnums=(5, 6, 7, 8))
def _online_regularized_cost(
    source,
    target,
    source_weights,
    target_weights,
    epsilon,
    threshold,
    max_iterations,
    batch_size,
    symmetric,
):
  """``OT_ε(α, β)`` in the online mode, differentiable, for the divergence.

  The value is the dual objective at the solved potentials, ``⟨a, f̃⟩ +
  ⟨b, g̃⟩ − ε (Σ P − 1)`` with ``f̃ = f − ε log a``, ``g̃ = g − ε log b``
  (ott's potentials carry the ``log a``, ``log b`` of the kernel
  ``a bᵀ exp(−C/ε)``): it equals ``⟨P, C⟩ + ε KL(P | a bᵀ)`` at the optimum
  and, being stationary there, errs by the square of the marginal error
  where the primal form errs by the error itself (ott's divergence uses it
  too). The gradient is Danskin's (the potentials held fixed):
  ``2 (r_i x_i − (P y)_i)`` for the source points (``r = P 1``), likewise
  for the target, ``f̃`` and ``g̃`` for the weights, ``KL(P | a bᵀ)`` for
  ``ε``.
  """
  value, _ = _online_regularized_cost_forward(
      source,
      target,
      source_weights,
      target_weights,
      epsilon,
      threshold,
      max_iterations,
      batch_size,
      symmetric,
  )
  return value


def _unscaled_potential(potential, weights, epsilon):
  """``f − ε log a``, 0 where ``a = 0`` (where ``f = −∞``)."""
  positive = weights > 0
  return jnp.where(
      positive,
      potential - epsilon * jnp.log(jnp.where(positive, weights, 1.0)),
      0.0,
  )


def _online_regularized_cost_forward(
    source,
    target,
    source_weights,
    target_weights,
    epsilon,
    threshold,
    max_iterations,
    batch_size,
    symmetric,
):
  f, g, _, _, mass = _online_iterations(
      source,
      target,
      source_weights,
      target_weights,
      epsilon,
      threshold=threshold,
      max_iterations=max_iterations,
      batch_size=batch_size,
      symmetric=symmetric,
  )
  value = (
      source_weights @ _unscaled_potential(f, source_weights, epsilon)
      + target_weights @ _unscaled_potential(g, target_weights, epsilon)
      - epsilon * (mass - 1.0)
  )
  return value, (source, target, source_weights, target_weights, epsilon, f, g)


def _online_regularized_cost_backward(
    threshold, max_iterations, batch_size, symmetric, residuals, cotangent
):
  del threshold, max_iterations, symmetric
  source, target, source_weights, target_weights, epsilon, f, g = residuals
  # (P y, P 1) and (Pᵀ x, Pᵀ 1) in one pass each.
  source_side = _apply_online_plan(
      source,
      f,
      target,
      g,
      epsilon,
      jnp.concatenate([target, jnp.ones_like(target[:, :1])], axis=1),
      batch_size=batch_size,
  )
  target_side = _apply_online_plan(
      target,
      g,
      source,
      f,
      epsilon,
      jnp.concatenate([source, jnp.ones_like(source[:, :1])], axis=1),
      batch_size=batch_size,
  )
  # Only computed when ε's gradient is used (XLA drops it otherwise).
  _, relative_entropy = _online_costs(
      source, target, f, g, source_weights, target_weights, epsilon, batch_size
  )
  return tuple(
      cotangent * gradient
      for gradient in (
          2.0 * (source_side[:, -1:] * source - source_side[:, :-1]),
          2.0 * (target_side[:, -1:] * target - target_side[:, :-1]),
          _unscaled_potential(f, source_weights, epsilon),
          _unscaled_potential(g, target_weights, epsilon),
          relative_entropy,
      )
  )


_online_regularized_cost.defvjp(
    _online_regularized_cost_forward, _online_regularized_cost_backward
)
