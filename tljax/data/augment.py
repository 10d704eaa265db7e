"""Image augmentations as torchvision and TLlib define them, in the workers.

TLlib's image-classification examples (``examples/domain_adaptation/
image_classification/utils.py``: ``get_train_transform`` and
``get_val_transform``) train on ``ResizeImage(256)`` (a 256×256 square),
``RandomResizedCrop(224)``, ``RandomHorizontalFlip()``, optionally
``ColorJitter(0.5, 0.5, 0.5, 0.5)``, then ``ToTensor()`` and ImageNet
``Normalize``; they evaluate on ``ResizeImage(256)`` and ``CenterCrop(224)``.
torchvision's own ImageNet recipe evaluates on ``Resize(256)`` (the shorter
side) and ``CenterCrop(224)``. This module gives each of those operations as a
pure function of ``(key, image)``: the random parameters come from the key
alone, so a batch is a pure function of ``(seed, step)`` when the key is.

Two execution places:

* **Workers** (this module; NumPy and Pillow, one uint8 ``(H, W, 3)`` image
  at a time; an RGB PIL image is taken too, saving the decoder's
  conversion): :func:`random_resized_crop`, :func:`horizontal_flip`,
  :func:`color_jitter`, :func:`resize`, :func:`center_crop`,
  :func:`normalize`, composed by the picklable :class:`TrainAugment` and
  :class:`EvalAugment` that a loader's worker processes run
  (:mod:`tljax.data.loader`). The key is a ``numpy.random.Generator``; the
  loader seeds it from ``(seed, step, example)``. This module imports no
  JAX.
* **Device** (:mod:`tljax.data.augment_jax`; JAX, a batch of equally sized
  uint8 images after the host→device copy): ``augment_batch_jax``, jitted,
  one ``jax.random`` key per batch. Fed with TLlib's ``ResizeImage`` squares
  made in the workers (``EvalAugment(resize=(256, 256), crop=None)``) it is
  TLlib's training transform with only uint8 crossing to the device. Its
  names are not re-exported here, which would import JAX.

Both places take their parameters from the definitions here
(:func:`random_resized_crop_box`'s rule, :func:`jitter_range`, the argument
checks) and their colour arithmetic from :mod:`tljax.data.augment_color`
(re-exported here: :func:`adjust_brightness`, :func:`adjust_contrast`,
:func:`adjust_saturation`, :func:`adjust_hue`, :func:`grayscale`,
:func:`jitter_range`). A uint8 image is jittered in float32 and rounded once
at the end (torchvision's PIL path rounds after each operation).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
from typing import Any, Sequence

import numpy as np
from PIL import Image

from tljax.data.augment_color import (
    _ADJUST,
    _jitter_ranges,
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    grayscale,
    jitter_range,
)

__all__ = [
    "CROP_ATTEMPTS",
    "DEFAULT_RATIO",
    "DEFAULT_SCALE",
    "EvalAugment",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "TrainAugment",
    "adjust_brightness",
    "adjust_contrast",
    "adjust_hue",
    "adjust_saturation",
    "center_crop",
    "center_crop_box",
    "color_jitter",
    "grayscale",
    "horizontal_flip",
    "jitter_range",
    "normalize",
    "random_resized_crop",
    "random_resized_crop_box",
    "resize",
    "resized_crop",
    "resized_shape",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_SCALE = (0.08, 1.0)
DEFAULT_RATIO = (3.0 / 4.0, 4.0 / 3.0)
# torchvision's RandomResizedCrop.get_params tries this many random boxes
# before it falls back to a central crop.
CROP_ATTEMPTS = 10


# --- Argument checks -------------------------------------------------------


def _check_image(image: Any, argument: str = "image") -> Any:
  """A uint8 ``(H, W, 3)`` array, or an RGB PIL image (returned as is)."""
  if isinstance(image, Image.Image):
    if image.mode != "RGB" or 0 in image.size:
      raise ValueError(
          f"{argument} must be an RGB image (image.convert('RGB')), got a "
          f"{image.mode} PIL image of size {image.size}."
      )
    return image
  if not isinstance(image, np.ndarray):
    raise ValueError(
        f"{argument} must be a uint8 NumPy array (H, W, 3) or an RGB PIL "
        f"image, got {type(image).__name__}."
    )
  if image.ndim != 3 or image.shape[-1] != 3 or 0 in image.shape:
    raise ValueError(
        f"{argument} must be an RGB image of shape (H, W, 3) with H, W > 0 "
        f"(convert grayscale to RGB first), got shape {image.shape}."
    )
  if image.dtype != np.uint8:
    raise ValueError(f"{argument} must be uint8, got dtype {image.dtype}.")
  return image


def _check_rng(rng: Any) -> np.random.Generator:
  if not isinstance(rng, np.random.Generator):
    raise ValueError(
        "rng must be a numpy.random.Generator (e.g. "
        f"numpy.random.default_rng([seed, step, index])), got {rng!r}."
    )
  return rng


def _check_size(size: Any, argument: str) -> int:
  if (
      isinstance(size, bool)
      or not isinstance(size, (int, np.integer))
      or size < 1
  ):
    raise ValueError(f"{argument} must be an int >= 1, got {size!r}.")
  return int(size)


def _check_hw(size: Any, argument: str) -> int | tuple[int, int]:
  """An int (shorter side) or an ``(height, width)`` pair of ints."""
  if isinstance(size, (tuple, list)):
    if len(size) != 2:
      raise ValueError(
          f"{argument} must be an int or an (height, width) pair, got {size!r}."
      )
    return (_check_size(size[0], argument), _check_size(size[1], argument))
  return _check_size(size, argument)


def _check_range(value: Any, argument: str) -> tuple[float, float]:
  """A ``(low, high)`` pair with ``0 < low <= high``, both finite."""
  try:
    low, high = (float(v) for v in value)
  except (TypeError, ValueError):
    raise ValueError(
        f"{argument} must be a (low, high) pair of numbers, got {value!r}."
    ) from None
  if not (math.isfinite(low) and math.isfinite(high) and 0 < low <= high):
    raise ValueError(
        f"{argument} must satisfy 0 < low <= high (finite), got {value!r}."
    )
  return low, high


def _check_probability(value: Any, argument: str) -> float:
  if isinstance(value, bool) or not isinstance(value, numbers.Real):
    raise ValueError(f"{argument} must be a number in [0, 1], got {value!r}.")
  if not 0.0 <= float(value) <= 1.0:
    raise ValueError(f"{argument} must be in [0, 1], got {value!r}.")
  return float(value)


def _check_mean_std(mean: Any, std: Any) -> tuple[np.ndarray, np.ndarray]:
  mean = np.asarray(mean, np.float32)
  std = np.asarray(std, np.float32)
  if mean.shape != (3,) or not np.isfinite(mean).all():
    raise ValueError(f"mean must be 3 finite numbers, got {mean.tolist()}.")
  if std.shape != (3,) or not (np.isfinite(std).all() and (std > 0).all()):
    raise ValueError(f"std must be 3 positive numbers, got {std.tolist()}.")
  return mean, std


# --- Parameters (torchvision's definitions, shared by both places) --------


def _fallback_box(
    height: int, width: int, ratio: tuple[float, float]
) -> tuple[int, int, int, int]:
  """torchvision's central-crop fallback after the failed attempts."""
  in_ratio = width / height
  if in_ratio < min(ratio):
    w = width
    h = int(round(w / min(ratio)))
  elif in_ratio > max(ratio):
    h = height
    w = int(round(h * max(ratio)))
  else:
    w, h = width, height
  return (height - h) // 2, (width - w) // 2, h, w


