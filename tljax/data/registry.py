"""The registry of data sources by name, the one table :func:`tljax.data.get_source` reads.

A source registers a builder under a name, or under a prefix (a name ending
in ``:``) that takes an argument after it::

    @register_source("my_domain")
    def build(name, split, *, data_dir, use_tfds, **options) -> Source: ...

    @register_source("shifted:", argument="offset")
    def build_shifted(offset, split, *, data_dir, use_tfds, **options): ...

:func:`tljax.data.get_source` checks the name and the split, applies a
``transform``, resolves ``data_dir``, and calls the builder: with the name
itself, or for a prefix with what follows it (``"shifted:0.5"`` calls
``build_shifted("0.5", ...)``), then the split, the resolved
``data_dir``, ``use_tfds`` and the source's own options (``config.<domain>.
kwargs``). The builder refuses options it does not take, naming them. The
built-in sources (the digits, the toy domains, ``tfds:``, ``folder:`` and
``imagelist:``) register themselves here when :mod:`tljax.data.sources` is
imported; a source outside tljax does the same, imported before the config
runs (``tests/test_sources_plugin.py``). See docs/design.md, "Where a new
piece goes".

It also says where prepared data live (:func:`default_data_dir`). This
module imports no other module of tljax.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

SourceBuilder = Callable[..., Any]

PREFIX_END = ":"
DATA_DIR_ENV = "TLJAX_DATA_DIR"
DEFAULT_DATA_DIR = os.path.join("~", ".cache", "tljax", "tensorflow_datasets")


@dataclasses.dataclass(frozen=True)
class _Entry:
  builder: SourceBuilder
  argument: str
  description: str


_SOURCES: dict[str, _Entry] = {}
_PREFIXES: dict[str, _Entry] = {}


def register_source(
    name: str, *, argument: str = "name", description: str = ""
) -> Callable[[SourceBuilder], SourceBuilder]:
  """Decorator: registers ``builder`` as the source ``name`` (or the prefix ``name``).

  The builder is called as ``builder(name, split, *, data_dir, use_tfds,
  **options)`` and returns a :class:`tljax.data.Source`; for a prefix,
  ``name`` is what follows the prefix, which the builder checks (an empty
  one is an error naming the prefix).

  Args:
    name: the source's name (no ``:``), or a prefix: a word ending in ``:``
      (``"tfds:"``, ``"folder:"``) that takes an argument after it.
    argument: what follows a prefix, for messages (``'folder:<directory>'``).
    description: a few words for messages (``"an image folder"``).

  Raises:
    ValueError: a name that is not a word (or a word and ``:``), or one
      already registered.
  """
  is_prefix = isinstance(name, str) and name.endswith(PREFIX_END)
  word = name[: -len(PREFIX_END)] if is_prefix else name
  if (
      not isinstance(word, str)
      or not word
      or PREFIX_END in word
      or any(character.isspace() for character in word)
  ):
    raise ValueError(
        "name must be a source name without ':' or whitespace, or a prefix "
        f"ending in ':' ('tfds:'), got {name!r}"
    )
  for label, value in (("argument", argument), ("description", description)):
    if not isinstance(value, str):
      raise ValueError(f"{label} must be a string, got {value!r}")
  table = _PREFIXES if is_prefix else _SOURCES

  def decorator(builder: SourceBuilder) -> SourceBuilder:
    if not callable(builder):
      raise ValueError(
          f"register_source({name!r}): builder must be callable, got "
          f"{builder!r}"
      )
    if name in table:
      raise ValueError(f"source {name!r} is already registered")
    table[name] = _Entry(builder, argument, description)
    return builder

  return decorator


def available_sources() -> tuple[str, ...]:
  """The registered source names, in registration order (prefixes: :func:`source_prefixes`)."""
  return tuple(_SOURCES)


def source_prefixes() -> tuple[str, ...]:
  """The registered prefixes (``"tfds:"``, ``"folder:"``, ...), in registration order."""
  return tuple(_PREFIXES)


def describe_sources() -> str:
  """The names and prefixes :func:`lookup_source` accepts, for messages."""
  prefixes = [
      f"'{prefix}<{entry.argument}>'"
      + (f" ({entry.description})" if entry.description else "")
      for prefix, entry in _PREFIXES.items()
  ]
  text = f"known names: {list(available_sources())}"
  if prefixes:
    text += ", or a prefixed name: " + ", ".join(prefixes)
  return text


def lookup_source(name: str) -> tuple[SourceBuilder, str]:
  """``(builder, the name it is called with)`` for ``name``.

  A name with a registered prefix gives the prefix's builder and what
  follows the prefix (which the builder checks: an empty one is its error);
  any other name must be registered as such.

  Raises:
    ValueError: ``name`` is not a non-empty string, or is unknown (the
      message lists the registered names and prefixes).
  """
  if not isinstance(name, str) or not name:
    raise ValueError(
        f"name must be a non-empty string; {describe_sources()}; got {name!r}."
    )
  head, separator, rest = name.partition(PREFIX_END)
  if separator and head + separator in _PREFIXES:
    return _PREFIXES[head + separator].builder, rest
  if name in _SOURCES:
    return _SOURCES[name].builder, name
  raise ValueError(f"Unknown source name {name!r}; {describe_sources()}.")


def check_source_name(name: str) -> str:
  """``name`` if :func:`lookup_source` knows it, else its ``ValueError``.

  For checking a config before anything is opened (nothing is read).
  """
  lookup_source(name)
  return name


def default_data_dir() -> str:
  """``$TLJAX_DATA_DIR`` if set, else ``~/.cache/tljax/tensorflow_datasets``."""
  return os.path.expanduser(os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR)


def resolve_data_dir(data_dir: str | os.PathLike[str] | None) -> str:
  """``data_dir`` with ``~`` expanded, or :func:`default_data_dir` for ``None``."""
  if data_dir is None:
    return default_data_dir()
  if not isinstance(data_dir, (str, os.PathLike)) or not os.fspath(data_dir):
    raise ValueError(f"data_dir must be a directory path, got {data_dir!r}")
  return os.path.expanduser(os.fspath(data_dir))
