"""The Source interface every split of data has, and the in-memory one.

A *source* holds the examples of one split of one domain and hands out batches
by index; the iterators in :mod:`tljax.data.iterators` decide which indices.
Every source has the interface of :class:`Source`. :class:`ArraySource`
holds NumPy arrays in memory; the generated domains (:mod:`.toy`), the
variants (:mod:`.transforms`) and the labelled subsets (:mod:`.subsets`) are
ArraySources, and :mod:`.sources` opens one by name.

This module is the bottom of :mod:`tljax.data`: it imports no other module of
it, so every one of them can import it.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from tljax.checks import check_int

SPLITS = ("train", "test")


class Source(Protocol):
  """What the iterators and training code need from a source."""

  name: str
  num_classes: int | None

  @property
  def input_shape(self) -> tuple[int, ...]:
    ...

  def __len__(self) -> int:
    ...

  def get_batch(self, indices: np.ndarray) -> dict[str, np.ndarray]:
    ...


class ArraySource:
  """An in-memory source over NumPy arrays.

  Attributes:
    inputs: float32 ``(N, *input_shape)``.
    labels: int32 ``(N,)`` class labels when ``num_classes`` is given, else
      float32 ``(N, ...)`` regression targets.
    num_classes: number of classes, or ``None`` for regression.
    name: a label for logs and error messages.
  """

  def __init__(
      self,
      inputs: Any,
      labels: Any,
      *,
      num_classes: int | None = None,
      name: str = "arrays",
  ):
    """Validates and stores the arrays.

    Args:
      inputs: ``(N, ...)`` finite numbers; stored as float32.
      labels: ``(N, ...)``; integers in ``[0, num_classes)`` when
        ``num_classes`` is given (stored as int32), otherwise finite
        regression targets (stored as float32).
      num_classes: number of classes, ``None`` for regression.
      name: a label for logs and error messages.

    Raises:
      ValueError: naming the argument, when ``inputs`` is empty, not
        finite or not at least 1-D, when ``labels`` does not have one entry
        per input, is not integer or out of range for classification or
        not finite for regression, or when ``num_classes < 1``.
    """
    inputs = np.asarray(inputs)
    labels = np.asarray(labels)
    if inputs.ndim == 0 or inputs.shape[0] == 0:
      raise ValueError(
          f"inputs must be a non-empty (N, ...) array, got shape {inputs.shape}."
      )
    if not (np.issubdtype(inputs.dtype, np.number) or inputs.dtype == bool):
      raise ValueError(f"inputs must be numeric, got dtype {inputs.dtype}.")
    inputs = inputs.astype(np.float32, copy=False)
    if not np.isfinite(inputs).all():
      raise ValueError(
          f"inputs must be finite; {np.count_nonzero(~np.isfinite(inputs))} "
          f"entries are NaN or infinite."
      )
    if labels.ndim == 0 or labels.shape[0] != inputs.shape[0]:
      raise ValueError(
          f"labels must have one entry per input: inputs has {inputs.shape[0]} "
          f"examples, labels has shape {labels.shape}."
      )
    if num_classes is None:
      if not np.issubdtype(labels.dtype, np.number):
        raise ValueError(f"labels must be numeric, got dtype {labels.dtype}.")
      labels = labels.astype(np.float32, copy=False)
      if not np.isfinite(labels).all():
        raise ValueError(
            "labels must be finite regression targets when num_classes is None."
        )
    else:
      num_classes = check_int(num_classes, "num_classes", minimum=1)
      if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"labels must have an integer dtype when num_classes is given, "
            f"got {labels.dtype}."
        )
      if labels.ndim != 1:
        raise ValueError(
            f"labels must be 1-D class indices, got shape {labels.shape}."
        )
      out_of_range = (labels < 0) | (labels >= num_classes)
      if out_of_range.any():
        raise ValueError(
            f"labels must be in [0, num_classes={num_classes}); found "
            f"{sorted(set(labels[out_of_range].tolist()))[:5]}."
        )
      labels = labels.astype(np.int32, copy=False)
    self.inputs = inputs
    self.labels = labels
    self.num_classes = num_classes
    self.name = name

  @property
  def input_shape(self) -> tuple[int, ...]:
    """The shape of one input."""
    return tuple(self.inputs.shape[1:])

  def __len__(self) -> int:
    return self.inputs.shape[0]

  def get_batch(self, indices: Any) -> dict[str, np.ndarray]:
    """``{"input": inputs[indices], "label": labels[indices]}``."""
    indices = np.asarray(indices)
    return {"input": self.inputs[indices], "label": self.labels[indices]}

  def __repr__(self) -> str:
    return (
        f"ArraySource(name={self.name!r}, num_examples={len(self)}, "
        f"input_shape={self.input_shape}, num_classes={self.num_classes})"
    )
