"""Choosing task groups from inter-task affinities (TAG's network selection).

Fifty et al., NeurIPS 2021, section 3.2: given the ``(T, T)`` affinities
``Z_{i→j}`` of :mod:`tljax.select.task_grouping`, choose at most
``num_groups`` groups so that the total affinity each task receives from its
best group is largest (:func:`group_tasks`, by exact search), or score given
groups (:func:`score_grouping`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import numpy as np

from tljax.checks import check_int, is_traced

__all__ = [
    "MAX_GROUPING_TASKS",
    "TaskGrouping",
    "group_tasks",
    "score_grouping",
]

# group_tasks enumerates subsets of the tasks: 3^T (group, served subset) pairs.
MAX_GROUPING_TASKS = 9


def concrete_array(value: Any, argument: str) -> np.ndarray:
  """``value`` as a NumPy array; a ValueError naming ``argument`` if traced or not numbers."""
  if is_traced(value):
    raise ValueError(
        f"{argument} must be concrete (this function runs NumPy code and cannot be "
        "traced by jax.jit or jax.vmap)."
    )
  try:
    array = np.asarray(value)
  except (TypeError, ValueError) as error:
    raise ValueError(
        f"{argument} must be an array of numbers ({error})."
    ) from None
  if array.dtype.kind not in "biufc":
    raise ValueError(
        f"{argument} must be an array of numbers, got dtype {array.dtype}."
    )
  return array


class TaskGrouping(NamedTuple):
  """A choice of task groups and its total affinity.

  Attributes:
    groups: the groups, each a sorted tuple of task indices; sorted.
    score: ``Σ_j task_scores[j]``.
    serving: ``serving[j]`` is the index in ``groups`` of the group whose
      model serves task ``j`` (the group containing ``j`` that maximises its
      affinity; the first on ties).
    task_scores: ``(T,)`` the affinity task ``j`` receives from its serving
      group: the mean of ``Z_{i→j}`` over its other members (0 when alone).
  """

  groups: tuple[tuple[int, ...], ...]
  score: float
  serving: tuple[int, ...]
  task_scores: np.ndarray


def _check_affinity(affinity: Any) -> np.ndarray:
  if is_traced(affinity):
    raise ValueError(
        "affinity must be concrete: the grouping is a search in NumPy and cannot "
        "run under jax.jit."
    )
  affinity = concrete_array(affinity, "affinity")
  if (
      affinity.ndim != 2
      or affinity.shape[0] != affinity.shape[1]
      or affinity.shape[0] < 1
  ):
    raise ValueError(
        f"affinity must be a square (num_tasks, num_tasks) matrix, got shape {affinity.shape}."
    )
  if (
      not (
          np.issubdtype(affinity.dtype, np.floating)
          or np.issubdtype(affinity.dtype, np.integer)
      )
      or affinity.dtype == np.bool_
  ):
    raise ValueError(
        f"affinity must hold real numbers, got dtype {affinity.dtype}."
    )
  affinity = affinity.astype(np.float64)
  if not np.all(np.isfinite(affinity)):
    raise ValueError("affinity must be finite (no NaN or infinity).")
  return affinity


def _received(affinity: np.ndarray, members: np.ndarray) -> np.ndarray:
  """``[g, j]``: mean ``Z_{i→j}`` over ``i`` in group ``g`` other than ``j``.

  ``members`` is a ``(G, T)`` 0/1 matrix; entries with ``j`` outside the group
  are meaningless, and a task alone in its group receives 0.
  """
  totals = members @ affinity - members * np.diag(affinity)[None, :]
  others = members.sum(axis=1, keepdims=True) - 1
  return totals / np.maximum(others, 1)


def score_grouping(
    affinity: Any, groups: Sequence[Sequence[int]]
) -> TaskGrouping:
  r"""The TAG objective of given groups: ``Σ_j max_{g ∋ j} mean_{i ∈ g, i ≠ j} Z_{i→j}``.

  Each task is served by the group containing it that gives it the highest
  affinity from its other members; a task alone in a group receives 0 (no
  other task's update moves its loss). The diagonal of ``affinity`` is not
  used. Groups may overlap.

  Args:
    affinity: ``(T, T)`` with ``[i, j] = Z_{i→j}``.
    groups: non-empty groups of task indices in ``[0, T)``, together covering
      every task.

  Returns:
    A :class:`TaskGrouping` of the given groups (each sorted, duplicates of a
    group removed, in sorted order).

  Raises:
    ValueError: on a malformed argument or a task in no group.
  """
  affinity = _check_affinity(affinity)
  num_tasks = affinity.shape[0]
  if isinstance(groups, (str, bytes)) or not isinstance(groups, Iterable):
    raise ValueError(
        f"groups must be a sequence of groups of task indices, got {groups!r}."
    )
  normalised = set()
  for group in groups:
    if isinstance(group, (str, bytes)) or not isinstance(group, Iterable):
      raise ValueError(
          f"groups must hold sequences of task indices, got the group {group!r}."
      )
    members = tuple(
        sorted(set(check_int(task, "groups", minimum=0) for task in group))
    )
    if not members:
      raise ValueError("groups must not contain an empty group.")
    if members[-1] >= num_tasks:
      raise ValueError(
          f"groups must hold task indices in [0, {num_tasks}), got {members[-1]}."
      )
    normalised.add(members)
  groups = tuple(sorted(normalised))
  missing = sorted(
      set(range(num_tasks)) - {task for group in groups for task in group}
  )
  if missing:
    raise ValueError(
        f"groups must cover every task; tasks {missing} are in no group."
    )
  membership = np.zeros((len(groups), num_tasks))
  for index, group in enumerate(groups):
    membership[index, list(group)] = 1.0
  received = np.where(membership > 0, _received(affinity, membership), -np.inf)
  serving = np.argmax(received, axis=0)  # the first maximum on ties
  task_scores = received[serving, np.arange(num_tasks)]
  return TaskGrouping(
      groups,
      float(task_scores.sum()),
      tuple(int(g) for g in serving),
      task_scores,
  )


def group_tasks(
    affinity: Any, num_groups: int, *, overlap: bool = True
) -> TaskGrouping:
  r"""The groups of at most ``num_groups`` that maximise the total affinity (TAG).

  Fifty et al. (2021), Section 3.3: choose groups ``𝒢`` (the models to
  train) to maximise

    Σ_j max_{g ∈ 𝒢, j ∈ g} (1 / (|g| − 1)) Σ_{i ∈ g, i ≠ j} Z_{i→j},

  each task being served by the model of its best group; every task must be
  in some group. As in the paper, groups may overlap (``overlap=True``): a
  task may also train in a group that serves other tasks, as a helper.
  ``overlap=False`` restricts the search to partitions of the tasks (one
  model per task, cheaper to train) — an option of ours, not the paper's.

  Conventions of ours, where the paper leaves a choice open: a task alone in
  its group receives affinity 0 (training alone neither helps nor hurts it),
  so a task that every candidate partner hurts is best left alone; the
  diagonal ``Z_{j→j}`` is not used; ``num_groups`` is a budget, at most that
  many groups come back. With overlapping groups one more group never lowers
  the score, so fewer come back only when no further group can raise it;
  among equal scores the fewest groups win.

  Search: exact, equivalent to exhaustive enumeration. Every solution assigns
  each task to the one group that serves it, which partitions the tasks into
  served sets ``S`` (at most ``num_groups``); a served set's best value is
  ``max_{g ⊇ S} Σ_{j ∈ S} received(g, j)`` (``g = S`` without overlap),
  computed over all ``3^T`` pairs ``S ⊆ g``, and a dynamic programme over
  subsets finds the best partition into at most ``num_groups`` served sets
  (``O(num_groups · 3^T)``). Two served sets never need the same group
  (merging them keeps the score with one group less), so this optimum is the
  optimum over sets of distinct groups. Limited to ``T ≤ 9`` tasks.

  Args:
    affinity: ``(T, T)`` averaged inter-task affinities, ``[i, j] = Z_{i→j}``
      (e.g. :attr:`MultiTaskRun.affinity`); ``T ≤ 9``.
    num_groups: the most groups (models) allowed, in ``[1, T]`` (more than
      ``T`` never helps: each task is served by one group).
    overlap: whether groups may share tasks (the paper's formulation).

  Returns:
    A :class:`TaskGrouping` with the chosen groups and their score.

  Raises:
    ValueError: ``affinity`` not a finite square matrix or with more than 9
      tasks, ``num_groups`` not an int in ``[1, T]``, ``overlap`` not a bool.
  """
  affinity = _check_affinity(affinity)
  num_tasks = affinity.shape[0]
  if num_tasks > MAX_GROUPING_TASKS:
    raise ValueError(
        f"affinity has {num_tasks} tasks; group_tasks searches all groupings and "
        f"supports at most {MAX_GROUPING_TASKS} tasks."
    )
  if (
      isinstance(num_groups, bool)
      or not isinstance(num_groups, (int, np.integer))
      or not 1 <= num_groups <= num_tasks
  ):
    raise ValueError(
        f"num_groups must be an int in [1, {num_tasks}] (the number of tasks), got "
        f"{num_groups!r}."
    )
  if not isinstance(overlap, bool):
    raise ValueError(f"overlap must be a bool, got {overlap!r}.")
  num_groups = int(num_groups)

  num_subsets = 1 << num_tasks
  masks = np.arange(num_subsets)
  membership = ((masks[:, None] >> np.arange(num_tasks)[None, :]) & 1).astype(
      np.float64
  )
  received = _received(affinity, membership) * membership  # 0 outside the group
  # value[s, g] = Σ_{j ∈ s} received(g, j), wanted for s ⊆ g only.
  value = membership @ received.T
  if overlap:
    is_subset = (masks[:, None] & ~masks[None, :]) == 0
    value = np.where(is_subset, value, -np.inf)
    best_group = np.argmax(value, axis=1)  # the smallest such group on ties
    best_value = value[masks, best_group]
  else:
    best_group = masks
    best_value = np.diag(value).copy()
  best_value = best_value.tolist()

  # covered[mask]: best total with at most k served sets partitioning mask.
  # A new set must beat the fewer-sets value by more than rounding to count.
  tolerance = 1e-12 * (1.0 + num_tasks * float(np.max(np.abs(affinity))))
  covered = [0.0] + [-math.inf] * (num_subsets - 1)
  choices = []
  for _ in range(num_groups):
    previous = covered
    covered = list(previous)
    choice = [0] * num_subsets
    for mask in range(1, num_subsets):
      lowest = mask & -mask
      rest = mask ^ lowest
      subset = rest
      while True:
        served = subset | lowest  # the set holding mask's lowest task
        candidate = best_value[served] + previous[mask ^ served]
        if candidate > covered[mask] + tolerance:
          covered[mask], choice[mask] = candidate, served
        if subset == 0:
          break
        subset = (subset - 1) & rest
    choices.append(choice)

  groups, mask = [], num_subsets - 1
  for choice in reversed(choices):
    if mask == 0:
      break
    served = choice[mask]
    if served:
      group = int(best_group[served])
      groups.append(
          tuple(task for task in range(num_tasks) if group >> task & 1)
      )
      mask ^= served
  return score_grouping(affinity, groups)
