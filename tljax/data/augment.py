"""Image augmentations as torchvision and TLlib define them, in two places.

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

* **Workers** (NumPy and Pillow, one uint8 ``(H, W, 3)`` image at a time;
  an RGB PIL image is taken too, saving the decoder's conversion):
  :func:`random_resized_crop`, :func:`horizontal_flip`, :func:`color_jitter`,
  :func:`resize`, :func:`center_crop`, :func:`normalize`, composed by the
  picklable :class:`TrainAugment` and :class:`EvalAugment` that a loader's
  worker processes run (:mod:`tljax.data.loader`). The key is a
  ``numpy.random.Generator``; the loader seeds it from ``(seed, step,
  example)``.
* **Device** (JAX, a batch of equally sized uint8 images after the
  host→device copy): :func:`augment_batch_jax` (random resized crop with
  ``jax.image.scale_and_translate``, flip, colour jitter, normalisation),
  jitted, one ``jax.random`` key per batch. Fed with TLlib's ``ResizeImage``
  squares made in the workers (``EvalAugment(resize=(256, 256), crop=None)``)
  it is TLlib's training transform with only uint8 crossing to the device.

The two places draw the same distributions (torchvision's) but not the same
numbers: a NumPy generator and a ``jax.random`` key are different streams.
Pixel values also differ slightly where the resampling filters do (Pillow's
antialiased bilinear reads only the crop, ``scale_and_translate`` also the
pixels just outside it).

Colour operations follow torchvision's float definitions
(``torchvision.transforms._functional_tensor``): ``adjust_brightness``
blends with black, ``adjust_contrast`` with the mean of the grayscale image,
``adjust_saturation`` with the grayscale image (ITU-R 601-2 luma ``0.2989 R +
0.587 G + 0.114 B``), each clamped to ``[0, 1]``, and ``adjust_hue`` shifts
the hue in HSV. A uint8 image is jittered in float32 and rounded once at the
end (torchvision's PIL path rounds after each operation).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from tljax.checks import check_key

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_SCALE = (0.08, 1.0)
DEFAULT_RATIO = (3.0 / 4.0, 4.0 / 3.0)
# torchvision's RandomResizedCrop.get_params tries this many random boxes
# before it falls back to a central crop.
CROP_ATTEMPTS = 10
# ITU-R 601-2 luma, torchvision's rgb_to_grayscale.
_LUMA = (0.2989, 0.587, 0.114)
_BRIGHTNESS, _CONTRAST, _SATURATION, _HUE = range(4)


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


def jitter_range(
    value: Any, argument: str, *, hue: bool = False
) -> tuple[float, float] | None:
  """torchvision's ``ColorJitter._check_input``: the factor's range, or None.

  A number ``v >= 0`` gives ``[max(0, 1 - v), 1 + v]`` for brightness,
  contrast and saturation, and ``[-v, v]`` (``v <= 0.5``) for hue; a
  ``(low, high)`` pair is taken as is (within ``[0, inf)``, or ``[-0.5, 0.5]``
  for hue). ``None`` when the range is the identity (``v = 0``), so the
  operation is skipped.

  Raises:
    ValueError: naming ``argument`` for a negative number, a pair out of
      bounds or with ``low > high``, or anything else.
  """
  center, bound = (0.0, (-0.5, 0.5)) if hue else (1.0, (0.0, math.inf))
  if isinstance(value, numbers.Real) and not isinstance(value, bool):
    if not value >= 0:
      raise ValueError(f"{argument} must be a number >= 0, got {value!r}.")
    low, high = center - float(value), center + float(value)
    if not hue:
      low = max(low, 0.0)
  elif isinstance(value, (tuple, list)) and len(value) == 2:
    low, high = float(value[0]), float(value[1])
  else:
    raise ValueError(
        f"{argument} must be a number or a (low, high) pair, got {value!r}."
    )
  if not bound[0] <= low <= high <= bound[1]:
    raise ValueError(
        f"{argument} range must lie in [{bound[0]}, {bound[1]}] with low <= "
        f"high, got ({low}, {high})."
    )
  if low == high == center:
    return None
  return (low, high)


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


def grayscale(image: Any) -> Any:
  """torchvision's ``rgb_to_grayscale``: ``0.2989 R + 0.587 G + 0.114 B``.

  Works on NumPy and JAX float arrays ``(..., 3)``; returns ``(..., 1)``.
  """
  if isinstance(image, np.ndarray):
    return image @ np.asarray(_LUMA, image.dtype)[:, None]
  r, g, b = image[..., 0:1], image[..., 1:2], image[..., 2:3]
  return _LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b


def _blend(xp, image, other, factor):
  """torchvision's ``_blend``: ``factor·image + (1 - factor)·other``, clamped."""
  return xp.clip(factor * image + (1.0 - factor) * other, 0.0, 1.0)


