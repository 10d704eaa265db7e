"""The colour arithmetic of the augmentations, on NumPy or JAX arrays.

torchvision's float definitions (``torchvision.transforms._functional_tensor``)
on images in ``[0, 1]``: :func:`adjust_brightness` blends with black,
:func:`adjust_contrast` with the mean of the grayscale image,
:func:`adjust_saturation` with the grayscale image (ITU-R 601-2 luma ``0.2989
R + 0.587 G + 0.114 B``, :func:`grayscale`), each clamped to ``[0, 1]``, and
:func:`adjust_hue` shifts the hue in HSV. :func:`jitter_range` is
``ColorJitter``'s rule for the range a factor is drawn from.

Each function computes with the module of its argument, NumPy or
``jax.numpy`` (a traced JAX array too), so the workers' ``color_jitter``
(:mod:`tljax.data.augment`) and the device's ``color_jitter_jax``
(:mod:`tljax.data.augment_jax`) share one definition. A JAX array is
recognised through ``sys.modules`` (one exists only once JAX is imported),
so this module, like the workers' one, imports no JAX.
"""

from __future__ import annotations

import math
import numbers
import sys
from typing import Any

import numpy as np

# ITU-R 601-2 luma, torchvision's rgb_to_grayscale.
_LUMA = (0.2989, 0.587, 0.114)
# ColorJitter's operations, in the order of its arguments.
_BRIGHTNESS, _CONTRAST, _SATURATION, _HUE = range(4)


def _array_module(image: Any) -> Any:
  """``jax.numpy`` for a JAX array (or tracer), else NumPy.

  JAX is looked up in ``sys.modules``, not imported: a JAX array exists only
  once JAX is.
  """
  jax = sys.modules.get("jax")
  if jax is not None and isinstance(image, jax.Array):
    return jax.numpy
  return np


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


def _jitter_ranges(brightness, contrast, saturation, hue):
  return (
      jitter_range(brightness, "brightness"),
      jitter_range(contrast, "contrast"),
      jitter_range(saturation, "saturation"),
      jitter_range(hue, "hue", hue=True),
  )


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
  xp = _array_module(image)
  return _blend(xp, image, xp.zeros_like(image), factor)


def adjust_contrast(image: Any, factor: Any) -> Any:
  """torchvision's ``adjust_contrast``: blend with the grayscale image's mean."""
  xp = _array_module(image)
  mean = xp.mean(grayscale(image), axis=(-3, -2, -1), keepdims=True)
  return _blend(xp, image, mean, factor)


def adjust_saturation(image: Any, factor: Any) -> Any:
  """torchvision's ``adjust_saturation``: blend with the grayscale image."""
  xp = _array_module(image)
  return _blend(xp, image, grayscale(image), factor)


def adjust_hue(image: Any, factor: Any) -> Any:
  """torchvision's ``adjust_hue``: ``h ← (h + factor) mod 1`` in HSV.

  ``factor`` in ``[-0.5, 0.5]`` (a concrete one is checked).
  """
  if isinstance(factor, numbers.Real) and not -0.5 <= factor <= 0.5:
    raise ValueError(f"factor must be in [-0.5, 0.5] for hue, got {factor}.")
  xp = _array_module(image)
  h, s, v = _rgb_to_hsv(xp, *_planes(xp, image))
  h = h + factor + 1.0
  return xp.stack(_hsv_to_rgb(xp, h - xp.floor(h), s, v), axis=-1)


_ADJUST = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)
