"""The user's image domains on disk: image folders and image-list files.

Two layouts are read, as torchvision and the Transfer-Learning-Library
(TLlib, Jiang et al., https://github.com/thuml/Transfer-Learning-Library)
read them:

* an **image folder** ``root/<class>/<image>`` (torchvision's
  ``ImageFolder``; the layout Office-31, Office-Home and ImageNet ship in):
  one class per subdirectory of ``root``, sorted by name; images anywhere
  below it, with one of :data:`IMAGE_EXTENSIONS` (case-insensitive). Hidden
  entries (``.*``) and files directly in ``root`` are not examples;
* an **image-list file**: one ``relative/path label`` line per image
  (TLlib's ``ImageList``, e.g. ``amazon/images/back_pack/frame_0001.jpg
  0``): the label is the last whitespace-separated field, an integer; the
  path is the rest (it may hold spaces), relative to ``root`` unless
  absolute. Blank lines and lines starting with ``#`` are skipped. The class
  names come from a classes file (one name per line, line ``i`` naming label
  ``i``) or are the labels' decimal strings ``"0"``, ``"1"``, ...

:func:`scan_image_folder` and :func:`read_image_list` list a domain's files
with a fingerprint of their names, sizes and modification times
(:class:`ImageFiles`), which :func:`tljax.data.builders.prepare_image_domain`
prepares once into a TFDS ArrayRecord dataset of the encoded bytes.
:func:`match_class_names` gives two domains one label space by class name;
:func:`holdout_indices` divides a domain into fixed train and test parts.

This module imports only NumPy (no JAX, no TensorFlow Datasets, no Pillow).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

IMAGE_EXTENSIONS = (
    ".jpg",
    ".jpeg",
    ".png",
    ".ppm",
    ".bmp",
    ".pgm",
    ".tif",
    ".tiff",
    ".webp",
)
# Bumped when what a prepared dataset holds changes: a new key, so an old
# preparation is not reused.
FORMAT_VERSION = 1


# --------------------------------------------------------------------------
# The files of a domain.


@dataclasses.dataclass(frozen=True)
class ImageFiles:
  """The images of one domain on disk, as listed before preparation.

  Attributes:
    kind: ``"folder"`` or ``"imagelist"``.
    origin: the absolute path of the image folder or the image-list file.
    root: the directory the relative ``paths`` are relative to.
    class_names: the domain's label space: label ``i`` is ``class_names[i]``.
    paths: each image's path relative to ``root`` (or absolute, as listed).
    labels: each image's label.
    fingerprint: hex SHA-256 of the format version, the kind, origin, root,
      class names, and each image's path, label, size and modification time:
      a changed file, a new one or a removed one changes it.
  """

  kind: str
  origin: str
  root: str
  class_names: tuple[str, ...]
  paths: tuple[str, ...]
  labels: tuple[int, ...]
  fingerprint: str

  def absolute(self, path: str) -> str:
    """The absolute path of ``path`` (one of :attr:`paths`)."""
    return os.path.join(self.root, path)

  @property
  def stale_prefix(self) -> str:
    """The start of the keys of every preparation of :attr:`origin`."""
    parts = [part for part in self.origin.split(os.sep) if part][-2:]
    slug = re.sub(r"[^a-z0-9]+", "_", "_".join(parts).lower()).strip("_")
    if not slug or not slug[0].isalpha():
      slug = "d_" + slug
    digest = hashlib.sha256(self.origin.encode("utf-8")).hexdigest()[:8]
    return f"{slug[:48].rstrip('_')}_{self.kind}_{digest}_"

  @property
  def key(self) -> str:
    """The prepared dataset's name: origin (a slug and a hash) and fingerprint."""
    return self.stale_prefix + self.fingerprint[:16]


def _fingerprint(
    kind: str,
    origin: str,
    root: str,
    class_names: Sequence[str],
    paths: Sequence[str],
    labels: Sequence[int],
) -> str:
  digest = hashlib.sha256()
  header = [str(FORMAT_VERSION), kind, origin, root, *class_names]
  digest.update(("\n".join(header) + "\n\n").encode("utf-8"))
  for path, label in zip(paths, labels):
    stat = os.stat(os.path.join(root, path))
    digest.update(
        f"{path}\t{label}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode("utf-8")
    )
  return digest.hexdigest()


def _is_image(file_name: str) -> bool:
  return file_name.lower().endswith(IMAGE_EXTENSIONS)


def _check_directory(path: Any, argument: str) -> str:
  if not isinstance(path, (str, os.PathLike)) or not os.fspath(path).strip():
    raise ValueError(f"{argument} must be a directory path, got {path!r}")
  path = os.path.abspath(os.path.expanduser(os.fspath(path)))
  if not os.path.isdir(path):
    raise FileNotFoundError(f"{argument} {path} is not a directory")
  return path


