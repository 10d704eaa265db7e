"""Image domains from disk: folders and image lists, prepared into TFDS, decoded.

The folders are written here with Pillow: a few dozen PNG and JPEG files of
random pixels, a grayscale one, and (where a test needs it) a corrupt one.
"""

import io
import json
import os
import pickle
import shutil
import subprocess
import sys

import numpy as np
import PIL.Image
import pytest

from tljax import data
from tljax.data import builders, image_files, images
from tljax.data.image_sources import ImageSource
from tljax.errors import DataError
from tljax.train.loop import train_and_evaluate

from conftest import small_config

CLASSES = ("apple", "ball", "car")
PER_CLASS = 8  # 24 images per domain


def _write(path, pixels, image_format=None):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  PIL.Image.fromarray(pixels).save(path, format=image_format)


def _make_folder(root, seed, classes=CLASSES, per_class=PER_CLASS):
  """``root/<class>/<image>``: PNGs and JPEGs, one grayscale PNG; sizes vary."""
  rng = np.random.default_rng(seed)
  for label, name in enumerate(classes):
    for index in range(per_class):
      height, width = rng.integers(20, 48, size=2)
      pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
      pixels[..., label % 3] //= 2  # a class-dependent colour cast
      extension = ".png" if index % 2 else ".jpg"
      _write(os.path.join(root, name, f"img_{index:02d}{extension}"), pixels)
  gray = rng.integers(0, 256, (30, 26), dtype=np.uint8)
  _write(os.path.join(root, classes[0], "gray.png"), gray)
  return str(root)


@pytest.fixture(scope="module")
def domains(tmp_path_factory):
  """Two domains with the same classes, and a data dir prepared once."""
  base = tmp_path_factory.mktemp("images")
  return {
      "a": _make_folder(base / "a", seed=0),
      "b": _make_folder(base / "b", seed=1),
      "data_dir": str(base / "tfds"),
  }


def _png(pixels, mode=None):
  stream = io.BytesIO()
  PIL.Image.fromarray(pixels, mode=mode).save(stream, format="PNG")
  return stream.getvalue()


# --------------------------------------------------------------------------
# Decoding: a pure function with the pixels of a NumPy/Pillow reference.


def test_decode_without_a_size_gives_the_pixels_written():
  pixels = np.random.default_rng(0).integers(0, 256, (7, 5, 3), np.uint8)
  decoded = images.decode_image(_png(pixels))
  assert decoded.dtype == np.uint8 and decoded.shape == (7, 5, 3)
  np.testing.assert_array_equal(decoded, pixels)


def test_decode_center_crops_an_image_whose_shorter_side_is_the_size():
  pixels = np.random.default_rng(1).integers(0, 256, (41, 32, 3), np.uint8)
  # The width is already 32: no resize; rows int(round(9 / 2)) = 4 to 36.
  np.testing.assert_array_equal(
      images.decode_image(_png(pixels), 32), pixels[4:36]
  )
  np.testing.assert_array_equal(
      images.decode_image(_png(pixels.transpose(1, 0, 2)), 32),
      pixels.transpose(1, 0, 2)[:, 4:36],
  )


def test_decode_resizes_the_shorter_side_bilinearly_then_crops():
  pixels = np.random.default_rng(2).integers(0, 256, (50, 80, 3), np.uint8)
  # torchvision Resize(20): height 20, width int(20 * 80 / 50) = 32;
  # CenterCrop(20): columns int(round(12 / 2)) = 6 to 26.
  resized = PIL.Image.fromarray(pixels).resize(
      (32, 20), PIL.Image.Resampling.BILINEAR
  )
  expected = np.asarray(resized)[:, 6:26]
  np.testing.assert_array_equal(images.decode_image(_png(pixels), 20), expected)