def random_resized_crop_box(
    rng: np.random.Generator,
    height: int,
    width: int,
    scale: Sequence[float] = DEFAULT_SCALE,
    ratio: Sequence[float] = DEFAULT_RATIO,
) -> tuple[int, int, int, int]:
  """torchvision's ``RandomResizedCrop.get_params``: a box ``(top, left, h, w)``.

  Up to :data:`CROP_ATTEMPTS` times: draw an area fraction uniformly in
  ``scale`` and an aspect ratio log-uniformly in ``ratio``, round ``w =
  sqrt(area·ratio)`` and ``h = sqrt(area/ratio)``, and accept the first box
  that fits (``0 < w <= width``, ``0 < h <= height``), placed uniformly.
  Otherwise the fallback is a central crop: the whole image when its aspect
  ratio lies within ``ratio``, else the largest central box of the nearest
  allowed ratio.

  Args:
    rng: a ``numpy.random.Generator``, the only source of randomness.
    height: image height (>= 1).
    width: image width (>= 1).
    scale: ``(low, high)`` bounds of the crop's area fraction.
    ratio: ``(low, high)`` bounds of the crop's width / height.
  """
  rng = _check_rng(rng)
  height = _check_size(height, "height")
  width = _check_size(width, "width")
  scale = _check_range(scale, "scale")
  ratio = _check_range(ratio, "ratio")
  area = height * width
  log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
  for _ in range(CROP_ATTEMPTS):
    target_area = area * rng.uniform(scale[0], scale[1])
    aspect = math.exp(rng.uniform(log_ratio[0], log_ratio[1]))
    w = int(round(math.sqrt(target_area * aspect)))
    h = int(round(math.sqrt(target_area / aspect)))
    if 0 < w <= width and 0 < h <= height:
      top = int(rng.integers(0, height - h + 1))
      left = int(rng.integers(0, width - w + 1))
      return top, left, h, w
  return _fallback_box(height, width, ratio)


