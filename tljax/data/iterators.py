"""Batch iterators over sources: seeded, resumable, and two-domain.

Training streams are infinite and *stateless*: the indices of batch ``step``
are a pure function of ``(seed, step)`` (:func:`batch_indices`), so a run
restored at step ``k`` continues with exactly the batches it would have seen,
without saving any iterator state. Epoch ``e`` visits the examples in the
order of ``numpy.random.default_rng([seed, e]).permutation(N)`` and drops the
last ``N mod batch_size`` of them (drop-remainder), so every batch has the
same shape and a jitted step compiles once.

:func:`paired_batches` draws source and target batches from independent
streams, as domain adaptation methods need (DANN, MMD, CORAL, ...).
:func:`eval_batches` covers a split once, in order, padding the final batch
and marking real examples in ``"mask"``. :func:`prefetch` moves batches to
the devices from a background thread.
"""

from __future__ import annotations

import atexit
import functools
import itertools
import queue
import threading
import weakref
from typing import Any, Callable, Iterable, Iterator

import jax
import numpy as np

from tljax.checks import check_int
from tljax.data.base import Source

Batch = dict[str, np.ndarray]

# Mixed into the seed of the target stream of paired_batches.
_TARGET_STREAM = 1


def _check_batch_size(
    batch_size: Any, num_examples: int, argument: str = "batch_size"
) -> int:
  batch_size = check_int(batch_size, argument, minimum=1)
  if batch_size > num_examples:
    raise ValueError(
        f"{argument}={batch_size} exceeds the {num_examples} examples: a "
        f"drop-remainder stream would have no batch."
    )
  return batch_size


@functools.lru_cache(maxsize=8)
def _epoch_permutation(num_examples: int, seed: int, epoch: int) -> np.ndarray:
  permutation = np.random.default_rng([seed, epoch]).permutation(num_examples)
  permutation.flags.writeable = False
  return permutation


