"""Checkpoints with Orbax: periodic saves, keep-N, resume from the latest.

A checkpoint of a run is one Orbax step directory holding the whole
:class:`~tljax.train.state.TrainState` under the item name ``state`` and,
next to it, a JSON item ``integrity``: the SHA-256 of every leaf's bytes.

What a crash can and cannot do:

* Orbax writes each step into a temporary directory and renames it once
  complete, so a process killed during a save (even with SIGKILL) leaves the
  earlier checkpoints intact, and the partial one is never listed as a step.
  A writing :class:`Checkpointer` deletes such leftovers when it opens.
* A checkpoint whose files were later truncated or altered is refused on
  restore with a :class:`CheckpointError` naming the step directory: either
  the tensors cannot be decoded, or their digests differ from the recorded
  ones. Every checkpoint tljax writes carries its digests, so one without
  them (its ``integrity`` item deleted, or a checkpoint another tool wrote)
  is refused too, unless the caller asks for it with
  ``allow_unverified=True``: without digests a flipped bit in a tensor can
  decode to a different, plausible value.
* :meth:`Checkpointer.save` refuses a state with NaN or Inf in a floating
  leaf, so a diverged run never overwrites good checkpoints with bad ones.

Restoring reads tensors (TensorStore) and JSON metadata: no pickle, no code
execution.

A run keeps its checkpoints in ``<workdir>/checkpoints``
(:data:`CHECKPOINT_SUBDIR`, from :mod:`tljax.rundir_format`, the layout of a
run directory). This on-disk format sits at the bottom of tljax,
so that both the train core (which writes it) and
:func:`tljax.params.read_checkpoint` (which a recipe's teacher and a partial
restore read through) import it from below.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import hashlib
import logging
import os
import pathlib
import re
import sys
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from tljax.errors import (
    CheckpointError,
    CheckpointNotFoundError,
    CheckpointSaveError,
)
from tljax.rundir_format import CHECKPOINT_SUBDIR

__all__ = [
    "CHECKPOINT_SUBDIR",
    "CheckpointError",
    "CheckpointNotFoundError",
    "CheckpointSaveError",
    "Checkpointer",
]

STATE_ITEM = "state"
INTEGRITY_ITEM = "integrity"
_INTEGRITY_FORMAT = 1


def _key_name(key) -> str:
  for attribute in ("key", "name", "idx"):
    if hasattr(key, attribute):
      return str(getattr(key, attribute))
  return str(key)


def _leaf_names(tree) -> list[str]:
  """``a/b/c`` names of the leaves, in ``jax.tree.leaves`` order."""
  return [
      "/".join(_key_name(key) for key in path)
      for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]
  ]


def _host_leaves(tree) -> list:
  """The leaves as NumPy arrays; ``None`` for arrays spread over other hosts.

  An array replicated over several processes is whole in each: its local
  copy is read, so a multi-process checkpoint records its digest too.
  """
  leaves = []
  for leaf in jax.tree.leaves(tree):
    if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
      leaves.append(
          np.asarray(leaf.addressable_data(0))
          if leaf.is_fully_replicated
          else None
      )
    else:
      leaves.append(np.asarray(jax.device_get(leaf)))
  return leaves


def _digest(array: np.ndarray) -> str:
  array = np.ascontiguousarray(array)
  header = f"{array.dtype.str}{array.shape}".encode()
  return hashlib.sha256(header + array.tobytes()).hexdigest()


class Checkpointer:
  """Saves and restores train states of one run.

  Args:
    directory: where the step directories go (created if missing, unless
      ``read_only``).
    max_to_keep: how many most recent checkpoints to keep (``None``: all).
    save_every: save only at steps divisible by this (``save(force=True)``
      always saves, e.g. at the end of training).
    read_only: only read (another run's checkpoints, which may be being
      written): nothing is created or deleted.
  """

  def __init__(
      self,
      directory: str | os.PathLike,
      *,
      max_to_keep: int | None = 3,
      save_every: int = 1,
      read_only: bool = False,
  ):
    if max_to_keep is not None and max_to_keep < 1:
      raise ValueError(f"max_to_keep must be >= 1 or None, got {max_to_keep}")
    if save_every < 1:
      raise ValueError(f"save_every must be >= 1, got {save_every}")
    self.directory = os.path.abspath(os.fspath(directory))
    self.save_every = save_every
    if read_only and not os.path.isdir(self.directory):
      raise CheckpointNotFoundError(
          f"checkpoint directory {self.directory} does not exist"
      )
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            max_to_keep=None if read_only else max_to_keep,
            create=not read_only,
            # Temporary directories of saves a crash interrupted.
            cleanup_tmp_directories=not read_only,
        ),
    )
    self.read_only = read_only

  def latest_step(self) -> int | None:
    """The step of the newest complete checkpoint, or ``None``."""
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def is_due(self, step: int) -> bool:
    """Whether :meth:`save` at ``step`` (without ``force``) would save."""
    step = int(step)
    return step % self.save_every == 0 and step not in self._manager.all_steps()

  def save(self, step: int, state: Any, *, force: bool = False) -> bool:
    """Saves ``state`` at ``step`` if due (or ``force``); returns whether it did.

    The device-to-host copy finishes before this returns, so the caller may
    donate or overwrite ``state`` right after; the write to disk may go on in
    the background until :meth:`wait` or :meth:`close`.

    Raises:
      ValueError: if a floating leaf of ``state`` holds a NaN or an Inf
        (nothing is written).
    """
    step = int(step)
    if self.read_only:
      raise ValueError(f"this Checkpointer of {self.directory} is read_only")
    if step in self._manager.all_steps():
      return False
    if not force and step % self.save_every:
      return False
    names, leaves = _leaf_names(state), _host_leaves(state)
    bad = [
        name
        for name, leaf in zip(names, leaves)
        if leaf is not None
        and np.issubdtype(leaf.dtype, np.inexact)
        and not np.all(np.isfinite(leaf))
    ]
    if bad:
      raise ValueError(
          f"refusing to save a checkpoint at step {step}: non-finite values "
          f"in {bad[:5]}{' ...' if len(bad) > 5 else ''} (the run diverged; "
          f"the checkpoints in {self.directory} are left as they were)"
      )
    integrity = {
        "format": _INTEGRITY_FORMAT,
        "sha256": {
            name: _digest(leaf)
            for name, leaf in zip(names, leaves)
            if leaf is not None
        },
    }
    with self._writing(step):
      return self._manager.save(
          step,
          args=ocp.args.Composite(
              **{
                  STATE_ITEM: ocp.args.StandardSave(state),
                  INTEGRITY_ITEM: ocp.args.JsonSave(integrity),
              }
          ),
          force=True,
      )

  @contextlib.contextmanager
  def _writing(self, step: int | None):
    """Turns a failed write (this save's, or an earlier background one's) into a :class:`CheckpointSaveError`."""
    try:
      with _quiet_background_errors():
        yield
    except (CheckpointError, CheckpointSaveError):
      raise
    except Exception as error:  # Orbax and TensorStore raise many kinds
      raise _save_error(
          self.directory, step, self.all_steps(), error
      ) from error

  def _step_for(self, step: int | None) -> int:
    steps = self.all_steps()
    if step is None:
      if not steps:
        raise CheckpointNotFoundError(f"no checkpoint in {self.directory}")
      return steps[-1]
    step = int(step)
    if step not in steps:
      raise CheckpointNotFoundError(
          f"step {step} has no checkpoint in {self.directory}; its "
          f"checkpoints are at steps {steps}"
      )
    return step

  def _earlier(self, step: int) -> str:
    earlier = [s for s in self.all_steps() if s != step]
    return (
        f"delete it to resume from an earlier step ({earlier})"
        if earlier
        else "delete it to start again"
    )

  def _restore(self, step: int, state_args, allow_unverified: bool) -> Any:
    if not isinstance(allow_unverified, bool):
      raise ValueError(
          f"allow_unverified must be True or False, got "
          f"{allow_unverified!r}"
      )
    step_dir = os.path.join(self.directory, str(step))
    has_integrity = os.path.isdir(os.path.join(step_dir, INTEGRITY_ITEM))
    if not has_integrity and not allow_unverified:
      raise CheckpointError(
          f"checkpoint {step_dir} has no integrity record ({INTEGRITY_ITEM}/, "
          "which every checkpoint tljax writes holds), so its values cannot "
          f"be verified; {self._earlier(step)}, or load it with "
          "allow_unverified=True if you trust it"
      )
    items = {STATE_ITEM: state_args}
    if has_integrity:
      items[INTEGRITY_ITEM] = ocp.args.JsonRestore()
    try:
      with _quiet_background_errors():
        restored = self._manager.restore(step, args=ocp.args.Composite(**items))
    except FileNotFoundError as error:
      raise CheckpointError(
          f"checkpoint {step_dir} is incomplete (missing files: "
          f"{_first_line(error)}); {self._earlier(step)}"
      ) from error
    except Exception as error:  # TensorStore and Orbax raise many kinds
      message = _first_line(error)
      if "shape" in message.lower() and "mismatch" in message.lower():
        raise CheckpointError(
            f"checkpoint {step_dir} does not match the expected state: "
            f"{message}"
        ) from error
      raise CheckpointError(
          f"checkpoint {step_dir} cannot be read: it is truncated or "
          f"corrupted ({type(error).__name__}: {message}); "
          f"{self._earlier(step)}"
      ) from error
    state = restored[STATE_ITEM]
    if has_integrity:
      self._verify(step, step_dir, state, restored[INTEGRITY_ITEM])
    return state

  def _verify(self, step: int, step_dir: str, state, integrity) -> None:
    recorded = integrity.get("sha256") if isinstance(integrity, dict) else None
    if not isinstance(recorded, dict):
      raise CheckpointError(
          f"checkpoint {step_dir}: its integrity record is "
          f"malformed; {self._earlier(step)}"
      )
    for name, leaf in zip(_leaf_names(state), _host_leaves(state)):
      if leaf is None:
        continue  # held by another host, which verifies it
      if name not in recorded:
        raise CheckpointError(
            f"checkpoint {step_dir} is corrupted: its integrity record has no "
            f"digest of {name}; {self._earlier(step)}"
        )
      if _digest(leaf) != recorded[name]:
        raise CheckpointError(
            f"checkpoint {step_dir} is corrupted: the bytes of {name} differ "
            "from those recorded when it was saved; "
            f"{self._earlier(step)}"
        )

  def restore(
      self,
      target: Any,
      step: int | None = None,
      *,
      allow_unverified: bool = False,
  ) -> Any:
    """Restores the checkpoint at ``step`` (default: latest) into ``target``'s structure.

    ``target`` is a state (or its ``jax.ShapeDtypeStruct`` abstraction) with the
    same tree structure, shapes and dtypes as the saved one.
    ``allow_unverified`` accepts a checkpoint without its integrity record
    (one tljax did not write); its values are then not verified.

    Raises:
      CheckpointNotFoundError: if there is no checkpoint (at ``step``).
      CheckpointError: if the checkpoint is truncated, corrupted, or has no
        integrity record (without ``allow_unverified``).
    """
    step = self._step_for(step)
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    return self._restore(
        step, ocp.args.StandardRestore(abstract), allow_unverified
    )

  def restore_raw(
      self, step: int | None = None, *, allow_unverified: bool = False
  ) -> dict:
    """Restores the checkpoint at ``step`` (default: latest) as nested dicts.

    Used to read another run's parameters without knowing its optimizer.
    Same errors and ``allow_unverified`` as :meth:`restore`.
    """
    step = self._step_for(step)
    try:
      return self._restore(step, ocp.args.StandardRestore(), allow_unverified)
    except CheckpointError as error:
      if "topology mismatch" not in str(error).lower():
        raise
    # Saved by another set of devices (a multi-process run read by one
    # process): every array whole on this process's first device.
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    metadata = ocp.StandardCheckpointHandler().metadata(
        pathlib.Path(self.directory, str(step), STATE_ITEM)
    )
    target = jax.tree.map(
        lambda leaf: jax.ShapeDtypeStruct(
            leaf.shape, leaf.dtype, sharding=device
        ),
        metadata.tree,
    )
    return self._restore(
        step, ocp.args.StandardRestore(target), allow_unverified
    )

  def wait(self) -> None:
    """Blocks until every pending save is on disk.

    Raises:
      CheckpointSaveError: if a background save failed.
    """
    with self._writing(None):
      self._manager.wait_until_finished()

  def close(self) -> None:
    """Waits for pending saves, then releases Orbax's resources.

    Raises:
      CheckpointSaveError: if a background save failed (the resources are
        released all the same).
    """
    try:
      self.wait()
    finally:
      with _quiet_background_errors(), contextlib.suppress(Exception):
        self._manager.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc_info):
    self.close()


# How TensorStore and Orbax spell the errno of a failed write.
_SAVE_ERRNOS = (
    ("RESOURCE_EXHAUSTED", errno.ENOSPC),
    ("No space left", errno.ENOSPC),
    ("Read-only file system", errno.EROFS),
    ("PERMISSION_DENIED", errno.EACCES),
    ("Permission denied", errno.EACCES),
)


def _save_error(
    directory: str, step: int | None, steps: list[int], error: BaseException
) -> CheckpointSaveError:
  text = str(error)
  code = (
      error.errno
      if isinstance(error, OSError) and error.errno
      else next(
          (code for marker, code in _SAVE_ERRNOS if marker in text), errno.EIO
      )
  )
  # A background save's failure surfaces in a later call: name its step.
  failed = re.search(r"/(\d+)\.orbax-checkpoint-tmp", text)
  step = int(failed.group(1)) if failed else step
  what = f"step {step}" if step is not None else "a checkpoint"
  kept = (
      f"the earlier checkpoints {steps} are intact and a rerun resumes "
      f"from step {steps[-1]}"
      if steps
      else "no earlier checkpoint exists"
  )
  return CheckpointSaveError(
      code,
      f"{os.strerror(code)} while saving {what} in {directory} "
      f"({type(error).__name__}: {_first_line(error)[:160]}); the unfinished "
      f"save is never read as a checkpoint: {kept}",
  )


def _first_line(error: BaseException) -> str:
  message = str(error).splitlines()[0] if str(error) else ""
  for noise in (" See full TensorStore details", " [tensorstore_spec"):
    message = message.split(noise)[0]
  return message[:300]


@contextlib.contextmanager
def _quiet_background_errors():
  """Silences what a failed read leaves behind in Orbax's asyncio tasks.

  When one tensor of a checkpoint cannot be read, the reads of the others
  fail too, and their tasks and coroutines print dozens of lines ("Task
  exception was never retrieved", "Exception ignored in ...") when they are
  collected, after the one error that matters has been raised. They are
  collected here, with asyncio's logger and the unraisable hook muted.
  """
  asyncio_logger = logging.getLogger("asyncio")
  level, hook = asyncio_logger.level, sys.unraisablehook
  asyncio_logger.setLevel(logging.CRITICAL)
  sys.unraisablehook = lambda unraisable: None
  try:
    yield
  finally:
    gc.collect()
    sys.unraisablehook = hook
    asyncio_logger.setLevel(level)
