"""Random views of small digit images for SimCLR, in JAX (jit- and vmap-safe).

SimCLR's ImageNet augmentation is random resized crop (area 8–100 %, aspect
3/4–4/3) with horizontal flip, strong colour distortion and Gaussian blur
(Chen et al., ICML 2020, Appendix A). tljax's digit domains are 8×8 grey
images, so :func:`augment_digits` keeps what makes sense there and says so:

1. random resized crop: a box of area fraction ``U[min_area, 1]`` and aspect
   ratio ``exp(U[ln 3/4, ln 4/3])`` (clipped to the image), placed uniformly
   inside the image and resampled to the full size with bilinear
   interpolation — at this size it acts as a random zoom and translation of
   up to a few pixels. The minimum area is 0.5, not 0.08: an 8×8 digit
   cropped to 8 % of its area (2×2 pixels) holds nothing of the digit;
2. a rotation about the crop's centre by ``U[−max_rotation_degrees,
   max_rotation_degrees]`` (10°; small, so 6 and 9 stay apart), in the same
   resampling; pixels from outside the image are 0, the digits' background;
3. additive Gaussian noise of standard deviation ``noise_std`` (0.05, about
   0.8 of the 16 counts per block), clipped back to [0, 1].

Left out: horizontal flips (they change a digit's identity), colour
distortion (one grey channel; the noise and the resampling perturb the
intensities instead) and blur (the authors' CIFAR-10 run also turns it off).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import jax.scipy.ndimage

from tljax.align._arrays import as_float
from tljax.checks import (
    check_key,
    check_non_negative,
    check_positive,
    is_traced,
)

__all__ = ["augment_digits"]


def _view(image, key, min_area, log_aspect_range, max_rotation, noise_std):
  """One random view of one ``(H, W, C)`` image."""
  height, width = image.shape[0], image.shape[1]
  area_key, aspect_key, x_key, y_key, angle_key, noise_key = jax.random.split(
      key, 6
  )
  area = jax.random.uniform(area_key, (), minval=min_area, maxval=1.0)
  aspect = jnp.exp(
      jax.random.uniform(
          aspect_key, (), minval=log_aspect_range[0], maxval=log_aspect_range[1]
      )
  )
  crop_width = jnp.minimum(width * jnp.sqrt(area * aspect), width)
  crop_height = jnp.minimum(height * jnp.sqrt(area / aspect), height)
  centre_x = jax.random.uniform(
      x_key, (), minval=crop_width / 2, maxval=width - crop_width / 2
  )
  centre_y = jax.random.uniform(
      y_key, (), minval=crop_height / 2, maxval=height - crop_height / 2
  )
  angle = jax.random.uniform(
      angle_key, (), minval=-max_rotation, maxval=max_rotation
  )
  # Output pixel centres relative to the output's centre, scaled into the
  # crop, rotated and moved to the crop's centre; then to array indices.
  rows, columns = jnp.meshgrid(
      jnp.arange(height) + 0.5 - height / 2,
      jnp.arange(width) + 0.5 - width / 2,
      indexing="ij",
  )
  offset_x = columns * crop_width / width
  offset_y = rows * crop_height / height
  cos, sin = jnp.cos(angle), jnp.sin(angle)
  source_x = centre_x + cos * offset_x - sin * offset_y - 0.5
  source_y = centre_y + sin * offset_x + cos * offset_y - 0.5

  def resample(channel):
    return jax.scipy.ndimage.map_coordinates(
        channel, [source_y, source_x], order=1, mode="constant", cval=0.0
    )

  view = jax.vmap(resample, in_axes=2, out_axes=2)(image)
  view = view + noise_std * jax.random.normal(noise_key, view.shape, view.dtype)
  return jnp.clip(view, 0.0, 1.0)


def augment_digits(
    images: Any,
    key: jax.Array,
    *,
    min_area: float = 0.5,
    aspect_ratio: tuple[float, float] = (3 / 4, 4 / 3),
    max_rotation_degrees: float = 10.0,
    noise_std: float = 0.05,
) -> jax.Array:
  """An independent random view of every image (see the module docstring).

  Args:
    images: ``(batch, height, width, channels)`` images in [0, 1].
    key: a ``jax.random`` key; one view per image, drawn independently.
    min_area: the smallest crop, as a fraction of the image area, in (0, 1].
    aspect_ratio: the crop's (lowest, highest) width / height ratio, drawn
      log-uniformly; ``(1, 1)`` with ``min_area=1`` is no crop.
    max_rotation_degrees: the largest rotation, >= 0.
    noise_std: the additive noise's standard deviation, >= 0.

  The hyper-parameters may be traced (one compiled program for several
  settings, or a ``jax.vmap`` sweep); their ranges are then not checked.

  Returns:
    Views of the same shape and float dtype, in [0, 1].

  Raises:
    ValueError: naming the argument, for images that are not a non-empty
      ``(batch, height, width, channels)`` array, a bad key or an
      out-of-range hyper-parameter.
  """
  images = jnp.asarray(images)
  if images.ndim != 4 or 0 in images.shape:
    raise ValueError(
        f"images must have shape (batch, height, width, channels) "
        f"with every size positive, got {images.shape}."
    )
  images = as_float(images)
  key = check_key(key)
  check_positive(min_area, "min_area")
  if not is_traced(min_area) and float(min_area) > 1:
    raise ValueError(f"min_area must be a fraction in (0, 1], got {min_area}.")
  try:
    low, high = aspect_ratio
  except (TypeError, ValueError):
    raise ValueError(
        f"aspect_ratio must be a pair (lowest, highest) of "
        f"positive numbers, got {aspect_ratio!r}."
    ) from None
  check_positive(low, "aspect_ratio[0]")
  check_positive(high, "aspect_ratio[1]")
  if not is_traced(low) and not is_traced(high) and float(low) > float(high):
    raise ValueError(
        f"aspect_ratio must be (lowest, highest), got " f"{aspect_ratio!r}."
    )
  check_non_negative(max_rotation_degrees, "max_rotation_degrees")
  check_non_negative(noise_std, "noise_std")
  keys = jax.random.split(key, images.shape[0])
  log_aspect_range = (jnp.log(low), jnp.log(high))
  max_rotation = jnp.deg2rad(max_rotation_degrees)
  return jax.vmap(
      lambda image, view_key: _view(
          image, view_key, min_area, log_aspect_range, max_rotation, noise_std
      )
  )(images, keys)
