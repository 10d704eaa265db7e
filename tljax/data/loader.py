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

What a record computes (:class:`Stream`, :class:`ImageTransform`,
:func:`example_rng`, :func:`apply_transform`) lives in
:mod:`tljax.data.loader_records`, re-exported here; this module is grain's
plumbing around it.

Worker processes are started with ``spawn``: ``source`` and ``transform``
must be picklable (module-level functions and classes, no lambdas), and each
worker imports them anew (about a second before its first batch).
"""

from __future__ import annotations

import atexit
import math
import sys
import weakref
from typing import Any, Callable, Iterator

import grain.python as grain
import jax
import numpy as np
from absl import flags

from tljax.checks import check_int
from tljax.data.base import Source
from tljax.data.iterators import target_stream_seed
from tljax.data.loader_records import (  # re-exported: the records' pieces
    ImageTransform,
    Stream,
    Transform,
    _check_batch_size,
    _check_source,
    _check_transform,
    _EvalRecord,
    _TrainRecord,
    apply_transform,
    example_rng,
)

__all__ = [
    "ImageTransform",
    "LoaderIterator",
    "Stream",
    "Transform",
    "apply_transform",
    "example_rng",
    "grain_batches",
    "grain_domain_batches",
    "grain_eval_batches",
    "grain_paired_batches",
]

# Grain 0.2.18 reads this absl flag's value in mp_prefetch, which raises
# UnparsedFlagAccessError in a program that does not parse absl flags
# (google/grain#1355, fixed upstream after 0.2.18); marking it present keeps
# its default (False) readable.
_GRAIN_PROFILING_FLAG = "grain_enable_multiprocess_worker_profiling"


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
