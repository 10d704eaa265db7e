"""Transferability scores against the accuracy transfer actually reached."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping

import numpy as np
from scipy import stats

from tljax.report import _figure
from tljax.report.runs import read_json

RANK_SOURCES_JSON = "rank_sources.json"  # what scripts/rank_sources.py writes


def _vector(values, argument: str, size: int | None = None) -> np.ndarray:
  values = np.asarray(values, np.float64)
  if values.ndim != 1 or values.size < 2:
    raise ValueError(
        f"{argument} must be a 1-D sequence of at least 2 "
        f"numbers, got shape {values.shape}"
    )
  if size is not None and values.size != size:
    raise ValueError(
        f"{argument} must have one entry per source ({size}), got "
        f"{values.size}"
    )
  if not np.all(np.isfinite(values)):
    raise ValueError(f"{argument} must be finite")
  return values


def kendall_tau(scores, accuracies) -> float:
  """Kendall's τ-b of scores and accuracies (``scipy.stats.kendalltau``)."""
  return float(stats.kendalltau(scores, accuracies).statistic)


def plot_ranking(
    scores,
    accuracies,
    path,
    labels,
    *,
    score_name: str = "score",
    reference_score=None,
    reference_accuracy: float | None = None,
    title: str | None = None,
) -> str:
  """Each source's transferability score against its measured accuracy.

  One panel per score, the sources as labelled points (measured target test
  accuracy on x, score on y), Kendall's τ between the two in the panel's
  title (+1: the score ranks the sources exactly as transfer does).

  Args:
    scores: ``(S,)`` scores of the S sources, or ``{score name: (S,)}`` for
      one panel per score (what ``scripts/rank_sources.py`` computes).
    accuracies: ``(S,)`` measured accuracies in [0, 1] (e.g. the mean over
      seeds of the fine-tuned target test accuracy).
    path: the ``.png`` file to write (its directory must exist).
    labels: ``(S,)`` source names.
    score_name: the y-axis label when ``scores`` is a sequence.
    reference_score: the untrained network's score (a number, or ``{score
      name: number}``), drawn as a horizontal line: sources below it are
      predicted to transfer negatively.
    reference_accuracy: the target-only accuracy, drawn as a vertical line:
      sources left of it did transfer negatively.
    title: the figure's title.

  Returns:
    ``path``.
  """
  path = _figure.check_png_path(path)
  accuracies = _vector(accuracies, "accuracies")
  if isinstance(labels, str) or len(labels) != accuracies.size:
    raise ValueError(
        f"labels must be one name per source ({accuracies.size}), "
        f"got {labels!r}"
    )
  if isinstance(scores, Mapping):
    if not scores:
      raise ValueError("scores is an empty mapping; give at least one score")
    named = {
        str(name): _vector(values, f"scores[{name!r}]", accuracies.size)
        for name, values in scores.items()
    }
  else:
    named = {score_name: _vector(scores, "scores", accuracies.size)}
  if reference_score is not None and not isinstance(reference_score, Mapping):
    reference_score = {name: reference_score for name in named}
  columns = min(3, len(named))
  rows = math.ceil(len(named) / columns)
  figure, axes = _figure.new_figure(rows, columns)
  for axis, (name, values) in zip(axes.flat, named.items()):
    axis.scatter(100 * accuracies, values, color="tab:blue", zorder=3)
    for label, x, y in zip(labels, 100 * accuracies, values):
      axis.annotate(
          str(label),
          (x, y),
          textcoords="offset points",
          xytext=(4, 4),
          fontsize="small",
      )
    if reference_score is not None and name in reference_score:
      axis.axhline(
          reference_score[name],
          color="grey",
          linestyle="--",
          label="untrained network",
      )
    if reference_accuracy is not None:
      axis.axvline(
          100 * reference_accuracy,
          color="tab:red",
          linestyle=":",
          label="target only",
      )
    tau = kendall_tau(values, accuracies)
    tau_text = f"{tau:+.2f}" if np.isfinite(tau) else "undefined"
    axis.set_title(f"{name}: Kendall τ = {tau_text}")
    axis.set_xlabel("measured target test accuracy (%)")
    axis.set_ylabel(name if len(named) > 1 else score_name)
    axis.grid(alpha=0.3)
    if reference_score is not None or reference_accuracy is not None:
      axis.legend(fontsize="small")
  for axis in list(axes.flat)[len(named) :]:
    axis.set_visible(False)
  if title:
    figure.suptitle(title)
  return _figure.save(figure, path)