def _rgb_to_hsv(xp, r, g, b):
  """torchvision's ``_rgb2hsv`` (Pillow's algorithm) on planes in [0, 1].

  Returns the planes ``h, s, v``. torchvision's ``fmod(x, 1)`` is ``x -
  floor(x)`` here (the same for the non-negative ``x`` it is applied to),
  and its divisors ``where(maxc == minc, 1, ·)`` are ``· + (maxc ==
  minc)`` (the same: the numerators are 0 there).
  """
  maxc = xp.maximum(xp.maximum(r, g), b)
  minc = xp.minimum(xp.minimum(r, g), b)
  equal = maxc == minc
  chroma = maxc - minc
  s = chroma / (maxc + equal)
  divisor = chroma + equal
  rc = (maxc - r) / divisor
  gc = (maxc - g) / divisor
  bc = (maxc - b) / divisor
  is_r = maxc == r
  is_g = (maxc == g) & ~is_r
  is_b = ~(is_r | is_g)
  h = is_r * (bc - gc) + is_g * (2.0 + rc - bc) + is_b * (4.0 + gc - rc)
  h = h / 6.0 + 1.0
  return h - xp.floor(h), s, maxc


def _hsv_to_rgb(xp, h, s, v):
  """torchvision's ``_hsv2rgb`` as planes ``v - v·s·clip(min(k, 4 - k), 0, 1)``.

  With ``k = (n + 6h) mod 6`` for ``n = 5, 3, 1`` (R, G, B): the closed form
  of the six sectors' ``(v, t, p), (q, v, p), ...`` table.
  """
  planes = []
  for n in (5.0, 3.0, 1.0):
    k = n + 6.0 * h
    k = k - 6.0 * (k >= 6.0)
    weight = xp.clip(xp.minimum(k, 4.0 - k), 0.0, 1.0)
    planes.append(v - v * s * weight)
  return planes


def _planes(xp, image):
  """The channels of ``(..., 3)`` as three contiguous planes."""
  if xp is np:
    return [np.ascontiguousarray(image[..., c]) for c in range(3)]
  return [image[..., c] for c in range(3)]


def adjust_brightness(image: Any, factor: Any) -> Any:
  """torchvision's ``adjust_brightness`` on float ``[0, 1]``: ``clip(f·x)``.

  NumPy or JAX arrays ``(..., 3)``; the same for the other ``adjust_*``.
  """
  xp = jnp if isinstance(image, jax.Array) else np
  return _blend(xp, image, xp.zeros_like(image), factor)


def adjust_contrast(image: Any, factor: Any) -> Any:
  """torchvision's ``adjust_contrast``: blend with the grayscale image's mean."""
  xp = jnp if isinstance(image, jax.Array) else np
  mean = xp.mean(grayscale(image), axis=(-3, -2, -1), keepdims=True)
  return _blend(xp, image, mean, factor)


def adjust_saturation(image: Any, factor: Any) -> Any:
  """torchvision's ``adjust_saturation``: blend with the grayscale image."""
  xp = jnp if isinstance(image, jax.Array) else np
  return _blend(xp, image, grayscale(image), factor)


