"""What a method hands the shared step: its loss, or the stages of its update.

A method supplies a loss function with the :data:`LossFn` signature::

    loss_fn(params, model_state, batch, key, extras)
        -> (loss, (model_state, metrics))

where ``params`` is the full (merged) parameter tree, ``model_state`` the
non-parameter variables (BatchNorm statistics) to be threaded through, ``batch``
a pytree of arrays, ``key`` a PRNG key for this step and ``extras`` the state's
constant trees (the source model for L2-SP, a teacher, ...; ``{}`` if none).
``metrics`` is a dict of scalars to log. A multi-step recipe (MCD) supplies
:class:`Stage` values instead, each a loss and the parameter groups it updates.

These types sit at the bottom of tljax: :mod:`tljax.methods` builds them and
:mod:`tljax.train.step` runs them, and neither imports the other for them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax

LossFn = Callable[
    [Any, Any, Any, jax.Array, Any], tuple[jax.Array, tuple[Any, dict]]
]


@dataclasses.dataclass(frozen=True)
class Stage:
  """One update of a multi-step recipe (MCD's steps A, B and C).

  Attributes:
    name: prefix of the stage's metrics (``"<name>/loss"``, ...).
    loss_fn: the stage's loss, with the :data:`LossFn` signature.
    groups: the parameter groups (see :class:`tljax.train.GroupedOptimizer`) the stage
      updates; the others enter its loss as constants.
    repeat: how many times the stage is applied in a row (MCD's ``num_k``).
  """

  name: str
  loss_fn: LossFn
  groups: tuple[str, ...]
  repeat: int = 1

  def __post_init__(self):
    if not self.groups:
      raise ValueError(f"Stage {self.name!r} must update at least one group")
    if not isinstance(self.repeat, int) or self.repeat < 1:
      raise ValueError(
          f"Stage {self.name!r}: repeat must be an int >= 1, got "
          f"{self.repeat!r}"
      )
