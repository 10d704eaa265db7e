"""SIGTERM and SIGINT stop a run at the next step boundary, after a checkpoint.

A scheduler's SIGTERM (pre-emption) or a Ctrl-C must not throw away the work
since the last periodic checkpoint. :class:`StopSignals` replaces the two
handlers while a training loop runs: the first signal only sets
:attr:`StopSignals.received`; the loop finishes its current step, saves a
checkpoint and leaves; :meth:`StopSignals.resend` then delivers the signal
again with the handler that was there before, so the process ends the way
it would have (SIGINT: ``KeyboardInterrupt``, as :class:`Interrupted`, which
names the saved step; SIGTERM: terminated). A second signal while the
checkpoint is being written is delivered at once.

A signal that is ignored when the loop starts stays ignored: under
``nohup`` or in a background job of a non-interactive shell SIGINT is
ignored, and a Ctrl-C meant for another program is not the user's choice to
stop this one. Handlers can only be installed from the main thread;
elsewhere (a training loop in a worker thread) the class does nothing and
signals act as usual.
"""

from __future__ import annotations

import signal
import threading

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Interrupted(KeyboardInterrupt):
  """A run stopped by a signal after saving a checkpoint of ``step``.

  A ``KeyboardInterrupt``, as Python's own SIGINT handler raises, so code
  that handles Ctrl-C handles it; ``tljax train`` reports it in one line.
  """

  def __init__(self, signum: int, step: int):
    super().__init__(
        f"stopped by signal {signum} after step {step}; checkpoint saved"
    )
    self.signum = signum
    self.step = step


class StopSignals:
  """Context manager recording SIGTERM/SIGINT instead of acting on them."""

  def __init__(self, signals=SIGNALS):
    self.signals = tuple(signals)
    self.received: int | None = None
    self._previous: dict[int, object] = {}
    self._found: dict[int, object] = {}

  def _handle(self, signum, frame):
    del frame
    if self.received is not None:
      # A second signal: the user insists, act on it now.
      self._restore()
      signal.raise_signal(signum)
      return
    self.received = signum

  def _restore(self) -> None:
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)
    self._previous = {}

  def __enter__(self) -> StopSignals:
    if threading.current_thread() is threading.main_thread():
      for signum in self.signals:
        previous = signal.getsignal(signum)
        if previous is signal.SIG_IGN or previous is None:
          # Ignored: stays so. None: a handler set outside Python, which
          # could not be put back.
          continue
        self._previous[signum] = previous
        self._found[signum] = previous
        signal.signal(signum, self._handle)
    return self

  def __exit__(self, *exc_info) -> None:
    self._restore()

  def resend(self, step: int) -> None:
    """Delivers the recorded signal again (call after leaving the context).

    Python's own SIGINT handler would raise a bare ``KeyboardInterrupt``;
    :class:`Interrupted` (one) is raised in its place, naming ``step``. If
    another previous handler returns (SIGTERM's default ends the process),
    :class:`Interrupted` is raised too, so that the caller never goes on as
    if finished.
    """
    if self.received is None:
      return
    if self._found.get(self.received) is not signal.default_int_handler:
      signal.raise_signal(self.received)
    raise Interrupted(self.received, step)