def test_decode_converts_other_modes_to_rgb():
  rng = np.random.default_rng(3)
  gray = rng.integers(0, 256, (6, 4), np.uint8)
  np.testing.assert_array_equal(
      images.decode_image(_png(gray)), np.repeat(gray[..., None], 3, axis=-1)
  )
  rgba = rng.integers(0, 256, (6, 4, 4), np.uint8)
  np.testing.assert_array_equal(images.decode_image(_png(rgba)), rgba[..., :3])
  wide = rng.integers(0, 65536, (6, 4)).astype(np.uint16)
  stream = io.BytesIO()
  PIL.Image.fromarray(wide).save(stream, format="PNG")
  np.testing.assert_array_equal(
      images.decode_image(stream.getvalue()),
      np.repeat((wide >> 8).astype(np.uint8)[..., None], 3, axis=-1),
  )
  cmyk = PIL.Image.fromarray(rgba, mode="CMYK")
  stream = io.BytesIO()
  cmyk.save(stream, format="JPEG")
  reference = PIL.Image.open(io.BytesIO(stream.getvalue())).convert("RGB")
  np.testing.assert_array_equal(
      images.decode_image(stream.getvalue()), np.asarray(reference)
  )


def test_decode_refuses_bad_input_naming_it():
  with pytest.raises(ValueError, match="data must be encoded image bytes"):
    images.decode_image(np.zeros((2, 2, 3), np.uint8))
  for size in (0, 2.0, True):
    with pytest.raises(ValueError, match="image_size must be a positive int"):
      images.decode_image(_png(np.zeros((4, 4, 3), np.uint8)), size)
  with pytest.raises(OSError):
    images.decode_image(b"not an image")


def test_images_module_imports_without_jax_or_tfds():
  program = (
      "import sys, tljax.data.images; print(sorted({'jax', 'flax', "
      "'tensorflow_datasets'} & {n.split('.')[0] for n in sys.modules}))"
  )
  completed = subprocess.run(
      [sys.executable, "-c", program],
      cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
      capture_output=True,
      text=True,
      check=True,
  )
  assert completed.stdout.strip() == "[]"


# --------------------------------------------------------------------------
# Class names matched across domains.


def test_match_class_names_shares_the_source_order():
  assert image_files.match_class_names(["b", "a", "c"], ["c", "a", "b"]) == {
      "b": 0,
      "a": 1,
      "c": 2,
  }
  assert image_files.match_class_names(
      ["a", "b", "c"], ["c", "a"], allow_target_subset=True
  ) == {"a": 0, "b": 1, "c": 2}


def test_match_class_names_lists_the_missing_classes():
  with pytest.raises(ValueError, match=r"missing from the target: \['b'\]"):
    image_files.match_class_names(["a", "b", "c"], ["a", "c"])
  with pytest.raises(
      ValueError, match=r"target classes missing from the source: \['d'\]"
  ):
    image_files.match_class_names(
        ["a", "b"], ["a", "b", "d"], allow_target_subset=True
    )
  with pytest.raises(ValueError, match=r"target repeats class names \['a'\]"):
    image_files.match_class_names(["a"], ["a", "a"])


# --------------------------------------------------------------------------
# Image folders, prepared into TFDS.


def test_folder_round_trips_bytes_labels_and_pixels(domains):
  source = data.get_source(
      f"folder:{domains['a']}",
      "all",
      data_dir=domains["data_dir"],
      image_size=16,
  )
  assert isinstance(source, ImageSource)
  assert len(source) == 3 * PER_CLASS + 1
  assert source.class_names == CLASSES and source.num_classes == 3
  assert source.input_shape == (16, 16, 3) and source.skipped == ()
  for index in range(len(source)):
    record = source[index]
    with open(os.path.join(domains["a"], record["path"]), "rb") as stream:
      assert record["image"] == stream.read()
    assert record["label"] == CLASSES.index(record["path"].split(os.sep)[0])
    assert record["label"] == source.labels[index]
  batch = source.get_batch(np.array([3, 0, 3]))
  assert batch["input"].dtype == np.float32 and batch["label"].dtype == np.int32
  for row, index in enumerate([3, 0, 3]):
    expected = images.decode_image(source[index]["image"], 16) / np.float32(255)
    np.testing.assert_array_equal(batch["input"][row], expected)
  np.testing.assert_array_equal(batch["label"], source.labels[[3, 0, 3]])
  memory = source.to_array_source()
  np.testing.assert_array_equal(memory.inputs[[3, 0]], batch["input"][:2])
  np.testing.assert_array_equal(memory.labels, source.labels)
  # The records go to data-loader workers by pickling.
  records = pickle.loads(pickle.dumps(source.records))
  assert records[5]["image"] == source[5]["image"]


