"""Training on the user's image folders: augmentation, grain batches, configs/images.py."""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest
from PIL import Image

from tljax import config as config_lib
from tljax import data as data_lib
from tljax.data import augment
from tljax.methods import build_method
from tljax.train import domains as domains_lib
from tljax.train import experiment

CLASSES = ("cat", "dog", "owl")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _folder(root, seed, shift):
  rng = np.random.default_rng(seed)
  for label, name in enumerate(CLASSES):
    os.makedirs(os.path.join(root, name))
    for i in range(6):
      pixels = rng.integers(0, 80, (20, 26, 3)).astype(np.uint8)
      pixels[:, :, label] += 100 + shift
      suffix = "png" if i % 2 else "jpg"
      Image.fromarray(pixels).save(os.path.join(root, name, f"{i}.{suffix}"))
  return str(root)


def _images_config():
  spec = importlib.util.spec_from_file_location(
      "images_config", os.path.join(ROOT, "configs", "images.py")
  )
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
  base = tmp_path_factory.mktemp("image_training")
  return (
      _folder(base / "a", 0, 0),
      _folder(base / "b", 1, 40),
      str(base / "data"),
  )


def _config(folders, **overrides):
  source, target, data_dir = folders
  arg = f"source={source},target={target},image_size=16,model=lenet,steps=6"
  config = _images_config().get_config(arg)
  config.data_dir = data_dir
  config.batch_size = 4
  config.eval_every = 3
  config.log_every = 3
  config.checkpoint_every = 3
  config.progress_bar = False
  config.update(overrides)
  return config


def test_images_config_sets_tllib_defaults_and_names_missing_folders():
  module = _images_config()
  config = module.get_config("source=/data/amazon,target=/data/w.txt")
  config_lib.check_config(config)
  assert config.source.name == "folder:/data/amazon"
  assert config.target.name == "imagelist:/data/w.txt"
  assert (config.model.name, config.model.bottleneck_dim) == ("resnet50", 256)
  assert config.source.kwargs.image_size == 224
  assert config.source.kwargs.resize == 256
  assert config.augment.name == "tllib"
  assert (config.optimizer.learning_rate, config.optimizer.weight_decay) == (
      0.01,
      1e-3,
  )
  assert config.optimizer.schedule == "inv" and config.batch_size == 32
  assert config.model.input_mean == augment.IMAGENET_MEAN
  assert config.model.input_std == augment.IMAGENET_STD
  with pytest.raises(ValueError, match="needs source="):
    module.get_config("target=/data/webcam")


def test_augmented_batches_are_uint8_crops_and_a_function_of_seed_and_step(
    folders,
):
  config = _config(folders)
  domains = domains_lib.load_domains(config)
  train = domains["source"]["train"]
  assert isinstance(train, data_lib.ImageSource)  # kept encoded to augment
  assert not isinstance(domains["source"]["test"], data_lib.ImageSource)
  method = build_method("dann", config, None)
  stream = lambda start: domains_lib.training_batches(
      method, domains, batch_size=4, seed=3, start_step=start, config=config
  )
  first = [next(b) for b in [stream(0)] for _ in range(4)]
  for batch in first:
    assert batch["source"]["input"].dtype == np.uint8
    assert batch["source"]["input"].shape == (4, 16, 16, 3)
    assert set(batch["target"]) == {"input"}  # the target is unlabeled
  resumed = stream(2)
  for expected in first[2:]:
    batch = next(resumed)
    assert batch["step"] == expected["step"]
    for domain in ("source", "target"):
      for key, value in expected[domain].items():
        np.testing.assert_array_equal(batch[domain][key], value)
  # Another step draws other crops (the labels may repeat, pixels do not).
  assert not np.array_equal(
      first[0]["source"]["input"], first[1]["source"]["input"]
  )


