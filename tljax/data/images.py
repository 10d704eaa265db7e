"""Decoding the user's images, and reading the records of a prepared image domain.

:func:`decode_image` turns encoded bytes (JPEG, PNG, ...) into a uint8 RGB
image, resized and center-cropped to a fixed size as torchvision's
``Resize`` + ``CenterCrop`` do; :func:`read_verified` reads a file and
decodes it in full (what preparation checks every image with);
:class:`ImageRecords` gives random access to the records of a prepared
domain (encoded bytes, label, path) for a data loader.

The domains themselves (image folders, image-list files, their class names)
are listed by :mod:`tljax.data.image_files`, prepared by
:mod:`tljax.data.builders` and opened as sources by
:mod:`tljax.data.image_sources`.

This module imports only NumPy and Pillow (no JAX, no TensorFlow Datasets),
so :func:`decode_image` and :class:`ImageRecords` run in data-loader worker
processes.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import PIL.Image

_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")


# --------------------------------------------------------------------------
# Decoding.


def to_rgb(image: PIL.Image.Image) -> PIL.Image.Image:
  """``image`` in mode ``"RGB"``, as torchvision's ``pil_loader`` converts it.

  Grayscale is replicated into three channels, a palette is looked up, an
  alpha channel is dropped (not composited), CMYK and YCbCr are converted
  by Pillow. 16-bit grayscale keeps its 8 high bits. EXIF orientation is not
  applied (torchvision does not either).
  """
  if image.mode in _SIXTEEN_BIT_MODES:
    pixels = np.asarray(image, dtype=np.uint16) >> 8
    image = PIL.Image.fromarray(pixels.astype(np.uint8), mode="L")
  if image.mode != "RGB":
    image = image.convert("RGB")
  return image


def resize_shorter_side(image: PIL.Image.Image, size: int) -> PIL.Image.Image:
  """``image`` resized (bilinear) so its shorter side is ``size``.

  torchvision's ``Resize(size)`` with an int: the longer side becomes
  ``int(size * longer / shorter)``; an image already that size is returned
  as it is.
  """
  width, height = image.size
  if width <= height:
    new_size = (size, int(size * height / width))
  else:
    new_size = (int(size * width / height), size)
  if new_size == (width, height):
    return image
  return image.resize(new_size, PIL.Image.Resampling.BILINEAR)


def center_crop(image: PIL.Image.Image, size: int) -> PIL.Image.Image:
  """The central ``size`` × ``size`` crop, as torchvision's ``CenterCrop(size)``.

  Offsets are ``int(round((height - size) / 2))`` and likewise for the
  width; the image must be at least ``size`` on both sides.
  """
  width, height = image.size
  if width < size or height < size:
    raise ValueError(
        f"size must be at most the image's sides {width}x{height}, got {size}"
    )
  top = int(round((height - size) / 2.0))
  left = int(round((width - size) / 2.0))
  return image.crop((left, top, left + size, top + size))


def _open(data: bytes) -> PIL.Image.Image:
  """The fully decoded image in ``data`` (Pillow raises on corrupt data)."""
  image = PIL.Image.open(io.BytesIO(data))
  image.load()
  return image


def decode_image(data: bytes, image_size: int | None = None) -> np.ndarray:
  """Encoded image bytes (JPEG, PNG, ...) as a uint8 RGB ``(H, W, 3)`` array.

  With ``image_size``, the image is resized so its shorter side is
  ``image_size`` (bilinear) and center-cropped to ``image_size`` ×
  ``image_size``: torchvision's ``Resize(s)`` + ``CenterCrop(s)``, the
  deterministic evaluation transform (TLlib resizes to 256 and crops 224;
  here both are ``image_size``). Without it, the image keeps its size. See
  :func:`to_rgb` for the mode conversion. A pure function of its arguments,
  with NumPy and Pillow only.

  Raises:
    ValueError: ``data`` is not bytes, or ``image_size`` is not a positive
      int.
    OSError: Pillow cannot decode ``data`` (``PIL.UnidentifiedImageError``
      for an unknown format).
  """
  if not isinstance(data, (bytes, bytearray, memoryview)):
    raise ValueError(
        f"data must be encoded image bytes, got {type(data).__name__}"
    )
  if image_size is not None:
    image_size = check_image_size(image_size)
  image = to_rgb(_open(bytes(data)))
  if image_size is not None:
    image = center_crop(resize_shorter_side(image, image_size), image_size)
  return np.asarray(image, dtype=np.uint8)


def check_image_size(image_size: Any, argument: str = "image_size") -> int:
  """``image_size`` if it is a positive int, else a ``ValueError`` naming ``argument``."""
  if (
      isinstance(image_size, bool)
      or not isinstance(image_size, (int, np.integer))
      or image_size < 1
  ):
    raise ValueError(f"{argument} must be a positive int, got {image_size!r}")
  return int(image_size)


def read_verified(path: str) -> tuple[bytes | None, str | None]:
  """``(bytes, None)`` for a file Pillow decodes in full, else ``(None, why)``.

  Every pixel is decoded (a truncated JPEG fails here, not in training);
  ``why`` is the error's type and message.
  """
  try:
    with open(path, "rb") as stream:
      data = stream.read()
    image = _open(data)
    if image.width < 1 or image.height < 1:
      raise ValueError(f"empty image {image.width}x{image.height}")
  except Exception as error:  # pylint: disable=broad-except  (Pillow raises many kinds)
    message = re.sub(
        r" <_io\.BytesIO object at 0x[0-9a-fA-F]+>", "", str(error)
    )
    return None, f"{type(error).__name__}: {message}"
  return data, None


class ImageRecords:
  """Random access to (a view of) a prepared image domain's records.

  ``records[i]`` is ``{"image": encoded bytes, "label": int32, "path":
  str}``: the ``indices[i]``-th record of ``data_source`` (a TFDS
  ArrayRecord data source, or any sequence of such dicts), its label mapped
  through ``label_map`` (the domain's own label → the shared one). A grain
  ``RandomAccessDataSource`` (``__len__``, ``__getitem__``); picklable when
  ``data_source`` is, so it can be handed to worker processes.
  """

  def __init__(
      self,
      data_source: Sequence[dict[str, Any]],
      *,
      indices: Sequence[int] | np.ndarray,
      label_map: Sequence[int] | np.ndarray,
  ):
    self.data_source = data_source
    self.indices = np.asarray(indices, dtype=np.int64)
    self.label_map = np.asarray(label_map, dtype=np.int32)
    for argument, value in (
        ("indices", self.indices),
        ("label_map", self.label_map),
    ):
      if value.ndim != 1:
        raise ValueError(f"{argument} must be 1-D, got shape {value.shape}")

  def __len__(self) -> int:
    return int(self.indices.size)

  def _record(self, record: dict[str, Any]) -> dict[str, Any]:
    path = record["path"]
    return {
        "image": bytes(record["image"]),
        "label": self.label_map[int(record["label"])],
        "path": path.decode("utf-8") if isinstance(path, bytes) else str(path),
    }

  def _keys(self, indices: Sequence[int]) -> list[int]:
    keys = []
    for index in indices:
      index = int(index)
      if not -len(self) <= index < len(self):
        raise IndexError(
            f"index {index} is out of range for {len(self)} records"
        )
      keys.append(int(self.indices[index]))
    return keys

  def __getitem__(self, index: int) -> dict[str, Any]:
    return self._record(self.data_source[self._keys([index])[0]])

  def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
    keys = self._keys(indices)
    if hasattr(self.data_source, "__getitems__"):
      records = self.data_source.__getitems__(keys)
    else:
      records = [self.data_source[key] for key in keys]
    return [self._record(record) for record in records]

  def __repr__(self) -> str:
    return f"ImageRecords(num_records={len(self)})"