def folder_class_names(root: str | os.PathLike[str]) -> tuple[str, ...]:
  """The class names of image folder ``root``: its subdirectories, sorted.

  Raises:
    FileNotFoundError: ``root`` is not a directory.
    ValueError: it has no (non-hidden) subdirectory.
  """
  root = _check_directory(root, "root")
  names = tuple(
      sorted(
          entry.name
          for entry in os.scandir(root)
          if entry.is_dir() and not entry.name.startswith(".")
      )
  )
  if not names:
    raise ValueError(
        f"root {root} has no class subdirectories; an image folder is "
        "root/<class>/<image>"
    )
  return names


def scan_image_folder(root: str | os.PathLike[str]) -> ImageFiles:
  """The images of image folder ``root/<class>/<image>``, fingerprinted.

  Images are listed by class, then by path; symbolic links are followed.

  Raises:
    FileNotFoundError: ``root`` is not a directory.
    ValueError: it has no class subdirectory, or a class directory holds no
      image (all such classes are named).
  """
  root = _check_directory(root, "root")
  class_names = folder_class_names(root)
  paths, labels, empty = [], [], []
  for label, class_name in enumerate(class_names):
    found = []
    for directory, subdirectories, files in os.walk(
        os.path.join(root, class_name), followlinks=True
    ):
      subdirectories[:] = sorted(
          name for name in subdirectories if not name.startswith(".")
      )
      relative = os.path.relpath(directory, root)
      found.extend(
          os.path.join(relative, name)
          for name in sorted(files)
          if _is_image(name) and not name.startswith(".")
      )
    if not found:
      empty.append(class_name)
    paths.extend(sorted(found))
    labels.extend([label] * len(found))
  if empty:
    raise ValueError(
        f"root {root}: class directories without an image "
        f"({', '.join(IMAGE_EXTENSIONS)}): {empty}"
    )
  return ImageFiles(
      kind="folder",
      origin=root,
      root=root,
      class_names=class_names,
      paths=tuple(paths),
      labels=tuple(labels),
      fingerprint=_fingerprint(
          "folder", root, root, class_names, paths, labels
      ),
  )


def _read_lines(path: str, argument: str) -> list[str]:
  try:
    with open(path, encoding="utf-8") as stream:
      return stream.read().splitlines()
  except FileNotFoundError:
    raise FileNotFoundError(f"{argument} {path} does not exist") from None
  except (OSError, UnicodeDecodeError) as error:
    raise ValueError(
        f"{argument} {path} cannot be read as UTF-8 text: {error}"
    ) from error


def read_image_list(
    list_file: str | os.PathLike[str],
    *,
    root: str | os.PathLike[str] | None = None,
    classes_file: str | os.PathLike[str] | None = None,
) -> ImageFiles:
  """The images an image-list file names (TLlib's format), fingerprinted.

  Args:
    list_file: the list: one ``path label`` line per image (see the module
      docstring); images keep its order.
    root: the directory relative paths start from; default the list file's
      directory. (TLlib's lists sit in ``<dataset>/image_list/`` with paths
      relative to ``<dataset>``: give ``root=<dataset>``.)
    classes_file: one class name per line, line ``i`` naming label ``i``;
      default the labels' decimal strings ``"0"`` to the largest label.

  Raises:
    FileNotFoundError: a missing list, classes file, root or listed image
      (naming its line and the root).
    ValueError: a line without a path and an integer label, a negative
      label, a label the classes file does not name, duplicate class names,
      or no image at all (each naming the file and line).
  """
  if (
      not isinstance(list_file, (str, os.PathLike))
      or not os.fspath(list_file).strip()
  ):
    raise ValueError(f"list_file must be a file path, got {list_file!r}")
  list_file = os.path.abspath(os.path.expanduser(os.fspath(list_file)))
  root = (
      os.path.dirname(list_file)
      if root is None
      else _check_directory(root, "root")
  )
  paths, labels = [], []
  for number, line in enumerate(_read_lines(list_file, "list_file"), 1):
    fields = line.split()
    if not fields or fields[0].startswith("#"):
      continue
    if len(fields) < 2 or not re.fullmatch(r"[+-]?\d+", fields[-1]):
      raise ValueError(
          f"list_file {list_file}, line {number}: expected 'path label' with "
          f"an integer label, got {line.strip()!r}"
      )
    label = int(fields[-1])
    if label < 0:
      raise ValueError(
          f"list_file {list_file}, line {number}: label {label} is negative"
      )
    path = " ".join(fields[:-1])
    if not os.path.isfile(os.path.join(root, path)):
      raise FileNotFoundError(
          f"list_file {list_file}, line {number}: image {path} is not a file "
          f"under root {root} (root= sets where relative paths start)"
      )
    paths.append(path)
    labels.append(label)
  if not paths:
    raise ValueError(f"list_file {list_file} lists no image")
  if classes_file is None:
    class_names = tuple(str(label) for label in range(max(labels) + 1))
  else:
    classes_file = os.path.abspath(os.path.expanduser(os.fspath(classes_file)))
    class_names = tuple(
        line.strip()
        for line in _read_lines(classes_file, "classes_file")
        if line.strip()
    )
    _check_unique(class_names, "classes_file")
    unnamed = sorted({label for label in labels if label >= len(class_names)})
    if unnamed:
      raise ValueError(
          f"classes_file {classes_file} names {len(class_names)} classes; "
          f"list_file {list_file} has labels {unnamed[:10]} beyond them"
      )
  return ImageFiles(
      kind="imagelist",
      origin=list_file,
      root=root,
      class_names=class_names,
      paths=tuple(paths),
      labels=tuple(labels),
      fingerprint=_fingerprint(
          "imagelist", list_file, root, class_names, paths, labels
      ),
  )