def adjust_hue(image: Any, factor: Any) -> Any:
  """torchvision's ``adjust_hue``: ``h ← (h + factor) mod 1`` in HSV.

  ``factor`` in ``[-0.5, 0.5]`` (a concrete one is checked).
  """
  if isinstance(factor, numbers.Real) and not -0.5 <= factor <= 0.5:
    raise ValueError(f"factor must be in [-0.5, 0.5] for hue, got {factor}.")
  xp = jnp if isinstance(image, jax.Array) else np
  h, s, v = _rgb_to_hsv(xp, *_planes(xp, image))
  h = h + factor + 1.0
  return xp.stack(_hsv_to_rgb(xp, h - xp.floor(h), s, v), axis=-1)


_ADJUST = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)


def _jitter_ranges(brightness, contrast, saturation, hue):
  return (
      jitter_range(brightness, "brightness"),
      jitter_range(contrast, "contrast"),
      jitter_range(saturation, "saturation"),
      jitter_range(hue, "hue", hue=True),
  )


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
  the bytes to send to the device, where :func:`normalize_jax` finishes it.
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
  :func:`augment_batch_jax` crops on the device.
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


# --- Device: JAX on a batch of uint8 (B, H, W, 3) images ------------------

# The uniform numbers in [0, 1) one image's device augmentation draws: the
# crop (an area and a log-ratio per attempt, then top and left), the flip,
# and the colour jitter (four factors, four sort keys for the order).
_CROP_UNIFORMS = 2 * CROP_ATTEMPTS + 2
_JITTER_UNIFORMS = 8
_UNIFORMS = _CROP_UNIFORMS + 1 + _JITTER_UNIFORMS


def _crop_boxes_from_uniforms(
    uniforms: jax.Array,
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
) -> jax.Array:
  """torchvision's box rule on ``(..., _CROP_UNIFORMS)`` uniform numbers."""
  area = height * width
  fractions = uniforms[..., :CROP_ATTEMPTS]
  log_ratios = uniforms[..., CROP_ATTEMPTS : 2 * CROP_ATTEMPTS]
  target_area = area * (scale[0] + (scale[1] - scale[0]) * fractions)
  low, high = math.log(ratio[0]), math.log(ratio[1])
  aspect = jnp.exp(low + (high - low) * log_ratios)
  ws = jnp.round(jnp.sqrt(target_area * aspect)).astype(jnp.int32)
  hs = jnp.round(jnp.sqrt(target_area / aspect)).astype(jnp.int32)
  fits = (ws > 0) & (ws <= width) & (hs > 0) & (hs <= height)
  first = jnp.argmax(fits, axis=-1)[..., None]
  found = fits.any(axis=-1)
  fallback_top, fallback_left, fallback_h, fallback_w = _fallback_box(
      height, width, ratio
  )
  h = jnp.where(found, jnp.take_along_axis(hs, first, -1)[..., 0], fallback_h)
  w = jnp.where(found, jnp.take_along_axis(ws, first, -1)[..., 0], fallback_w)

  def place(u, room):  # uniform in {0, ..., room - 1}
    return jnp.minimum(jnp.floor(u * room), room - 1).astype(jnp.int32)

  top = jnp.where(
      found,
      place(uniforms[..., 2 * CROP_ATTEMPTS], height - h + 1),
      fallback_top,
  )
  left = jnp.where(
      found,
      place(uniforms[..., 2 * CROP_ATTEMPTS + 1], width - w + 1),
      fallback_left,
  )
  return jnp.stack([top, left, h, w], axis=-1).astype(jnp.int32)


def random_resized_crop_boxes_jax(
    key: jax.Array,
    num: int,
    height: int,
    width: int,
    scale: Sequence[float] = DEFAULT_SCALE,
    ratio: Sequence[float] = DEFAULT_RATIO,
) -> jax.Array:
  """:func:`random_resized_crop_box` in JAX: ``num`` boxes, int32 ``(num, 4)``.

  Rows ``[top, left, h, w]``. The :data:`CROP_ATTEMPTS` candidate boxes of
  each are drawn at once and the first that fits is taken (torchvision's
  rejection sampling, unrolled); none fitting gives the same central
  fallback. ``num``, ``height`` and ``width`` are static.
  """
  num = _check_size(num, "num")
  height = _check_size(height, "height")
  width = _check_size(width, "width")
  return _random_boxes(
      check_key(key),
      num,
      height,
      width,
      _check_range(scale, "scale"),
      _check_range(ratio, "ratio"),
  )


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4, 5))
def _random_boxes(key, num, height, width, scale, ratio):
  uniforms = jax.random.uniform(key, (num, _CROP_UNIFORMS))
  return _crop_boxes_from_uniforms(uniforms, height, width, scale, ratio)


