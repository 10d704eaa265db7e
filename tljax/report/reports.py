"""Markdown reports: one per run (with its pictures), and across experiments.

* :func:`run_report` writes ``report.md`` (and its pictures) into a run
  directory: the config, the test accuracies next to the same seed's
  ``source_only`` / ``target_only`` runs, the transfer gap, the pictures.
* :func:`experiment_report` compares experiment directories: mean ± std over
  seeds per method, one column per directory.
* :func:`report_experiment` does both for one experiment directory (every
  run's report, then ``WORKDIR/report.md``); it is meant to be called at the
  end of :func:`tljax.train.experiment.run_experiment`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import ml_collections
import numpy as np

from tljax.report.curves import plot_training_curves
from tljax.report.features import (
    PROJECTIONS,
    _check_max_points,
    before_adaptation_run,
    plot_features,
)
from tljax.report.runs import (
    RESULTS_FILE,
    check_experiment_dir,
    experiment_dir,
    experiment_runs,
    read_json,
    sibling_run,
)
from tljax.report.weights import plot_weights
from tljax.train.domains import load_domains
from tljax.train.progress import Stages
from tljax.train.rundir import Run

REPORT_FILE = "report.md"
CURVES_FILE = "training_curves.png"
# One picture per projection, so a t-SNE picture does not replace the PCA one.
FEATURES_FILES = {"pca": "features.png", "tsne": "features_tsne.png"}
PROJECTION_NAMES = {"pca": "PCA", "tsne": "t-SNE"}
WEIGHTS_FILE = "importance_weights.png"
BASELINES = ("source_only", "target_only")
SPLITS = (
    ("source_test", "source test acc (%)"),
    ("target_validation", "target val acc (%)"),
    ("target_test", "target test acc (%)"),
)
REWEIGHTING_METHODS = ("importance_weighting",)


def _percent(value: float) -> str:
  return f"{100 * value:.1f}"


def _mean_std(values) -> tuple[float, float]:
  """Mean and sample standard deviation (0 for one value), as the experiment table."""
  values = np.asarray(values, np.float64)
  return (
      float(values.mean()),
      float(values.std(ddof=1)) if values.size > 1 else 0.0,
  )


def _options(mapping) -> str:
  items = [
      f"{key}={json.dumps(value)}"
      for key, value in sorted((mapping or {}).items())
      if value not in (None, {}, [], ())
  ]
  return f" ({', '.join(items)})" if items else ""


def config_rows(run_config: dict, summary: dict) -> list[tuple[str, str]]:
  """``(field, value)`` pairs summarising what a run trained."""
  config = run_config["config"]
  model = dict(config.get("model") or {})
  optimizer = dict(config.get("optimizer") or {})
  rows = [
      ("method", f"`{run_config.get('method')}` ({summary.get('setting')})"),
      ("seed", str(run_config.get("seed"))),
  ]
  for domain in ("source", "target"):
    spec = dict(config.get(domain) or {})
    text = f"`{spec.get('name')}`{_options(spec.get('kwargs'))}"
    if domain == "target" and spec.get("labels_per_class") is not None:
      text += f", {spec['labels_per_class']} labeled examples per class"
    rows.append((domain, text))
  rows.append(("model", f"`{model.pop('name', None)}`{_options(model)}"))
  rows.append(
      (
          "optimizer",
          (
              f"{optimizer.get('name')}, learning rate "
              f"{optimizer.get('learning_rate')}, {optimizer.get('schedule')} "
              f"schedule, weight decay {optimizer.get('weight_decay')}"
          ),
      )
  )
  steps = summary.get("steps", config.get("steps"))
  rows.append(("steps × batch size", f"{steps} × {config.get('batch_size')}"))
  init_from = run_config.get("init_from")
  rows.append(
      (
          "initialised from",
          (
              f"`{init_from.get('workdir') or init_from.get('pretrained')}`"
              if init_from
              else "scratch"
          ),
      )
  )
  if "wall_seconds" in summary:
    rows.append(("wall time", f"{summary['wall_seconds']:.0f} s"))
  return rows


def _results_row(name: str, summary: dict, splits) -> str:
  cells = [
      _percent(summary[split]["accuracy"]) if split in summary else ""
      for split, _ in splits
  ]
  return f"| {name} | " + " | ".join(cells) + " |"


def _transfer_lines(
    method: str, setting: str, summary: dict, baselines: dict, run_dir: str
) -> list[str]:
  """How this run compares with its references on the target test split."""
  accuracy = summary["target_test"]["accuracy"]
  lines = []
  if method not in BASELINES and "source_only" in baselines:
    change = accuracy - baselines["source_only"]["target_test"]["accuracy"]
    lines.append(
        f"- Target test accuracy vs `source_only` (same seed): "
        f"{100 * change:+.1f} points"
        + (
            " — below source-only: negative transfer for a transductive "
            "method."
            if change < 0 and setting == "transductive"
            else "."
        )
    )
  if method != "target_only" and "target_only" in baselines:
    gap = baselines["target_only"]["target_test"]["accuracy"] - accuracy
    kind = (
        "the negative-transfer gap: above zero, the source made the "
        "target worse"
        if setting == "inductive"
        else "the distance to the target-only oracle, not negative transfer: "
        "this method sees no target label"
    )
    lines.append(
        f"- ε({method}) − ε(target_only) on the target test split, "
        f"this seed: {100 * gap:+.1f} points — {kind}."
    )
  root = experiment_dir(run_dir)
  results_path = os.path.join(root, RESULTS_FILE) if root else None
  if results_path and os.path.isfile(results_path):
    for row in read_json(results_path).get("negative_transfer") or ():
      if row.get("method") == method:
        lines.append(
            f"- Over the experiment's {row['seeds']} seeds: ε({method}) − "
            f"ε(target_only) = {100 * row['gap']:+.1f} points, 95% CI "
            f"[{100 * row['low']:+.1f}, {100 * row['high']:+.1f}]: "
            f"{row['verdict']}."
        )
  return lines


def _importance_weights(run: Run):
  """The weights an ``importance_weighting`` run keeps in its checkpoint's extras."""
  with run.checkpointer() as checkpointer:
    raw = checkpointer.restore_raw()
  weights = (raw.get("extras") or {}).get("weights")
  return None if weights is None else np.asarray(weights, np.float64)


