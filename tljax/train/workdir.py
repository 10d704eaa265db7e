"""Who owns a work dir: one writer at a time, and the config it was claimed with.

Two rules keep a work dir's files consistent with each other:

* **One writer.** A run (and an experiment or sweep around it) holds an
  exclusive lock on its work dir while it writes there: a ``flock`` on the
  file ``.tljax.lock`` in it, held by the operating system, so it is released
  however the process ends, SIGKILL included. A second writer is refused at
  once with :class:`~tljax.errors.WorkdirBusyError`, whose one line names the
  holder (its pid, host, start time and command). The holder's details are
  in the lock file only while it is held; the file is emptied on release.
  Readers (``tljax report``, a read-only :class:`Checkpointer`) never lock.
  In a multi-process run (``jax.process_count() > 1``) each process locks its
  own file, ``.tljax.lock.<process index>``. On network file systems the lock
  is only as good as their ``flock`` (NFSv4 supports it; some others do not).
* **One config.** A work dir records the config it runs (``run_config.json``
  of a run, ``config.json`` of an experiment or sweep), but that record binds
  only once a step has completed: once the run (one of the experiment's runs)
  has a checkpoint. A rerun with another config is then refused *before
  anything is written*, naming the keys that differ. A run that failed
  before its first checkpoint (a bad value found inside the loop) claims
  nothing: the corrected command runs there and replaces the record.
  :func:`claim_run` makes this check for a run, :func:`claim` for an
  experiment or a sweep.
"""

from __future__ import annotations

import datetime
import errno
import json
import os
import socket
import sys
import time
from collections.abc import Mapping
from typing import Any

import jax

from tljax.checkpoint import CHECKPOINT_SUBDIR
from tljax.config import base_config
from tljax.errors import WorkdirBusyError
from tljax.rundir_format import RUN_CONFIG_FILE
from tljax.train import metrics as metrics_lib
from tljax.train import parallel

try:  # POSIX
  import fcntl
except ImportError:  # Windows: msvcrt's byte-range lock
  fcntl = None
  import msvcrt  # pylint: disable=import-error

LOCK_FILE = ".tljax.lock"
# How long a refused writer waits for the holder to finish writing its
# details into the lock file (it writes them right after taking the lock).
_HOLDER_WAIT_SECONDS = 1.0


def lock_path(workdir: str) -> str:
  """The lock file of ``workdir`` for this process."""
  name = LOCK_FILE
  if jax.process_count() > 1:
    name += f".{jax.process_index()}"
  return os.path.join(workdir, name)


def _try_lock(descriptor: int) -> bool:
  try:
    if fcntl is not None:
      fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    else:
      msvcrt.locking(descriptor, msvcrt.LK_NBLCK, 1)
  except OSError as error:
    if error.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
      return False
    raise
  return True


def _unlock(descriptor: int) -> None:
  if fcntl is not None:
    fcntl.flock(descriptor, fcntl.LOCK_UN)
  else:
    os.lseek(descriptor, 0, os.SEEK_SET)
    msvcrt.locking(descriptor, msvcrt.LK_UNLCK, 1)


def _holder_details() -> dict[str, Any]:
  return {
      "pid": os.getpid(),
      "host": socket.gethostname(),
      "started": datetime.datetime.now(datetime.timezone.utc).isoformat(
          timespec="seconds"
      ),
      "command": " ".join(sys.argv),
  }


def read_holder(workdir: str) -> dict[str, Any] | None:
  """The details of the process holding ``workdir``'s lock, as it wrote them.

  ``None`` when the lock file is empty or unreadable (nobody holds it, or
  the holder has not written them yet). Whether the lock is *held* is only
  known by trying to take it.
  """
  try:
    with open(lock_path(workdir), encoding="utf-8") as stream:
      text = stream.read()
    holder = json.loads(text) if text.strip() else None
  except (OSError, ValueError):
    return None
  return holder if isinstance(holder, dict) else None


def _describe(holder: dict[str, Any] | None) -> str:
  if holder is None:
    return "another process (its details are not written yet)"
  command = holder.get("command")
  return (
      f"pid {holder.get('pid')} on host {holder.get('host')}, started "
      f"{holder.get('started')}" + (f" ({command})" if command else "")
  )


