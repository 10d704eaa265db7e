"""tljax.data.augment and augment_jax against torchvision's definitions."""

import colorsys
import functools
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from tljax.data import augment, augment_jax

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
JITTER = dict(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1)


def _image(height=60, width=80, seed=0):
  """A smooth uint8 RGB image (a bilinear upsampling of random colours)."""
  rng = np.random.default_rng(seed)
  small = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8))
  return np.asarray(small.resize((width, height), Image.Resampling.BILINEAR))


def _check_boxes_in_ranges(boxes, height, width):
  """torchvision's ranges, allowing for the rounding of w and h to ints."""
  boxes = np.asarray(boxes, np.float64)
  top, left, h, w = boxes.T
  assert (top >= 0).all() and (left >= 0).all()
  assert (top + h <= height).all() and (left + w <= width).all()
  area = height * width
  assert ((w + 0.5) * (h + 0.5) >= 0.08 * area).all()
  assert ((w - 0.5) * (h - 0.5) <= area).all()
  assert ((w + 0.5) / (h - 0.5) >= 3 / 4).all()
  assert ((w - 0.5) / (h + 0.5) <= 4 / 3).all()
  fractions = h * w / area
  # The draws span the range: small and near-full crops both occur.
  assert fractions.min() < 0.12 and fractions.max() > 0.85


def test_crop_box_stays_in_torchvision_ranges():
  rng = np.random.default_rng(0)
  boxes = [augment.random_resized_crop_box(rng, 300, 400) for _ in range(2000)]
  _check_boxes_in_ranges(boxes, 300, 400)


def test_jax_crop_box_stays_in_torchvision_ranges():
  boxes = augment_jax.random_resized_crop_boxes_jax(
      jax.random.key(0), 1000, 300, 400
  )
  _check_boxes_in_ranges(np.asarray(boxes), 300, 400)


@pytest.mark.parametrize(
    "shape, scale, expected",
    [
        # No box of 2-3x the area fits: the whole (square) image.
        ((50, 50), (2.0, 3.0), (0, 0, 50, 50)),
        # Too wide for any box: height kept, width = round(10 * 4/3).
        ((10, 1000), (0.08, 1.0), (0, 493, 10, 13)),
        # Too tall: width kept, height = round(10 / (3/4)).
        ((1000, 10), (0.08, 1.0), (493, 0, 13, 10)),
    ],
)
def test_crop_fallback_is_torchvision_central_crop(shape, scale, expected):
  rng = np.random.default_rng(1)
  assert augment.random_resized_crop_box(rng, *shape, scale=scale) == expected
  if shape == (10, 1000):  # The device rule too (one shape: one compile).
    boxes = augment_jax.random_resized_crop_boxes_jax(
        jax.random.key(1), 4, *shape, scale=scale
    )
    assert all(tuple(box) == expected for box in np.asarray(boxes).tolist())


def test_flip_rate_is_binomial():
  rng = np.random.default_rng(2)
  image = np.zeros((1, 2, 3), np.uint8)
  image[0, 0] = 255
  draws = 4000
  flips = sum(
      augment.horizontal_flip(rng, image)[0, 1, 0] == 255 for _ in range(draws)
  )
  # p = 0.5: mean 2000, standard deviation sqrt(4000 / 4) ≈ 31.6; 5 sigmas.
  assert abs(flips - draws / 2) < 5 * np.sqrt(draws / 4)
  assert (augment.horizontal_flip(rng, image, p=0.0) == image).all()
  assert (augment.horizontal_flip(rng, image, p=1.0) == image[:, ::-1]).all()


def test_train_output_shape_dtype_and_range():
  rng = np.random.default_rng(3)
  image = _image()
  jitter = JITTER
  out = augment.TrainAugment(size=24, **jitter)(rng, image)
  assert out.shape == (24, 24, 3) and out.dtype == np.uint8
  out = augment.TrainAugment(size=24, normalize=True, **jitter)(rng, image)
  assert out.shape == (24, 24, 3) and out.dtype == np.float32
  assert (out >= -MEAN / STD - 1e-6).all()
  assert (out <= (1 - MEAN) / STD + 1e-6).all()
  batch = np.stack([image, _image(seed=1)])
  out = augment_jax.augment_batch_jax(
      jax.random.key(0), batch, size=16, **jitter
  )
  assert out.shape == (2, 16, 16, 3) and out.dtype == jnp.float32
  assert (np.asarray(out) >= -MEAN / STD - 1e-5).all()
  assert (np.asarray(out) <= (1 - MEAN) / STD + 1e-5).all()
  out = augment_jax.augment_batch_jax(
      jax.random.key(0), batch, size=16, normalize=False
  )
  assert out.shape == (2, 16, 16, 3) and out.dtype == jnp.uint8


