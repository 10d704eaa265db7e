"""Checkpoints with Orbax: periodic saves, keep-N, resume from the latest.

A checkpoint of a run is one Orbax step directory holding the whole
:class:`~tljax.train.state.TrainState` under the item name ``state``. Orbax
writes into a temporary directory and renames it once complete, so a crash
during a save leaves the previous checkpoints intact and the partial one is
never listed as a step. Restoring reads tensors (no pickle).
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp

STATE_ITEM = "state"


class Checkpointer:
  """Saves and restores train states of one run.

  Args:
    directory: where the step directories go (created if missing).
    max_to_keep: how many most recent checkpoints to keep (``None``: all).
    save_every: save only at steps divisible by this (``save(force=True)``
      always saves, e.g. at the end of training).
  """

  def __init__(self, directory: str | os.PathLike, *, max_to_keep: int | None = 3,
               save_every: int = 1):
    if max_to_keep is not None and max_to_keep < 1:
      raise ValueError(f"max_to_keep must be >= 1 or None, got {max_to_keep}")
    if save_every < 1:
      raise ValueError(f"save_every must be >= 1, got {save_every}")
    self.directory = os.path.abspath(os.fspath(directory))
    self.save_every = save_every
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep,
                                             create=True))

  def latest_step(self) -> int | None:
    """The step of the newest complete checkpoint, or ``None``."""
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def save(self, step: int, state: Any, *, force: bool = False) -> bool:
    """Saves ``state`` at ``step`` if due (or ``force``); returns whether it did.

    The device-to-host copy finishes before this returns, so the caller may
    donate or overwrite ``state`` right after; the write to disk may go on in
    the background until :meth:`wait` or :meth:`close`.
    """
    step = int(step)
    if step in self._manager.all_steps():
      return False
    if not force and step % self.save_every:
      return False
    return self._manager.save(
        step, args=ocp.args.Composite(
            **{STATE_ITEM: ocp.args.StandardSave(state)}), force=True)

  def restore(self, target: Any, step: int | None = None) -> Any:
    """Restores the checkpoint at ``step`` (default: latest) into ``target``'s structure.

    ``target`` is a state (or its ``jax.ShapeDtypeStruct`` abstraction) with the
    same tree structure, shapes and dtypes as the saved one.
    """
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no checkpoint in {self.directory}")
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    restored = self._manager.restore(
        step, args=ocp.args.Composite(
            **{STATE_ITEM: ocp.args.StandardRestore(abstract)}))
    return restored[STATE_ITEM]

  def restore_raw(self, step: int | None = None) -> dict:
    """Restores the checkpoint at ``step`` (default: latest) as nested dicts.

    Used to read another run's parameters without knowing its optimizer.
    """
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no checkpoint in {self.directory}")
    restored = self._manager.restore(
        step, args=ocp.args.Composite(**{STATE_ITEM: ocp.args.StandardRestore()}))
    return restored[STATE_ITEM]

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