def test_folder_train_and_test_are_a_fixed_stratified_division(domains):
  def split(name, **options):
    return data.get_source(
        f"folder:{domains['a']}",
        name,
        data_dir=domains["data_dir"],
        image_size=8,
        **options,
    )

  train, test, every = split("train"), split("test"), split("all")
  paths = lambda source: [source[i]["path"] for i in range(len(source))]
  assert sorted(paths(train) + paths(test)) == sorted(paths(every))
  # round(0.2 * 8) = 2 test images per class (2 of 9 for apple).
  np.testing.assert_array_equal(np.bincount(test.labels), [2, 2, 2])
  assert paths(split("test")) == paths(test)
  assert len(split("test", test_fraction=0.5)) == 5 + 4 + 4
  with pytest.raises(ValueError, match="test_fraction must be a number"):
    split("test", test_fraction=1.0)
  with pytest.raises(ValueError, match=r"split must be one of \['train'"):
    split("validation")


def test_target_labels_follow_the_source_classes_by_name(tmp_path, domains):
  partial = _make_folder(tmp_path / "partial", seed=2, classes=("ball", "car"))
  options = dict(data_dir=domains["data_dir"], image_size=8)
  with pytest.raises(ValueError, match=r"missing from the target: \['apple'\]"):
    data.get_source(
        f"folder:{partial}", "all", classes=f"folder:{domains['a']}", **options
    )
  target = data.get_source(
      f"folder:{partial}",
      "all",
      classes=f"folder:{domains['a']}",
      allow_missing_classes=True,
      **options,
  )
  assert target.class_names == CLASSES and target.num_classes == 3
  for index in range(len(target)):
    class_name = target[index]["path"].split(os.sep)[0]
    assert target.labels[index] == CLASSES.index(class_name)
  extra = _make_folder(tmp_path / "extra", seed=3, classes=("apple", "dog"))
  with pytest.raises(
      ValueError, match=r"target classes missing from the source: \['dog'\]"
  ):
    data.get_source(
        f"folder:{extra}",
        "all",
        classes=CLASSES,
        allow_missing_classes=True,
        **options,
    )


def test_corrupt_image_is_an_error_naming_it_or_skipped_and_counted(tmp_path):
  root = _make_folder(tmp_path / "domain", seed=4, per_class=2)
  bad = os.path.join(root, "ball", "broken.jpg")
  with open(bad, "wb") as stream:
    stream.write(b"\xff\xd8\xff\xe0 truncated")
  data_dir = str(tmp_path / "tfds")
  with pytest.raises(DataError, match=f"image {bad} cannot be decoded"):
    data.get_source(f"folder:{root}", "all", data_dir=data_dir, image_size=8)
  # Nothing half-written is left to be read later.
  assert not os.listdir(os.path.join(data_dir, builders.IMAGES_SUBDIR))
  source = data.get_source(
      f"folder:{root}",
      "all",
      data_dir=data_dir,
      image_size=8,
      skip_corrupt=True,
  )
  assert len(source) == 3 * 2 + 1
  assert source.skipped == (os.path.join("ball", "broken.jpg"),)
  with open(os.path.join(source.dataset_dir, "metadata.json")) as stream:
    metadata = json.load(stream)
  assert metadata["num_skipped"] == 1 and metadata["num_listed"] == 8
  # The prepared dataset remembers the skip: a strict open still refuses.
  with pytest.raises(
      DataError, match=r"1 images that cannot be decoded.*broken"
  ):
    data.get_source(f"folder:{root}", "all", data_dir=data_dir, image_size=8)