def center_crop_box(
    height: int, width: int, size: int | tuple[int, int]
) -> tuple[int, int, int, int]:
  """torchvision's ``center_crop`` box: ``top = round((height - h) / 2)``.

  Python's ``round`` (half to even), as torchvision. ``size`` is an int
  (square) or ``(h, w)``.

  Raises:
    ValueError: naming ``size`` when the crop is larger than the image
      (torchvision pads with zeros; here that is an error, resize first).
  """
  size = _check_hw(size, "size")
  h, w = (size, size) if isinstance(size, int) else size
  if h > height or w > width:
    raise ValueError(
        f"size {(h, w)} is larger than the image ({height}, {width}); resize "
        f"the image first."
    )
  return int(round((height - h) / 2.0)), int(round((width - w) / 2.0)), h, w


def resized_shape(
    height: int, width: int, size: int | tuple[int, int]
) -> tuple[int, int]:
  """torchvision's ``Resize(size)`` output shape ``(new_h, new_w)``.

  An int resizes the shorter side to ``size`` and the longer to
  ``int(size · long / short)`` (truncated, as torchvision's
  ``_compute_resized_output_size``); a pair ``(h, w)`` is the shape itself
  (TLlib's ``ResizeImage(256)`` is ``(256, 256)``).
  """
  size = _check_hw(size, "size")
  if not isinstance(size, int):
    return size
  if width <= height:
    return int(size * height / width), size
  return size, int(size * width / height)


# --- Workers: NumPy and Pillow on one uint8 (H, W, 3) image ---------------


def _height_width(image: Any) -> tuple[int, int]:
  if isinstance(image, Image.Image):
    return image.height, image.width
  return image.shape[0], image.shape[1]


def _as_array(image: Any) -> np.ndarray:
  return np.asarray(image) if isinstance(image, Image.Image) else image


def _pil_resize(image: Any, shape: tuple[int, int]) -> np.ndarray:
  """Pillow's antialiased bilinear resize (torchvision's PIL default)."""
  if _height_width(image) == tuple(shape):
    return _as_array(image)
  if not isinstance(image, Image.Image):
    image = Image.fromarray(image)
  return np.asarray(
      image.resize((shape[1], shape[0]), Image.Resampling.BILINEAR)
  )


def resized_crop(
    image: np.ndarray,
    box: tuple[int, int, int, int],
    size: int | tuple[int, int],
) -> np.ndarray:
  """torchvision's ``F.resized_crop`` on PIL: crop ``box``, then resize.

  Args:
    image: uint8 ``(H, W, 3)``, or an RGB PIL image (one conversion less:
      a decoder may hand its PIL image over).
    box: ``(top, left, h, w)`` inside the image.
    size: output side (square) or ``(height, width)``.
  """
  image = _check_image(image)
  size = _check_hw(size, "size")
  shape = (size, size) if isinstance(size, int) else size
  top, left, h, w = (int(v) for v in box)
  height, width = _height_width(image)
  if not (
      0 <= top
      and 0 <= left
      and 0 < h
      and 0 < w
      and top + h <= height
      and left + w <= width
  ):
    raise ValueError(
        f"box {box} (top, left, h, w) must lie inside the image of shape "
        f"{(height, width)}."
    )
  if isinstance(image, Image.Image):
    return _pil_resize(image.crop((left, top, left + w, top + h)), shape)
  return _pil_resize(image[top : top + h, left : left + w], shape)


