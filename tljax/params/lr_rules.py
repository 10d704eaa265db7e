"""Per-group learning rates from rules, and layer-wise learning-rate decay.

The same ordered ``(regex, value)`` rules that freeze parameters (``None``)
give every trainable parameter a learning-rate *multiplier* (its rule's value,
a positive number), in the style of big_vision's ``lr_mults``. Layer-wise
learning-rate decay (LLRD; Howard & Ruder, ACL 2018, "discriminative
fine-tuning"; Clark et al., ICLR 2020 for the geometric form) multiplies the
learning rate of a parameter at depth ``d`` by ``decay ** (max_depth - d)``, so
layers near the input, which hold the most general features, move least. The
depth of a parameter comes from a depth function ``name -> depth`` or, as
config data, from rules ``(regex, depth)``, first match wins.

:func:`scale_by_multipliers` applies the multipliers to the updates of any
optax optimizer with ``optax.partition``: parameters are grouped by their
multiplier and each group's update is scaled by it, which for SGD, momentum,
Adam and coupled weight decay is exactly a per-group learning rate (all of them
are linear in the learning rate).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import numpy as np
import optax

from tljax.params.tree import (
    Rules,
    flatten_tree,
    is_frozen,
    match_named_rules,
    unflatten,
)


def _multiplier(name: str, value, argument: str = "rules") -> float:
  if isinstance(value, (bool, np.bool_)) or not isinstance(
      value, (int, float, np.integer, np.floating)
  ):
    raise ValueError(
        f"{argument} give parameter {name!r} the value {value!r}; a trainable "
        "parameter's value is its learning-rate multiplier, a positive number "
        "(None freezes it)"
    )
  if not math.isfinite(value) or value <= 0:
    raise ValueError(
        f"{argument} give parameter {name!r} the learning-rate "
        f"multiplier {value!r}; it must be a positive number"
    )
  return float(value)


def _check_depth_rules(depth_rules) -> None:
  if not callable(depth_rules) and (
      isinstance(depth_rules, (str, bytes, Mapping))
      or not isinstance(depth_rules, (tuple, list))
  ):
    raise ValueError(
        "depth_rules must be (regex, depth) pairs or a function "
        f"name -> depth, got {depth_rules!r}"
    )


def depths(
    params: Mapping, depth_rules: Rules | Callable[[str], int]
) -> dict[str, int]:
  """``{name: depth}`` for every leaf of ``params``.

  ``depth_rules`` is either ``(regex, depth)`` rules (first full match wins)
  or a depth function ``name -> depth``.

  Raises:
    ValueError: if ``params`` is not a mapping, ``depth_rules`` is neither
      rules nor callable, a rule is malformed or matches no rule, or a depth
      is not a non-negative integer.
  """
  _check_depth_rules(depth_rules)
  if callable(depth_rules):
    values = {
        name: depth_rules(name) for name in flatten_tree(params, "params")
    }
  else:
    values = match_named_rules(
        params,
        depth_rules,
        tree_argument="params",
        rules_argument="depth_rules",
    )
  for name, depth in values.items():
    if (
        isinstance(depth, (bool, np.bool_))
        or not isinstance(depth, (int, np.integer))
        or depth < 0
    ):
      raise ValueError(
          f"depth_rules give parameter {name!r} the depth "
          f"{depth!r}; depths are non-negative integers"
      )
  return {name: int(depth) for name, depth in values.items()}


def _check_layer_decay(layer_decay) -> float:
  if (
      isinstance(layer_decay, (bool, np.bool_))
      or not isinstance(layer_decay, (int, float, np.integer, np.floating))
      or not 0 < layer_decay <= 1
  ):
    raise ValueError(f"layer_decay must be in (0, 1], got {layer_decay!r}")
  return float(layer_decay)


def learning_rate_multipliers(
    trainable: Mapping,
    rules: Rules,
    *,
    layer_decay: float | None = None,
    depth_rules: Rules | Callable[[str], int] = (),
    max_depth: int | None = None,
) -> dict:
  """The learning-rate multiplier of every trainable leaf, as a tree like ``trainable``.

  Args:
    trainable: the trainable parameter tree (after :func:`tljax.params.split`).
    rules: the ``(regex, value)`` rules; a trainable leaf's value is its
      multiplier.
    layer_decay: if given, in (0, 1]: also multiply by ``layer_decay **
      (max_depth - depth)``, the depth coming from ``depth_rules``.
    depth_rules: ``(regex, depth)`` rules or a function ``name -> depth``,
      required with ``layer_decay``.
    max_depth: the depth whose multiplier is undecayed; ``None`` takes the
      deepest leaf of ``trainable``. Pass the whole model's when
      ``trainable`` is one part of it (one parameter group of a staged
      recipe), so that every part decays from the same top.

  Raises:
    ValueError: naming the argument: ``trainable`` not a mapping; malformed
      or non-matching ``rules``; a rule freezing a leaf of ``trainable`` or
      giving it a multiplier that is not a positive number; ``layer_decay``
      outside (0, 1]; missing or invalid ``depth_rules``; ``max_depth`` not
      an integer at least every leaf's depth.
  """
  values = match_named_rules(
      trainable, rules, tree_argument="trainable", rules_argument="rules"
  )
  frozen = []
  for name, value in values.items():
    try:
      if is_frozen(value):
        frozen.append(name)
    except ValueError as error:
      raise ValueError(f"rules give parameter {name!r} the {error}") from None
  if frozen:
    raise ValueError(
        f"trainable holds parameters {frozen} that rules freeze; "
        "split the parameters with the same rules first"
    )
  multipliers = {
      name: _multiplier(name, value) for name, value in values.items()
  }
  _check_depth_rules(depth_rules)
  if layer_decay is not None:
    layer_decay = _check_layer_decay(layer_decay)
    if not callable(depth_rules) and not depth_rules:
      raise ValueError(
          "layer_decay needs depth_rules, (regex, depth) pairs "
          "giving each parameter's depth"
      )
    layer_depths = depths(trainable, depth_rules)
    deepest = max(layer_depths.values(), default=0)
    if max_depth is None:
      max_depth = deepest
    elif (
        isinstance(max_depth, (bool, np.bool_))
        or not isinstance(max_depth, (int, np.integer))
        or max_depth < deepest
    ):
      raise ValueError(
          f"max_depth must be an integer >= the deepest "
          f"parameter's depth ({deepest}), got {max_depth!r}"
      )
    multipliers = {
        name: value * layer_decay ** (max_depth - layer_depths[name])
        for name, value in multipliers.items()
    }
  return unflatten(multipliers)


def _label(multiplier: float) -> str:
  return f"lr_x{multiplier!r}"


def scale_by_multipliers(multipliers: Mapping) -> optax.GradientTransformation:
  """Scales each leaf's update by its multiplier (chain it after an optimizer).

  Built on ``optax.partition``: one ``optax.scale`` per distinct multiplier;
  a multiplier of 1 leaves its group untouched.

  Raises:
    ValueError: if ``multipliers`` is not a mapping or a leaf is not a
      positive finite number (a Python or NumPy scalar, as
      :func:`learning_rate_multipliers` gives).
  """
  flat = {
      name: _multiplier(name, value, "multipliers")
      for name, value in flatten_tree(multipliers, "multipliers").items()
  }
  labels = unflatten({name: _label(value) for name, value in flat.items()})
  transforms = {
      _label(value): (optax.identity() if value == 1.0 else optax.scale(value))
      for value in set(flat.values())
  }
  return optax.partition(transforms, labels)


def with_learning_rate_multipliers(
    optimizer: optax.GradientTransformation,
    trainable: Mapping,
    rules: Rules,
    *,
    layer_decay: float | None = None,
    depth_rules: Rules | Callable[[str], int] = (),
    max_depth: int | None = None,
) -> optax.GradientTransformation:
  """``optimizer`` with per-parameter learning rates from ``rules`` (and LLRD).

  Returns ``optimizer`` itself when every multiplier is 1.

  Raises:
    ValueError: if ``optimizer`` is not an optax gradient transformation
      (``init`` and ``update``), or as :func:`learning_rate_multipliers`.
  """
  if not (
      callable(getattr(optimizer, "init", None))
      and callable(getattr(optimizer, "update", None))
  ):
    raise ValueError(
        "optimizer must be an optax.GradientTransformation "
        f"(with init and update), got {optimizer!r}"
    )
  multipliers = learning_rate_multipliers(
      trainable,
      rules,
      layer_decay=layer_decay,
      depth_rules=depth_rules,
      max_depth=max_depth,
  )
  if all(
      value == 1.0
      for value in flatten_tree(multipliers, "multipliers").values()
  ):
    return optimizer
  return optax.chain(optimizer, scale_by_multipliers(multipliers))
