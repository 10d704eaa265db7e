"""Small numerical solvers shared by tljax's closed-form and fitted components."""

from __future__ import annotations

import jax
import optax


def minimize_lbfgs(
    objective, initial, *, max_iterations: int, tolerance: float = 1e-6
):
  """Minimises a smooth ``objective`` with ``optax.lbfgs`` from ``initial``.

  Runs inside a ``jax.lax.while_loop`` (jit-safe) until the gradient norm
  falls below ``tolerance`` or ``max_iterations`` steps are done; returns the
  parameters (a pytree like ``initial``).
  """
  solver = optax.lbfgs()
  value_and_grad = optax.value_and_grad_from_state(objective)

  def step(carry):
    parameters, state = carry
    value, grad = value_and_grad(parameters, state=state)
    updates, state = solver.update(
        grad, state, parameters, value=value, grad=grad, value_fn=objective
    )
    return optax.apply_updates(parameters, updates), state

  def running(carry):
    _, state = carry
    count = optax.tree.get(state, "count")
    gradient_norm = optax.tree.norm(optax.tree.get(state, "grad"))
    return (count == 0) | (
        (count < max_iterations) & (gradient_norm >= tolerance)
    )

  parameters, _ = jax.lax.while_loop(
      running, step, (initial, solver.init(initial))
  )
  return parameters
