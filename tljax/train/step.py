"""The one training step shared by every method.

A method supplies only a loss function with the signature::

    loss_fn(params, model_state, batch, key, extras)
        -> (loss, (model_state, metrics))

where ``params`` is the full (merged) parameter tree, ``model_state`` the
non-parameter variables (BatchNorm statistics) to be threaded through, ``batch``
a pytree of arrays, ``key`` a PRNG key for this step and ``extras`` the state's
constant trees (the source model for L2-SP, a teacher, ...; ``{}`` if none).
``metrics`` is a dict of scalars to log. A method with traced
hyper-parameters (``state.hparams`` not empty) also receives them, as the
keyword argument ``hparams``. The signature (:data:`LossFn`) and
:class:`Stage` are defined in :mod:`tljax.losses`, below the methods that
build them; they are re-exported here and from :mod:`tljax.train`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from tljax import params as params_lib
from tljax.config import GUARD_POLICIES
from tljax.losses import LossFn, Stage
from tljax.train.state import TrainState


def make_train_step(
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    *,
    jit: bool = True,
):
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
      return loss_fn(
          merged, state.model_state, batch, key, state.extras, **traced(state)
      )

    (loss, (model_state, metrics)), grads = jax.value_and_grad(
        objective, has_aux=True
    )(state.trainable)
    updates, opt_state = optimizer.update(
        grads, state.opt_state, state.trainable
    )
    trainable = optax.apply_updates(state.trainable, updates)
    metrics = dict(
        metrics,
        loss=loss,
        grad_norm=optax.tree.norm(grads),
        update_norm=optax.tree.norm(updates),
    )
    new_state = state.replace(
        step=state.step + 1,
        trainable=trainable,
        opt_state=opt_state,
        model_state=model_state,
    )
    return new_state, metrics

  return jax.jit(step, donate_argnums=0) if jit else step


def traced(state: TrainState) -> dict:
  """The keyword arguments carrying ``state.hparams`` to a loss (none if empty)."""
  return {"hparams": state.hparams} if state.hparams else {}


def keyed_by_step(step_fn):
  """``step_fn`` with its key derived from the batch's step counter.

  Returns ``step(state, batch, train_key) -> (state, metrics)`` that calls
  ``step_fn(state, batch, jax.random.fold_in(train_key, batch["step"]))``.
  The key is the one a host loop would make with ``fold_in(train_key, step)``,
  but it is made inside the compiled step: the loop then dispatches one
  program per step instead of two (the per-step ``fold_in`` on the host cost
  0.6 ms of Python and dispatch on a 2-core CPU, 4% of a LeNet DANN step at
  batch 64+64). Jit the result, not ``step_fn``.
  """

  def step(state: TrainState, batch, train_key: jax.Array):
    return step_fn(state, batch, jax.random.fold_in(train_key, batch["step"]))

  return step


def updates_per_step(stages, group: str) -> int:
  """How many optimizer updates ``group`` gets in one step of ``stages``."""
  return sum(stage.repeat for stage in stages if group in stage.groups)


def split_groups(tree, rules, groups) -> dict[str, dict]:
  """``{group: subtree}``: the leaves of ``tree`` each ``(regex, group)`` rule assigns.

  Every leaf must match a rule (first full match wins); groups that get no
  leaf map to ``{}``.
  """
  assignment = params_lib.match_rules(tree, rules)
  flat = params_lib.flatten(tree)
  unknown = sorted(set(assignment.values()) - set(groups))
  if unknown:
    raise ValueError(
        f"rules assign parameters to groups {unknown}; known: "
        f"{sorted(groups)}"
    )
  return {
      group: params_lib.unflatten(
          {
              name: leaf
              for name, leaf in flat.items()
              if assignment[name] == group
          }
      )
      for group in groups
  }


class GroupedOptimizer:
  """One optimizer state per parameter group, as recipes with several players need.

  MCD trains a feature generator and two classifiers with two optimizers
  (Saito et al., CVPR 2018): each keeps its own momentum and advances only
  when its group is updated. ``rules`` are ``(regex, group)`` pairs over the
  ``a/b/c`` names of the trainable tree (first full match wins, every
  parameter must match); ``optimizers`` maps each group to its optax
  transformation. ``init`` gives the ``{group: state}`` optimizer state the
  train state holds (so checkpoints and resumption need nothing special).
  """

  def __init__(
      self, optimizers: dict[str, optax.GradientTransformation], rules
  ):
    self.optimizers = dict(optimizers)
    self.rules = tuple(tuple(rule) for rule in rules)
    unknown = sorted({group for _, group in self.rules} - set(self.optimizers))
    if unknown:
      raise ValueError(
          f"GroupedOptimizer rules name groups {unknown} that "
          f"have no optimizer; known: {sorted(self.optimizers)}"
      )

  def split(self, tree) -> dict[str, dict]:
    """``{group: subtree}`` of ``tree`` (groups without leaves map to ``{}``)."""
    return split_groups(tree, self.rules, self.optimizers)

  def init(self, trainable) -> dict:
    return {
        group: self.optimizers[group].init(subtree)
        for group, subtree in self.split(trainable).items()
    }


def make_staged_train_step(
    stages, optimizer: GroupedOptimizer, *, jit: bool = True
):
  """``step(state, batch, key)`` running ``stages`` one after the other.

  Each stage differentiates its loss with respect to its groups only and
  updates them with their own optimizer state; a later stage sees the
  parameters (and model state) the earlier ones produced, all within one
  compiled function. Metrics: each stage's, prefixed by its name (of its last
  repeat), plus ``loss`` (the first stage's) and ``grad_norm`` (all stages'
  gradients of the step, in one global norm).
  """
  stages = tuple(stages)
  if not stages:
    raise ValueError("stages must not be empty")
  for stage in stages:
    unknown = sorted(set(stage.groups) - set(optimizer.optimizers))
    if unknown:
      raise ValueError(
          f"stage {stage.name!r} updates groups {unknown} that "
          f"the optimizer does not know: "
          f"{sorted(optimizer.optimizers)}"
      )

  def step(state: TrainState, batch, key) -> tuple[TrainState, dict]:
    groups = optimizer.split(state.trainable)
    opt_state = dict(state.opt_state)
    model_state = state.model_state
    metrics, all_grads, first_loss = {}, [], None
    for stage_index, stage in enumerate(stages):
      active = [
          group for group in stage.groups if params_lib.flatten(groups[group])
      ]
      for repeat in range(stage.repeat):
        stage_key = jax.random.fold_in(key, stage_index * 1024 + repeat)

        def objective(
            updated, stage=stage, model_state=model_state, stage_key=stage_key
        ):
          trainable = params_lib.unflatten(
              {
                  name: leaf
                  for group, subtree in {**groups, **updated}.items()
                  for name, leaf in params_lib.flatten(subtree).items()
              }
          )
          merged = params_lib.merge(trainable, state.frozen)
          return stage.loss_fn(
              merged,
              model_state,
              batch,
              stage_key,
              state.extras,
              **traced(state),
          )

        (loss, (model_state, stage_metrics)), grads = jax.value_and_grad(
            objective, has_aux=True
        )({group: groups[group] for group in active})
        for group in active:
          updates, opt_state[group] = optimizer.optimizers[group].update(
              grads[group], opt_state[group], groups[group]
          )
          groups[group] = optax.apply_updates(groups[group], updates)
        all_grads.append(grads)
        if first_loss is None:
          first_loss = loss
      metrics.update(
          {
              f"{stage.name}/{name}": value
              for name, value in {**stage_metrics, "loss": loss}.items()
          }
      )
    trainable = params_lib.unflatten(
        {
            name: leaf
            for subtree in groups.values()
            for name, leaf in params_lib.flatten(subtree).items()
        }
    )
    metrics = dict(
        metrics, loss=first_loss, grad_norm=optax.tree.norm(all_grads)
    )
    new_state = state.replace(
        step=state.step + 1,
        trainable=trainable,
        opt_state=opt_state,
        model_state=model_state,
    )
    return new_state, metrics

  return jax.jit(step, donate_argnums=0) if jit else step


def _all_finite(tree) -> jax.Array:
  flags = [
      jnp.all(jnp.isfinite(leaf))
      for leaf in jax.tree.leaves(tree)
      if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact)
  ]
  return jnp.all(jnp.stack(flags)) if flags else jnp.array(True)


def guard_nonfinite(step, policy: str = "stop"):
  """Wraps ``step(state, batch, key)`` so that a non-finite update is never applied.

  Inside the compiled step (no host synchronisation), the update counts as
  non-finite when the loss, the gradient norm, or any new trainable
  parameter or model-state value (BatchNorm statistics) is NaN or Inf.
  Then the step keeps the old parameters, optimizer state and model state,
  advances ``state.step`` (the batch is consumed), adds one to
  ``state.skipped_steps`` and records ``state.first_nonfinite_step``.

  Policies:
    * ``"skip"``: later finite steps are applied as usual.
    * ``"stop"``: no update is applied after the first non-finite one, so the
      state stays the last finite one until the host sees
      ``first_nonfinite_step >= 0`` (the training loop checks at its logging
      and checkpoint steps, and stops with a message).
    * ``"off"``: ``step`` is returned unwrapped.

  When every value is finite the wrapped step's results are bit-identical
  to ``step``'s. The metrics gain ``skipped_steps``.
  """
  if policy not in GUARD_POLICIES:
    raise ValueError(f"policy must be one of {GUARD_POLICIES}, got {policy!r}")
  if policy == "off":
    return step

  def guarded(state: TrainState, batch, key) -> tuple[TrainState, dict]:
    new_state, metrics = step(state, batch, key)
    finite = _all_finite(
        (
            metrics["loss"],
            metrics["grad_norm"],
            new_state.trainable,
            new_state.model_state,
        )
    )
    apply = finite
    if policy == "stop":
      apply = finite & (state.first_nonfinite_step < 0)

    def choose(new, old):
      return jax.tree.map(lambda a, b: jnp.where(apply, a, b), new, old)

    first = jnp.where(
        ~finite & (state.first_nonfinite_step < 0),
        state.step,
        state.first_nonfinite_step,
    )
    skipped = state.skipped_steps + (~finite).astype(jnp.int32)
    new_state = new_state.replace(
        trainable=choose(new_state.trainable, state.trainable),
        opt_state=choose(new_state.opt_state, state.opt_state),
        model_state=choose(new_state.model_state, state.model_state),
        skipped_steps=skipped,
        first_nonfinite_step=first,
    )
    return new_state, dict(metrics, skipped_steps=skipped)

  return guarded
