"""Report tables, the machine description and timing helpers shared by the sections.

Part of ``scripts/benchmark.py`` (its docstring describes every section).
"""

from __future__ import annotations

import dataclasses
import math
import os
import platform
import statistics
import time
from importlib import metadata

import numpy as np

SECTION_ORDER = (
    "dann",
    "resnet",
    "mmd",
    "reweight",
    "logme",
    "compile",
    "sweep",
)
RESNET_GFLOP_PER_IMAGE = 3 * 4.1  # forward + backward, ResNet-50 at 224×224
NUM_DIGIT_CLASSES = 10
XLA_CONV_ROW = "tljax, conv_impl='xla'"


# --- Report structure ------------------------------------------------------


@dataclasses.dataclass
class Table:
  header: list[str]
  rows: list[list[str]] = dataclasses.field(default_factory=list)

  def add(self, *cells) -> None:
    if len(cells) != len(self.header):
      raise ValueError(
          f"row {cells} has {len(cells)} cells, the header "
          f"{self.header} {len(self.header)}"
      )
    self.rows.append([str(cell) for cell in cells])

  def markdown(self) -> list[str]:
    lines = [
        "| " + " | ".join(self.header) + " |",
        "| " + " | ".join("---" for _ in self.header) + " |",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in self.rows]
    return lines


@dataclasses.dataclass
class Section:
  title: str
  intro: list[str] = dataclasses.field(default_factory=list)
  tables: list[Table] = dataclasses.field(default_factory=list)
  notes: list[str] = dataclasses.field(default_factory=list)

  def markdown(self) -> list[str]:
    lines = [f"## {self.title}", ""]
    if self.intro:
      lines += [" ".join(self.intro), ""]
    for table in self.tables:
      lines += table.markdown() + [""]
    lines += [f"- {note}" for note in self.notes]
    if self.notes:
      lines.append("")
    return lines


def fmt(value, digits: int = 3) -> str:
  """A number with ``digits`` significant digits, thousands separated; n/a for None."""
  if value is None or (isinstance(value, float) and not math.isfinite(value)):
    return "n/a"
  if isinstance(value, str):
    return value
  if abs(value) >= 10**digits:
    return f"{value:,.0f}"
  return f"{value:.{digits}g}"


def ratio(numerator, denominator) -> str:
  if numerator is None or denominator is None or not denominator:
    return "n/a"
  return f"{numerator / denominator:.2f}×"


def loglog_slope(sizes, seconds) -> float | None:
  """The slope of log(time) against log(n): the empirical exponent of the cost."""
  points = [(n, t) for n, t in zip(sizes, seconds) if t is not None and t > 0]
  if len(points) < 2:
    return None
  sizes, seconds = zip(*points)
  return float(np.polyfit(np.log(sizes), np.log(seconds), 1)[0])


def short_error(error: BaseException) -> str:
  text = " ".join(f"{type(error).__name__}: {error}".split())
  text = text.replace("|", "/")
  return text if len(text) <= 160 else text[:157] + "..."


# --- Environment ------------------------------------------------------------


def import_torch():
  """torch, or None when it is not installed (an optional dependency)."""
  try:
    import torch  # noqa: PLC0415 (optional)
  except ImportError:
    return None
  return torch


def find_adapt() -> bool:
  """Whether ``adapt`` is installed (imported only in a worker process)."""
  import importlib.util  # noqa: PLC0415

  return importlib.util.find_spec("adapt") is not None


def cpu_model() -> str:
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as stream:
      for line in stream:
        if line.lower().startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def version(name: str) -> str:
  try:
    return metadata.version(name)
  except metadata.PackageNotFoundError:
    return "not installed"


def describe_machine(ctx) -> list[str]:
  import jax

  device = jax.devices()[0]
  cores = os.cpu_count()
  usable = (
      len(os.sched_getaffinity(0))
      if hasattr(os, "sched_getaffinity")
      else cores
  )
  torch = ctx.torch
  lines = [
      f"- CPU: {cpu_model()}, {cores} logical cores ({usable} usable by this "
      "process)",
      f"- JAX backend: {device.platform} ({device.device_kind}, "
      f"{jax.device_count()} device(s))"
      + (
          "; JAX's CPU runtime uses all usable cores"
          if device.platform == "cpu"
          else ""
      ),
      f"- Python {platform.python_version()}, jax {jax.__version__}, "
      f"jaxlib {version('jaxlib')}, flax {version('flax')}, "
      f"optax {version('optax')}, numpy {np.__version__}",
  ]
  if torch is None:
    lines.append("- PyTorch: not installed (its rows read n/a)")
  else:
    lines.append(
        f"- PyTorch {torch.__version__}, intra-op threads set to "
        f"{torch.get_num_threads()} (= the usable cores, as JAX)"
    )
  lines.append(
      f"- adapt: run by {ctx.adapt_python}"
      if ctx.adapt_python
      else f"- adapt: {version('adapt')}"
  )
  return lines


