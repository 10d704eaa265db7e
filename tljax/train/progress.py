"""What a run shows while it trains: a bar on a terminal, a line per log step elsewhere.

On a terminal, :class:`Progress` is a tqdm bar labelled with the run (``run
4 of 9: jan seed 0``; ``(compiling)`` until the first step is done) whose
rate and ETA count from the end of the first step, so the compilation does
not inflate them. In a log file, a CI job or under ``nohup`` (standard error
is not a terminal) a bar would be one line stuck at ``1/300``; there it
prints ``run 4 of 9: jan seed 0: compiling (step 0/1000)`` when the run
starts, then one line every ``log_every`` steps: ``run 4 of 9: jan seed 0:
step 300/1000, loss 0.1234, 12,345 examples/s, ETA 1m20s``.

Work without steps (a report's pictures, a sweep's set-up and evaluation)
says each stage on one line as it starts, with :class:`Stages`: ``report:
run 2 of 9: jan/seed_1: features (PCA) [4s]``, the time since the first
stage in brackets.
"""

from __future__ import annotations

import sys
import time

import tqdm


def _is_terminal(stream) -> bool:
  isatty = getattr(stream, "isatty", None)
  try:
    return bool(isatty and isatty())
  except ValueError:  # a closed stream
    return False


def format_seconds(seconds: float) -> str:
  """``75`` → ``"1m15s"``; ``3700`` → ``"1h01m"``."""
  seconds = max(0, int(round(seconds)))
  if seconds < 60:
    return f"{seconds}s"
  if seconds < 3600:
    return f"{seconds // 60}m{seconds % 60:02d}s"
  return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Stages:
  """One line per stage of ``job`` on ``stream`` (standard error), terminal or not.

  ``stages("compiling")`` prints ``"<job>: compiling [12s]"``: the stage
  that starts now, and the seconds since the first stage. Disabled
  (``enabled=False``), it prints nothing.
  """

  def __init__(self, job: str, *, enabled: bool = True, stream=None):
    self.job = job
    self.enabled = enabled
    self.stream = stream if stream is not None else sys.stderr
    self._start: float | None = None

  def __call__(self, stage: str) -> None:
    if not self.enabled:
      return
    now = time.perf_counter()
    if self._start is None:
      self._start = now
    print(
        f"{self.job}: {stage} [{format_seconds(now - self._start)}]",
        file=self.stream,
        flush=True,
    )


class Progress:
  """A run's progress from ``start`` to ``total`` steps (see the module doc)."""

  def __init__(
      self,
      description: str,
      *,
      start: int,
      total: int,
      enabled: bool = True,
      stream=None,
  ):
    self.description = description
    self.total = total
    self.stream = stream if stream is not None else sys.stderr
    interactive = enabled and _is_terminal(self.stream)
    self.lines = enabled and not interactive
    self._timed_from: tuple[int, float] | None = None
    if self.lines and start < total:
      print(
          f"{description}: compiling (step {start}/{total})",
          file=self.stream,
          flush=True,
      )
    self.bar = tqdm.tqdm(
        total=total,
        initial=start,
        desc=f"{description} (compiling)",
        disable=not interactive,
        mininterval=2.0,
        dynamic_ncols=True,
        smoothing=0,  # the average since the first step, not an EMA
        file=self.stream,
    )

  def step(self, done: int) -> None:
    """Step ``done`` finished; the first one ends the compilation."""
    self.bar.update(1)
    if self._timed_from is None:
      self._timed_from = (done, time.perf_counter())
      if not self.bar.disable:
        # tqdm's rate is (n - initial) / (now - start_t): from this step on.
        self.bar.initial = self.bar.n
        self.bar.start_t = self.bar._time()  # pylint: disable=protected-access
        self.bar.set_description(self.description, refresh=False)

  def eta(self, done: int) -> float | None:
    """Seconds left at the rate since the first step (None: no rate yet)."""
    if self._timed_from is None or done <= self._timed_from[0]:
      return None
    first, since = self._timed_from
    rate = (done - first) / max(time.perf_counter() - since, 1e-9)
    return (self.total - done) / rate

  def log(self, done: int, loss: float, examples_per_second: float) -> None:
    """The metrics of a log step: the bar's postfix, or one line."""
    if self.lines:
      eta = self.eta(done)
      left = f", ETA {format_seconds(eta)}" if eta is not None else ""
      print(
          f"{self.description}: step {done}/{self.total}, loss {loss:.4f}, "
          f"{examples_per_second:,.0f} examples/s{left}",
          file=self.stream,
          flush=True,
      )
    else:
      self.bar.set_postfix(
          loss=f"{loss:.4f}", ex_per_s=f"{examples_per_second:,.0f}"
      )

  def close(self) -> None:
    self.bar.close()
