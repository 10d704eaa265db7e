"""``npz:<file>`` sources: the user's arrays saved with np.savez."""

from __future__ import annotations

import numpy as np
import pytest

from tljax import data


def _save(path, rng, n_train=30, n_test=10, classes=3, **extra):
  arrays = {
      "x_train": rng.normal(size=(n_train, 4, 4, 1)).astype(np.float32),
      "y_train": rng.integers(0, classes, n_train),
      "x_test": rng.normal(size=(n_test, 4, 4, 1)).astype(np.float32),
      "y_test": rng.integers(0, classes, n_test),
  }
  arrays.update(extra)
  np.savez(path, **arrays)
  return arrays


def test_the_keras_names_give_both_splits(tmp_path):
  rng = np.random.default_rng(0)
  arrays = _save(tmp_path / "a.npz", rng)
  for split in ("train", "test"):
    source = data.get_source(f"npz:{tmp_path / 'a.npz'}", split)
    assert isinstance(source, data.ArraySource)
    assert source.input_shape == (4, 4, 1)
    np.testing.assert_array_equal(source.inputs, arrays[f"x_{split}"])
    np.testing.assert_array_equal(source.labels, arrays[f"y_{split}"])
  # The classes are counted over every split: the same for both.
  largest = max(arrays["y_train"].max(), arrays["y_test"].max())
  assert source.num_classes == largest + 1
  assert f"npz:{tmp_path / 'a.npz'}" in source.name


def test_a_split_field_reads_one_file_per_split(tmp_path):
  rng = np.random.default_rng(1)
  np.savez(tmp_path / "b_train.npz", x=rng.normal(size=(8, 2)), y=[0, 1] * 4)
  np.savez(tmp_path / "b_test.npz", x=rng.normal(size=(4, 2)), y=[0, 4, 1, 1])
  name = f"npz:{tmp_path}/b_{{split}}.npz"
  train = data.get_source(name, "train")
  assert len(train) == 8 and train.num_classes == 5  # label 4 is in test
  assert data.get_source(name, "test", num_classes=7).num_classes == 7


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"x_train": np.zeros((3, 2))}, r"has no \['y_train'\]"),
        (
            {"x_train": np.zeros((3, 2)), "y_train": np.array([0.0, 1.0, 1.0])},
            "1-D integer array",
        ),
        (
            {
                "x_train": np.full((3, 2), np.nan),
                "y_train": np.array([0, 1, 1]),
            },
            "finite",
        ),
        (
            {"x_train": np.zeros((3, 2)), "y_train": np.array([0, 1, 5])},
            "out of range|\\[0, 2\\)|num_classes",
        ),
    ],
)
def test_bad_arrays_are_errors_naming_the_problem(tmp_path, arrays, message):
  np.savez(tmp_path / "bad.npz", **arrays)
  kwargs = {"num_classes": 2} if "y_train" in arrays else {}
  if arrays.get("y_train") is not None and arrays["y_train"].max() < 2:
    kwargs = {}
  with pytest.raises(ValueError, match=message):
    data.get_source(f"npz:{tmp_path / 'bad.npz'}", "train", **kwargs)


def test_pickled_objects_and_missing_files_are_refused(tmp_path):
  np.savez(
      tmp_path / "objects.npz",
      x_train=np.array([{"code": 1}], dtype=object),
      y_train=np.array([0]),
  )
  with pytest.raises(ValueError, match="plain arrays"):
    data.get_source(f"npz:{tmp_path / 'objects.npz'}", "train")
  with pytest.raises(FileNotFoundError, match="absent.npz"):
    data.get_source(f"npz:{tmp_path / 'absent.npz'}", "train")
  with pytest.raises(ValueError, match="names no file"):
    data.get_source("npz:", "train")
  _save(tmp_path / "a.npz", np.random.default_rng(2))
  with pytest.raises(ValueError, match=r"no option \['size'\]"):
    data.get_source(f"npz:{tmp_path / 'a.npz'}", "train", size=3)
  assert "npz:" in data.source_prefixes()
