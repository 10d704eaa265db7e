"""Training curves of one run, from its ``metrics.jsonl``."""

from __future__ import annotations

import math
import os

from matplotlib.figure import Figure

from tljax.methods.registry import config_kwargs, method_settings
from tljax.report import _figure
from tljax.report.runs import check_dir
from tljax.rundir_format import METRICS_FILE, is_run_dir
from tljax.train.loop import EVALUATED_SPLITS
from tljax.train.metrics import read_metrics
from tljax.train.rundir import Run

# Logged values that are bookkeeping, not training signals.
IGNORED = ("step", "examples_per_second")
# The divergence guard's count: drawn (in its own panel) only when non-zero.
SKIPPED = "skipped_steps"
PANEL_TITLES = {
    "loss": "loss terms",
    "accuracy": "accuracy",
    "coefficient": "adaptation coefficient",
    "learning_rate": "learning rate",
    "norm": "norms",
    "skipped": "steps skipped by the divergence guard",
    "other": "other logged statistics",
}
TOTAL_LOSS = "loss"
# The loss panel turns symmetric-log when its largest value exceeds the late
# half's largest by this factor (see _scale_loss_axis).
SYMLOG_RATIO = 10.0
CLASSIFICATION = "classification"
_ADVERSARIAL = (("domain_loss", "trade_off", 1.0), ("bsp", "bsp_weight", 1.0))
# How a recipe's logged ``loss`` is made of what it logs: the classification
# loss (source or target cross-entropy) plus, for each (term, setting,
# sign), sign × the recipe setting (``method_kwargs``: λ = ``trade_off``) ×
# the logged term; setting ``None``: the term is logged already weighted. A
# term logged only when its setting is non-zero (``bsp``) may be absent.
LOSS_TERMS = {
    "dan": (("dan", "trade_off", 1.0),),
    "deep_coral": (("deep_coral", "trade_off", 1.0),),
    "jan": (("jmmd", "trade_off", 1.0),),
    "afn": (("feature_norm_loss", "trade_off", 1.0),),
    "mcc": (("mcc", "trade_off", 1.0),),
    "sinkhorn": (("sinkhorn", "trade_off", 1.0),),
    "dann": _ADVERSARIAL,
    "cdan": _ADVERSARIAL,
    "cdan_e": _ADVERSARIAL,
    "mdd": (("disparity", "trade_off", -1.0), ("bsp", "bsp_weight", 1.0)),
    "l2_sp": (("l2_sp", None, 1.0),),
    "bss": (("bss", None, 1.0),),
    "delta": (("delta", None, 1.0), ("l2_new", None, 1.0)),
    "co_tuning": (("co_tuning", None, 1.0),),
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
  (``reversal_coefficient``), the learning rate, norms (``grad_norm``,
  ``feature_norm``) and the divergence guard's ``skipped_steps`` get their
  own panels; means of per-example quantities
  (``batch_weight_mean``) go to "other"; every other number is a loss term
  (``loss``, ``domain_loss``, ``jmmd``, ``discrepancy``, ...).
  """
  name = key.rsplit("/", 1)[-1]
  if key in IGNORED or name == "num_examples":
    return None
  if key == SKIPPED:
    return "skipped"
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


def weighted_terms(recipe: str | None, config) -> list[tuple[str, float, str]]:
  """``(logged term, coefficient, label)`` of what ``recipe`` adds to its classification loss.

  From :data:`LOSS_TERMS` and the recipe's settings in ``config`` (the
  run's ``method_kwargs`` over the recipe's defaults), e.g. JAN with
  ``trade_off`` 0.3: ``[("jmmd", 0.3, "λ × jmmd (λ = 0.3)")]``. Empty for a
  recipe without such terms (``source_only``) or one this module does not
  know.
  """
  if recipe not in LOSS_TERMS:
    return []
  try:
    settings = method_settings(recipe, config_kwargs(recipe, config))
  except ValueError:  # not registered in this process, or a stale config
    return []
  terms = []
  for term, setting, sign in LOSS_TERMS[recipe]:
    if setting is None:
      terms.append((term, sign, term))
      continue
    value = float(settings[setting])
    symbol = "λ" if setting == "trade_off" else setting
    minus = "−" if sign < 0 else ""
    terms.append(
        (term, sign * value, f"{minus}{symbol} × {term} ({symbol} = {value:g})")
    )
  return terms


def split_loss(series, terms) -> dict[str, tuple[list[int], list[float]]]:
  """The loss panel's training series with the total loss split into its parts.

  ``classification`` = ``loss`` − Σ coefficient × term at every step that
  logged the loss and each term with a non-zero coefficient; each term is
  drawn weighted (its label from :func:`weighted_terms`) instead of raw;
  ``loss`` stays, as the total. Without ``terms``, or when the run never
  logged a term that counts, the series are returned as they are.
  """
  counted = [
      (term, coefficient, label)
      for term, coefficient, label in terms
      if coefficient != 0 or term in series
  ]
  if TOTAL_LOSS not in series or not counted:
    return dict(series)
  if any(term not in series for term, coefficient, _ in counted if coefficient):
    return dict(series)
  by_step = {
      term: dict(zip(*series[term])) for term, _, _ in counted if term in series
  }
  steps, values = [], []
  for step, total in zip(*series[TOTAL_LOSS]):
    weighted = [
        (term, coefficient) for term, coefficient, _ in counted if coefficient
    ]
    if all(step in by_step[term] for term, _ in weighted):
      steps.append(step)
      values.append(
          total
          - sum(
              coefficient * by_step[term][step]
              for term, coefficient in weighted
          )
      )
  split = {key: value for key, value in series.items() if key not in by_step}
  split[CLASSIFICATION] = (steps, values)
  for term, coefficient, label in counted:
    if term in series:
      term_steps, term_values = series[term]
      split[label] = (
          list(term_steps),
          [coefficient * value for value in term_values],
      )
  return split


def _scale_loss_axis(axis, panel_series, last_step: int) -> None:
  """Zero marked when a term is negative; symmetric-log when early losses dwarf late ones.

  The first logged steps (the untrained model's ``log(classes)``) can be a
  hundred times the late terms, whose sizes and signs are what the panel is
  read for: then values within the late half's largest magnitude (rounded up
  to a power of ten) are drawn linearly and the larger ones on a log scale.
  """
  values = [value for _, values in panel_series for value in values]
  late = [
      abs(value)
      for steps, values in panel_series
      for step, value in zip(steps, values)
      if step >= last_step / 2 and math.isfinite(value)
  ]
  if any(value < 0 for value in values):
    axis.axhline(0.0, color="grey", linewidth=0.8)
  largest = max((abs(v) for v in values if math.isfinite(v)), default=0.0)
  if late and 0 < max(late) and largest > SYMLOG_RATIO * max(late):
    threshold = 10.0 ** math.floor(math.log10(max(late)))
    axis.set_yscale("symlog", linthresh=threshold)
    axis.set_ylabel(f"symmetric log scale, linear within ±{threshold:g}")


def plot_training_curves(run_dir, path) -> str:
  """One figure of a run's logged training signals, one subplot per kind.

  Panels (each only when something of its kind was logged, see
  :func:`panel_of`): the loss terms; source and target accuracy (training
  batches' ``accuracy`` / ``source_accuracy``, and the periodic evaluations
  ``source_test/accuracy``, ``target_test/accuracy``, ... as dashed lines
  with markers); the adaptation coefficient (``reversal_coefficient`` of
  DANN/CDAN/MDD); the learning rate; gradient, update and feature norms;
  the steps the divergence guard skipped (only when it skipped any); other
  statistics.

  The loss panel splits a recipe's total ``loss`` into its classification
  loss and its weighted transfer terms (:func:`split_loss`, e.g. JAN's
  ``λ × jmmd``: an unbiased MMD estimate may be negative, and so may the
  total), with the evaluations' cross-entropy as dashed lines; its y-axis
  turns symmetric-log when the first steps' losses dwarf the late terms
  (:func:`_scale_loss_axis`). Every panel starts at the first logged step.

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
  return _figure.save(training_curves_figure(run_dir), path)