class WorkdirLock:
  """The exclusive writer's lock of a work dir (see the module docstring).

  Use as a context manager, or :meth:`acquire` / :meth:`release`. Creates
  the work dir (and an empty lock file) if missing.

  Raises:
    WorkdirBusyError: on :meth:`acquire`, if another process (or another
      open lock in this one) holds the work dir.
    OSError: if the work dir cannot be created or its lock file opened
      (a read-only or full disk), naming the path.
  """

  def __init__(self, workdir: str | os.PathLike):
    self.workdir = os.path.abspath(os.fspath(workdir))
    self.path = lock_path(self.workdir)
    self._descriptor: int | None = None

  @property
  def held(self) -> bool:
    return self._descriptor is not None

  def acquire(self) -> WorkdirLock:
    if self.held:
      raise RuntimeError(
          f"the lock of {self.workdir} is already held by this " "WorkdirLock"
      )
    os.makedirs(self.workdir, exist_ok=True)
    flags = os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
    try:
      descriptor = os.open(self.path, os.O_RDWR | flags, 0o644)
    except PermissionError:
      # A read-only work dir whose lock file exists: a read descriptor can
      # still be locked; the first write there fails with its own message.
      descriptor = os.open(self.path, os.O_RDONLY | flags)
    try:
      if not _try_lock(descriptor):
        raise WorkdirBusyError(
            f"work dir {self.workdir} is in use by another tljax run: "
            f"{_describe(self._wait_for_holder())}; wait for it to finish, "
            "stop it, or use another work dir"
        )
      self._write_holder(descriptor)
    except BaseException:
      os.close(descriptor)
      raise
    self._descriptor = descriptor
    return self

  def _wait_for_holder(self) -> dict[str, Any] | None:
    deadline = time.monotonic() + _HOLDER_WAIT_SECONDS
    holder = read_holder(self.workdir)
    while holder is None and time.monotonic() < deadline:
      time.sleep(0.02)
      holder = read_holder(self.workdir)
    return holder

  @staticmethod
  def _write_holder(descriptor: int) -> None:
    payload = json.dumps(_holder_details()).encode()
    try:
      os.ftruncate(descriptor, 0)
      os.pwrite(descriptor, payload, 0)
    except OSError:
      # A read-only descriptor or a full disk: the lock holds all the same;
      # only the refusal message of a second writer lacks the details.
      pass

  def release(self) -> None:
    """Empties the lock file and releases the lock; safe to call twice."""
    descriptor, self._descriptor = self._descriptor, None
    if descriptor is None:
      return
    try:
      os.ftruncate(descriptor, 0)
    except OSError:
      pass
    try:
      _unlock(descriptor)
    finally:
      os.close(descriptor)

  def __enter__(self) -> WorkdirLock:
    return self.acquire()

  def __exit__(self, *exc_info) -> None:
    self.release()


# --- The config a work dir was claimed with -------------------------------------

_MISSING = object()


def _lookup(tree, path: str):
  for key in path.split("."):
    if not isinstance(tree, dict) or key not in tree:
      return _MISSING
    tree = tree[key]
  return tree


def differences(old, new, prefix: str = ""):
  """Dotted paths where the JSON trees ``old`` and ``new`` differ."""
  if isinstance(old, dict) and isinstance(new, dict):
    for key in set(old) | set(new):
      yield from differences(
          old.get(key, _MISSING), new.get(key, _MISSING), f"{prefix}{key}."
      )
  elif old != new:
    yield prefix.rstrip(".")


def _added_at_default(
    existing: dict, claim: dict, path: str, config_key: str | None
) -> bool:
  """Whether ``path`` is a config field the stored claim predates, now at its default."""
  prefix = "" if config_key is None else config_key + "."
  if not path.startswith(prefix) or _lookup(existing, path) is not _MISSING:
    return False
  # The outermost field the stored config lacks, e.g. the whole new sub-config.
  parts = path.split(".")
  skip = 0 if config_key is None else 1
  field = None
  for end in range(skip + 1, len(parts) + 1):
    if _lookup(existing, ".".join(parts[:end])) is _MISSING:
      field = ".".join(parts[skip:end])
      break
  if field is None:
    return False
  default = json.loads(
      json.dumps(metrics_lib.to_python(base_config().to_dict()))
  )
  return _lookup(default, field) is not _MISSING and _lookup(
      default, field
  ) == _lookup(claim, prefix + field)


def as_json(value) -> Any:
  """``value`` as the JSON a claim file holds (lists for tuples, ...)."""
  return json.loads(json.dumps(metrics_lib.to_python(value)))


