"""grain loaders over any source: the same batches as the iterators, in workers.

:mod:`tljax.data.iterators` makes batch ``k`` of a training stream a pure
function of ``(seed, k)`` (:func:`~tljax.data.iterators.batch_indices`) and
builds it in the training process. This module makes the *same* batches with
grain (``grain.python.MapDataset``): record ``k`` of a dataset over the steps
is the batch of step ``k``: the indices of ``batch_indices(seed, step=k)``,
read from the source (a :class:`~tljax.data.base.Source`'s ``get_batch``,
or the records of a random-access sequence such as a prepared image
domain's :class:`tljax.data.images.ImageRecords`), each example passed
through a per-example ``transform(rng, example)`` (decode and augment, e.g.
:class:`ImageTransform` over :class:`tljax.data.augment.TrainAugment`) whose
generator is :func:`example_rng` ``(seed, k, position)``. So

* a batch is a pure function of ``(seed, k)``: the loader of ``start_step=k``
  yields exactly what an uninterrupted one yields from its ``k``-th batch on,
  with no iterator state to checkpoint, whatever ``worker_count`` is;
* without a transform, batch ``k`` equals :func:`tljax.data.iterators.batches`'
  batch ``k`` (:func:`grain_paired_batches` equals
  :func:`~tljax.data.iterators.paired_batches`, :func:`grain_eval_batches`
  equals :func:`~tljax.data.iterators.eval_batches`, and each named
  :class:`Stream` of :func:`grain_domain_batches`, a training loop's set of
  domains, equals ``batches`` with its seed);
* ``worker_count=W > 0`` builds batches in ``W`` grain worker processes
  (``mp_prefetch``: worker ``w`` builds steps ``w, w + W, ...``, which are
  handed back in order through shared memory), ``0`` in the calling process.

Batches reach the device ahead of the step with
:func:`tljax.data.iterators.prefetch`: ``prefetch(grain_batches(...))``
(``transfer=`` for a mesh).

Worker processes are started with ``spawn``: ``source`` and ``transform``
must be picklable (module-level functions and classes, no lambdas), and each
worker imports them anew (about a second before its first batch).
"""

from __future__ import annotations

import atexit
import dataclasses
import math
import pickle
import sys
import weakref
from typing import Any, Callable, Iterator

import grain.python as grain
import jax
import numpy as np
from absl import flags

from tljax.checks import check_int
from tljax.data.base import Source
from tljax.data.iterators import Batch, batch_indices, target_stream_seed

# Mixed into an example's generator seed (the target stream of
# paired_batches mixes in 1).
_AUGMENT_STREAM = 2
# Grain 0.2.18 reads this absl flag's value in mp_prefetch, which raises
# UnparsedFlagAccessError in a program that does not parse absl flags
# (google/grain#1355, fixed upstream after 0.2.18); marking it present keeps
# its default (False) readable.
_GRAIN_PROFILING_FLAG = "grain_enable_multiprocess_worker_profiling"

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


def _own_memory(leaf: Any) -> Any:
  """A plain copy of an array a worker sent through shared memory.

  The shared block is then released at once, instead of living as long as
  the batch does (and being reported as leaked when a batch outlives the
  interpreter's teardown).
  """
  if isinstance(leaf, grain.SharedMemoryArray):
    return np.array(leaf, copy=True)
  return leaf


_live_loaders: weakref.WeakSet[LoaderIterator] = weakref.WeakSet()


class LoaderIterator:
  """The iterator the loaders return; a context manager with ``close()``.

  ``close()`` (or leaving a ``with`` block) stops grain's worker processes;
  dropping the iterator or the interpreter's exit does too.
  """

  def __init__(self, iterator: Iterator[Any]):
    self._iterator = iterator
    _live_loaders.add(self)

  def __iter__(self) -> LoaderIterator:
    return self

  def __next__(self) -> Any:
    if self._iterator is None:
      raise StopIteration
    return jax.tree.map(_own_memory, next(self._iterator))

  def close(self) -> None:
    """Stops the workers; the iterator then yields nothing more."""
    iterator, self._iterator = self._iterator, None
    if iterator is not None and hasattr(iterator, "close"):
      iterator.close()

  def __enter__(self) -> LoaderIterator:
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()


@atexit.register
def _close_loaders_at_exit() -> None:
  # Closed while the modules are alive: grain's iterators otherwise close in
  # __del__ during interpreter teardown, with their modules already gone.
  for loader in list(_live_loaders):
    loader.close()