def _domains_for(run_config: dict, cache: dict | None):
  """The run's data, loaded once per (source, target, data_dir) in ``cache``."""
  config = run_config["config"]
  key = json.dumps(
      [config.get("source"), config.get("target"), config.get("data_dir")],
      sort_keys=True,
      default=str,
  )
  if cache is not None and key in cache:
    return cache[key]
  domains = load_domains(ml_collections.ConfigDict(config))
  if cache is not None:
    cache[key] = domains
  return domains


def run_report(
    run_dir,
    *,
    features: str | None = "pca",
    max_points: int = 500,
    domains_cache: dict | None = None,
    features_cache: dict | None = None,
    progress=None,
) -> str:
  """Writes ``report.md`` and its pictures into a finished run directory.

  Pictures (written next to ``report.md`` and embedded by relative path):
  ``training_curves.png`` (:func:`~tljax.report.plot_training_curves`, when
  the run logged metrics), ``features.png`` (PCA) or ``features_tsne.png``
  (t-SNE) (:func:`~tljax.report.plot_features`, with the same seed's
  ``source_only`` run as a "before adaptation" panel when the experiment has
  one; a picture of the other projection that an earlier report drew is
  kept and shown too) and, for ``importance_weighting`` runs,
  ``importance_weights.png`` (:func:`~tljax.report.plot_weights` of the
  weights in the checkpoint against the source training inputs' first
  principal component).

  The report holds a config summary, a results table (this run's source and
  target test accuracy, and target validation accuracy when there was a
  validation split) and, when the run sits in an experiment directory
  (``<exp>/<method>/seed_<n>``) next to ``source_only`` / ``target_only``
  runs of the same seed, those runs' rows, the change against source-only,
  ε(method) − ε(target_only) for this seed and, from the experiment's
  ``results.json``, its negative-transfer gap over seeds.

  Args:
    run_dir: a finished tljax run directory (``run_config.json``,
      ``summary.json``).
    features: ``"pca"``, ``"tsne"`` or ``None`` (no feature picture).
    max_points: test examples per domain in the feature picture.
    domains_cache: a dict shared between calls, so runs on the same data
      load it once (:func:`report_experiment` passes one).
    features_cache: a dict shared between calls, so a run's features are
      computed once (:func:`~tljax.report.plot_features`'s ``cache``).
    progress: called with each stage's name as it starts (``"training
      curves"``, ``"features (PCA)"``, ...; see
      :class:`tljax.train.progress.Stages`), or ``None``.

  Returns:
    The path of ``report.md``.

  Raises:
    ValueError: ``run_dir`` is not a finished tljax run directory, or
      ``features`` / ``max_points`` are invalid.
  """
  run = Run.open(run_dir, argument="run_dir")
  run_config = dict(run.record)
  summary = run.summary()
  if features is not None and features not in PROJECTIONS:
    raise ValueError(
        f"features must be one of {list(PROJECTIONS)} or None, "
        f"got {features!r}"
    )
  _check_max_points(max_points)
  run_dir = os.fspath(run_dir)
  method = str(run_config.get("method"))
  setting = str(summary.get("setting"))
  say = progress or (lambda stage: None)

  # --- Pictures -------------------------------------------------------------
  pictures = []  # (title, path, caption)
  if run.has_metrics:
    say("training curves")
    pictures.append(
        (
            "Training curves",
            plot_training_curves(run_dir, os.path.join(run_dir, CURVES_FILE)),
            None,
        )
    )
  if features is not None and run.has_checkpoint:
    say(f"features ({PROJECTION_NAMES[features]})")
    plot_features(
        run_dir,
        os.path.join(run_dir, FEATURES_FILES[features]),
        method=features,
        max_points=max_points,
        domains=_domains_for(run_config, domains_cache),
        cache=features_cache,
    )
    compared = before_adaptation_run(run_dir) is not None
    # A picture of the other projection, drawn by an earlier report of this
    # finished run, is still this run's: both are shown.
    for projection, name in FEATURES_FILES.items():
      path = os.path.join(run_dir, name)
      if not os.path.isfile(path):
        continue
      pictures.append(
          (
              f"Features ({PROJECTION_NAMES[projection]})",
              path,
              (
                  "Bottleneck features of source (discs) and target (crosses) "
                  "test examples, the colour is the class"
                  + (
                      "; left: the same seed's `source_only` model (before "
                      "adaptation), right: this run."
                      if compared
                      else "."
                  )
              ),
          )
      )
  if method in REWEIGHTING_METHODS and run.has_checkpoint:
    weights = _importance_weights(run)
    if weights is not None:
      say("importance weights")
      domains = _domains_for(run_config, domains_cache)
      inputs = np.asarray(
          domains["source"]["train"].get_batch(np.arange(weights.size))[
              "input"
          ],
          np.float64,
      )
      pictures.append(
          (
              "Importance weights",
              plot_weights(
                  weights,
                  os.path.join(run_dir, WEIGHTS_FILE),
                  features=inputs.reshape(weights.size, -1),
                  feature_name="inputs",
                  title=f"{method}: weights of the source training examples",
              ),
              (
                  "The mean-1 weights the run trained with, against the source "
                  "training inputs' first principal component."
              ),
          )
      )

  # --- The report -----------------------------------------------------------
  say("report.md")
  baselines = {
      name: Run.open(path).summary()
      for name in BASELINES
      if (path := sibling_run(run_dir, name)) is not None
  }
  runs = [(f"{method} (this run)", summary)] + [
      (f"{name} (same seed)", baseline) for name, baseline in baselines.items()
  ]
  splits = [
      (split, header)
      for split, header in SPLITS
      if any(split in run for _, run in runs)
  ]
  lines = [
      f"# `{method}`, seed {run_config.get('seed')}",
      "",
      f"Run directory: `{os.path.abspath(run_dir)}`.",
      "",
      "## Config",
      "",
      "| field | value |",
      "| --- | --- |",
  ]
  lines += [
      f"| {field} | {value} |"
      for field, value in config_rows(run_config, summary)
  ]
  lines += [
      "",
      "## Results",
      "",
      "Accuracy of the final model (nothing selected on test data).",
      "",
      "| run | " + " | ".join(header for _, header in splits) + " |",
      "| --- |" + " --- |" * len(splits),
  ]
  lines += [_results_row(name, run, splits) for name, run in runs]
  transfer = (
      _transfer_lines(method, setting, summary, baselines, run_dir)
      if "target_test" in summary
      else []
  )
  if transfer:
    lines += ["", "## Transfer", ""] + transfer
  if pictures:
    lines += ["", "## Pictures"]
    for title, path, caption in pictures:
      lines += [
          "",
          f"### {title}",
          "",
          f"![{title.lower()}]({os.path.basename(path)})",
      ]
      if caption:
        lines += ["", caption]
  report_path = os.path.join(run_dir, REPORT_FILE)
  with open(report_path, "w", encoding="utf-8") as stream:
    stream.write("\n".join(lines) + "\n")
  return report_path


