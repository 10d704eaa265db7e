"""Few-label subsets of a labeled split: k labeled examples per class, and a validation set.

The inductive-transfer experiments train on ``k`` labeled target examples per
class and choose hyper-parameters on a target *validation* set drawn from the
same training split, disjoint from the labeled examples; the test split is never
touched. Draws depend on the run's seed, so results averaged over seeds also
average over which examples were labeled.
"""

from __future__ import annotations

import numpy as np

from tljax.data.base import ArraySource


def per_class_indices(
    labels: np.ndarray,
    *,
    num_classes: int,
    per_class: int,
    seed: int,
    exclude: np.ndarray | None = None,
) -> np.ndarray:
  """``per_class`` indices of every class, drawn without replacement.

  Args:
    labels: ``(n,)`` integer labels.
    num_classes: classes are ``0 .. num_classes - 1``; each must have enough
      examples.
    per_class: how many indices per class (``>= 1``).
    seed: seeds ``numpy.random.default_rng``.
    exclude: indices that must not be drawn.

  Returns:
    Sorted indices, ``num_classes * per_class`` of them.
  """
  labels = np.asarray(labels)
  if (
      isinstance(per_class, bool)
      or not isinstance(per_class, (int, np.integer))
      or per_class < 1
  ):
    raise ValueError(f"per_class must be an integer >= 1, got {per_class!r}")
  available = np.ones(labels.shape[0], bool)
  if exclude is not None:
    available[np.asarray(exclude, np.int64)] = False
  rng = np.random.default_rng(seed)
  chosen = []
  for label in range(num_classes):
    candidates = np.flatnonzero((labels == label) & available)
    if candidates.size < per_class:
      raise ValueError(
          f"per_class={per_class} but class {label} has only {candidates.size} "
          "examples left to draw from"
      )
    chosen.append(rng.choice(candidates, size=per_class, replace=False))
  return np.sort(np.concatenate(chosen))


def labeled_subsets(
    source: ArraySource,
    *,
    labels_per_class: int | None,
    validation_per_class: int,
    seed: int,
) -> tuple[ArraySource, ArraySource | None]:
  """Splits a labeled training source into (labeled training, validation) sources.

  The validation examples are drawn first, then ``labels_per_class`` labeled
  training examples from the rest (``None``: all the rest).

  Returns:
    ``(labeled, validation)``; ``validation`` is ``None`` when
    ``validation_per_class`` is 0.
  """
  if not isinstance(source, ArraySource):
    raise ValueError(
        f"source must be an in-memory ArraySource to draw subsets "
        f"from, got {type(source).__name__}"
    )
  if source.num_classes is None:
    raise ValueError(f"source {source.name!r} has no classes to draw per class")
  if isinstance(validation_per_class, bool) or validation_per_class < 0:
    raise ValueError(
        "validation_per_class must be an integer >= 0, got "
        f"{validation_per_class!r}"
    )
  seeds = np.random.SeedSequence([seed, 0x5EED]).generate_state(2)
  validation_indices = np.zeros(0, np.int64)
  validation = None
  if validation_per_class:
    validation_indices = per_class_indices(
        source.labels,
        num_classes=source.num_classes,
        per_class=validation_per_class,
        seed=int(seeds[0]),
    )
    validation = ArraySource(
        source.inputs[validation_indices],
        source.labels[validation_indices],
        num_classes=source.num_classes,
        name=f"{source.name}/validation",
    )
  if labels_per_class is None:
    remaining = np.setdiff1d(np.arange(len(source)), validation_indices)
  else:
    remaining = per_class_indices(
        source.labels,
        num_classes=source.num_classes,
        per_class=labels_per_class,
        seed=int(seeds[1]),
        exclude=validation_indices,
    )
  labeled = ArraySource(
      source.inputs[remaining],
      source.labels[remaining],
      num_classes=source.num_classes,
      name=f"{source.name}/labeled",
  )
  return labeled, validation