def test_unit_factors_are_the_identity():
  x = _image().astype(np.float32) / 255
  assert np.array_equal(augment.adjust_brightness(x, 1.0), x)
  assert np.array_equal(augment.adjust_contrast(x, 1.0), x)
  assert np.array_equal(augment.adjust_saturation(x, 1.0), x)
  np.testing.assert_allclose(augment.adjust_hue(x, 0.0), x, atol=1e-6)
  image = _image()
  rng = np.random.default_rng(4)
  assert augment.color_jitter(rng, image) is image
  assert augment.color_jitter(rng, image, brightness=(1, 1)) is image


def test_color_ops_match_their_formulas():
  x = _image().astype(np.float32) / 255
  gray = 0.2989 * x[..., :1] + 0.587 * x[..., 1:2] + 0.114 * x[..., 2:]
  np.testing.assert_allclose(
      augment.adjust_brightness(x, 1.3), np.clip(1.3 * x, 0, 1), atol=1e-6
  )
  np.testing.assert_allclose(
      augment.adjust_contrast(x, 0.6),
      np.clip(0.6 * x + 0.4 * gray.mean(), 0, 1),
      atol=1e-6,
  )
  np.testing.assert_allclose(
      augment.adjust_saturation(x, 1.7),
      np.clip(1.7 * x - 0.7 * gray, 0, 1),
      atol=1e-6,
  )
  for adjust in (
      augment.adjust_brightness,
      augment.adjust_contrast,
      augment.adjust_saturation,
      augment.adjust_hue,
  ):
    np.testing.assert_allclose(
        np.asarray(jax.jit(adjust)(jnp.asarray(x), 0.3)),
        adjust(x, 0.3),
        atol=1e-5,
    )


def test_hue_shift_matches_colorsys():
  pixels = np.array(
      [[[0.9, 0.1, 0.2], [0.2, 0.7, 0.4], [0.3, 0.3, 0.8], [0.5, 0.5, 0.5]]],
      np.float32,
  )
  for shift in (0.25, -0.4):
    expected = []
    for r, g, b in pixels[0].astype(np.float64):
      h, s, v = colorsys.rgb_to_hsv(r, g, b)
      expected.append(colorsys.hsv_to_rgb((h + shift) % 1.0, s, v))
    expected = np.array([expected])
    np.testing.assert_allclose(
        augment.adjust_hue(pixels, shift), expected, atol=1e-6
    )
    np.testing.assert_allclose(
        np.asarray(jax.jit(augment.adjust_hue)(jnp.asarray(pixels), shift)),
        expected,
        atol=1e-6,
    )


def test_color_jitter_draws_torchvision_order_and_factors():
  image = _image()
  # brightness and saturation on: a permutation of the 4 operations, then
  # one factor each, uniform in [1 - 0.5, 1 + 0.5] and [1 - 0.3, 1 + 0.3].
  replay = np.random.default_rng(5)
  order = replay.permutation(4)
  factors = {0: replay.uniform(0.5, 1.5), 2: replay.uniform(0.7, 1.3)}
  x = image.astype(np.float32) / 255
  for operation in order:
    if operation == 0:
      x = np.clip(factors[0] * x, 0, 1)
    elif operation == 2:
      gray = 0.2989 * x[..., :1] + 0.587 * x[..., 1:2] + 0.114 * x[..., 2:]
      x = np.clip(factors[2] * x + (1 - factors[2]) * gray, 0, 1)
  expected = np.rint(x * 255)
  out = augment.color_jitter(
      np.random.default_rng(5), image, brightness=0.5, saturation=0.3
  )
  assert out.dtype == np.uint8
  assert np.abs(out.astype(np.float64) - expected).max() <= 1


@pytest.mark.parametrize(
    "resize, expected_shape, box",
    [
        # torchvision Resize(256) of 60x80: shorter side 256, longer
        # int(256 * 80 / 60) = 341; CenterCrop(224): top round(16.0) = 16,
        # left round(58.5) = 58 (Python rounds half to even).
        (256, (256, 341), (58, 16, 282, 240)),
        # TLlib's ResizeImage(256): a 256x256 square.
        ((256, 256), (256, 256), (16, 16, 240, 240)),
    ],
)
def test_eval_resize_and_center_crop_match_pillow(resize, expected_shape, box):
  image = _image()
  reference = Image.fromarray(image).resize(
      expected_shape[::-1], Image.Resampling.BILINEAR
  )
  expected = np.asarray(reference.crop(box))
  out = augment.EvalAugment(resize=resize, crop=224)(None, image)
  assert out.shape == (224, 224, 3) and out.dtype == np.uint8
  assert np.array_equal(out, expected)
  assert augment.resize(image, resize).shape[:2] == expected_shape


def test_normalize_closed_form():
  image = _image()
  expected = (image.astype(np.float32) / 255 - MEAN) / STD
  np.testing.assert_allclose(augment.normalize(image), expected, atol=1e-5)
  np.testing.assert_allclose(
      np.asarray(augment_jax.normalize_jax(image)), expected, atol=1e-6
  )
  out = augment.EvalAugment(resize=None, crop=None, normalize=True)(None, image)
  np.testing.assert_allclose(out, expected, atol=1e-5)