def random_resized_crop(
    rng: np.random.Generator,
    image: np.ndarray,
    size: int | tuple[int, int] = 224,
    scale: Sequence[float] = DEFAULT_SCALE,
    ratio: Sequence[float] = DEFAULT_RATIO,
) -> np.ndarray:
  """torchvision's ``RandomResizedCrop(size, scale, ratio)`` (bilinear).

  The box of :func:`random_resized_crop_box`, cropped and resized with
  Pillow's antialiased bilinear filter. Returns uint8 ``(size, size, 3)``.
  """
  image = _check_image(image)
  box = random_resized_crop_box(rng, *_height_width(image), scale, ratio)
  return resized_crop(image, box, size)


def horizontal_flip(
    rng: np.random.Generator, image: np.ndarray, p: float = 0.5
) -> np.ndarray:
  """torchvision's ``RandomHorizontalFlip(p)``: mirrored with probability p."""
  rng = _check_rng(rng)
  image = _as_array(_check_image(image))
  p = _check_probability(p, "p")
  if rng.random() < p:
    return np.ascontiguousarray(image[:, ::-1])
  return image


def _to_float(image: np.ndarray) -> np.ndarray:
  return image.astype(np.float32) * np.float32(1.0 / 255.0)


def _to_uint8(image: np.ndarray) -> np.ndarray:
  return np.clip(np.rint(image * np.float32(255.0)), 0, 255).astype(np.uint8)


def color_jitter(
    rng: np.random.Generator,
    image: np.ndarray,
    brightness: Any = 0.0,
    contrast: Any = 0.0,
    saturation: Any = 0.0,
    hue: Any = 0.0,
) -> np.ndarray:
  """torchvision's ``ColorJitter(brightness, contrast, saturation, hue)``.

  As ``ColorJitter.get_params`` and ``forward``: a random order of the four
  operations (``rng.permutation(4)``), each factor uniform in its
  :func:`jitter_range` (brightness ``b`` → ``[max(0, 1-b), 1+b]``, hue ``h``
  → ``[-h, h]``), an operation with a zero strength skipped. A uint8 image
  is converted to float ``[0, 1]``, adjusted, and rounded back to uint8.
  """
  rng = _check_rng(rng)
  image = _as_array(_check_image(image))
  ranges = _jitter_ranges(brightness, contrast, saturation, hue)
  order = rng.permutation(4)
  factors = [None if r is None else rng.uniform(r[0], r[1]) for r in ranges]
  if all(factor is None for factor in factors):
    return image
  result = _to_float(image)
  for operation in order:
    if factors[operation] is not None:
      result = _ADJUST[operation](result, np.float32(factors[operation]))
  return _to_uint8(result)