def read_rank_sources(results) -> tuple[dict, str | None]:
  """``(results dict, its directory)`` from a dict, a ``rank_sources.json`` or its dir."""
  if isinstance(results, Mapping):
    return dict(results), None
  if not isinstance(results, (str, os.PathLike)):
    raise ValueError(
        f"results must be a rank_sources.json path, a directory "
        f"holding one, or its parsed dict; got {results!r}"
    )
  results = os.fspath(results)
  if os.path.isdir(results):
    results = os.path.join(results, RANK_SOURCES_JSON)
  if not os.path.isfile(results):
    raise ValueError(
        f"results {results!r} does not exist (run "
        "scripts/rank_sources.py with --workdir to write it)"
    )
  return read_json(results), os.path.dirname(os.path.abspath(results))


def plot_rank_sources(results, directory=None) -> list[str]:
  """Scores against fine-tuned accuracy from ``scripts/rank_sources.py``'s JSON.

  ``rank_sources.py --verify`` writes ``rank_sources.json`` with every
  source's mean scores (``sources[i]["scores"]``), the untrained reference's
  (``reference``) and the measured target test accuracy per verification
  method, source and seed (``verification["accuracy"]``, with
  ``verification["target_only"]``). One figure per verification method,
  ``rank_sources_<method>.png``, one panel per score (:func:`plot_ranking`
  on the accuracy's mean over seeds).

  Args:
    results: the parsed JSON, the file, or the directory holding it.
    directory: where the pictures go (default: the JSON's directory).

  Returns:
    The paths written.
  """
  results, json_dir = read_rank_sources(results)
  directory = directory if directory is not None else json_dir
  if directory is None or not os.path.isdir(directory):
    raise ValueError(f"directory {directory!r} is not an existing directory")
  sources = results.get("sources")
  if not isinstance(sources, list) or len(sources) < 2:
    raise ValueError(
        "results must list at least 2 scored sources " "(results['sources'])"
    )
  verification = results.get("verification")
  if not verification or not verification.get("accuracy"):
    raise ValueError(
        "results has no measured accuracies: run "
        "scripts/rank_sources.py with --verify to plot scores "
        "against them"
    )
  names = [row["name"] for row in sources]
  score_names = list(results.get("scores") or sources[0]["scores"])
  reference = results.get("reference") or {}
  target_only = verification.get("target_only")
  by_source = verification.get("target_only_by_source") or {}
  if len({tuple(values) for values in by_source.values()}) > 1:
    # One reference per architecture (a zoo): no single line to draw.
    target_only = None
  paths = []
  for method, accuracy in verification["accuracy"].items():
    missing = [name for name in names if name not in accuracy]
    if missing:
      raise ValueError(f"results: no {method!r} accuracy for sources {missing}")
    safe = re.sub(r"[^\w.-]", "_", str(method))
    path = os.path.join(directory, f"rank_sources_{safe}.png")
    plot_ranking(
        {
            score: [row["scores"][score] for row in sources]
            for score in score_names
        },
        [float(np.mean(accuracy[name])) for name in names],
        path,
        names,
        reference_score=reference.get("scores"),
        reference_accuracy=(
            float(np.mean(target_only)) if target_only else None
        ),
        title=f"scores against {method}'s target test accuracy (mean over "
        f"{np.size(accuracy[names[0]])} seeds)",
    )
    paths.append(path)
  return paths
