"""Image augmentations as torchvision and TLlib define them, on the device.

The JAX side of :mod:`tljax.data.augment`, for a batch of equally sized
uint8 ``(B, H, W, 3)`` images after the host→device copy:
:func:`augment_batch_jax` (random resized crop with
``jax.image.scale_and_translate``, flip, colour jitter, normalisation),
jitted, one ``jax.random`` key per batch, and its parts
:func:`random_resized_crop_boxes_jax`, :func:`resized_crop_jax`,
:func:`color_jitter_jax` and :func:`normalize_jax`. Fed with TLlib's
``ResizeImage`` squares made in the workers
(``augment.EvalAugment(resize=(256, 256), crop=None)``) it is TLlib's
training transform with only uint8 crossing to the device.

The parameters follow the workers' definitions (the crop box rule of
:func:`tljax.data.augment.random_resized_crop_box`, the factor ranges of
:func:`tljax.data.augment.jitter_range`, the same argument checks) and the
colour arithmetic is :mod:`tljax.data.augment_color`'s, so the two places
draw the same distributions (torchvision's) but not the same numbers: a
NumPy generator and a ``jax.random`` key are different streams. Pixel
values also differ slightly where the resampling filters do (Pillow's
antialiased bilinear reads only the crop, ``scale_and_translate`` also the
pixels just outside it).
"""

from __future__ import annotations

import functools
import math
from typing import Any, Sequence

import jax
import jax.numpy as jnp

from tljax.checks import check_key
from tljax.data.augment import (
    CROP_ATTEMPTS,
    DEFAULT_RATIO,
    DEFAULT_SCALE,
    IMAGENET_MEAN,
    IMAGENET_STD,
    _check_mean_std,
    _check_probability,
    _check_range,
    _check_size,
    _fallback_box,
)
from tljax.data.augment_color import (
    _CONTRAST,
    _HUE,
    _SATURATION,
    _blend,
    _jitter_ranges,
    adjust_hue,
    grayscale,
)

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
  """``augment.random_resized_crop_box`` in JAX: ``num`` boxes ``(num, 4)``.

  int32 rows ``[top, left, h, w]``. The
  :data:`~tljax.data.augment.CROP_ATTEMPTS` candidate boxes of each are drawn
  at once and the first that fits is taken (torchvision's rejection
  sampling, unrolled, as :func:`~tljax.data.augment.random_resized_crop_box`);
  none fitting gives the same central fallback. ``num``, ``height`` and
  ``width`` are static.
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
  """``augment.color_jitter`` in JAX on a float ``[0, 1]`` image ``(H, W, 3)``.

  As :func:`~tljax.data.augment.color_jitter`: a uniformly random order of
  the enabled operations, factors uniform in their
  :func:`~tljax.data.augment.jitter_range`. The strengths are static.
  """
  ranges = _jitter_ranges(brightness, contrast, saturation, hue)
  uniforms = jax.random.uniform(check_key(key), (_JITTER_UNIFORMS,))
  return _jitter_from_uniforms(uniforms, image, ranges)


def normalize_jax(
    images: jax.Array,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> jax.Array:
  """``augment.normalize`` in JAX: uint8 (or float ``[0, 1]``) to float32.

  As :func:`~tljax.data.augment.normalize`: ``(x / 255 - mean) / std``.
  """
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
