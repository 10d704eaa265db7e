"""The one training step shared by every method.

A method supplies only a loss function with the signature::

    loss_fn(params, model_state, batch, key, extras)
        -> (loss, (model_state, metrics))

where ``params`` is the full (merged) parameter tree, ``model_state`` the
non-parameter variables (BatchNorm statistics) to be threaded through, ``batch``
a pytree of arrays, ``key`` a PRNG key for this step and ``extras`` the state's
constant trees (the source model for L2-SP, a teacher, ...; ``{}`` if none).
``metrics`` is a dict of scalars to log.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import optax

from tljax import params as params_lib
from tljax.train.state import TrainState

LossFn = Callable[[Any, Any, Any, jax.Array, Any],
                  tuple[jax.Array, tuple[Any, dict]]]


def make_train_step(loss_fn: LossFn, optimizer: optax.GradientTransformation,
                    *, jit: bool = True):
  """Returns ``step(state, batch, key) -> (state, metrics)``.

  The step differentiates ``loss_fn`` with respect to ``state.trainable`` only:
  frozen parameters enter the model through :func:`tljax.params.merge` as
  constants, so XLA computes no gradient for them and the optimizer keeps no
  state for them. With ``jit=True`` the step is compiled once with the state
  donated (its buffers are reused for the new state; do not use the old state
  after calling the step).

  The returned metrics are those of ``loss_fn`` plus ``loss``, ``grad_norm``
  (global L2 norm of the gradient) and ``update_norm``.
  """

  def step(state: TrainState, batch, key) -> tuple[TrainState, dict]:
    def objective(trainable):
      merged = params_lib.merge(trainable, state.frozen)
      return loss_fn(merged, state.model_state, batch, key, state.extras)

    (loss, (model_state, metrics)), grads = jax.value_and_grad(
        objective, has_aux=True)(state.trainable)
    updates, opt_state = optimizer.update(grads, state.opt_state,
                                          state.trainable)
    trainable = optax.apply_updates(state.trainable, updates)
    metrics = dict(metrics, loss=loss, grad_norm=optax.tree.norm(grads),
                   update_norm=optax.tree.norm(updates))
    new_state = state.replace(step=state.step + 1, trainable=trainable,
                              opt_state=opt_state, model_state=model_state)
    return new_state, metrics

  return jax.jit(step, donate_argnums=0) if jit else step