def test_without_augmentation_grain_and_the_iterators_give_the_same_batches(
    folders,
):
  config = _config(folders)
  config.augment.name = "none"
  domains = domains_lib.load_domains(config)
  method = build_method("dann", config, None)
  batches = {}
  for workers in (0, 1):
    config.data_workers = workers
    stream = domains_lib.training_batches(
        method, domains, batch_size=4, seed=0, start_step=5, config=config
    )
    batches[workers] = [next(stream) for _ in range(2)]
  for plain, grain in zip(batches[0], batches[1]):
    for domain in ("source", "target"):
      for key, value in plain[domain].items():
        np.testing.assert_array_equal(grain[domain][key], value)


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("scale", (0.5, 0.1), "augment"),
        ("flip_prob", 1.5, "augment"),
        ("color_jitter", (0.1, 0.1), "augment.color_jitter"),
    ],
)
def test_bad_augmentation_settings_name_the_key(folders, key, value, message):
  config = _config(folders)
  config.augment[key] = value
  source = domains_lib.load_domains(config)["source"]["train"]
  with pytest.raises(ValueError, match=message):
    domains_lib.train_augment(config, source)


def test_unknown_augmentation_is_refused_by_the_config_check():
  config = config_lib.base_config()
  config.augment.name = "autoaugment"
  with pytest.raises(ValueError, match="'augment.name' must be one of"):
    config_lib.check_config(config)


def test_images_config_trains_dann_and_source_only_on_two_folders(
    folders, tmp_path
):
  config = _config(folders)
  experiment.check_experiment_config(config)
  results = experiment.run_experiment(config, str(tmp_path / "work"))
  runs = {run["method"]: run for run in results["runs"]}
  assert set(runs) == {"dann", "source_only"}
  for run in runs.values():
    assert run["steps"] == 6
    # TLlib's protocol: every target image is evaluated (3 classes × 6).
    assert run["target_test"]["num_examples"] == 18
    assert 0 <= run["target_test"]["accuracy"] <= 1


def test_a_folder_per_split_is_read_whole_through_the_split_field(tmp_path):
  root = tmp_path / "domain"
  _folder(root / "train", 4, 0)
  _folder(root / "test", 5, 0)
  name = f"folder:{root}/{{split}}"
  data_dir = str(tmp_path / "data")
  sizes = {
      split: len(data_lib.get_source(name, split, data_dir=data_dir))
      for split in ("train", "test")
  }
  assert sizes == {"train": 18, "test": 18}
  train = data_lib.get_source(
      name, "train", data_dir=data_dir, classes=name, image_size=8
  )
  assert train.class_names == CLASSES
  with pytest.raises(ValueError, match="'train' or 'test'"):
    data_lib.get_source(name, "all", data_dir=data_dir)


def test_tfds_images_of_varying_size_get_the_folder_view():
  rng = np.random.default_rng(7)
  shapes = [(30, 40), (50, 20), (16, 16)]
  records = [
      {"image": rng.integers(0, 256, (*shape, 3), np.uint8), "label": k}
      for k, shape in enumerate(shapes)
  ]
  with pytest.raises(ValueError, match="need the option image_size"):
    data_lib.TfdsSource(
        records, input_shape=(None, None, 3), num_classes=3, name="x"
    )
  source = data_lib.TfdsSource(
      records,
      input_shape=(None, None, 3),
      num_classes=3,
      name="x",
      image_size=12,
      resize=14,
  )
  batch = source.get_batch([0, 1, 2])
  assert batch["input"].shape == (3, 12, 12, 3)
  for record, image in zip(records, batch["input"]):
    # Pillow reference: ResizeImage(14) (bilinear), CenterCrop(12), / 255.
    resized = Image.fromarray(record["image"]).resize((14, 14), Image.BILINEAR)
    expected = np.asarray(resized)[1:13, 1:13].astype(np.float32) / 255
    np.testing.assert_allclose(image, expected, atol=1e-6)