def test_a_changed_folder_is_prepared_again_an_unchanged_one_is_not(
    tmp_path, monkeypatch
):
  root = _make_folder(tmp_path / "domain", seed=5, per_class=2)
  data_dir = str(tmp_path / "tfds")
  prepared = []
  original = builders._ImageDomainBuilder.download_and_prepare

  def counting(self, **kwargs):
    prepared.append(self.name)
    return original(self, **kwargs)

  monkeypatch.setattr(
      builders._ImageDomainBuilder, "download_and_prepare", counting
  )
  open_ = lambda: data.get_source(
      f"folder:{root}", "all", data_dir=data_dir, image_size=8
  )
  first = open_()
  again = open_()
  assert len(prepared) == 1 and again.dataset_dir == first.dataset_dir
  _write(os.path.join(root, "car", "new.png"), np.zeros((9, 9, 3), np.uint8))
  grown = open_()
  assert len(prepared) == 2 and len(grown) == len(first) + 1
  assert grown.dataset_dir != first.dataset_dir
  # The older preparation of the same folder is gone.
  assert os.listdir(os.path.join(data_dir, builders.IMAGES_SUBDIR)) == [
      os.path.basename(os.path.dirname(grown.dataset_dir))
  ]
  # Rewriting a file (new size and time) also changes the fingerprint.
  _write(os.path.join(root, "car", "new.png"), np.ones((11, 9, 3), np.uint8))
  os.utime(os.path.join(root, "car", "new.png"), ns=(1, 1))
  assert open_().dataset_dir != grown.dataset_dir and len(prepared) == 3


def test_bad_folders_and_options_are_named(tmp_path, domains):
  options = dict(data_dir=str(tmp_path / "tfds"))
  with pytest.raises(FileNotFoundError, match="root .* is not a directory"):
    data.get_source(f"folder:{tmp_path / 'nowhere'}", "all", **options)
  (tmp_path / "flat").mkdir()
  with pytest.raises(ValueError, match="has no class subdirectories"):
    data.get_source(f"folder:{tmp_path / 'flat'}", "all", **options)
  (tmp_path / "flat" / "empty").mkdir()
  with pytest.raises(ValueError, match=r"without an image .*\['empty'\]"):
    data.get_source(f"folder:{tmp_path / 'flat'}", "all", **options)
  with pytest.raises(ValueError, match="names no directory"):
    data.get_source("folder:", "all", **options)
  with pytest.raises(ValueError, match=r"take no option \['size'\]"):
    data.get_source(f"folder:{domains['a']}", "all", size=3, **options)
  with pytest.raises(ValueError, match="use_tfds must be None or True"):
    data.get_source(f"folder:{domains['a']}", "all", use_tfds=False)
  with pytest.raises(ValueError, match="skip_corrupt must be True or False"):
    data.get_source(f"folder:{domains['a']}", "all", skip_corrupt=1, **options)


# --------------------------------------------------------------------------
# Image-list files (TLlib's format).


def _list_lines(root, folder):
  """``path label`` lines for ``folder``'s images, relative to ``root``."""
  lines = []
  for label, name in enumerate(CLASSES):
    for file_name in sorted(os.listdir(os.path.join(folder, name))):
      path = os.path.relpath(os.path.join(folder, name, file_name), root)
      lines.append(f"{path} {label}")
  return lines


