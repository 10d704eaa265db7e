"""The failures a user can cause or meet at run time, as exception types.

Each carries a one-line message that says what happened and what to do;
the ``tljax`` command prints it as ``tljax <command>: error: <message>``
and exits with status 1 (``--traceback`` shows the stack). Bad arguments
and config values are ``ValueError`` (exit status 2 on the command line).
This module imports nothing, so the command line can name these types
without loading JAX.
"""

from __future__ import annotations


class CheckpointError(ValueError):
  """A checkpoint that cannot be trusted: truncated, corrupted, unverifiable or mismatched."""


class CheckpointNotFoundError(FileNotFoundError, ValueError):
  """No checkpoint where one was asked for: no directory, or no such step.

  A ``FileNotFoundError`` (what a missing file is) and a ``ValueError`` (what
  every other bad argument raises), naming the argument.
  """


class RunDirNotFoundError(FileNotFoundError, ValueError):
  """No tljax run directory where one was given: no directory, or no run record.

  A ``FileNotFoundError`` and a ``ValueError``, naming the argument and the
  path, as :class:`CheckpointNotFoundError` is.
  """


class CheckpointSaveError(OSError):
  """A checkpoint could not be written (a full or read-only disk, ...).

  The step being saved is left unfinished, never half-visible: the earlier
  checkpoints stay as they were, and a rerun resumes from the latest one.
  """


class DivergenceError(RuntimeError):
  """Training met a non-finite loss, gradient or parameter under policy ``stop``."""


class WorkdirBusyError(RuntimeError):
  """Another process holds the work dir: one writer per work dir."""


class DataError(RuntimeError):
  """Prepared data on disk that cannot be read: a corrupted or garbled dataset file."""


#: What the command line reports as one line with exit status 1.
RUN_FAILURES = (
    CheckpointError,
    DivergenceError,
    WorkdirBusyError,
    DataError,
    OSError,
)
