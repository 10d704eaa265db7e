"""What a grain record of :mod:`tljax.data.loader` computes: a step's batches.

Record ``k`` of a training loader is :class:`Stream` ``.batch(k)`` of each
named stream: the examples at :func:`~tljax.data.iterators.batch_indices`
``(seed, k)``, read from the source, each passed through the stream's
``transform`` with :func:`example_rng` ``(seed, k, position)``, stacked. These
objects are pickled into grain's worker processes, which call them there;
:mod:`tljax.data.loader` holds the grain plumbing around them (datasets,
workers, iterators, their lifetime). :class:`ImageTransform` is the
per-example hook for images (decode, augment).
"""

from __future__ import annotations

import dataclasses
import pickle
from typing import Any, Callable

import numpy as np

from tljax.checks import check_int
from tljax.data.base import Source
from tljax.data.iterators import Batch, batch_indices

__all__ = [
    "ImageTransform",
    "Stream",
    "Transform",
    "apply_transform",
    "example_rng",
]

# Mixed into an example's generator seed (the target stream of
# paired_batches mixes in 1).
_AUGMENT_STREAM = 2
Transform = Callable[[np.random.Generator, dict[str, Any]], dict[str, Any]]


def example_rng(seed: int, step: int, position: int) -> np.random.Generator:
  """The generator of the example at ``position`` of batch ``step``.

  ``numpy.random.default_rng([seed, 2, step, position])``: a pure function of
  the stream's seed, the step and the position in the batch, so the
  augmentation of an example does not depend on the worker that makes it.
  """
  return np.random.default_rng([seed, _AUGMENT_STREAM, step, position])


def _check_source(source: Any, argument: str) -> Any:
  if not hasattr(source, "__len__") or not (
      hasattr(source, "get_batch") or hasattr(source, "__getitem__")
  ):
    raise ValueError(
        f"{argument} must be a source with len() and get_batch(indices) "
        f"(tljax.data.base.Source) or a random-access sequence of records "
        f"(len() and [index], e.g. a grain data source), got "
        f"{type(source).__name__}."
    )
  return source


def _read(source: Any, indices: np.ndarray, examples: bool) -> Any:
  """The examples at ``indices``: a batch, or a list of dicts (``examples``).

  A source with ``get_batch`` gives a batch (split into examples when
  asked); a sequence of records gives its records (``__getitems__`` when it
  has it, as grain's data sources do, else one ``[index]`` each).
  """
  if hasattr(source, "get_batch"):
    batch = source.get_batch(indices)
    if not examples:
      return batch
    return [
        {key: value[position] for key, value in batch.items()}
        for position in range(len(indices))
    ]
  keys = [int(index) for index in indices]
  if hasattr(source, "__getitems__"):
    records = list(source.__getitems__(keys))
  else:
    records = [source[key] for key in keys]
  for record in records:
    if not isinstance(record, dict):
      raise ValueError(
          f"the records of the source must be dicts, got "
          f"{type(record).__name__}."
      )
  return records if examples else _stack(records)


def _check_batch_size(batch_size: Any, source: Source, argument: str) -> int:
  batch_size = check_int(batch_size, argument, minimum=1)
  if batch_size > len(source):
    raise ValueError(
        f"{argument}={batch_size} exceeds the {len(source)} examples: a "
        f"drop-remainder stream would have no batch."
    )
  return batch_size


def _check_transform(
    transform: Any, argument: str, worker_count: int
) -> Transform | None:
  if transform is None:
    return None
  if not callable(transform):
    raise ValueError(
        f"{argument} must be None or a callable (rng, example) -> example, "
        f"got {transform!r}."
    )
  if worker_count > 0:
    try:
      pickle.dumps(transform)
    except Exception as error:  # pylint: disable=broad-except
      raise ValueError(
          f"{argument} must be picklable for worker_count={worker_count} "
          f"(worker processes are spawned; use a module-level function or "
          f"class, not a lambda or closure): {error}"
      ) from None
  return transform


def _stack(examples: list[dict[str, Any]]) -> Batch:
  """One array per key: stacked numbers, or an object array of the rest.

  (Bytes and strings stay Python objects: a fixed-width NumPy string would
  drop trailing zero bytes of encoded images.)
  """
  batch = {}
  for key in examples[0]:
    values = [example[key] for example in examples]
    if any(isinstance(value, (bytes, str)) for value in values):
      column = np.empty(len(values), object)
      column[:] = values
      batch[key] = column
      continue
    values = [np.asarray(value) for value in values]
    shapes = {value.shape for value in values}
    if len(shapes) > 1:
      raise ValueError(
          f"transform returned {key!r} of different shapes in one batch "
          f"{sorted(shapes)[:3]}: every example of a batch needs one shape "
          f"(crop or resize to a fixed size)."
      )
    batch[key] = np.stack(values)
  return batch


def apply_transform(
    transform: Transform,
    examples: list[dict[str, Any]],
    *,
    seed: int,
    step: int,
) -> Batch:
  """``transform`` applied to each example, the results stacked into a batch.

  Example ``i`` gets the generator :func:`example_rng` ``(seed, step, i)``;
  the transform returns a dict (the same keys for every example, one shape
  per key).

  Raises:
    ValueError: when the transform returns something else than a dict, or
      keys or shapes that differ between the examples.
  """
  results = []
  for position, example in enumerate(examples):
    result = transform(example_rng(seed, step, position), example)
    if not isinstance(result, dict):
      raise ValueError(
          f"transform must return a dict of arrays, got "
          f"{type(result).__name__}."
      )
    if results and set(result) != set(results[0]):
      raise ValueError(
          f"transform returned keys {sorted(result)} and "
          f"{sorted(results[0])} for two examples of one batch."
      )
    results.append(result)
  return _stack(results)