def _column_labels(workdirs: Sequence[str]) -> list[str]:
  """Short unique names for the work dirs: base names, else paths from their common root."""
  names = [
      os.path.basename(os.path.normpath(os.path.abspath(workdir)))
      for workdir in workdirs
  ]
  if len(set(names)) == len(names):
    return names
  paths = [os.path.abspath(workdir) for workdir in workdirs]
  root = os.path.commonpath(paths)
  return [os.path.relpath(path, os.path.dirname(root)) for path in paths]


def _cell(values: list[float]) -> str:
  if not values:
    return ""
  mean, std = _mean_std(values)
  return f"{_percent(mean)} ± {_percent(std)} ({len(values)})"


def experiment_report(workdirs, path) -> str:
  """Compares experiment directories in one markdown file.

  For each split (target test, source test, and target validation when any
  run had one) a table with one row per method and one column per work dir:
  the accuracy's mean ± sample standard deviation over the seeds that ran
  (in %, the number of seeds in brackets), read from every run's
  ``summary.json``. Negative-transfer gaps from the experiments'
  ``results.json`` follow, then links to the runs' ``report.md`` files that
  exist.

  Args:
    workdirs: experiment directories (``run_experiment``'s ``workdir``), or
      one.
    path: the markdown file to write (its directory must exist); ``None``
      only returns the markdown (links relative to the current directory).

  Returns:
    The markdown.
  """
  if isinstance(workdirs, (str, os.PathLike)):
    workdirs = [workdirs]
  workdirs = list(workdirs) if workdirs is not None else []
  if not workdirs:
    raise ValueError("workdirs must name at least one experiment directory")
  workdirs = [
      check_experiment_dir(workdir, f"workdirs[{index}]")
      for index, workdir in enumerate(workdirs)
  ]
  resolved = [os.path.realpath(workdir) for workdir in workdirs]
  if len(set(resolved)) != len(resolved):
    raise ValueError(f"workdirs names a directory twice: {workdirs}")
  if path is not None and not isinstance(path, (str, os.PathLike)):
    raise ValueError(f"path must be a file path or None, got {path!r}")
  parent = (
      os.path.dirname(os.path.abspath(path))
      if path is not None
      else os.getcwd()
  )
  if not os.path.isdir(parent):
    raise ValueError(f"path {path!r}: its directory {parent!r} does not exist")
  labels = _column_labels(workdirs)
  runs = [experiment_runs(workdir) for workdir in workdirs]
  # Unfinished runs (no summary.json yet) are left out.
  summaries = [
      {
          method: [run.summary() for run in map(Run.open, dirs) if run.finished]
          for method, dirs in found.items()
      }
      for found in runs
  ]
  methods = list(dict.fromkeys(method for found in runs for method in found))

  lines = [
      "# Experiment comparison",
      "",
      "Accuracy (%) of the final models, mean ± standard deviation over "
      "seeds (number of seeds in brackets).",
      "",
      "| work dir | path |",
      "| --- | --- |",
  ]
  lines += [
      f"| {label} | `{os.path.abspath(workdir)}` |"
      for label, workdir in zip(labels, workdirs)
  ]
  for split, header in (SPLITS[2], SPLITS[0], SPLITS[1]):
    if not any(
        split in summary
        for found in summaries
        for group in found.values()
        for summary in group
    ):
      continue
    lines += [
        "",
        f"## {header[:1].upper()}{header[1:]}",
        "",
        "| method | " + " | ".join(labels) + " |",
        "| --- |" + " --- |" * len(labels),
    ]
    for method in methods:
      cells = [
          _cell(
              [
                  summary[split]["accuracy"]
                  for summary in found.get(method, ())
                  if split in summary
              ]
          )
          for found in summaries
      ]
      lines.append(f"| {method} | " + " | ".join(cells) + " |")
  gaps = []
  for label, workdir in zip(labels, workdirs):
    results_path = os.path.join(workdir, RESULTS_FILE)
    if os.path.isfile(results_path):
      gaps += [
          (label, row)
          for row in read_json(results_path).get("negative_transfer") or ()
      ]
  if gaps:
    lines += [
        "",
        "## Negative transfer",
        "",
        "ε(method) − ε(target_only) on the target test split, inductive "
        "methods, 95% interval over paired seeds.",
        "",
        "| work dir | method | gap (points) | 95% CI | verdict |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {label} | {row['method']} | {100 * row['gap']:+.1f} | "
        f"[{100 * row['low']:+.1f}, {100 * row['high']:+.1f}] | "
        f"{row['verdict']} |"
        for label, row in gaps
    ]
  links = [
      (label, method, os.path.join(run_dir, REPORT_FILE))
      for label, found in zip(labels, runs)
      for method, dirs in found.items()
      for run_dir in dirs
      if os.path.isfile(os.path.join(run_dir, REPORT_FILE))
  ]
  if links:
    lines += ["", "## Run reports", ""]
    lines += [
        f"- {label} / {method} / "
        f"{os.path.basename(os.path.dirname(report_path))}: "
        f"[report]({os.path.relpath(report_path, parent)})"
        for label, method, report_path in links
    ]
  markdown = "\n".join(lines) + "\n"
  if path is not None:
    with open(path, "w", encoding="utf-8") as stream:
      stream.write(markdown)
  return markdown


