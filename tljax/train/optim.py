"""Optimizers and learning-rate schedules built from a config.

The config (``config.optimizer``) fields:

* ``name``: ``"sgd"`` (heavy-ball / Nesterov momentum, L2 weight decay coupled as
  in PyTorch's SGD), ``"adam"`` or ``"adamw"`` (decoupled weight decay,
  Loshchilov & Hutter 2019).
* ``learning_rate``, ``momentum``, ``nesterov``, ``weight_decay``.
* ``schedule``: ``"constant"``, ``"cosine"`` (cosine decay to zero over the run,
  with ``warmup_steps`` of linear warm-up), or ``"inv"``: the annealing of
  Ganin et al. (2016), ``lr_p = lr_0 / (1 + alpha * p) ** beta`` with
  ``p = step / steps``, ``alpha = 10``, ``beta = 0.75``, the default of the
  domain-adaptation literature.
* ``grad_clip_norm``: clip the global gradient norm (``None`` to disable).

Weight decay acts only on the parameters it is given: frozen parameters are not
in the trainable tree, so they are never decayed.

``make_optimizer(..., inject_learning_rate=True)`` builds the same optimizer
through :func:`optax.inject_hyperparams`, with the learning rate held in the
optimizer state (``hyperparams["learning_rate"]``) instead of baked into the
compiled step: :func:`set_learning_rate` then changes it, and a vmapped sweep
(:mod:`tljax.train.sweep`) gives each member its own.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

OPTIMIZERS = ("sgd", "adam", "adamw")
# The state types optax.inject_hyperparams makes (the stateful one in recent
# optax versions).
_INJECTED_STATES = tuple(
    getattr(optax, name)
    for name in ("InjectHyperparamsState", "InjectStatefulHyperparamsState")
    if hasattr(optax, name)
)
SCHEDULES = ("constant", "cosine", "inv")


def _get(config: Mapping[str, Any], key: str, default):
  return config.get(key, default) if config.get(key) is not None else default


def make_schedule(
    config: Mapping[str, Any], total_steps: int, *, learning_rate=None
) -> optax.Schedule:
  """The learning-rate schedule of ``config`` (see the module docstring).

  ``learning_rate``: the peak rate to use instead of
  ``config["learning_rate"]`` (which is still checked), possibly a traced
  array (:func:`optax.inject_hyperparams` passes one).
  """
  name = _get(config, "schedule", "constant")
  peak = learning_rate
  learning_rate = float(config["learning_rate"])
  warmup_steps = _get(config, "warmup_steps", 0)
  if (
      isinstance(warmup_steps, (bool, np.bool_))
      or not isinstance(warmup_steps, (int, float, np.integer, np.floating))
      or warmup_steps != int(warmup_steps)
  ):
    raise ValueError(
        f"optimizer.warmup_steps must be a whole number of "
        f"steps, got {warmup_steps!r}"
    )
  warmup_steps = int(warmup_steps)
  if not (math.isfinite(learning_rate) and learning_rate > 0):
    raise ValueError(
        f"optimizer.learning_rate must be a finite number > 0, "
        f"got {learning_rate}"
    )
  if total_steps <= 0:
    raise ValueError(f"steps must be > 0, got {total_steps}")
  if peak is not None:
    learning_rate = peak
  if not 0 <= warmup_steps < max(total_steps, 1):
    raise ValueError(
        f"optimizer.warmup_steps must be in [0, steps), got "
        f"{warmup_steps} for {total_steps} steps"
    )
  if name == "constant":
    schedule = optax.constant_schedule(learning_rate)
  elif name == "cosine":
    schedule = optax.cosine_decay_schedule(
        learning_rate, total_steps - warmup_steps
    )
  elif name == "inv":
    alpha = float(_get(config, "inv_alpha", 10.0))
    beta = float(_get(config, "inv_beta", 0.75))
    for key, value in (("inv_alpha", alpha), ("inv_beta", beta)):
      # lr / (1 + α p)^β decays for α, β >= 0; a negative α makes the base
      # negative (NaN), a negative β makes the rate grow.
      if not (math.isfinite(value) and value >= 0):
        raise ValueError(
            f"optimizer.{key} must be a finite number >= 0, " f"got {value}"
        )
    decay_steps = total_steps - warmup_steps

    def schedule(count):
      progress = jnp.minimum(count / decay_steps, 1.0)
      return learning_rate / (1.0 + alpha * progress) ** beta

  else:
    raise ValueError(
        f"optimizer.schedule {name!r} is unknown; allowed: "
        f"{list(SCHEDULES)}"
    )
  if warmup_steps:
    warmup = optax.linear_schedule(0.0, learning_rate, warmup_steps)
    schedule = optax.join_schedules([warmup, schedule], [warmup_steps])
  return schedule


def make_optimizer(
    config: Mapping[str, Any],
    total_steps: int,
    *,
    inject_learning_rate: bool = False,
) -> optax.GradientTransformation:
  """An optax optimizer from ``config`` (see the module docstring).

  With ``inject_learning_rate`` the learning rate is an
  :func:`optax.inject_hyperparams` hyper-parameter in the optimizer state
  (see :func:`set_learning_rate`); the updates are otherwise the same.
  """
  if inject_learning_rate:
    return optax.inject_hyperparams(
        lambda learning_rate: _optimizer(config, total_steps, learning_rate)
    )(learning_rate=float(config["learning_rate"]))
  return _optimizer(config, total_steps, None)


def set_learning_rate(opt_state, learning_rate):
  """``opt_state`` with every injected ``learning_rate`` set to ``learning_rate``.

  For the state of an optimizer made with ``inject_learning_rate=True``
  (also inside a chain or per-group multipliers).

  Raises:
    ValueError: ``opt_state`` holds no injected learning rate.
  """
  found = []

  def injected(node):
    return isinstance(node, _INJECTED_STATES)

  def replace(node):
    if injected(node) and "learning_rate" in node.hyperparams:
      found.append(node)
      current = node.hyperparams["learning_rate"]
      return node._replace(
          hyperparams={
              **node.hyperparams,
              "learning_rate": jnp.asarray(learning_rate, current.dtype),
          }
      )
    return node

  opt_state = jax.tree.map(replace, opt_state, is_leaf=injected)
  if not found:
    raise ValueError(
        "opt_state has no injected learning rate (make the "
        "optimizer with inject_learning_rate=True)"
    )
  return opt_state


def _optimizer(config, total_steps: int, learning_rate):
  name = config.get("name", "sgd")
  schedule = make_schedule(config, total_steps, learning_rate=learning_rate)
  weight_decay = float(_get(config, "weight_decay", 0.0))
  if weight_decay < 0:
    raise ValueError(f"optimizer.weight_decay must be >= 0, got {weight_decay}")
  if name == "sgd":
    momentum = float(_get(config, "momentum", 0.9))
    if not 0 <= momentum < 1:
      raise ValueError(f"optimizer.momentum must be in [0, 1), got {momentum}")
    parts = [optax.add_decayed_weights(weight_decay)] if weight_decay else []
    parts.append(
        optax.sgd(
            schedule,
            momentum=momentum or None,
            nesterov=bool(_get(config, "nesterov", False)),
        )
    )
  elif name == "adam":
    parts = [optax.add_decayed_weights(weight_decay)] if weight_decay else []
    parts.append(optax.adam(schedule))
  elif name == "adamw":
    parts = [optax.adamw(schedule, weight_decay=weight_decay)]
  else:
    raise ValueError(
        f"optimizer.name {name!r} is unknown; allowed: " f"{list(OPTIMIZERS)}"
    )
  clip = config.get("grad_clip_norm")
  if clip is not None:
    if float(clip) <= 0:
      raise ValueError(f"optimizer.grad_clip_norm must be > 0, got {clip}")
    parts.insert(0, optax.clip_by_global_norm(float(clip)))
  return optax.chain(*parts)