def test_same_key_same_output_different_keys_different_crops():
  image = _image()
  train = augment.TrainAugment(size=16, brightness=0.3, hue=0.1)
  first = train(np.random.default_rng(7), image)
  assert np.array_equal(first, train(np.random.default_rng(7), image))
  boxes = {
      augment.random_resized_crop_box(np.random.default_rng(seed), 60, 80)
      for seed in range(20)
  }
  assert len(boxes) > 15
  batch = np.stack([image, image])
  # The configuration of test_train_output_shape_dtype_and_range: compiled once.
  device = functools.partial(augment_jax.augment_batch_jax, size=16, **JITTER)
  one = device(jax.random.key(3), batch)
  two = device(jax.random.key(3), batch)
  other = device(jax.random.key(4), batch)
  assert np.array_equal(np.asarray(one), np.asarray(two))
  assert not np.array_equal(np.asarray(one), np.asarray(other))
  # A row of random numbers per image: two copies are cropped differently.
  assert not np.array_equal(np.asarray(one[0]), np.asarray(one[1]))


def test_device_crop_is_close_to_pillow_crop():
  image = _image(96, 128)
  box = (10, 20, 60, 80)
  expected = augment.resized_crop(image, box, 32).astype(np.float32)
  out = augment_jax.resized_crop_jax(
      jnp.asarray(image, jnp.float32), jnp.asarray(box), 32
  )
  # The filters agree inside; at the border scale_and_translate also reads
  # the pixels just outside the box.
  difference = np.abs(np.asarray(out) - expected)
  assert difference[2:-2, 2:-2].max() < 2.0 and difference.mean() < 1.0


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: augment.TrainAugment(size=0), "size"),
        (lambda: augment.TrainAugment(scale=(0.5, 0.1)), "scale"),
        (lambda: augment.TrainAugment(ratio=(0, 1)), "ratio"),
        (lambda: augment.TrainAugment(flip_prob=1.5), "flip_prob"),
        (lambda: augment.TrainAugment(brightness=-1), "brightness"),
        (lambda: augment.TrainAugment(contrast="x"), "contrast"),
        (lambda: augment.TrainAugment(hue=0.7), "hue"),
        (lambda: augment.TrainAugment(resize=(1, 2, 3)), "resize"),
        (lambda: augment.EvalAugment(crop=-3), "crop"),
        (lambda: augment.EvalAugment(std=(1, 0, 1)), "std"),
        (lambda: augment.normalize(np.zeros((4, 4, 2))), "image"),
        (
            lambda: augment.random_resized_crop(0, _image()),
            "rng must be a numpy.random.Generator",
        ),
        (
            lambda: augment.horizontal_flip(
                np.random.default_rng(0), _image().astype(np.float32)
            ),
            "image must be uint8",
        ),
        (
            lambda: augment.color_jitter(
                np.random.default_rng(0), np.zeros((4, 4), np.uint8)
            ),
            "image must be an RGB image",
        ),
        (
            lambda: augment.EvalAugment(resize=None, crop=100)(None, _image()),
            "larger than the image",
        ),
        (
            lambda: augment.resized_crop(_image(), (50, 0, 20, 20), 8),
            "box",
        ),
        (
            lambda: augment_jax.augment_batch_jax(
                jax.random.key(0), np.zeros((2, 8, 8, 3), np.float32)
            ),
            "images must be a uint8 batch",
        ),
        (
            lambda: augment_jax.augment_batch_jax(
                "key", np.zeros((2, 8, 8, 3), np.uint8)
            ),
            "key",
        ),
    ],
)
def test_bad_arguments_are_named(build, match):
  with pytest.raises(ValueError, match=match):
    build()


def test_a_pil_image_gives_the_same_result_as_its_array():
  image = _image()
  train = augment.TrainAugment(size=24, brightness=0.3)
  np.testing.assert_array_equal(
      train(np.random.default_rng(8), Image.fromarray(image)),
      train(np.random.default_rng(8), image),
  )
  evaluation = augment.EvalAugment(resize=40, crop=32)
  np.testing.assert_array_equal(
      evaluation(None, Image.fromarray(image)), evaluation(None, image)
  )
  with pytest.raises(ValueError, match="image must be an RGB image"):
    train(np.random.default_rng(8), Image.fromarray(image).convert("L"))


def test_the_workers_augmentations_import_without_jax():
  # Loader workers and image preparation use tljax.data.augment; its colour
  # arithmetic takes JAX arrays without importing JAX.
  program = (
      "import sys, tljax.data.augment; print(sorted({'jax', 'flax'} & "
      "{n.split('.')[0] for n in sys.modules}))"
  )
  completed = subprocess.run(
      [sys.executable, "-c", program],
      cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
      capture_output=True,
      text=True,
      check=True,
  )
  assert completed.stdout.strip() == "[]"