@dataclasses.dataclass(frozen=True)
class Stream:
  """One training stream of :func:`grain_domain_batches`.

  Its batch of step ``k`` is a pure function of ``(seed, k)``: the examples
  of :func:`~tljax.data.iterators.batch_indices` ``(len(source),
  batch_size, seed=seed, step=k)``, each through ``transform`` with
  :func:`example_rng` ``(seed, k, position)``, and with ``with_indices``
  their positions as ``"index"`` (int32).

  Attributes:
    source: a source (``get_batch``) or a sequence of dict records.
    batch_size: examples per batch, ``<= len(source)``.
    seed: the stream's non-negative seed.
    transform: ``(rng, example) -> example``, or None.
    with_indices: add ``"index"``.
  """

  source: Any
  batch_size: int
  seed: int
  transform: Transform | None = None
  with_indices: bool = False

  def batch(self, step: int) -> Batch:
    """The batch of ``step``."""
    indices = batch_indices(
        len(self.source), self.batch_size, seed=self.seed, step=step
    )
    if self.transform is None:
      batch = _read(self.source, indices, examples=False)
    else:
      batch = apply_transform(
          self.transform,
          _read(self.source, indices, examples=True),
          seed=self.seed,
          step=step,
      )
    if self.with_indices:
      batch = {**batch, "index": np.asarray(indices, np.int32)}
    return batch


@dataclasses.dataclass(frozen=True)
class _TrainRecord:
  """grain's record ``step``: one stream's batch, or named streams' batches."""

  streams: tuple[Stream, ...]
  names: tuple[str, ...] | None = None

  def __call__(self, step: int) -> Any:
    step = int(step)
    if self.names is None:
      return self.streams[0].batch(step)
    return {
        name: stream.batch(step)
        for name, stream in zip(self.names, self.streams)
    }


@dataclasses.dataclass(frozen=True)
class _EvalRecord:
  """grain's record ``k``: batch ``k`` of :func:`grain_eval_batches`."""

  source: Source
  batch_size: int
  transform: Transform | None

  def __call__(self, number: int) -> Batch:
    number = int(number)
    num_examples = len(self.source)
    start = number * self.batch_size
    indices = np.arange(start, min(start + self.batch_size, num_examples))
    num_real = indices.size
    padded = np.concatenate(
        [indices, np.full(self.batch_size - num_real, indices[-1])]
    )
    if self.transform is None:
      batch = _read(self.source, padded, examples=False)
    else:
      batch = apply_transform(
          self.transform,
          _read(self.source, padded, examples=True),
          seed=0,
          step=number,
      )
    return {**batch, "mask": np.arange(self.batch_size) < num_real}


@dataclasses.dataclass(frozen=True)
class ImageTransform:
  """The per-example hook for images: decode a record's image, augment it.

  ``ImageTransform(augment, decode)(rng, example)`` is ``{output:
  augment(rng, decode(example[field])), **{key: example[key] for key in
  keep}}``; without ``decode`` the field already holds a uint8 image. The
  defaults fit a prepared image domain's records (``{"image": encoded
  bytes, "label", "path"}``, :class:`tljax.data.images.ImageRecords`) with
  ``decode=tljax.data.images.decode_image``, and give the training batch
  ``{"input", "label"}``. ``augment`` is e.g.
  :class:`tljax.data.augment.TrainAugment` or
  :class:`~tljax.data.augment.EvalAugment`. All picklable (module-level
  functions and classes) for worker processes.
  """

  augment: Callable[[np.random.Generator, np.ndarray], np.ndarray]
  decode: Callable[[Any], np.ndarray] | None = None
  field: str = "image"
  output: str = "input"
  keep: tuple[str, ...] = ("label",)

  def __post_init__(self):
    if not callable(self.augment):
      raise ValueError(
          f"augment must be a callable (rng, image) -> image, got "
          f"{self.augment!r}."
      )
    if self.decode is not None and not callable(self.decode):
      raise ValueError(
          f"decode must be None or a callable (record) -> image, got "
          f"{self.decode!r}."
      )
    for name in ("field", "output"):
      if not isinstance(getattr(self, name), str):
        raise ValueError(f"{name} must be a str, got {getattr(self, name)!r}.")
    if isinstance(self.keep, str) or not all(
        isinstance(key, str) for key in self.keep
    ):
      raise ValueError(f"keep must be a tuple of str, got {self.keep!r}.")

  def __call__(
      self, rng: np.random.Generator, example: dict[str, Any]
  ) -> dict[str, Any]:
    missing = [key for key in (self.field, *self.keep) if key not in example]
    if missing:
      raise ValueError(
          f"the example has no {missing} (field and keep of ImageTransform); "
          f"its keys are {sorted(example)}."
      )
    value = example[self.field]
    image = value if self.decode is None else self.decode(value)
    result = {key: example[key] for key in self.keep}
    result[self.output] = self.augment(rng, image)
    return result