def test_image_list_reads_tllib_lines_with_a_root_and_class_names(
    tmp_path, domains
):
  root = os.path.dirname(domains["a"])
  lines = _list_lines(root, domains["a"])
  list_dir = tmp_path / "image_list"
  list_dir.mkdir()
  (list_dir / "a.txt").write_text(
      "# TLlib layout\n\n" + "\n".join(lines[::-1]) + "\n"
  )
  (list_dir / "classes.txt").write_text("\n".join(CLASSES) + "\n")
  options = dict(data_dir=domains["data_dir"], image_size=8)
  source = data.get_source(
      f"imagelist:{list_dir / 'a.txt'}",
      "all",
      root=root,
      classes_file=str(list_dir / "classes.txt"),
      **options,
  )
  assert source.class_names == CLASSES and len(source) == len(lines)
  for index, line in enumerate(lines[::-1]):  # the list's order
    path, label = line.rsplit(" ", 1)
    record = source[index]
    assert record["path"] == path and record["label"] == int(label)
    with open(os.path.join(root, path), "rb") as stream:
      assert record["image"] == stream.read()
  unnamed = data.get_source(
      f"imagelist:{list_dir / 'a.txt'}", "all", root=root, **options
  )
  assert unnamed.class_names == ("0", "1", "2")
  np.testing.assert_array_equal(unnamed.labels, source.labels)


def test_image_list_split_template_and_errors_name_the_line(tmp_path, domains):
  root = os.path.dirname(domains["a"])
  lines = _list_lines(root, domains["a"])
  for split, chosen in (("train", lines[:-5]), ("test", lines[-5:])):
    (tmp_path / f"a_{split}.txt").write_text("\n".join(chosen))
  options = dict(data_dir=domains["data_dir"], image_size=8, root=root)
  template = f"imagelist:{tmp_path / 'a_{split}.txt'}"
  assert len(data.get_source(template, "test", **options)) == 5
  assert len(data.get_source(template, "train", **options)) == len(lines) - 5
  broken = tmp_path / "broken.txt"
  broken.write_text(f"{lines[0]}\nno_label_here\n")
  with pytest.raises(ValueError, match=r"line 2: expected 'path label'"):
    data.get_source(f"imagelist:{broken}", "all", **options)
  broken.write_text(f"{lines[0]}\nmissing/x.png 1\n")
  with pytest.raises(FileNotFoundError, match=r"line 2: image missing/x.png"):
    data.get_source(f"imagelist:{broken}", "all", **options)
  classes = tmp_path / "two.txt"
  classes.write_text("apple\nball\n")
  with pytest.raises(ValueError, match=r"labels \[2\] beyond them"):
    data.get_source(template, "test", classes_file=str(classes), **options)


# --------------------------------------------------------------------------
# End to end: the training loop on two image folders.


def test_trains_on_two_image_folders(tmp_path, domains):
  config = small_config(
      domains["data_dir"],
      method="source_only",
      model__name="mlp",
      model__hidden_dims=(16,),
      steps=3,
      batch_size=8,
      eval_batch_size=16,
      log_every=3,
      checkpoint_every=3,
  )
  for domain, folder in (("source", domains["a"]), ("target", domains["b"])):
    config[domain].name = f"folder:{folder}"
    config[domain].train_split = "all"
    config[domain].test_split = "all"
    config[domain].kwargs.image_size = 16
  config.target.kwargs.classes = config.source.name
  summary = train_and_evaluate(config, str(tmp_path / "run"))
  assert summary["steps"] == 3
  assert summary["target_test"]["num_examples"] == 3 * PER_CLASS + 1
  assert 0 <= summary["target_test"]["accuracy"] <= 1


def test_an_unreadable_prepared_dataset_is_named_and_prepared_again(tmp_path):
  root = _make_folder(tmp_path / "domain", seed=6, per_class=1)
  data_dir = str(tmp_path / "tfds")
  open_ = lambda: data.get_source(
      f"folder:{root}", "all", data_dir=data_dir, image_size=8
  )
  prepared = open_()
  with open(os.path.join(prepared.dataset_dir, "dataset_info.json"), "w") as f:
    f.write("{garbled")
  with pytest.raises(
      DataError, match=f"{prepared.dataset_dir} .* cannot be read.*delete it"
  ):
    open_()
  shutil.rmtree(prepared.dataset_dir)
  assert len(open_()) == len(prepared)
