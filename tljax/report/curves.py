"""Training curves of one run, from its ``metrics.jsonl``."""

from __future__ import annotations

import math
import os

from tljax.report import _figure
from tljax.report.runs import check_dir
from tljax.rundir_format import METRICS_FILE, is_run_dir
from tljax.train.loop import EVALUATED_SPLITS
from tljax.train.metrics import read_metrics
from tljax.train.rundir import Run

# Logged values that are bookkeeping, not training signals.
IGNORED = ("step", "examples_per_second")
PANEL_TITLES = {
    "loss": "loss terms",
    "accuracy": "accuracy",
    "coefficient": "adaptation coefficient",
    "learning_rate": "learning rate",
    "norm": "norms",
    "other": "other logged statistics",
}


def is_evaluation(key: str) -> bool:
  """Whether ``key`` is a periodic evaluation (``target_test/accuracy``).

  Evaluations are logged as ``<domain>_<split>/<metric>`` with split
  ``validation`` or ``test``; other keys with a ``/`` are training-step
  metrics of a stage (MCD's ``a/loss``, ``c/discrepancy``).
  """
  prefix, slash, _ = key.rpartition("/")
  return bool(slash) and prefix.endswith(
      tuple(f"_{split}" for split in EVALUATED_SPLITS)
  )


def panel_of(key: str) -> str | None:
  """Which panel a logged key goes to (``None``: not plotted).

  Keys ``<domain>_<split>/<metric>`` are periodic evaluations
  (``target_test/accuracy``, see :func:`is_evaluation`); every other key is
  a training-step metric (a stage's ``c/discrepancy`` too). Accuracies (``accuracy``,
  ``source_accuracy``, ``<split>/accuracy``), adaptation coefficients
  (``reversal_coefficient``), the learning rate and norms (``grad_norm``,
  ``feature_norm``) get their own panels; means of per-example quantities
  (``batch_weight_mean``) go to "other"; every other number is a loss term
  (``loss``, ``domain_loss``, ``jmmd``, ``discrepancy``, ...).
  """
  name = key.rsplit("/", 1)[-1]
  if key in IGNORED or name == "num_examples":
    return None
  if name.endswith("accuracy"):
    return "accuracy"
  if name.endswith("coefficient"):
    return "coefficient"
  if name == "learning_rate":
    return "learning_rate"
  if name.endswith("_norm"):
    return "norm"
  if name.endswith("_mean"):
    return "other"
  return "loss"


def _number(value) -> float | None:
  # metrics.to_python writes non-finite floats as strings ("nan", "inf");
  # they are drawn as gaps.
  if isinstance(value, bool):
    return None
  if isinstance(value, (int, float)):
    return float(value) if math.isfinite(value) else math.nan
  if isinstance(value, str) and value.lower() in ("nan", "inf", "-inf"):
    return math.nan
  return None


def metric_series(records) -> dict[str, tuple[list[int], list[float]]]:
  """``{key: (steps, values)}`` of every scalar in the records, in step order."""
  series: dict[str, tuple[list[int], list[float]]] = {}
  for record in records:
    step = record.get("step")
    if not isinstance(step, int):
      continue
    for key, value in record.items():
      number = _number(value)
      if number is None or panel_of(key) is None:
        continue
      steps, values = series.setdefault(key, ([], []))
      steps.append(step)
      values.append(number)
  return series


def plot_training_curves(run_dir, path) -> str:
  """One figure of a run's logged training signals, one subplot per kind.

  Panels (each only when something of its kind was logged, see
  :func:`panel_of`): the loss terms; source and target accuracy (training
  batches' ``accuracy`` / ``source_accuracy``, and the periodic evaluations
  ``source_test/accuracy``, ``target_test/accuracy``, ... as dashed lines
  with markers); the adaptation coefficient (``reversal_coefficient`` of
  DANN/CDAN/MDD); the learning rate; gradient, update and feature norms;
  other statistics.

  Args:
    run_dir: a tljax run directory with ``metrics.jsonl``.
    path: the ``.png`` file to write (its directory must exist).

  Returns:
    ``path``.

  Raises:
    ValueError: ``run_dir`` does not exist or has no ``metrics.jsonl``, the
      file has no scalar metrics, or ``path`` is not a ``.png`` file in an
      existing directory.
  """
  run_dir = check_dir(run_dir, "run_dir")
  path = _figure.check_png_path(path)
  if not os.path.isfile(os.path.join(run_dir, METRICS_FILE)):
    raise ValueError(
        f"run_dir {run_dir!r} has no {METRICS_FILE}: no metrics "
        "to plot (is it a tljax run directory?)"
    )
  # A run directory is read through Run (which skips the line a running run
  # is still writing); a bare directory of metrics as it is.
  run = Run.open(run_dir, argument="run_dir") if is_run_dir(run_dir) else None
  series = metric_series(
      run.metrics() if run is not None else read_metrics(run_dir)
  )
  if not series:
    raise ValueError(
        f"run_dir {run_dir!r}: {METRICS_FILE} holds no scalar "
        "metrics to plot"
    )
  panels: dict[str, list[str]] = {}
  for key in sorted(series):
    panels.setdefault(panel_of(key), []).append(key)
  kinds = [kind for kind in PANEL_TITLES if kind in panels]
  columns = min(2, len(kinds))
  rows = math.ceil(len(kinds) / columns)
  figure, axes = _figure.new_figure(rows, columns)
  for axis, kind in zip(axes.flat, kinds):
    for key in panels[kind]:
      steps, values = series[key]
      if is_evaluation(key):
        axis.plot(steps, values, "--o", markersize=4, label=key)
      else:
        axis.plot(
            steps,
            values,
            "-",
            marker="." if len(steps) < 30 else None,
            label=key,
        )
    axis.set_title(PANEL_TITLES[kind])
    axis.set_xlabel("step")
    axis.grid(alpha=0.3)
    if kind == "learning_rate":
      axis.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    axis.legend(fontsize="small")
  for axis in list(axes.flat)[len(kinds) :]:
    axis.set_visible(False)
  if run is not None:
    figure.suptitle(f"{run.recipe}, seed {run.seed}: training curves")
  return _figure.save(figure, path)