def report_experiment(
    workdir,
    *,
    features: str | None = "pca",
    max_points: int = 500,
    progress: bool = False,
    stream=None,
) -> str:
  """Every run's :func:`run_report`, then ``workdir/report.md`` linking them.

  The hook for the end of :func:`tljax.train.experiment.run_experiment`:
  the data are loaded once and shared by the runs' feature pictures, and
  each run's features are computed once (the same seed's ``source_only``
  panel is in several pictures).

  Args:
    workdir: an experiment directory.
    features: ``"pca"``, ``"tsne"`` or ``None`` (no feature pictures).
    max_points: test examples per domain in the feature pictures.
    progress: print a line as each picture or table starts (``report: run
      2 of 9: jan/seed_1: features (PCA) [4s]``; see
      :class:`tljax.train.progress.Stages`) on ``stream`` (default standard
      error).

  Returns:
    The path of ``workdir/report.md``.
  """
  workdir = check_experiment_dir(workdir)
  say = Stages("report", enabled=progress, stream=stream)
  cache: dict = {}
  features_cache: dict = {}
  finished = [
      run_dir
      for dirs in experiment_runs(workdir).values()
      for run_dir in dirs
      if Run.open(run_dir).finished
  ]
  for index, run_dir in enumerate(finished):
    label = f"run {index + 1} of {len(finished)}: " + os.path.relpath(
        run_dir, workdir
    )
    run_report(
        run_dir,
        features=features,
        max_points=max_points,
        domains_cache=cache,
        features_cache=features_cache,
        progress=lambda stage, label=label: say(f"{label}: {stage}"),
    )
  path = os.path.join(workdir, REPORT_FILE)
  say(f"the experiment's {REPORT_FILE}")
  experiment_report([workdir], path)
  return path