def batch_indices(
    num_examples: int, batch_size: int, *, seed: int, step: int
) -> np.ndarray:
  """Indices of batch ``step`` of an infinite, shuffled, drop-remainder stream.

  With ``S = num_examples // batch_size`` batches per epoch, batch ``step``
  belongs to epoch ``e = step // S`` and holds positions
  ``[(step mod S)·B, (step mod S + 1)·B)`` of the permutation
  ``numpy.random.default_rng([seed, e]).permutation(num_examples)``. Each
  epoch therefore sees ``S·B`` distinct examples, and the result depends
  only on the arguments.

  Args:
    num_examples: size ``N`` of the source.
    batch_size: ``B``, with ``0 < B <= N``.
    seed: non-negative stream seed.
    step: non-negative batch number.

  Returns:
    int64 ``(batch_size,)`` indices in ``[0, num_examples)``.
  """
  num_examples = check_int(num_examples, "num_examples", minimum=0)
  batch_size = _check_batch_size(batch_size, num_examples)
  seed = check_int(seed, "seed", minimum=0)
  step = check_int(step, "step", minimum=0)
  epoch, position = divmod(step, num_examples // batch_size)
  permutation = _epoch_permutation(num_examples, seed, epoch)
  return permutation[position * batch_size : (position + 1) * batch_size].copy()


def _stream(
    source: Source,
    batch_size: int,
    seed: int,
    start_step: int,
    with_indices: bool = False,
) -> Iterator[Batch]:
  for step in itertools.count(start_step):
    indices = batch_indices(len(source), batch_size, seed=seed, step=step)
    batch = source.get_batch(indices)
    if with_indices:
      batch = {**batch, "index": np.asarray(indices, np.int32)}
    yield batch


def batches(
    source: Source,
    *,
    batch_size: int,
    seed: int,
    start_step: int = 0,
    with_indices: bool = False,
) -> Iterator[Batch]:
  """Infinite training batches ``{"input", "label"}`` of ``source``.

  Batch ``i`` of the iterator is batch ``start_step + i`` of
  :func:`batch_indices`, so ``start_step=k`` resumes a run after ``k`` steps.
  ``with_indices=True`` adds ``"index"``: the examples' positions in
  ``source`` (int32), e.g. to look up per-example importance weights.

  Raises:
    ValueError: bad ``batch_size``, ``seed`` or ``start_step`` (checked
      before the first batch is requested).
  """
  batch_size = _check_batch_size(batch_size, len(source))
  seed = check_int(seed, "seed", minimum=0)
  start_step = check_int(start_step, "start_step", minimum=0)
  return _stream(source, batch_size, seed, start_step, bool(with_indices))


def target_stream_seed(seed: int) -> int:
  """Seed of the target stream of :func:`paired_batches` for ``seed``.

  Derived with ``numpy.random.SeedSequence([seed, 1])`` so that it differs
  from ``seed`` (and from the target seed of any other ``seed``) with
  overwhelming probability.
  """
  seed = check_int(seed, "seed", minimum=0)
  return int(
      np.random.SeedSequence([seed, _TARGET_STREAM]).generate_state(1)[0]
  )


def paired_batches(
    source: Source,
    target: Source,
    *,
    batch_size: int,
    seed: int,
    target_batch_size: int | None = None,
    start_step: int = 0,
) -> Iterator[dict[str, Batch]]:
  """Infinite ``{"source": batch, "target": batch}`` pairs from two streams.

  The source stream is ``batches(source, seed=seed)``; the target stream
  uses :func:`target_stream_seed` ``(seed)``, so the two are independent
  even when ``source`` and ``target`` are the same data. Each stream cycles
  through its own epochs (the smaller domain simply wraps around more
  often). ``start_step=k`` resumes both streams after ``k`` steps.

  Args:
    source: labelled source-domain data.
    target: target-domain data (its labels are passed along; methods for
      the transductive setting must not use them).
    batch_size: source batch size.
    seed: non-negative seed.
    target_batch_size: target batch size; defaults to ``batch_size``.
    start_step: first step.
  """
  target_batch_size = (
      batch_size if target_batch_size is None else target_batch_size
  )
  source_batches = batches(
      source, batch_size=batch_size, seed=seed, start_step=start_step
  )
  target_batches = batches(
      target,
      batch_size=_check_batch_size(
          target_batch_size, len(target), "target_batch_size"
      ),
      seed=target_stream_seed(seed),
      start_step=start_step,
  )
  return (
      {"source": source_batch, "target": target_batch}
      for source_batch, target_batch in zip(source_batches, target_batches)
  )


def _eval_stream(source: Source, batch_size: int) -> Iterator[Batch]:
  num_examples = len(source)
  for start in range(0, num_examples, batch_size):
    indices = np.arange(start, min(start + batch_size, num_examples))
    num_real = indices.size
    padded = np.concatenate(
        [indices, np.full(batch_size - num_real, indices[-1])]
    )
    batch = source.get_batch(padded)
    batch["mask"] = np.arange(batch_size) < num_real
    yield batch


def eval_batches(source: Source, *, batch_size: int) -> Iterator[Batch]:
  """Every example of ``source`` once, in order, in fixed-size batches.

  Yields ``ceil(N / batch_size)`` batches ``{"input", "label", "mask"}``.
  The final batch is padded to ``batch_size`` by repeating the last example
  and ``mask`` (bool ``(batch_size,)``) is False on the padding, so all
  batches have one shape (a jitted evaluator compiles once) and masked means
  ``Σ mask·metric / Σ mask`` are exact. ``batch_size`` may exceed ``N`` (one
  padded batch); an empty source yields no batch.

  Raises:
    ValueError: ``batch_size`` is not a positive int.
  """
  return _eval_stream(source, check_int(batch_size, "batch_size", minimum=1))


def _identity(item: Any) -> Any:
  return item


class _ProducerError:
  """Carries an exception from the producer thread to the consumer."""

  def __init__(self, error: BaseException):
    self.error = error


_END = object()
_POLL_SECONDS = 0.1
_EXIT_JOIN_SECONDS = 1.0
_live_prefetchers: weakref.WeakSet[PrefetchIterator] = weakref.WeakSet()


def _produce(
    iterator: Iterator[Any],
    transfer: Callable[[Any], Any],
    buffer: queue.Queue,
    stop: threading.Event,
) -> None:
  """Producer loop: next(iterator), transfer to devices, put in the buffer."""

  def put(item: Any) -> bool:
    while not stop.is_set():
      try:
        buffer.put(item, timeout=_POLL_SECONDS)
        return True
      except queue.Full:
        continue
    return False

  try:
    for item in iterator:
      if stop.is_set() or not put(transfer(item)):
        return
    put(_END)
  except BaseException as error:  # pylint: disable=broad-except
    # Every failure (BaseException, e.g. a SystemExit raised by the
    # iterator) reaches the consumer instead of silently ending the stream.
    put(_ProducerError(error))


class PrefetchIterator:
  """The iterator :func:`prefetch` returns; a context manager with ``close()``.

  Its thread stops when the items run out, on ``close()``, on leaving a
  ``with`` block, when the iterator is garbage-collected, and at exit.
  """

  def __init__(
      self,
      iterator: Iterator[Any],
      size: int,
      transfer: Callable[[Any], Any],
  ):
    self._buffer: queue.Queue = queue.Queue(maxsize=size)
    self._stop = threading.Event()
    self._finished = False
    # The thread must not reference self, so that dropping the iterator
    # lets it be collected and stops the producer.
    self._thread = threading.Thread(
        target=_produce,
        args=(iterator, transfer, self._buffer, self._stop),
        name="tljax-prefetch",
        daemon=True,
    )
    self._thread.start()
    _live_prefetchers.add(self)

  def __iter__(self) -> PrefetchIterator:
    return self

  def __next__(self) -> Any:
    if self._finished:
      raise StopIteration
    while True:
      try:
        item = self._buffer.get(timeout=_POLL_SECONDS)
        break
      except queue.Empty:
        if not self._thread.is_alive() and self._buffer.empty():
          self._finished = True
          raise StopIteration from None
    if item is _END:
      self.close()
      raise StopIteration
    if isinstance(item, _ProducerError):
      self.close()
      raise item.error
    return item

  def close(self, timeout: float | None = None) -> None:
    """Stops the producer thread and waits up to ``timeout`` seconds for it."""
    self._finished = True
    self._stop.set()
    if self._thread is not threading.current_thread():
      self._thread.join(timeout)

  def __enter__(self) -> PrefetchIterator:
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()

  def __del__(self) -> None:
    self._stop.set()


@atexit.register
def _stop_prefetchers_at_exit() -> None:
  # Daemon threads are killed abruptly at exit, possibly inside a device
  # transfer; let them finish the current item instead (bounded wait).
  for prefetcher in list(_live_prefetchers):
    prefetcher.close(timeout=_EXIT_JOIN_SECONDS)


def prefetch(
    iterator: Iterable[Any],
    *,
    size: int = 2,
    device_put: bool = True,
    sharding: jax.sharding.Sharding | None = None,
    transfer: Callable[[Any], Any] | None = None,
) -> PrefetchIterator:
  """Prepares up to ``size`` items of ``iterator`` ahead, in a background thread.

  The thread pulls items (batch pytrees) from ``iterator`` and, with
  ``device_put``, transfers them with ``jax.device_put(item, sharding)``
  (``sharding=None`` places them on the default device; a
  ``NamedSharding`` over the batch axis places a data-parallel batch), so
  host-side batching and the host→device copy overlap with the step.

  The returned iterator yields the same items in the same order, ends when
  ``iterator`` ends, and re-raises in the consumer any exception raised by
  ``iterator`` or by the transfer. ``close()`` (or leaving a ``with``
  block, or dropping the iterator) stops the thread; the thread is a daemon
  and is stopped at interpreter exit, so it never blocks shutdown.

  Args:
    iterator: any iterable of pytrees.
    size: number of items buffered ahead (>= 1).
    device_put: transfer items to the devices; False only buffers them.
    sharding: a ``jax.sharding.Sharding`` for every leaf (requires
      ``device_put``).
    transfer: instead of ``device_put``/``sharding``, any function applied
      to each item in the thread (e.g.
      :func:`tljax.train.parallel.batch_transfer`: batch rows split over a
      mesh, scalars replicated, multi-host aware).
  """
  size = check_int(size, "size", minimum=1)
  if sharding is not None and not device_put:
    raise ValueError("sharding requires device_put=True.")
  if transfer is not None:
    if sharding is not None:
      raise ValueError("pass either transfer or sharding, not both.")
    if not callable(transfer):
      raise ValueError(f"transfer must be callable, got {transfer!r}.")
    return PrefetchIterator(iter(iterator), size, transfer)
  if device_put:
    transfer = functools.partial(jax.device_put, device=sharding)
  else:
    transfer = _identity
  return PrefetchIterator(iter(iterator), size, transfer)