def _allow_unparsed_absl_flags() -> None:
  if _GRAIN_PROFILING_FLAG in flags.FLAGS and not flags.FLAGS.is_parsed():
    flags.FLAGS[_GRAIN_PROFILING_FLAG].present = True


def _iterate(
    record: Callable[[int], Any],
    start: int,
    stop: int,
    worker_count: int,
    worker_buffer_size: int,
) -> LoaderIterator:
  dataset = grain.MapDataset.range(start, stop).map(record)
  # No reading threads: the records are whole batches, made by the workers.
  iter_dataset = dataset.to_iter_dataset(
      grain.ReadOptions(num_threads=0, prefetch_buffer_size=0)
  )
  if worker_count > 0:
    _allow_unparsed_absl_flags()
    iter_dataset = iter_dataset.mp_prefetch(
        grain.MultiprocessingOptions(
            num_workers=worker_count,
            per_worker_buffer_size=worker_buffer_size,
        )
    )
  return LoaderIterator(iter(iter_dataset))


def _check_workers(
    worker_count: Any, worker_buffer_size: Any
) -> tuple[int, int]:
  return (
      check_int(worker_count, "worker_count", minimum=0),
      check_int(worker_buffer_size, "worker_buffer_size", minimum=1),
  )


def grain_batches(
    source: Source,
    *,
    batch_size: int,
    seed: int,
    start_step: int = 0,
    transform: Transform | None = None,
    with_indices: bool = False,
    worker_count: int = 0,
    worker_buffer_size: int = 2,
) -> LoaderIterator:
  """Infinite training batches of ``source``, built by grain workers.

  Batch ``i`` is batch ``start_step + i`` of the stream: the examples
  :func:`~tljax.data.iterators.batch_indices` picks for ``(seed, step)``,
  each passed through ``transform(example_rng(seed, step, position),
  example)`` when one is given. Without a transform it equals
  :func:`tljax.data.iterators.batches` batch for batch.

  Args:
    source: a source (``len``, ``get_batch``) or a random-access sequence of
      dict records (``len``, ``[index]``, e.g. an image domain's
      ``records``); picklable when ``worker_count > 0``.
    batch_size: examples per batch, ``<= len(source)``.
    seed: non-negative stream seed.
    start_step: first step (``k`` resumes after ``k`` steps).
    transform: ``(rng, example) -> example`` run on each example (e.g.
      :class:`ImageTransform`); picklable when ``worker_count > 0``.
    with_indices: add ``"index"``, the examples' positions (int32).
    worker_count: worker processes (0: build batches in this process).
    worker_buffer_size: batches each worker prepares ahead (>= 1).

  Raises:
    ValueError: naming the bad argument, before any worker starts.
  """
  source = _check_source(source, "source")
  batch_size = _check_batch_size(batch_size, source, "batch_size")
  seed = check_int(seed, "seed", minimum=0)
  start_step = check_int(start_step, "start_step", minimum=0)
  worker_count, worker_buffer_size = _check_workers(
      worker_count, worker_buffer_size
  )
  transform = _check_transform(transform, "transform", worker_count)
  stream = Stream(source, batch_size, seed, transform, bool(with_indices))
  return _iterate(
      _TrainRecord((stream,)),
      start_step,
      sys.maxsize,
      worker_count,
      worker_buffer_size,
  )