def training_curves_figure(run_dir) -> Figure:
  """The figure :func:`plot_training_curves` saves, for a caller to draw or inspect."""
  run_dir = check_dir(run_dir, "run_dir")
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
  if SKIPPED in series and not any(series[SKIPPED][1]):
    del series[SKIPPED]
  if not series:
    raise ValueError(
        f"run_dir {run_dir!r}: {METRICS_FILE} holds no scalar "
        "metrics to plot"
    )
  first_step = min(steps[0] for steps, _ in series.values() if steps)
  last_step = max(steps[-1] for steps, _ in series.values() if steps)
  panels: dict[str, list[str]] = {}
  for key in sorted(series):
    panels.setdefault(panel_of(key), []).append(key)
  if "loss" in panels and run is not None:
    evaluations = [key for key in panels["loss"] if is_evaluation(key)]
    split = split_loss(
        {
            key: series.pop(key)
            for key in panels["loss"]
            if not is_evaluation(key)
        },
        weighted_terms(run.recipe, run.config),
    )
    series.update(split)
    first = [key for key in (TOTAL_LOSS, CLASSIFICATION) if key in split]
    panels["loss"] = first + sorted(set(split) - set(first)) + evaluations
  margin = 0.02 * (last_step - first_step) + 0.5
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
            label="loss (total)" if key == TOTAL_LOSS else key,
            **(
                {"color": "black", "linewidth": 2.0}
                if key == TOTAL_LOSS
                else {}
            ),
        )
    if kind == "loss":
      _scale_loss_axis(axis, [series[key] for key in panels[kind]], last_step)
    axis.set_title(PANEL_TITLES[kind])
    axis.set_xlabel("step")
    axis.set_xlim(first_step - margin, last_step + margin)
    axis.grid(alpha=0.3)
    if kind == "learning_rate":
      axis.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    axis.legend(fontsize="small")
  for axis in list(axes.flat)[len(kinds) :]:
    axis.set_visible(False)
  if run is not None:
    figure.suptitle(f"{run.recipe}, seed {run.seed}: training curves")
  return figure