def resized_crop_jax(image: jax.Array, box: jax.Array, size: int) -> jax.Array:
  """Crops ``box`` of a float ``(H, W, C)`` image and resizes it to ``size``².

  ``jax.image.scale_and_translate`` with the antialiased linear filter (what
  Pillow's bilinear is), mapping the box's edges onto the output's. Jitted,
  ``size`` static.
  """
  box = jnp.asarray(box, jnp.float32)
  top, left, h, w = box[0], box[1], box[2], box[3]
  scale = jnp.stack([size / h, size / w])
  translation = jnp.stack([-top * size / h, -left * size / w])
  return jax.image.scale_and_translate(
      image,
      (size, size, image.shape[-1]),
      (0, 1),
      scale,
      translation,
      method="linear",
      antialias=True,
  )


def _jitter_from_uniforms(uniforms, image, ranges):
  """ColorJitter on one float image from ``_JITTER_UNIFORMS`` uniforms."""
  enabled = [op for op in range(4) if ranges[op] is not None]
  if not enabled:
    return image
  low = jnp.asarray([ranges[op][0] for op in enabled], jnp.float32)
  high = jnp.asarray([ranges[op][1] for op in enabled], jnp.float32)
  factors = low + (high - low) * uniforms[: len(enabled)]
  # The ranks of i.i.d. uniforms: a uniformly random order.
  order = jnp.argsort(uniforms[4 : 4 + len(enabled)])
  operations = jnp.asarray(enabled, jnp.int32)
  use_hue = ranges[_HUE] is not None

  def apply(position, image):
    chosen = order[position]
    op, factor = operations[chosen], factors[chosen]
    # Brightness, contrast and saturation all blend with something: black,
    # the grayscale mean, the grayscale image. One blend, one hue shift,
    # then a select (what lax.switch becomes under vmap anyway); a loop,
    # so that the hue shift is compiled once.
    gray = grayscale(image)
    other = jnp.where(
        op == _SATURATION,
        gray,
        jnp.where(op == _CONTRAST, jnp.mean(gray), 0.0),
    )
    blended = _blend(jnp, image, other, factor)
    if use_hue:
      blended = jnp.where(op == _HUE, adjust_hue(image, factor), blended)
    return blended

  return jax.lax.fori_loop(0, len(enabled), apply, image)


def color_jitter_jax(
    key: jax.Array,
    image: jax.Array,
    brightness: Any = 0.0,
    contrast: Any = 0.0,
    saturation: Any = 0.0,
    hue: Any = 0.0,
) -> jax.Array:
  """:func:`color_jitter` in JAX on a float ``[0, 1]`` image ``(H, W, 3)``.

  A uniformly random order of the enabled operations, factors uniform in
  their :func:`jitter_range`. The strengths are static.
  """
  ranges = _jitter_ranges(brightness, contrast, saturation, hue)
  uniforms = jax.random.uniform(check_key(key), (_JITTER_UNIFORMS,))
  return _jitter_from_uniforms(uniforms, image, ranges)


