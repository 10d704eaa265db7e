"""Metric writing: JSON lines per run (optionally TensorBoard) and a final summary JSON."""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from tljax.rundir_format import METRICS_FILE, SUMMARY_FILE
from tljax.train import parallel

TENSORBOARD_SUBDIR = "tensorboard"


def to_python(value: Any) -> Any:
  """Converts arrays and NumPy scalars (recursively) into JSON-ready values."""
  if hasattr(value, "to_dict"):  # ml_collections.ConfigDict
    value = value.to_dict()
  if isinstance(value, Mapping):
    return {str(key): to_python(item) for key, item in value.items()}
  if isinstance(value, (list, tuple)):
    return [to_python(item) for item in value]
  if isinstance(value, (jax.Array, np.ndarray, np.generic)):
    array = np.asarray(value)
    value = array.item() if array.ndim == 0 else to_python(array.tolist())
  if isinstance(value, float) and not math.isfinite(value):
    # Strict JSON has no NaN or Infinity: "nan", "inf", "-inf".
    return str(value)
  return value


class MetricWriter:
  """Appends ``{"step": s, **metrics}`` lines to ``workdir/metrics.jsonl``.

  With ``tensorboard=True`` every scalar metric is also written, under the
  same name and step, to TensorBoard event files in ``workdir/tensorboard/``
  (``tensorboard --logdir WORKDIR`` shows every run of an experiment). They
  are written with tensorboardX, imported only then: no TensorFlow needed.
  Nested mappings become ``a/b`` tags; values that are not scalars (lists,
  strings) stay in ``metrics.jsonl`` only. Events are flushed at every
  :meth:`write`, so TensorBoard and ``metrics.jsonl`` agree at any time.

  A resumed run passes ``resume_step``, the step of the checkpoint it
  resumed from: the records after it (those the interrupted run wrote
  between its last checkpoint and its end, and a line it may have left half
  written) are dropped, since the resumed run writes them again. The file
  then reads as if the run had never stopped. TensorBoard gets a new event
  file whose
  first event purges (hides, in TensorBoard) the events the interrupted run
  logged at or after the first step this writer logs: the loop logs at fixed
  steps, so those are exactly the steps the resumed run logs again.

  Call :meth:`close` when done (or use the writer as a context manager).
  """

  def __init__(
      self,
      workdir: str | os.PathLike,
      *,
      tensorboard: bool = False,
      resume_step: int | None = None,
  ):
    # In a multi-process run only process 0 writes (every process logs the
    # same values).
    self.enabled = parallel.is_primary()
    if self.enabled:
      os.makedirs(workdir, exist_ok=True)
    self.path = os.path.join(workdir, METRICS_FILE)
    if self.enabled and resume_step is not None and os.path.exists(self.path):
      self._drop_after(int(resume_step))
    self.tensorboard_dir = (
        os.path.join(workdir, TENSORBOARD_SUBDIR) if tensorboard else None
    )
    self._summary_writer_class = None
    self._summary_writer = None
    if tensorboard:
      # Imported here: runs without TensorBoard need not have it installed.
      try:
        from tensorboardX import SummaryWriter
      except ImportError as error:
        raise ImportError(
            "TensorBoard event files (config.tensorboard) need "
            "tensorboardX: pip install tensorboardX"
        ) from error
      self._summary_writer_class = SummaryWriter

  def _drop_after(self, step: int) -> None:
    kept = []
    with open(self.path, encoding="utf-8") as stream:
      for line in stream:
        try:
          record = json.loads(line)
        except json.JSONDecodeError:
          continue  # a line cut short by a crash
        if isinstance(record, dict) and record.get("step", 0) <= step:
          kept.append(line if line.endswith("\n") else line + "\n")
    temporary = f"{self.path}.tmp"
    with open(temporary, "w", encoding="utf-8") as stream:
      stream.writelines(kept)
    os.replace(temporary, self.path)

  def write(self, step: int, metrics: Mapping[str, Any]) -> None:
    """Appends ``metrics`` at ``step`` (and, with TensorBoard, their scalars)."""
    if not self.enabled:
      return
    record = {"step": int(step), **to_python(dict(metrics))}
    with open(self.path, "a", encoding="utf-8") as stream:
      stream.write(json.dumps(record) + "\n")
    if self._summary_writer_class is None:
      return
    if self._summary_writer is None:
      # tensorboardX names files by the second and opens them with "wb": the
      # suffix keeps a writer started within the same second from
      # overwriting the last one's file (and sorts after it).
      self._summary_writer = self._summary_writer_class(
          self.tensorboard_dir,
          purge_step=int(step),
          filename_suffix=f".{time.time_ns()}",
      )
    for tag, value in _scalars(metrics):
      self._summary_writer.add_scalar(tag, value, int(step))
    self._summary_writer.flush()

  def close(self) -> None:
    """Flushes and closes the TensorBoard event file; safe to call twice.

    A later :meth:`write` starts a new event file.
    """
    if self._summary_writer is not None:
      self._summary_writer.close()
      self._summary_writer = None

  def __enter__(self) -> MetricWriter:
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()


def _scalars(metrics: Mapping[str, Any], prefix: str = ""):
  """``(tag, float)`` for every real scalar in ``metrics``, nested keys joined by ``/``."""
  for key, value in metrics.items():
    tag = f"{prefix}{key}"
    if isinstance(value, Mapping):
      yield from _scalars(value, f"{tag}/")
      continue
    if isinstance(value, (str, bytes)):
      continue
    array = np.asarray(value)
    if array.ndim == 0 and (
        np.issubdtype(array.dtype, np.integer)
        or np.issubdtype(array.dtype, np.floating)
        or array.dtype == np.bool_
    ):
      yield tag, float(array)


def read_metrics(workdir: str | os.PathLike) -> list[dict]:
  """All records of ``workdir/metrics.jsonl`` in order."""
  path = os.path.join(workdir, METRICS_FILE)
  with open(path, encoding="utf-8") as stream:
    return [json.loads(line) for line in stream if line.strip()]


def write_json_atomically(path: str | os.PathLike, payload: Any) -> None:
  """Writes JSON to a temporary file, syncs it and renames it over ``path``.

  Readers see the old file or the new one, never half of one, and a crash
  (even a power loss after the rename) cannot leave an empty file behind.
  """
  path = os.fspath(path)
  temporary = f"{path}.tmp{os.getpid()}"
  try:
    with open(temporary, "w", encoding="utf-8") as stream:
      json.dump(to_python(payload), stream, indent=2, sort_keys=True)
      stream.write("\n")
      stream.flush()
      os.fsync(stream.fileno())
    os.replace(temporary, path)
  except BaseException:
    with contextlib.suppress(OSError):
      os.remove(temporary)
    raise


def write_summary(
    workdir: str | os.PathLike, summary: Mapping[str, Any]
) -> str:
  """Writes ``workdir/summary.json`` (in a multi-process run: process 0 only)."""
  path = os.path.join(workdir, SUMMARY_FILE)
  if parallel.is_primary():
    write_json_atomically(path, summary)
  return path


def read_summary(workdir: str | os.PathLike) -> dict:
  with open(os.path.join(workdir, SUMMARY_FILE), encoding="utf-8") as stream:
    return json.load(stream)