def resize(image: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
  """torchvision's ``Resize(size)`` (bilinear, antialiased, Pillow).

  An int resizes the shorter side (see :func:`resized_shape`); a pair
  ``(h, w)`` is the output shape (TLlib's ``ResizeImage``).
  """
  image = _check_image(image)
  return _pil_resize(image, resized_shape(*_height_width(image), size))


def center_crop(image: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
  """torchvision's ``CenterCrop(size)`` (see :func:`center_crop_box`)."""
  image = _as_array(_check_image(image))
  top, left, h, w = center_crop_box(image.shape[0], image.shape[1], size)
  return image[top : top + h, left : left + w]


@functools.lru_cache(maxsize=8)
def _normalize_rows(
    width: int, mean: tuple[float, ...], std: tuple[float, ...], uint8: bool
) -> tuple[np.ndarray, np.ndarray]:
  """``scale`` and ``offset`` of :func:`normalize`, tiled over a row of pixels.

  (A whole row per multiply keeps NumPy's inner loop contiguous: ten times
  faster than broadcasting a 3-vector over the channels.)
  """
  mean_array = np.asarray(mean, np.float32)
  std_array = np.asarray(std, np.float32)
  scale = (np.float32(1.0 / 255.0) if uint8 else np.float32(1.0)) / std_array
  rows = np.tile(scale, width), np.tile(mean_array / std_array, width)
  for row in rows:
    row.flags.writeable = False
  return rows


def normalize(
    image: Any,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> np.ndarray:
  """``ToTensor()`` then ``Normalize(mean, std)``: ``(x / 255 - mean) / std``.

  uint8 images ``(..., W, 3)`` to float32, computed as ``x · (1 /
  (255·std)) - mean / std`` (one float32 rounding apart); a float image is
  taken as already in ``[0, 1]``.
  """
  image = np.asarray(image)
  if image.ndim < 2 or image.shape[-1] != 3:
    raise ValueError(
        f"image must be (..., W, 3) with 3 channels last, got shape "
        f"{image.shape}."
    )
  mean, std = _check_mean_std(mean, std)
  scale, offset = _normalize_rows(
      image.shape[-2],
      tuple(mean.tolist()),
      tuple(std.tolist()),
      image.dtype == np.uint8,
  )
  values = image.astype(np.float32)
  rows = values.reshape(-1, scale.size)
  rows *= scale
  rows -= offset
  return values


@dataclasses.dataclass(frozen=True)
class TrainAugment:
  """TLlib's training transform in a worker: crop, flip, jitter, [normalise].

  ``TrainAugment()(rng, image)`` is ``RandomResizedCrop(size, scale,
  ratio)``, ``RandomHorizontalFlip(flip_prob)``, ``ColorJitter(brightness,
  contrast, saturation, hue)`` (skipped when all four are 0, TLlib's
  default), and with ``normalize`` ``ToTensor`` + ``Normalize(mean, std)``.
  Without ``normalize`` it returns uint8 ``(size, size, 3)``, a quarter of
  the bytes to send to the device, where
  :func:`tljax.data.augment_jax.normalize_jax` finishes it.
  ``resize`` first resizes as :func:`resize` does (TLlib's
  ``ResizeImage(256)`` is ``resize=(256, 256)``; ``None`` crops the image as
  decoded, torchvision's ImageNet recipe). Picklable, for loader workers.
  """

  size: int = 224
  scale: tuple[float, float] = DEFAULT_SCALE
  ratio: tuple[float, float] = DEFAULT_RATIO
  flip_prob: float = 0.5
  brightness: Any = 0.0
  contrast: Any = 0.0
  saturation: Any = 0.0
  hue: Any = 0.0
  resize: int | tuple[int, int] | None = None
  normalize: bool = False
  mean: tuple[float, float, float] = IMAGENET_MEAN
  std: tuple[float, float, float] = IMAGENET_STD

  def __post_init__(self):
    _check_size(self.size, "size")
    _check_range(self.scale, "scale")
    _check_range(self.ratio, "ratio")
    _check_probability(self.flip_prob, "flip_prob")
    _jitter_ranges(self.brightness, self.contrast, self.saturation, self.hue)
    if self.resize is not None:
      _check_hw(self.resize, "resize")
    _check_mean_std(self.mean, self.std)

  def __call__(self, rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    if self.resize is not None:
      image = resize(image, self.resize)
    image = random_resized_crop(rng, image, self.size, self.scale, self.ratio)
    image = horizontal_flip(rng, image, self.flip_prob)
    image = color_jitter(
        rng, image, self.brightness, self.contrast, self.saturation, self.hue
    )
    if self.normalize:
      return normalize(image, self.mean, self.std)
    return image


@dataclasses.dataclass(frozen=True)
class EvalAugment:
  """The evaluation transform in a worker: resize, center crop, [normalise].

  ``resize`` as :func:`resize` (an int: torchvision's ``Resize(256)`` of the
  shorter side; ``(256, 256)``: TLlib's ``ResizeImage(256)``; ``None``: no
  resize), then ``CenterCrop(crop)`` (``None``: no crop), then with
  ``normalize`` ``ToTensor`` + ``Normalize(mean, std)``. The ``rng``
  argument is ignored (the signature of a loader's per-example transform).
  ``EvalAugment(resize=(256, 256), crop=None)`` makes the uint8 squares
  :func:`tljax.data.augment_jax.augment_batch_jax` crops on the device.
  """

  resize: int | tuple[int, int] | None = 256
  crop: int | tuple[int, int] | None = 224
  normalize: bool = False
  mean: tuple[float, float, float] = IMAGENET_MEAN
  std: tuple[float, float, float] = IMAGENET_STD

  def __post_init__(self):
    if self.resize is not None:
      _check_hw(self.resize, "resize")
    if self.crop is not None:
      _check_hw(self.crop, "crop")
    _check_mean_std(self.mean, self.std)

  def __call__(self, rng: Any, image: np.ndarray) -> np.ndarray:
    del rng
    image = _check_image(image)
    if self.resize is not None:
      image = resize(image, self.resize)
    if self.crop is not None:
      image = center_crop(image, self.crop)
    if self.normalize:
      return normalize(image, self.mean, self.std)
    return np.ascontiguousarray(_as_array(image))