def normalize_jax(
    images: jax.Array,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> jax.Array:
  """:func:`normalize` in JAX: uint8 (or float ``[0, 1]``) to float32."""
  mean, std = _check_mean_std(mean, std)
  images = jnp.asarray(images)
  values = (
      images.astype(jnp.float32) / 255.0
      if images.dtype == jnp.uint8
      else images.astype(jnp.float32)
  )
  return (values - mean) / std


def _augment_one(image, box, uniforms, size, flip_prob, ranges):
  values = resized_crop_jax(image.astype(jnp.float32) / 255.0, box, size)
  values = jnp.clip(values, 0.0, 1.0)
  flip = uniforms[_CROP_UNIFORMS] < flip_prob
  values = jnp.where(flip, values[:, ::-1], values)
  return _jitter_from_uniforms(uniforms[_CROP_UNIFORMS + 1 :], values, ranges)


@functools.partial(
    jax.jit,
    static_argnames=(
        "size",
        "scale",
        "ratio",
        "flip_prob",
        "ranges",
        "normalize",
        "mean",
        "std",
    ),
)
def _augment_batch_jax(
    key, images, *, size, scale, ratio, flip_prob, ranges, normalize, mean, std
):
  # One draw for the whole batch: a row of uniforms per image.
  uniforms = jax.random.uniform(key, (images.shape[0], _UNIFORMS))
  boxes = _crop_boxes_from_uniforms(
      uniforms, images.shape[1], images.shape[2], scale, ratio
  )
  augment = functools.partial(
      _augment_one, size=size, flip_prob=flip_prob, ranges=ranges
  )
  values = jax.vmap(augment)(images, boxes, uniforms)
  if normalize:
    return normalize_jax(values, mean, std)
  return jnp.round(values * 255.0).astype(jnp.uint8)


def augment_batch_jax(
    key: jax.Array,
    images: Any,
    *,
    size: int = 224,
    scale: Sequence[float] = DEFAULT_SCALE,
    ratio: Sequence[float] = DEFAULT_RATIO,
    flip_prob: float = 0.5,
    brightness: Any = 0.0,
    contrast: Any = 0.0,
    saturation: Any = 0.0,
    hue: Any = 0.0,
    normalize: bool = True,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> jax.Array:
  """TLlib's training transform on the device, for a uint8 batch.

  Per image: ``RandomResizedCrop(size, scale, ratio)`` (torchvision's box
  rule as in :func:`random_resized_crop_boxes_jax`, then
  :func:`resized_crop_jax`), ``RandomHorizontalFlip(flip_prob)``,
  ``ColorJitter(brightness, contrast, saturation, hue)`` (as
  :func:`color_jitter_jax`), then with ``normalize`` ImageNet normalisation
  to float32, else uint8. All the batch's random numbers come from one
  ``jax.random.uniform(key, (B, 31))`` draw, a row per image, so the output
  is a pure function of ``(key, images)``. Jitted; every argument but
  ``key`` and ``images`` is static.

  Args:
    key: a ``jax.random`` key, e.g. ``jax.random.fold_in(key(seed), step)``.
    images: uint8 ``(B, H, W, 3)``, e.g. TLlib's 256×256 ``ResizeImage``
      squares made in the workers.
    size: output side.
    scale: area fraction range of the crop.
    ratio: aspect ratio range of the crop.
    flip_prob: probability of a horizontal flip.
    brightness: ``ColorJitter`` strength or range (0: off).
    contrast: as ``brightness``.
    saturation: as ``brightness``.
    hue: ``ColorJitter`` hue strength in ``[0, 0.5]`` or range (0: off).
    normalize: return ``(x/255 - mean)/std`` float32; False: uint8.
    mean: per-channel mean.
    std: per-channel standard deviation.

  Returns:
    ``(B, size, size, 3)``, float32 or uint8.
  """
  images = jnp.asarray(images)
  if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != jnp.uint8:
    raise ValueError(
        "images must be a uint8 batch (B, H, W, 3), got "
        f"{images.dtype} {images.shape}."
    )
  mean, std = _check_mean_std(mean, std)
  return _augment_batch_jax(
      check_key(key),
      images,
      size=_check_size(size, "size"),
      scale=_check_range(scale, "scale"),
      ratio=_check_range(ratio, "ratio"),
      flip_prob=_check_probability(flip_prob, "flip_prob"),
      ranges=_jitter_ranges(brightness, contrast, saturation, hue),
      normalize=bool(normalize),
      mean=tuple(mean.tolist()),
      std=tuple(std.tolist()),
  )