# --- Timing -----------------------------------------------------------------


def interleaved_rates(runners: dict, *, steps: int, rounds: int) -> dict:
  """Steps per second of each runner: the median over rounds, runners alternating.

  ``runners`` maps a name to ``run(n) -> seconds`` (which runs ``n`` steps and
  waits for them to finish). Alternating the runners within each round puts
  them under the same background load.
  """
  samples = {name: [] for name in runners}
  for _ in range(rounds):
    for name, run in runners.items():
      samples[name].append(steps / run(steps))
  return {name: statistics.median(values) for name, values in samples.items()}


def warm_up(runners: dict, args) -> int:
  """Runs the warm-up steps of every runner (each has run one step already).

  Returns the timed steps per round, the same for every runner: at least
  ``args.steps``, and enough for the slowest runner's round to last about
  ``args.round_seconds`` (judged from its last warm-up step).
  """
  slowest = 0.0
  for run in runners.values():
    if args.warmup > 2:
      run(args.warmup - 2)
    slowest = max(slowest, run(1) if args.warmup > 1 else 0.0)
  if not slowest:
    return args.steps
  return max(args.steps, min(1000, math.ceil(args.round_seconds / slowest)))


def median_seconds(function, repeats: int) -> float:
  """The median wall time of ``repeats`` calls of ``function`` (which waits)."""
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    function()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def interleaved_medians(
    functions, repeats: int, pause: float = 0.0
) -> list[float]:
  """The median wall times of ``repeats`` rounds that call each function once.

  Calling the contenders in turn, round after round, exposes them to the
  same machine load: a burst of other work slows one round of each, not all
  calls of one. Use it for ratios of fast calls (milliseconds), where
  back-to-back blocks of calls would each catch a different load. ``pause``
  seconds of sleep before each call let the previous contender's thread
  pool go idle: OpenBLAS's and XLA's worker threads spin for a while after
  a call, and would otherwise take cores from the next one.
  """
  times = [[] for _ in functions]
  for _ in range(repeats):
    for function, record in zip(functions, times):
      time.sleep(pause)
      start = time.perf_counter()
      function()
      record.append(time.perf_counter() - start)
  return [statistics.median(record) for record in times]


def resident_bytes() -> int | None:
  try:
    with open("/proc/self/status", encoding="utf-8") as stream:
      for line in stream:
        if line.startswith("VmRSS:"):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  return None


def train_state_and_step(config, method, params, model_state):
  """``(state, step)``: the loop's optimizer, train state and jitted step.

  The optimizer as the training loop builds it from ``config`` (trainable
  rules, learning-rate multipliers, layer decay), the initial train state
  (jitted, so it compiles once rather than op by op: same values) and the
  step jitted as the loop jits it, state donated, the per-step key folded
  inside from the batch's step counter.
  """
  import jax

  from tljax import params as params_lib
  from tljax.train import create_train_state, keyed_by_step, make_train_step
  from tljax.train.optim import make_optimizer

  rules = [tuple(rule) for rule in config.trainable_rules]
  trainable, _ = params_lib.split(params, rules)
  optimizer = params_lib.with_learning_rate_multipliers(
      make_optimizer(dict(config.optimizer), config.steps),
      trainable,
      rules,
      layer_decay=config.optimizer.get("layer_decay"),
      depth_rules=[tuple(rule) for rule in config.optimizer.depth_rules],
  )
  state = jax.jit(
      lambda params, model_state: create_train_state(
          params, model_state, optimizer, rules=rules, hparams=method.hparams
      )
  )(params, model_state)
  step = jax.jit(
      keyed_by_step(make_train_step(method.loss_fn, optimizer, jit=False)),
      donate_argnums=0,
  )
  return state, step
