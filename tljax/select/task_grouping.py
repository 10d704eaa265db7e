r"""Which tasks to train together: task grouping by inter-task affinity (TAG).

Fifty, Amid, Zhao, Yu, Anil and Finn, "Efficiently identifying task groupings
for multi-task learning", NeurIPS 2021. A multi-task model has shared
parameters ``θ_s`` (a trunk) and task-specific parameters ``θ_i`` (one head per
task). At a training step on a batch ``X``, the *inter-task affinity* of task
``i`` onto task ``j`` is how much a step of the shared parameters along task
``i``'s gradient alone lowers task ``j``'s loss on the same batch:

    θ_{s|i} = θ_s − η ∇_{θ_s} L_i(X, θ_s, θ_i),
    Z_{i→j} = 1 − L_j(X, θ_{s|i}, θ_j) / L_j(X, θ_s, θ_j).

``Z_{i→j} > 0``: task ``i``'s update helps task ``j``; ``< 0``: it hurts.
Averaged over the steps of one joint training run (the paper's Eq. 3–4), the
affinities choose which tasks to train together (:func:`group_tasks`).

* :func:`lookahead_affinity` — the ``(T, T)`` matrix ``Z`` at one step, for
  any model given as a function of ``(shared_params, task_params, batch)``
  returning the ``T`` task losses.
* :func:`train_with_affinities` — jointly trains a small multi-task MLP (a
  shared ReLU trunk and one linear softmax head per task) with optax and
  averages ``Z`` over training; with ``affinity_every=0`` it is plain
  multi-task training (used to verify a grouping).
* :func:`group_tasks` — the groups (at most ``num_groups``) maximising the
  total affinity each task receives from its best group, by exact search.
* :func:`score_grouping` — that objective for given groups.

Orientation: ``affinity[i, j] = Z_{i→j}``; row ``i`` is the task whose
gradient moves the shared parameters, column ``j`` the task whose loss is
measured.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from tljax.checks import check_int, check_positive, is_traced

# The group search lives in its own module; re-exported here, where it was.
from tljax.select.grouping_search import (
    MAX_GROUPING_TASKS,
    TaskGrouping,
    concrete_array,
    group_tasks,
    score_grouping,
)

__all__ = [
    "MAX_GROUPING_TASKS",
    "MultiTaskRun",
    "TaskGrouping",
    "group_tasks",
    "lookahead_affinity",
    "multitask_accuracy",
    "multitask_logits",
    "multitask_losses",
    "score_grouping",
    "train_with_affinities",
]


# --- Inter-task affinity at one step ------------------------------------------


def lookahead_affinity(
    task_losses: Callable[[Any, Any, Any], jax.Array],
    shared_params: Any,
    task_params: Any,
    batch: Any,
    *,
    learning_rate: Any,
) -> jax.Array:
  r"""The inter-task affinities ``Z_{i→j}`` of one step (Fifty et al., Eq. 3).

  For every task ``i``, the shared parameters take one SGD step along task
  ``i``'s gradient, ``θ_{s|i} = θ_s − η ∇_{θ_s} L_i``, the task-specific
  parameters stay put, and every task's loss is re-evaluated on the same
  batch:

    Z[i, j] = 1 − L_j(θ_{s|i}, θ_j) / L_j(θ_s, θ_j).

  One forward pass with its pullback gives the ``T`` losses and (through
  ``jax.vmap`` over the rows of the identity) the ``T`` shared-parameter
  gradients; the ``T`` lookaheads are then evaluated under ``jax.vmap`` over
  ``i``. Memory: ``T`` copies of the shared parameters. Pure: works under
  ``jax.jit`` and ``jax.vmap`` (e.g. over ``learning_rate`` or batches).

  The lookahead is the plain SGD step of the paper's equation whatever
  optimiser trains the model; with a small ``η``,
  ``Z_{i→j} ≈ η ⟨∇L_i, ∇L_j⟩ / L_j``, so the diagonal is positive.

  Per-task loss functions ``fns`` with heads ``heads`` fit this interface as
  ``lambda s, heads, b: jnp.stack([f(s, h, b) for f, h in zip(fns, heads)])``.

  Args:
    task_losses: ``task_losses(shared_params, task_params, batch)`` → the
      ``(T,)`` task losses, each ``L_j`` depending on ``shared_params`` and on
      its own part of ``task_params``. They must be positive (the affinity
      divides by them), e.g. mean cross-entropies.
    shared_params: pytree of the shared parameters ``θ_s``.
    task_params: pytree of all task-specific parameters ``(θ_1, …, θ_T)``
      (any structure ``task_losses`` understands); not moved by the lookahead.
    batch: the batch ``X``, passed to ``task_losses`` as is.
    learning_rate: the lookahead step size ``η`` > 0 (may be traced).

  Returns:
    The ``(T, T)`` matrix with ``[i, j] = Z_{i→j}``, in the losses' dtype.

  Raises:
    ValueError: ``task_losses`` is not callable or does not return a 1-D
      float array, ``shared_params`` holds no float arrays,
      ``learning_rate`` is not a positive number, or (when concrete) the
      losses are not finite and positive, before or after the lookahead
      step (a step too large for the float range).
  """
  if not callable(task_losses):
    raise ValueError(f"task_losses must be callable, got {task_losses!r}.")
  check_positive(learning_rate, "learning_rate")
  leaves = jax.tree.leaves(shared_params)
  if not leaves:
    raise ValueError(
        "shared_params must hold at least one array (the shared parameters)."
    )
  for leaf in leaves:
    if not jnp.issubdtype(jnp.result_type(leaf), jnp.floating):
      raise ValueError(
          f"shared_params must hold float arrays (they are differentiated), got dtype "
          f"{jnp.result_type(leaf)}."
      )

  def losses_at(shared):
    return task_losses(shared, task_params, batch)

  losses, pullback = jax.vjp(losses_at, shared_params)
  if losses.ndim != 1 or losses.shape[0] < 1:
    raise ValueError(
        "task_losses must return a 1-D array of the T task losses, got shape "
        f"{losses.shape}."
    )
  if not jnp.issubdtype(losses.dtype, jnp.floating):
    raise ValueError(
        f"task_losses must return floats, got dtype {losses.dtype}."
    )
  if not is_traced(losses):
    values = np.asarray(losses)
    if not np.all(np.isfinite(values)) or np.any(values <= 0):
      raise ValueError(
          "task_losses must return finite losses > 0 at shared_params (the "
          f"affinity divides by them), got {values.tolist()}."
      )
  num_tasks = losses.shape[0]
  # Row i of the identity pulled back: ∇_{θ_s} L_i, stacked along a new axis.
  (gradients,) = jax.vmap(pullback)(jnp.eye(num_tasks, dtype=losses.dtype))

  def lookahead(gradient):
    moved = jax.tree.map(
        lambda param, grad: param - (learning_rate * grad).astype(param.dtype),
        shared_params,
        gradient,
    )
    return losses_at(moved)

  after = jax.vmap(lookahead)(gradients)  # [i, j] = L_j(θ_{s|i}, θ_j)
  affinity = 1.0 - after / losses[None, :]
  if not is_traced(affinity) and not np.all(np.isfinite(np.asarray(affinity))):
    raise ValueError(
        "lookahead_affinity: the losses after the lookahead step are not finite; "
        "lower learning_rate."
    )
  return affinity


# --- A small multi-task model and its training -----------------------------------


def _dot(left: jax.Array, right: jax.Array) -> jax.Array:
  # Full float32 (no TF32 on GPUs), so that CPU and GPU affinities agree.
  return jnp.matmul(left, right, precision=jax.lax.Precision.HIGHEST)


def _trunk(shared_params: dict, inputs: jax.Array) -> jax.Array:
  hidden = inputs.reshape(inputs.shape[0], -1)
  for n in range(1, len(shared_params) + 1):
    layer = shared_params[f"dense{n}"]
    hidden = jax.nn.relu(_dot(hidden, layer["kernel"]) + layer["bias"])
  return hidden


def multitask_logits(params: dict, inputs: Any) -> tuple[jax.Array, ...]:
  """The logits ``(N, C_t)`` of every head of a :func:`train_with_affinities` model.

  Args:
    params: ``{"shared": {"dense1": {"kernel", "bias"}, ...}, "heads":
      ({"kernel", "bias"}, ...)}``, e.g. :attr:`MultiTaskRun.params`.
    inputs: ``(N, ...)`` inputs, flattened to ``(N, D)``.
  """
  features = _trunk(params["shared"], jnp.asarray(inputs))
  return tuple(
      _dot(features, head["kernel"]) + head["bias"] for head in params["heads"]
  )


def multitask_losses(
    shared_params: dict, heads: Sequence[dict], batch: dict
) -> jax.Array:
  """Mean softmax cross-entropy of every head, ``(T,)``.

  A ``task_losses`` for :func:`lookahead_affinity` with the model of
  :func:`train_with_affinities`: the trunk runs once, then each head.

  Args:
    shared_params: the trunk, ``{"dense1": {"kernel", "bias"}, ...}``.
    heads: one ``{"kernel", "bias"}`` per task.
    batch: ``{"inputs": (B, ...), "labels": (B, T) int}``.
  """
  features = _trunk(shared_params, batch["inputs"])
  labels = batch["labels"]
  return jnp.stack(
      [
          jnp.mean(
              optax.softmax_cross_entropy_with_integer_labels(
                  _dot(features, head["kernel"]) + head["bias"], labels[:, task]
              )
          )
          for task, head in enumerate(heads)
      ]
  )


def multitask_accuracy(params: dict, inputs: Any, labels: Any) -> np.ndarray:
  """Per-task accuracy ``(T,)`` of a multi-task model on ``labels`` ``(N, T)``."""
  labels = np.asarray(labels)
  logits = multitask_logits(params, inputs)
  return np.array(
      [
          float(
              np.mean(
                  np.asarray(jnp.argmax(task_logits, axis=-1))
                  == labels[:, task]
              )
          )
          for task, task_logits in enumerate(logits)
      ]
  )


def _init_params(
    key: jax.Array,
    in_features: int,
    hidden_dims: tuple[int, ...],
    num_classes: tuple[int, ...],
) -> dict:
  """He-normal trunk, LeCun-normal heads, zero biases."""
  keys = jax.random.split(key, len(hidden_dims) + len(num_classes))
  shared, fan_in = {}, in_features
  for n, width in enumerate(hidden_dims):
    shared[f"dense{n + 1}"] = {
        "kernel": jax.random.normal(keys[n], (fan_in, width))
        * math.sqrt(2 / fan_in),
        "bias": jnp.zeros((width,)),
    }
    fan_in = width
  heads = tuple(
      {
          "kernel": jax.random.normal(head_key, (fan_in, classes))
          * math.sqrt(1 / fan_in),
          "bias": jnp.zeros((classes,)),
      }
      for head_key, classes in zip(keys[len(hidden_dims) :], num_classes)
  )
  return {"shared": shared, "heads": heads}


class MultiTaskRun(NamedTuple):
  """What :func:`train_with_affinities` returns.

  Attributes:
    params: the trained model, ``{"shared": ..., "heads": (...)}`` (see
      :func:`multitask_logits`).
    affinity: ``(T, T)`` float64, ``Z_{i→j}`` averaged over the recorded
      steps; ``None`` when ``affinity_every=0``.
    affinity_history: ``(R, T, T)`` the recorded matrices, in step order
      (``(0, T, T)`` when none are recorded).
    affinity_steps: ``(R,)`` the steps they were recorded at (before that
      step's update).
    losses: ``(steps, T)`` the training batches' task losses.
  """

  params: dict
  affinity: np.ndarray | None
  affinity_history: np.ndarray
  affinity_steps: np.ndarray
  losses: np.ndarray


@functools.lru_cache(maxsize=16)
def _default_optimizer(learning_rate: float) -> optax.GradientTransformation:
  # Cached, so that repeated runs reuse the compiled training loop.
  return optax.sgd(learning_rate)


@functools.partial(jax.jit, static_argnames=("optimizer", "affinity_every"))
def _train(
    params, inputs, labels, indices, learning_rate, *, optimizer, affinity_every
):
  num_tasks = labels.shape[1]

  def step(carry, xs):
    params, opt_state = carry
    batch_indices, step_number = xs
    batch = {"inputs": inputs[batch_indices], "labels": labels[batch_indices]}

    def objective(params):
      losses = multitask_losses(params["shared"], params["heads"], batch)
      return jnp.sum(losses), losses

    (_, losses), grads = jax.value_and_grad(objective, has_aux=True)(params)
    if affinity_every:
      affinity = jax.lax.cond(
          step_number % affinity_every == 0,
          lambda: lookahead_affinity(
              multitask_losses,
              params["shared"],
              params["heads"],
              batch,
              learning_rate=learning_rate,
          ),
          lambda: jnp.zeros((num_tasks, num_tasks), losses.dtype),
      )
    else:
      affinity = jnp.zeros((0, 0), losses.dtype)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), (losses, affinity)

  steps = indices.shape[0]
  (params, _), (losses, affinities) = jax.lax.scan(
      step, (params, optimizer.init(params)), (indices, jnp.arange(steps))
  )
  return params, losses, affinities


def _check_labels(
    labels: Any, num_examples: int, num_classes: Sequence[int] | None
) -> tuple[np.ndarray, tuple[int, ...]]:
  labels = concrete_array(labels, "labels")
  if labels.ndim == 1:
    labels = labels[:, None]
  if labels.ndim != 2 or labels.shape[0] != num_examples or labels.shape[1] < 1:
    raise ValueError(
        f"labels must have shape ({num_examples}, num_tasks) (one row per input), "
        f"got shape {labels.shape}."
    )
  if not np.issubdtype(labels.dtype, np.integer) or labels.dtype == np.bool_:
    raise ValueError(f"labels must hold integers, got dtype {labels.dtype}.")
  num_tasks = labels.shape[1]
  if num_classes is None:
    if np.any(labels < 0):
      raise ValueError("labels must be >= 0.")
    num_classes = tuple(
        max(int(labels[:, task].max()) + 1, 2) for task in range(num_tasks)
    )
  else:
    if isinstance(num_classes, (str, bytes)) or not isinstance(
        num_classes, Sequence
    ):
      raise ValueError(
          f"num_classes must be a sequence of class counts, one per task, got {num_classes!r}."
      )
    num_classes = tuple(num_classes)
    if len(num_classes) != num_tasks:
      raise ValueError(
          f"num_classes must give one count per task ({num_tasks}), got {len(num_classes)}."
      )
    num_classes = tuple(
        check_int(c, "num_classes", minimum=2) for c in num_classes
    )
    bad = [
        task
        for task, c in enumerate(num_classes)
        if np.any((labels[:, task] < 0) | (labels[:, task] >= c))
    ]
    if bad:
      raise ValueError(f"labels of tasks {bad} lie outside [0, num_classes).")
  return labels.astype(np.int32), num_classes


def train_with_affinities(
    inputs: Any,
    labels: Any,
    *,
    num_classes: Sequence[int] | None = None,
    hidden_dims: Sequence[int] = (64,),
    steps: int = 1000,
    batch_size: int = 64,
    learning_rate: float = 0.1,
    optimizer: optax.GradientTransformation | None = None,
    affinity_every: int = 10,
    seed: int = 0,
) -> MultiTaskRun:
  r"""Trains a multi-task MLP on all tasks jointly, recording inter-task affinities.

  The model: inputs flattened, a shared trunk ``[Linear → ReLU]`` per width
  of ``hidden_dims`` (``θ_s``), then one linear softmax head per task
  (``θ_i``). Every step minimises the sum of the task losses (mean
  cross-entropies) on one batch shared by all tasks; batches run through
  shuffled epochs. Every ``affinity_every`` steps (from step 0), before that
  step's update, :func:`lookahead_affinity` computes ``Z`` on the step's
  batch with ``η = learning_rate``; the result is their mean, the paper's
  affinity averaged over training (Fifty et al., Eq. 4). The whole run is
  one compiled ``jax.lax.scan``.

  Args:
    inputs: ``(N, ...)`` real inputs, shared by all tasks.
    labels: ``(N, T)`` integer labels, column ``t`` for task ``t`` (``(N,)``
      for one task).
    num_classes: classes per task; ``None`` takes ``max + 1`` of each column
      (at least 2).
    hidden_dims: widths of the trunk's hidden layers (at least one).
    steps: training steps, >= 1.
    batch_size: examples per step, in ``[1, N]``.
    learning_rate: the default optimiser's (``optax.sgd``) step size, and the
      lookahead step ``η`` in every case.
    optimizer: an optax optimiser used instead of ``optax.sgd(learning_rate)``
      (the lookahead stays a plain SGD step of size ``learning_rate``). Pass
      the same object again to reuse the compiled loop.
    affinity_every: record ``Z`` every this many steps; ``0`` records none
      (plain multi-task training).
    seed: initialisation and batch order.

  Returns:
    A :class:`MultiTaskRun`.

  Raises:
    ValueError: on a malformed argument; the message names it. Also when
      training diverges (a non-finite loss), naming ``learning_rate``.
  """
  inputs = concrete_array(inputs, "inputs")
  if inputs.ndim < 2 or inputs.shape[0] < 1 or math.prod(inputs.shape[1:]) < 1:
    raise ValueError(
        f"inputs must have shape (num_examples, ...) with at least one example and "
        f"one feature, got shape {inputs.shape}."
    )
  if (
      not (
          np.issubdtype(inputs.dtype, np.floating)
          or np.issubdtype(inputs.dtype, np.integer)
      )
      or inputs.dtype == np.bool_
  ):
    raise ValueError(
        f"inputs must hold real numbers, got dtype {inputs.dtype}."
    )
  if not np.all(np.isfinite(inputs)):
    raise ValueError("inputs must be finite (no NaN or infinity).")
  num_examples = inputs.shape[0]
  labels, num_classes = _check_labels(labels, num_examples, num_classes)
  if isinstance(hidden_dims, (str, bytes)) or not isinstance(
      hidden_dims, Sequence
  ):
    raise ValueError(
        f"hidden_dims must be a sequence of layer widths, got {hidden_dims!r}."
    )
  hidden_dims = tuple(hidden_dims)
  if not hidden_dims:
    raise ValueError(
        "hidden_dims must name at least one hidden layer (the shared trunk)."
    )
  hidden_dims = tuple(
      check_int(width, "hidden_dims", minimum=1) for width in hidden_dims
  )
  steps = check_int(steps, "steps", minimum=1)
  batch_size = check_int(batch_size, "batch_size", minimum=1)
  if batch_size > num_examples:
    raise ValueError(
        f"batch_size must be at most the number of examples ({num_examples}), got {batch_size}."
    )
  check_positive(learning_rate, "learning_rate")
  affinity_every = check_int(affinity_every, "affinity_every", minimum=0)
  seed = check_int(seed, "seed", minimum=0)
  if optimizer is None:
    optimizer = _default_optimizer(float(learning_rate))
  elif not isinstance(optimizer, optax.GradientTransformation):
    raise ValueError(
        f"optimizer must be an optax.GradientTransformation, got {optimizer!r}."
    )

  rng = np.random.default_rng(seed)
  epochs = -(-steps * batch_size // num_examples)
  order = np.concatenate([rng.permutation(num_examples) for _ in range(epochs)])
  indices = (
      order[: steps * batch_size].reshape(steps, batch_size).astype(np.int32)
  )
  with np.errstate(over="ignore"):
    flat_inputs = inputs.reshape(num_examples, -1).astype(np.float32)
  if not np.all(np.isfinite(flat_inputs)):
    raise ValueError(
        "inputs must fit in float32 (the model's dtype), got magnitudes up to "
        f"{np.max(np.abs(inputs)):.6g}; rescale them."
    )
  params = _init_params(
      jax.random.key(seed), flat_inputs.shape[1], hidden_dims, num_classes
  )
  params, losses, affinities = _train(
      params,
      jnp.asarray(flat_inputs),
      jnp.asarray(labels),
      jnp.asarray(indices),
      jnp.float32(learning_rate),
      optimizer=optimizer,
      affinity_every=affinity_every,
  )
  num_tasks = labels.shape[1]
  losses = np.asarray(losses)
  if not np.all(np.isfinite(losses)):
    step = int(np.argmax(~np.all(np.isfinite(losses), axis=1)))
    raise ValueError(
        f"train_with_affinities: training diverged (non-finite losses from step {step}); "
        "lower learning_rate (or change optimizer)."
    )
  if affinity_every:
    recorded = np.arange(0, steps, affinity_every)
    history = np.asarray(affinities, np.float64)[recorded]
    affinity = history.mean(axis=0)
  else:
    recorded = np.zeros((0,), np.int64)
    history = np.zeros((0, num_tasks, num_tasks))
    affinity = None
  return MultiTaskRun(params, affinity, history, recorded, losses)