def changed_keys(
    existing: dict, claim: dict, *, config_key: str | None = "config"
) -> list[str]:
  """The dotted keys where ``claim`` differs from the stored ``existing`` one.

  Config fields introduced after ``existing`` was written and at their
  defaults in ``claim`` do not count: the stored run did what they ask.
  ``config_key`` is where the config sits in the claim (``None``: the claim
  is the config itself).
  """
  claim = as_json(claim)
  return sorted(
      path
      for path in differences(existing, claim)
      if not _added_at_default(existing, claim, path, config_key)
  )


def read_claim(path: str) -> dict | None:
  """The claim stored at ``path``, or ``None`` if there is none."""
  if not os.path.exists(path):
    return None
  with open(path, encoding="utf-8") as stream:
    try:
      return json.load(stream)
    except ValueError as error:
      raise ValueError(
          f"{path} is not valid JSON ({error}); it records the "
          "config this work dir was run with: restore it, or "
          "use another work dir"
      ) from None


def check_claim(
    path: str, claim: dict, *, what: str, config_key: str | None = "config"
) -> None:
  """Refuses ``claim`` if ``path`` holds a different one (writes nothing).

  Raises:
    ValueError: naming the differing keys (at most ten) and what to do.
  """
  existing = read_claim(path)
  if existing is None:
    return
  changed = changed_keys(existing, claim, config_key=config_key)
  if changed:
    workdir = os.path.dirname(path)
    raise ValueError(
        f"work dir {workdir!r} holds {what} with another config (it differs "
        f"at {changed[:10]}{' ...' if len(changed) > 10 else ''}); rerun it "
        "with the same config, or use another work dir"
    )


def write_claim(path: str, claim: dict) -> None:
  """Writes the claim (in a multi-process run: process 0; the others check it)."""
  if parallel.is_primary():
    metrics_lib.write_json_atomically(path, as_json(claim))


def has_checkpoint(checkpoint_dir: str) -> bool:
  """Whether ``checkpoint_dir`` holds a complete checkpoint (a step directory).

  Orbax writes a step into a temporary directory and renames it to the bare
  step number once complete, so a numeric name is a finished save.
  """
  try:
    names = os.listdir(checkpoint_dir)
  except (FileNotFoundError, NotADirectoryError):
    return False
  return any(
      name.isdigit() and os.path.isdir(os.path.join(checkpoint_dir, name))
      for name in names
  )


def completed_a_step(workdir: str) -> bool:
  """Whether a run in ``workdir`` (the run itself, or any run below it) has a checkpoint."""
  for root, dirs, _ in os.walk(workdir):
    if CHECKPOINT_SUBDIR in dirs and has_checkpoint(
        os.path.join(root, CHECKPOINT_SUBDIR)
    ):
      return True
    # Step directories are not runs: do not walk into them.
    dirs[:] = [name for name in dirs if name != CHECKPOINT_SUBDIR]
  return False


def claim(
    path: str,
    record: dict,
    *,
    what: str,
    binding: bool,
    config_key: str | None = "config",
) -> None:
  """Checks ``record`` against the claim at ``path``, or (re)writes it.

  ``binding``: whether the work dir has completed a step; then a different
  stored claim is refused (nothing is written), and an equal one is left
  byte-identical. Otherwise any stored claim is stale and is replaced.
  """
  if binding:
    check_claim(path, record, what=what, config_key=config_key)
    if read_claim(path) is not None:
      return
  write_claim(path, record)


def claim_run(
    workdir: str,
    config,
    *,
    method: str,
    seed: int,
    init_from: Mapping | None,
    prior_runs: Mapping[str, str] | None = None,
) -> bool:
  """Claims ``workdir`` for one run: checks or writes its ``run_config.json``.

  The record is ``{"config", "method", "seed", "init_from"[,
  "prior_runs"]}``. A run that has a checkpoint owns the work dir: a
  different config is refused before anything is written. Without one, any
  stored record is that of a run which never completed a step, and is
  replaced.

  Returns:
    Whether the run had completed a step (its stored record was binding).

  Raises:
    ValueError: ``workdir`` holds a run (one that completed a step) with
      another record, naming the keys that differ.
  """
  claimed = has_checkpoint(os.path.join(workdir, CHECKPOINT_SUBDIR))
  record = {
      "config": config.to_dict(),
      "method": method,
      "seed": seed,
      "init_from": dict(init_from) if init_from is not None else None,
  }
  if prior_runs:
    record["prior_runs"] = dict(prior_runs)
  claim(
      os.path.join(workdir, RUN_CONFIG_FILE),
      record,
      what="a run",
      binding=claimed,
  )
  return claimed
