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
  ones.
* :meth:`Checkpointer.save` refuses a state with NaN or Inf in a floating
  leaf, so a diverged run never overwrites good checkpoints with bad ones.

Restoring reads tensors (TensorStore) and JSON metadata: no pickle, no code
execution.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

STATE_ITEM = "state"
INTEGRITY_ITEM = "integrity"
_INTEGRITY_FORMAT = 1


class CheckpointError(ValueError):
  """A checkpoint that cannot be trusted: truncated, corrupted or mismatched."""


def _key_name(key) -> str:
  for attribute in ("key", "name", "idx"):
    if hasattr(key, attribute):
      return str(getattr(key, attribute))
  return str(key)


def _leaf_names(tree) -> list[str]:
  """``a/b/c`` names of the leaves, in ``jax.tree.leaves`` order."""
  return ["/".join(_key_name(key) for key in path)
          for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def _host_leaves(tree) -> list:
  """The leaves as NumPy arrays; ``None`` for arrays spread over other hosts."""
  leaves = []
  for leaf in jax.tree.leaves(tree):
    if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
      leaves.append(None)
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

  def __init__(self, directory: str | os.PathLike, *, max_to_keep: int | None = 3,
               save_every: int = 1, read_only: bool = False):
    if max_to_keep is not None and max_to_keep < 1:
      raise ValueError(f"max_to_keep must be >= 1 or None, got {max_to_keep}")
    if save_every < 1:
      raise ValueError(f"save_every must be >= 1, got {save_every}")
    self.directory = os.path.abspath(os.fspath(directory))
    self.save_every = save_every
    if read_only and not os.path.isdir(self.directory):
      raise FileNotFoundError(
          f"checkpoint directory {self.directory} does not exist")
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            max_to_keep=None if read_only else max_to_keep,
            create=not read_only,
            # Temporary directories of saves a crash interrupted.
            cleanup_tmp_directories=not read_only))
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
    bad = [name for name, leaf in zip(names, leaves)
           if leaf is not None and np.issubdtype(leaf.dtype, np.inexact)
           and not np.all(np.isfinite(leaf))]
    if bad:
      raise ValueError(
          f"refusing to save a checkpoint at step {step}: non-finite values "
          f"in {bad[:5]}{' ...' if len(bad) > 5 else ''} (the run diverged; "
          f"the checkpoints in {self.directory} are left as they were)")
    integrity = {"format": _INTEGRITY_FORMAT,
                 "sha256": {name: _digest(leaf)
                            for name, leaf in zip(names, leaves)
                            if leaf is not None}}
    return self._manager.save(
        step, args=ocp.args.Composite(**{
            STATE_ITEM: ocp.args.StandardSave(state),
            INTEGRITY_ITEM: ocp.args.JsonSave(integrity)}), force=True)

  def _step_for(self, step: int | None) -> int:
    step = self.latest_step() if step is None else int(step)
    if step is None:
      raise FileNotFoundError(f"no checkpoint in {self.directory}")
    return step

  def _restore(self, step: int, state_args) -> Any:
    step_dir = os.path.join(self.directory, str(step))
    has_integrity = os.path.isdir(os.path.join(step_dir, INTEGRITY_ITEM))
    items = {STATE_ITEM: state_args}
    if has_integrity:
      items[INTEGRITY_ITEM] = ocp.args.JsonRestore()
    try:
      restored = self._manager.restore(step, args=ocp.args.Composite(**items))
    except FileNotFoundError as error:
      raise CheckpointError(
          f"checkpoint {step_dir} is incomplete (missing files: {error}); "
          f"delete it to resume from an earlier step "
          f"({[s for s in self.all_steps() if s != step]})") from error
    except Exception as error:  # TensorStore and Orbax raise many kinds
      message = str(error).splitlines()[0] if str(error) else ""
      message = message.split(" See full TensorStore details")[0][:300]
      if "shape" in message.lower() and "mismatch" in message.lower():
        raise CheckpointError(
            f"checkpoint {step_dir} does not match the expected state: "
            f"{message}") from error
      raise CheckpointError(
          f"checkpoint {step_dir} cannot be read: it is truncated or "
          f"corrupted ({type(error).__name__}: {message}); delete it to "
          f"resume from an earlier step "
          f"({[s for s in self.all_steps() if s != step]})") from error
    state = restored[STATE_ITEM]
    if has_integrity:
      self._verify(step_dir, state, restored[INTEGRITY_ITEM])
    return state

  def _verify(self, step_dir: str, state, integrity) -> None:
    recorded = (integrity or {}).get("sha256")
    if not isinstance(recorded, dict):
      raise CheckpointError(f"checkpoint {step_dir}: its integrity record is "
                            "malformed")
    names, leaves = _leaf_names(state), _host_leaves(state)
    found = dict(zip(names, leaves))
    for name, digest in recorded.items():
      if name not in found:
        # Restored into a target without this leaf (e.g. parameters only).
        continue
      leaf = found[name]
      if leaf is not None and _digest(leaf) != digest:
        raise CheckpointError(
            f"checkpoint {step_dir} is corrupted: the bytes of {name} differ "
            "from those recorded when it was saved; delete it to resume from "
            "an earlier step")

  def restore(self, target: Any, step: int | None = None) -> Any:
    """Restores the checkpoint at ``step`` (default: latest) into ``target``'s structure.

    ``target`` is a state (or its ``jax.ShapeDtypeStruct`` abstraction) with the
    same tree structure, shapes and dtypes as the saved one.

    Raises:
      FileNotFoundError: if there is no checkpoint.
      CheckpointError: if the checkpoint is truncated or corrupted.
    """
    step = self._step_for(step)
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    return self._restore(step, ocp.args.StandardRestore(abstract))

  def restore_raw(self, step: int | None = None) -> dict:
    """Restores the checkpoint at ``step`` (default: latest) as nested dicts.

    Used to read another run's parameters without knowing its optimizer.
    """
    return self._restore(self._step_for(step), ocp.args.StandardRestore())

  def wait(self) -> None:
    """Blocks until every pending save is on disk."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc_info):
    self.close()