def grain_paired_batches(
    source: Source,
    target: Source,
    *,
    batch_size: int,
    seed: int,
    target_batch_size: int | None = None,
    start_step: int = 0,
    transform: Transform | None = None,
    target_transform: Transform | None = None,
    worker_count: int = 0,
    worker_buffer_size: int = 2,
) -> LoaderIterator:
  """Infinite ``{"source": batch, "target": batch}`` pairs, built by workers.

  The source stream has ``seed``, the target stream
  :func:`~tljax.data.iterators.target_stream_seed` ``(seed)``, as in
  :func:`tljax.data.iterators.paired_batches`, which it equals without
  transforms. Each example's generator is :func:`example_rng` of its
  stream's seed, so the two domains draw different augmentations.

  Args:
    source: labelled source-domain data.
    target: target-domain data.
    batch_size: source batch size.
    seed: non-negative seed.
    target_batch_size: target batch size; defaults to ``batch_size``.
    start_step: first step.
    transform: per-example transform of the source stream.
    target_transform: of the target stream; defaults to ``transform``.
    worker_count: worker processes (0: this process).
    worker_buffer_size: pairs each worker prepares ahead (>= 1).

  Raises:
    ValueError: naming the bad argument, before any worker starts.
  """
  source = _check_source(source, "source")
  target = _check_source(target, "target")
  batch_size = _check_batch_size(batch_size, source, "batch_size")
  target_batch_size = _check_batch_size(
      batch_size if target_batch_size is None else target_batch_size,
      target,
      "target_batch_size",
  )
  seed = check_int(seed, "seed", minimum=0)
  start_step = check_int(start_step, "start_step", minimum=0)
  worker_count, worker_buffer_size = _check_workers(
      worker_count, worker_buffer_size
  )
  transform = _check_transform(transform, "transform", worker_count)
  target_transform = _check_transform(
      transform if target_transform is None else target_transform,
      "target_transform",
      worker_count,
  )
  streams = (
      Stream(source, batch_size, seed, transform),
      Stream(
          target, target_batch_size, target_stream_seed(seed), target_transform
      ),
  )
  return _iterate(
      _TrainRecord(streams, ("source", "target")),
      start_step,
      sys.maxsize,
      worker_count,
      worker_buffer_size,
  )


def grain_domain_batches(
    streams: dict[str, Stream],
    *,
    start_step: int = 0,
    worker_count: int = 0,
    worker_buffer_size: int = 2,
) -> LoaderIterator:
  """Infinite ``{name: batch}`` dicts of several named streams, one per step.

  The general form of :func:`grain_paired_batches` (which is
  ``{"source": Stream(source, B, seed), "target": Stream(target, B,
  target_stream_seed(seed))}``): a training loop over any set of domains
  makes all of a step's batches in one grain record, so one set of workers
  serves every domain. Batch ``i`` is that of step ``start_step + i`` of
  every stream.

  Args:
    streams: a non-empty dict of :class:`Stream` by name.
    start_step: first step.
    worker_count: worker processes (0: this process).
    worker_buffer_size: steps each worker prepares ahead (>= 1).

  Raises:
    ValueError: naming the bad argument (``streams['target'].batch_size``
      for a stream's field), before any worker starts.
  """
  if not isinstance(streams, dict) or not streams:
    raise ValueError(
        f"streams must be a non-empty dict of Stream by name, got {streams!r}."
    )
  start_step = check_int(start_step, "start_step", minimum=0)
  worker_count, worker_buffer_size = _check_workers(
      worker_count, worker_buffer_size
  )
  checked = []
  for name, stream in streams.items():
    argument = f"streams[{name!r}]"
    if not isinstance(stream, Stream):
      raise ValueError(
          f"{argument} must be a tljax.data.loader.Stream, got "
          f"{type(stream).__name__}."
      )
    source = _check_source(stream.source, f"{argument}.source")
    checked.append(
        Stream(
            source,
            _check_batch_size(
                stream.batch_size, source, f"{argument}.batch_size"
            ),
            check_int(stream.seed, f"{argument}.seed", minimum=0),
            _check_transform(
                stream.transform, f"{argument}.transform", worker_count
            ),
            bool(stream.with_indices),
        )
    )
  return _iterate(
      _TrainRecord(tuple(checked), tuple(streams)),
      start_step,
      sys.maxsize,
      worker_count,
      worker_buffer_size,
  )


def grain_eval_batches(
    source: Source,
    *,
    batch_size: int,
    transform: Transform | None = None,
    worker_count: int = 0,
    worker_buffer_size: int = 2,
) -> LoaderIterator:
  """Every example once, in order, padded and masked, built by workers.

  The batches of :func:`tljax.data.iterators.eval_batches` (the last one
  padded by repeating the last example, ``"mask"`` False on the padding),
  each example passed through ``transform`` (its generator
  :func:`example_rng` ``(0, batch number, position)``; an evaluation
  transform such as :class:`tljax.data.augment.EvalAugment` ignores it).

  Raises:
    ValueError: naming the bad argument, before any worker starts.
  """
  source = _check_source(source, "source")
  batch_size = check_int(batch_size, "batch_size", minimum=1)
  worker_count, worker_buffer_size = _check_workers(
      worker_count, worker_buffer_size
  )
  transform = _check_transform(transform, "transform", worker_count)
  num_batches = math.ceil(len(source) / batch_size)
  return _iterate(
      _EvalRecord(source, batch_size, transform),
      0,
      num_batches,
      worker_count,
      worker_buffer_size,
  )