# --------------------------------------------------------------------------
# One label space for two domains.


def _check_unique(names: Any, argument: str) -> tuple[str, ...]:
  if isinstance(names, (str, bytes)) or not isinstance(names, Sequence):
    raise ValueError(
        f"{argument} must be a sequence of class names, got {names!r}"
    )
  names = tuple(names)
  if not names or not all(isinstance(name, str) and name for name in names):
    raise ValueError(
        f"{argument} must be non-empty class-name strings, got {names!r}"
    )
  repeated = sorted({name for name in names if names.count(name) > 1})
  if repeated:
    raise ValueError(f"{argument} repeats class names {repeated}")
  return names


def match_class_names(
    source: Sequence[str],
    target: Sequence[str],
    *,
    allow_target_subset: bool = False,
) -> dict[str, int]:
  """One ``{class name: label}`` for two domains, matched by name.

  Labels follow ``source``'s order (its label ``i`` stays ``i``); a target
  class is given the label of the source class of the same name.

  Args:
    source: the source domain's class names, in label order.
    target: the target domain's class names (any order).
    allow_target_subset: let the target lack some source classes (partial
      domain adaptation); by default both must have the same classes.

  Raises:
    ValueError: a target class the source lacks (always), a source class the
      target lacks (unless ``allow_target_subset``), each listed; or names
      that are not unique non-empty strings.
  """
  source = _check_unique(source, "source")
  target = _check_unique(target, "target")
  only_target = [name for name in target if name not in source]
  only_source = [name for name in source if name not in target]
  problems = []
  if only_target:
    problems.append(f"target classes missing from the source: {only_target}")
  if only_source and not allow_target_subset:
    problems.append(
        f"source classes missing from the target: {only_source} (partial "
        "domain adaptation: allow_target_subset=True)"
    )
  if problems:
    raise ValueError("class names do not match; " + "; ".join(problems))
  return {name: label for label, name in enumerate(source)}


# --------------------------------------------------------------------------
# A fixed division into train and test.


def check_test_fraction(test_fraction: Any) -> float:
  """``test_fraction`` if it is a number in [0, 1), else a ``ValueError`` naming it."""
  if (
      isinstance(test_fraction, bool)
      or not isinstance(test_fraction, (int, float, np.floating))
      or not 0 <= test_fraction < 1
  ):
    raise ValueError(
        f"test_fraction must be a number in [0, 1), got {test_fraction!r}"
    )
  return float(test_fraction)


def holdout_indices(
    paths: Sequence[str], labels: Sequence[int], test_fraction: float
) -> dict[str, np.ndarray]:
  """A fixed stratified ``{"train", "test"}`` division of a domain's examples.

  Per class, the examples are ordered by the SHA-256 of their path and the
  first ``round(test_fraction * n)`` (at most ``n - 1``) are ``"test"``:
  the same files give the same division on every machine, and adding an
  image moves no other one across. Returns sorted index arrays.
  """
  test_fraction = check_test_fraction(test_fraction)
  labels = np.asarray(labels, dtype=np.int64)
  test = []
  for label in np.unique(labels):
    members = np.flatnonzero(labels == label)
    order = sorted(
        members,
        key=lambda index: hashlib.sha256(paths[index].encode("utf-8")).digest(),
    )
    count = min(
        int(np.floor(test_fraction * members.size + 0.5)), members.size - 1
    )
    test.extend(order[:count])
  test = np.sort(np.asarray(test, dtype=np.int64))
  train = np.setdiff1d(np.arange(labels.size), test)
  return {"train": train, "test": test}
