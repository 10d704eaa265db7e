"""Sources over the user's image domains: ``folder:<directory>`` and ``imagelist:<file>``.

``get_source("folder:/data/office31/amazon/images", "all")`` lists the image
folder (:func:`tljax.data.image_files.scan_image_folder`), prepares it once into
a TFDS ArrayRecord dataset of the encoded images under the data dir
(:func:`tljax.data.builders.prepare_image_domain`; again only when its files
change) and returns an :class:`ImageSource`: records of encoded bytes for a
data loader (:attr:`ImageSource.records`), and batches of images decoded,
resized and center-cropped to ``image_size`` (:meth:`ImageSource.get_batch`)
for the training loop. ``imagelist:<file>`` does the same for an image-list
file (TLlib's format, :func:`tljax.data.image_files.read_image_list`).

Splits: ``"all"`` (every image: the transductive domain-adaptation protocol
of TLlib, which trains on all source and all target images and evaluates on
all target images), and ``"train"`` / ``"test"``, a fixed stratified
division with ``test_fraction`` of each class in ``"test"``
(:func:`tljax.data.image_files.holdout_indices`). An image-list path containing
``{split}`` (``imagelist:/data/domainnet/clipart_{split}.txt``) is instead
one file per split, each used whole; so is a folder path containing
``{split}`` (``folder:/data/mnist_m/{split}``: ``train/`` and ``test/``
folders, e.g. :func:`tljax.data.mnist_m.write_mnist_m`'s).

Options (``config.<domain>.kwargs``):

* ``image_size`` (224): the side of the square images batches hold;
* ``resize`` (None): the evaluation view resizes each image to ``resize`` ×
  ``resize`` before the ``image_size`` center crop, TLlib's
  ``ResizeImage(256)`` + ``CenterCrop(224)`` with ``resize=256``; the
  training augmentation (``config.augment``) resizes the same way before its
  random crop. None: the shorter side is resized to ``image_size``
  (torchvision's ``Resize`` + ``CenterCrop`` of the same size);
* ``classes``: the label space, matched by class name
  (:func:`tljax.data.image_files.match_class_names`): a sequence of names in label
  order, or the other domain's image folder (``"folder:<dir>"`` or the
  directory), e.g. ``config.target.kwargs.classes = config.source.name``.
  Default: the domain's own classes (a folder's sorted subdirectories);
* ``allow_missing_classes`` (False): let this domain lack some of
  ``classes`` (the target of partial domain adaptation);
* ``skip_corrupt`` (False): skip images that do not decode, counting them,
  instead of refusing the domain;
* ``test_fraction`` (0.2) for ``"train"`` / ``"test"``;
* image lists: ``root`` (where relative paths start; default the list's
  directory) and ``classes_file`` (one class name per line).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from tljax.data import augment, image_files, images
from tljax.data.base import ArraySource
from tljax.data.registry import register_source, resolve_data_dir
from tljax.errors import DataError

FOLDER_PREFIX = "folder:"
IMAGELIST_PREFIX = "imagelist:"
IMAGE_SPLITS = ("train", "test", "all")
DEFAULT_IMAGE_SIZE = 224
DEFAULT_TEST_FRACTION = 0.2
SPLIT_FIELD = "{split}"  # in a folder or list path: one per split
_DECODE_CHUNK = 256


class ImageSource:
  """A source over a prepared image domain: encoded records, decoded batches.

  ``get_batch(indices)`` decodes each image (:meth:`view`: RGB, resized,
  center-cropped to ``image_size``) into ``{"input": (B, image_size,
  image_size, 3) float32 in [0, 1],
  "label": (B,) int32}``. ``source[i]`` (and :attr:`records`, the same
  without this class, for data-loader workers) is ``{"image": encoded
  bytes, "label": int32, "path": str}``.

  Attributes:
    records: the :class:`tljax.data.images.ImageRecords` of this split.
    labels: int32 ``(N,)``, every example's label (read without decoding).
    class_names: label ``i`` is ``class_names[i]``.
    num_classes: ``len(class_names)``.
    image_size: the side of the decoded images.
    resize: the side of the square each image is resized to before the
      center crop, or None (the shorter side to ``image_size``).
    name: a label for logs and error messages.
    skipped: the paths (relative to the root) skipped as corrupt when the
      domain was prepared.
    dataset_dir: the prepared dataset's directory.
  """

  def __init__(
      self,
      records: images.ImageRecords,
      *,
      labels: Sequence[int] | np.ndarray,
      class_names: Sequence[str],
      image_size: int,
      name: str,
      skipped: Sequence[str] = (),
      dataset_dir: str | None = None,
      resize: int | None = None,
  ):
    self.records = records
    self.labels = np.asarray(labels, dtype=np.int32)
    if self.labels.shape != (len(records),):
      raise ValueError(
          f"labels must have one entry per record ({len(records)}), got "
          f"shape {self.labels.shape}"
      )
    self.class_names = tuple(class_names)
    self.num_classes = len(self.class_names)
    self.image_size = images.check_image_size(image_size)
    if resize is not None:
      resize = images.check_image_size(resize, "resize")
      if resize < self.image_size:
        raise ValueError(
            f"resize ({resize}) must be at least image_size "
            f"({self.image_size}): the center crop is taken from the resized "
            "image"
        )
    self.resize = resize
    self.name = name
    self.skipped = tuple(skipped)
    self.dataset_dir = dataset_dir

  @property
  def input_shape(self) -> tuple[int, ...]:
    """``(image_size, image_size, 3)``."""
    return (self.image_size, self.image_size, 3)

  def __len__(self) -> int:
    return len(self.records)

  def _read(self, indices: Sequence[int]) -> list[dict[str, Any]]:
    try:
      return self.records.__getitems__(indices)
    except IndexError:
      raise
    except Exception as error:  # ArrayRecord, Riegeli and protobuf errors
      raise DataError(
          f"{self.name}: the prepared dataset {self.dataset_dir} cannot be "
          f"read ({type(error).__name__}: {error}); delete it and tljax "
          "prepares the domain again"
      ) from error

  def __getitem__(self, index: int) -> dict[str, Any]:
    return self._read([index])[0]

  def view(self, data: bytes) -> np.ndarray:
    """One encoded image as the evaluation view: uint8 ``input_shape``.

    :func:`tljax.data.images.decode_image` to RGB, then either the shorter
    side resized to ``image_size`` (``resize`` None) or the image resized to
    ``resize`` × ``resize``, then the ``image_size`` center crop.
    """
    if self.resize is None:
      return images.decode_image(data, self.image_size)
    image = augment.resize(images.decode_image(data), (self.resize,) * 2)
    return augment.center_crop(image, self.image_size)

  def get_batch(self, indices: Any) -> dict[str, np.ndarray]:
    """The decoded images and labels at ``indices``."""
    keys = [int(index) for index in np.asarray(indices).reshape(-1)]
    for key in keys:
      if not 0 <= key < len(self):
        raise IndexError(
            f"index {key} is out of range for {self.name} of size {len(self)}."
        )
    pixels = np.zeros((len(keys), *self.input_shape), np.float32)
    labels = np.zeros((len(keys),), np.int32)
    for row, record in enumerate(self._read(keys)):
      try:
        image = self.view(record["image"])
      except OSError as error:
        raise DataError(
            f"{self.name}: image {record['path']} no longer decodes "
            f"({error}); delete {self.dataset_dir} and tljax prepares the "
            "domain again"
        ) from error
      pixels[row] = image
      labels[row] = record["label"]
    return {"input": pixels / np.float32(255), "label": labels}

  def to_array_source(self, *, chunk_size: int = _DECODE_CHUNK) -> ArraySource:
    """Every image decoded into memory (for small domains)."""
    chunks = [
        self.get_batch(np.arange(start, min(start + chunk_size, len(self))))
        for start in range(0, len(self), chunk_size)
    ]
    return ArraySource(
        np.concatenate([chunk["input"] for chunk in chunks]),
        np.concatenate([chunk["label"] for chunk in chunks]),
        num_classes=self.num_classes,
        name=self.name,
    )

  def __repr__(self) -> str:
    return (
        f"ImageSource(name={self.name!r}, num_examples={len(self)}, "
        f"input_shape={self.input_shape}, num_classes={self.num_classes})"
    )


def _check_flag(value: Any, argument: str) -> bool:
  if not isinstance(value, (bool, np.bool_)):
    raise ValueError(f"{argument} must be True or False, got {value!r}")
  return bool(value)


def _label_space(
    classes: Any, own: tuple[str, ...], allow_missing_classes: bool
) -> tuple[tuple[str, ...], np.ndarray]:
  """``(class names, own label → shared label)`` for option ``classes``."""
  if classes is None:
    return own, np.arange(len(own), dtype=np.int32)
  if isinstance(classes, (str, os.PathLike)):
    folder = os.fspath(classes)
    if folder.startswith(FOLDER_PREFIX):
      folder = folder[len(FOLDER_PREFIX) :]
    # A folder with one directory per split shares its training classes.
    folder = folder.replace(SPLIT_FIELD, "train")
    if not os.path.isdir(os.path.expanduser(folder)):
      raise ValueError(
          f"classes {classes!r} is not an image folder: give a directory "
          "('folder:<dir>') whose class subdirectories to share, or a "
          "sequence of class names"
      )
    names = image_files.folder_class_names(folder)
  elif isinstance(classes, Sequence):
    names = tuple(classes)
  else:
    raise ValueError(
        "classes must be a sequence of class names, or an image folder "
        f"('folder:<dir>') whose classes to share, got {classes!r}"
    )
  try:
    mapping = image_files.match_class_names(
        names, own, allow_target_subset=allow_missing_classes
    )
  except ValueError as error:
    raise ValueError(
        f"classes: {error} (here 'source' is the given classes and 'target' "
        "this domain; allow_missing_classes=True lets this domain lack some)"
    ) from error
  return tuple(names), np.asarray([mapping[name] for name in own], np.int32)


def open_image_domain(
    files: image_files.ImageFiles,
    split: str,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    name: str,
    image_size: int = DEFAULT_IMAGE_SIZE,
    resize: int | None = None,
    classes: Any = None,
    allow_missing_classes: bool = False,
    skip_corrupt: bool = False,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    whole: bool = False,
) -> ImageSource:
  """``split`` of the listed image domain ``files``, prepared if needed.

  See the module docstring for the options; ``whole`` uses every image
  whatever ``split`` is (one list file per split).
  """
  from tljax.data import builders  # pylint: disable=g-import-not-at-top

  if not whole and split not in IMAGE_SPLITS:
    raise ValueError(
        f"split must be one of {list(IMAGE_SPLITS)} for {name!r}, got "
        f"{split!r}."
    )
  image_size = images.check_image_size(image_size)
  skip_corrupt = _check_flag(skip_corrupt, "skip_corrupt")
  allow_missing_classes = _check_flag(
      allow_missing_classes, "allow_missing_classes"
  )
  class_names, label_map = _label_space(
      classes, files.class_names, allow_missing_classes
  )
  test_fraction = image_files.check_test_fraction(test_fraction)
  data_dir = resolve_data_dir(data_dir)
  data_source, metadata = builders.prepare_image_domain(
      files, data_dir=data_dir, skip_corrupt=skip_corrupt
  )
  paths, own_labels = metadata["paths"], np.asarray(metadata["labels"], int)
  if whole or split == "all":
    indices = np.arange(len(paths))
  else:
    indices = image_files.holdout_indices(paths, own_labels, test_fraction)[
        split
    ]
  return ImageSource(
      images.ImageRecords(data_source, indices=indices, label_map=label_map),
      labels=label_map[own_labels[indices]],
      class_names=class_names,
      image_size=image_size,
      resize=resize,
      name=f"{name}/{split}",
      skipped=metadata.get("skipped", ()),
      dataset_dir=builders.image_dataset_dir(files, data_dir),
  )


def image_folder_source(
    path: str | os.PathLike[str],
    split: str = "all",
    *,
    data_dir: str | os.PathLike[str] | None = None,
    **options: Any,
) -> ImageSource:
  """``split`` of image folder ``path`` (``path/<class>/<image>``).

  A ``{split}`` in ``path`` (``/data/mnist_m/{split}``) is replaced by
  ``split`` (``"train"`` or ``"test"``) and that folder is used whole: a
  domain shipped with one folder per split.

  ``options``: ``image_size``, ``resize``, ``classes``, ``allow_missing_classes``,
  ``skip_corrupt``, ``test_fraction`` (see the module docstring).
  ``get_source("folder:<path>", split)`` calls this.
  """
  _check_options(options, FOLDER_PREFIX, ())
  if not isinstance(path, (str, os.PathLike)):
    raise ValueError(f"path must be a directory, got {path!r}")
  whole = SPLIT_FIELD in os.fspath(path)
  if whole:
    if split not in ("train", "test"):
      raise ValueError(
          f"split must be 'train' or 'test' for the per-split folder "
          f"{os.fspath(path)!r}, got {split!r}"
      )
    path = os.fspath(path).replace(SPLIT_FIELD, split)
  files = image_files.scan_image_folder(path)
  return open_image_domain(
      files,
      split,
      data_dir=data_dir,
      name=f"{FOLDER_PREFIX}{files.origin}",
      whole=whole,
      **options,
  )


def image_list_source(
    list_file: str | os.PathLike[str],
    split: str = "all",
    *,
    data_dir: str | os.PathLike[str] | None = None,
    root: str | os.PathLike[str] | None = None,
    classes_file: str | os.PathLike[str] | None = None,
    **options: Any,
) -> ImageSource:
  """``split`` of the images image-list file ``list_file`` names (TLlib's format).

  A ``{split}`` in ``list_file`` is replaced by ``split`` and that file is
  used whole. ``root`` and ``classes_file`` go to
  :func:`tljax.data.image_files.read_image_list`; ``options`` are those of
  :func:`image_folder_source`. ``get_source("imagelist:<file>", split)``
  calls this.
  """
  _check_options(options, IMAGELIST_PREFIX, ("root", "classes_file"))
  if not isinstance(list_file, (str, os.PathLike)):
    raise ValueError(f"list_file must be a file path, got {list_file!r}")
  whole = "{split}" in os.fspath(list_file)
  if whole:
    if not isinstance(split, str) or not split.strip():
      raise ValueError(f"split must be a non-empty string, got {split!r}.")
    list_file = os.fspath(list_file).replace("{split}", split)
  files = image_files.read_image_list(
      list_file, root=root, classes_file=classes_file
  )
  return open_image_domain(
      files,
      split,
      data_dir=data_dir,
      name=f"{IMAGELIST_PREFIX}{files.origin}",
      whole=whole,
      **options,
  )


_OPTIONS = (
    "image_size",
    "resize",
    "classes",
    "allow_missing_classes",
    "skip_corrupt",
    "test_fraction",
)


def _check_options(options: dict, prefix: str, extra: tuple[str, ...]) -> None:
  unknown = sorted(set(options) - set(_OPTIONS))
  if unknown:
    raise ValueError(
        f"'{prefix}' sources take no option {unknown}; options: "
        f"{sorted(_OPTIONS + extra)}"
    )


def _check_use_tfds(prefix: str, use_tfds: bool | None) -> None:
  if use_tfds is False:
    raise ValueError(
        f"'{prefix}' domains are prepared into TFDS ArrayRecord datasets; "
        "use_tfds must be None or True."
    )


def _argument(prefix: str, argument: str, value: str, example: str) -> str:
  if not value.strip():
    raise ValueError(
        f"name {prefix!r} names no {argument}; give one after {prefix!r}, "
        f"e.g. '{prefix}{example}'."
    )
  return value


@register_source(
    FOLDER_PREFIX, argument="directory", description="an image folder"
)
def _folder_source(path, split, *, data_dir, use_tfds, **options):
  _check_use_tfds(FOLDER_PREFIX, use_tfds)
  return image_folder_source(
      _argument(
          FOLDER_PREFIX, "directory", path, "/data/office31/amazon/images"
      ),
      split,
      data_dir=data_dir,
      **options,
  )


@register_source(
    IMAGELIST_PREFIX, argument="file", description="an image-list file"
)
def _imagelist_source(list_file, split, *, data_dir, use_tfds, **options):
  _check_use_tfds(IMAGELIST_PREFIX, use_tfds)
  return image_list_source(
      _argument(
          IMAGELIST_PREFIX,
          "file",
          list_file,
          "/data/office31/image_list/amazon.txt",
      ),
      split,
      data_dir=data_dir,
      **options,
  )
