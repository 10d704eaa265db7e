"""``npz:<file>``: a domain the user saved as NumPy arrays.

The shortest way from arrays in memory to ``tljax train``: save them with
``np.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)`` (the
Keras datasets' names) and name the file, ``--set source.name=npz:path``.
A path containing ``{split}`` is one file per split instead, each holding
``x`` and ``y`` (``npz:/data/cam_a_{split}.npz``). Inputs are any numeric
array ``(N, ...)`` (images ``(N, H, W, C)``, features ``(N, D)``), labels
integers in ``[0, num_classes)``; they become an
:class:`~tljax.data.ArraySource`, so every check of that class applies (a
NaN, an empty split, a label out of range is an error naming the file).

Options (``config.<domain>.kwargs``): ``num_classes`` (default: one more
than the largest label of the file's splits, the same for every split).
Files are read with ``allow_pickle=False``: no code in a data file runs.
"""

from __future__ import annotations

import os
import zipfile

import numpy as np

from tljax.data.base import ArraySource
from tljax.data.registry import register_source

NPZ_PREFIX = "npz:"
SPLIT_FIELD = "{split}"


def _read(path: str) -> dict[str, np.ndarray]:
  if not os.path.isfile(path):
    raise FileNotFoundError(f"npz source: no file {path!r}")
  try:
    with np.load(path, allow_pickle=False) as arrays:
      return {key: arrays[key] for key in arrays.files}
  except (ValueError, OSError, zipfile.BadZipFile) as error:
    raise ValueError(
        f"npz source: {path!r} is not a NumPy .npz of plain arrays ({error})"
    ) from None


def _split_arrays(path: str, split: str) -> tuple[np.ndarray, np.ndarray, list]:
  """``(inputs, labels, every split's labels)`` of ``split`` in ``path``."""
  if SPLIT_FIELD in path:
    file = path.replace(SPLIT_FIELD, split)
    arrays = _read(file)
    missing = sorted({"x", "y"} - set(arrays))
    if missing:
      raise ValueError(
          f"npz source: {file!r} has no {missing} (it holds "
          f"{sorted(arrays)}); a per-split file holds 'x' and 'y'"
      )
    labels = [arrays["y"]]
    other = path.replace(SPLIT_FIELD, "test" if split == "train" else "train")
    if os.path.isfile(other):
      labels.append(_read(other).get("y", np.zeros(0, np.int64)))
    return arrays["x"], arrays["y"], labels
  arrays = _read(path)
  keys = (f"x_{split}", f"y_{split}")
  missing = sorted(set(keys) - set(arrays))
  if missing:
    raise ValueError(
        f"npz source: {path!r} has no {missing} for split {split!r} (it "
        f"holds {sorted(arrays)}); save x_train, y_train, x_test, y_test, "
        "or use a path with {split} and files holding x and y"
    )
  labels = [arrays[key] for key in arrays if key.startswith("y_")]
  return arrays[keys[0]], arrays[keys[1]], labels


def npz_source(path: str, split: str, *, num_classes: int | None = None):
  """``split`` of the arrays in ``path`` as an :class:`ArraySource`."""
  if not isinstance(split, str) or not split:
    raise ValueError(f"split must be a non-empty string, got {split!r}")
  inputs, labels, all_labels = _split_arrays(os.fspath(path), split)
  labels = np.asarray(labels)
  if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(
        f"npz source {path!r}: labels of split {split!r} must be a 1-D "
        f"integer array, got dtype {labels.dtype} and shape {labels.shape}"
    )
  if num_classes is None:
    largest = [int(np.max(y)) for y in all_labels if np.size(y)]
    num_classes = max(largest, default=-1) + 1
  return ArraySource(
      np.asarray(inputs),
      labels,
      num_classes=num_classes,
      name=f"{NPZ_PREFIX}{path}/{split}",
  )


@register_source(NPZ_PREFIX, argument="file", description="a NumPy .npz file")
def _npz_source(path, split, *, data_dir, use_tfds, **options):
  del data_dir  # The file is the data.
  if use_tfds:
    raise ValueError(
        f"'{NPZ_PREFIX}' sources are read from the .npz file; use_tfds must "
        "be None or False."
    )
  if not path.strip():
    raise ValueError(
        f"name {NPZ_PREFIX!r} names no file; give one after {NPZ_PREFIX!r}, "
        f"e.g. '{NPZ_PREFIX}/data/camera_a.npz'."
    )
  unknown = sorted(set(options) - {"num_classes"})
  if unknown:
    raise ValueError(
        f"'{NPZ_PREFIX}' sources take no option {unknown}; options: "
        "['num_classes']"
    )
  return npz_source(os.path.expanduser(path), split, **options)
