"""A data source registered outside tljax/: one builder in this file, then get_source and training.

The registry is copied for each test (``registry`` fixture) so the sources
registered here do not leak into other tests' lists of known names.
"""

import numpy as np
import pytest

from tljax import data
from tljax.data import ArraySource, register_source
from tljax.data import registry as registry_lib
from tljax.train.loop import train_and_evaluate

from conftest import small_config


@pytest.fixture
def registry(monkeypatch):
  monkeypatch.setattr(registry_lib, "_SOURCES", dict(registry_lib._SOURCES))
  monkeypatch.setattr(registry_lib, "_PREFIXES", dict(registry_lib._PREFIXES))


def blobs(name, split, *, data_dir, use_tfds, centre=0.0, num_examples=64):
  """Two Gaussian blobs in 2-D, shifted by ``centre``: a whole data source."""
  del data_dir, use_tfds  # Generated in memory.
  seed = {"train": 0, "test": 1}[split]
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 2, num_examples)
  inputs = rng.normal(size=(num_examples, 2)) + 3.0 * labels[:, None] + centre
  return ArraySource(inputs, labels, num_classes=2, name=f"{name}/{split}")


def test_a_registered_name_and_prefix_give_batches_through_get_source(
    registry,
):
  register_source("plugin_blobs")(blobs)
  register_source("shifted:", argument="centre")(
      lambda centre, split, **kwargs: blobs(
          "shifted", split, centre=float(centre), **kwargs
      )
  )
  assert "plugin_blobs" in data.available_sources()
  assert "shifted:" in data.source_prefixes()
  source = data.get_source("plugin_blobs", "train", num_examples=10)
  assert len(source) == 10 and source.input_shape == (2,)
  batch = source.get_batch(np.arange(4))
  assert batch["input"].shape == (4, 2) and batch["label"].dtype == np.int32
  shifted = data.get_source("shifted:5", "train", num_examples=10)
  np.testing.assert_allclose(
      shifted.get_batch([0])["input"], batch["input"][:1] + 5.0
  )
  # The options every source takes apply to a registered one too.
  permuted = data.get_source(
      "plugin_blobs",
      "train",
      num_examples=10,
      transform={"permute_labels_seed": 0},
  )
  np.testing.assert_array_equal(permuted.inputs, source.inputs)
  # One fixed relabelling: each class goes to one class.
  assert len(set(zip(source.labels, permuted.labels))) == 2


def test_a_registered_source_trains(registry, tmp_path, data_dir):
  register_source("plugin_blobs")(blobs)
  register_source("shifted:", argument="centre")(
      lambda centre, split, **kwargs: blobs(
          "shifted", split, centre=float(centre), **kwargs
      )
  )
  config = small_config(
      data_dir,
      model__name="mlp",
      model__hidden_dims=(8,),
      steps=3,
      batch_size=16,
      log_every=3,
      checkpoint_every=3,
  )
  config.source.name = "plugin_blobs"
  config.target.name = "shifted:0.5"
  summary = train_and_evaluate(config, str(tmp_path / "run"))
  assert summary["steps"] == 3
  assert summary["target_test"]["num_examples"] == 64


def test_unknown_names_list_the_registered_names_and_prefixes(registry):
  register_source("plugin_blobs")(blobs)
  with pytest.raises(
      ValueError,
      match=r"Unknown source name 'blob'; known names: \[.*'plugin_blobs'\], "
      r"or a prefixed name: .*'tfds:<catalog_name>' \(a prepared TFDS",
  ):
    data.get_source("blob", "train")
  with pytest.raises(ValueError, match="Unknown source name 'nothere:x'"):
    data.get_source("nothere:x", "train")


def test_registration_refuses_bad_and_repeated_names(registry):
  register_source("plugin_blobs")(blobs)
  with pytest.raises(ValueError, match="'plugin_blobs' is already registered"):
    register_source("plugin_blobs")(blobs)
  with pytest.raises(ValueError, match="'tfds:' is already registered"):
    register_source("tfds:")(blobs)
  for name in ("", "a:b", "two words", ":", None):
    with pytest.raises(ValueError, match="name must be a source name"):
      register_source(name)
  with pytest.raises(ValueError, match="builder must be callable"):
    register_source("other")(3)
