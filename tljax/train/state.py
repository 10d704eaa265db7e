"""The train state: step, trainable and frozen trees, optimizer and model state."""

from __future__ import annotations

from typing import Any

import dataclasses

import flax.struct
import jax
import jax.numpy as jnp
import optax

from tljax import params as params_lib


@flax.struct.dataclass
class TrainState:
  """Everything a training step reads and writes, as one pytree.

  Attributes:
    step: number of updates applied so far (int32 scalar).
    trainable: parameters the step differentiates and updates.
    frozen: parameters the model uses but the step never touches; they have no
      gradient and no optimizer state.
    opt_state: optimizer state, for the ``trainable`` leaves only.
    model_state: non-parameter model variables (BatchNorm statistics).
    extras: constant trees the loss reads and the step never changes, set up
      once by a method before training: the source model's parameters for
      L2-SP or DELTA, a class relationship for Co-Tuning ({} if none).
    hparams: the method's traced hyper-parameters (``{name: float32
      scalar}``, see :attr:`tljax.methods.Method.hparams`), passed to its
      loss; a vmapped sweep stacks them like every other leaf, so each member
      trains with its own ({} if none).
    skipped_steps: how many steps the divergence guard did not apply because
      their loss, gradients or new values were not finite (int32 scalar; see
      :func:`tljax.train.step.guard_nonfinite`).
    first_nonfinite_step: the ``step`` of the first such update, ``-1`` if
      none (int32 scalar).
  """

  step: jax.Array
  trainable: Any
  frozen: Any
  opt_state: Any
  model_state: Any
  extras: Any = dataclasses.field(default_factory=dict)
  hparams: Any = dataclasses.field(default_factory=dict)
  skipped_steps: jax.Array = dataclasses.field(
      default_factory=lambda: jnp.zeros((), jnp.int32)
  )
  first_nonfinite_step: jax.Array = dataclasses.field(
      default_factory=lambda: jnp.full((), -1, jnp.int32)
  )

  @property
  def params(self) -> dict:
    """The full parameter tree the model sees."""
    return params_lib.merge(self.trainable, self.frozen)


def create_train_state(
    params,
    model_state,
    optimizer: optax.GradientTransformation,
    rules=((".*", 1.0),),
    extras=None,
    hparams=None,
) -> TrainState:
  """Splits ``params`` by ``rules`` and initialises the optimizer on the trainable part.

  Args:
    params: nested dict of arrays, the full parameter tree.
    model_state: nested dict of non-parameter variables ({} if none).
    optimizer: an optax transformation; it is initialised on the trainable
      leaves only.
    rules: ordered ``(regex, value)`` rules (see :func:`tljax.params.split`);
      the default trains everything.
    extras: constant trees for the loss (see :class:`TrainState`).
    hparams: ``{name: number}``, the traced hyper-parameters (see
      :class:`TrainState`).
  """
  trainable, frozen = params_lib.split(params, rules)
  if not params_lib.flatten(trainable):
    raise ValueError(
        f"rules {list(rules)} freeze every parameter; nothing would be trained"
    )
  return TrainState(
      step=jnp.zeros((), jnp.int32),
      trainable=trainable,
      frozen=frozen,
      opt_state=optimizer.init(trainable),
      model_state=model_state,
      # A copy: extras often hold the starting parameters, and
      # the step donates the state, which must not alias itself.
      extras=jax.tree.map(jnp.copy, extras or {}),
      hparams={
          name: jnp.asarray(value, jnp.float32)
          for name, value in (hparams or {}).items()
      },
  )
