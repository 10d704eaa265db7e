"""Scoring candidate sources: transferability scores by name, rankings, τ, gaps.

The pure part of ranking source models for a target task (the workflow that
rebuilds source runs, extracts their features and trains verification
transfers is :mod:`tljax.train.rank_sources`, one floor up, since it runs
experiments). Everything here is a function of NumPy arrays or of plain
result rows (``{"name": ..., "scores": {score: value}}``):

* :data:`SCORES` — the transferability scores of :mod:`tljax.select` under
  one signature ``(features, source probabilities, labels, num_classes)``,
  every one higher-is-better; :func:`compute_scores` evaluates a selection.
* :func:`ranking` — source names by decreasing score.
* :func:`weighted_tau` and :func:`correlations` — how well a score predicted
  the measured target accuracies (weighted Kendall τ, Vigna 2015).
* :func:`transfer_gaps` and :func:`predicted_negative` — measured and
  predicted negative transfer (:func:`tljax.select.negative_transfer_gap`).
* :func:`pca` and :func:`effective_rank` — the feature helpers the scores
  and their diagnostics use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Callable

import numpy as np
from scipy import stats

from tljax.select.gbc import gbc
from tljax.select.hscore import h_score, shrinkage_h_score
from tljax.select.leep import leep
from tljax.select.logme import logme
from tljax.select.nce import nce
from tljax.select.negative_transfer import negative_transfer_gap
from tljax.select.transrate import transrate


def _score_nce(features, probabilities, labels, num_classes):
  del features
  return nce(
      np.argmax(probabilities, axis=1),
      labels,
      num_source_classes=probabilities.shape[1],
      num_target_classes=num_classes,
  )


GBC_PCA_DIM = 64


def pca(features: Any, dim: int) -> np.ndarray:
  """The features projected on their first ``min(dim, N, D)`` principal axes."""
  features = np.asarray(features, np.float64)
  centred = features - features.mean(axis=0)
  _, _, axes = np.linalg.svd(centred, full_matrices=False)
  dim = min(int(dim), *features.shape)
  return (centred @ axes[:dim].T).astype(np.float32)


def _score_gbc(features, probabilities, labels, num_classes):
  # As Pándy et al.'s code: PCA to 64 dimensions first; on the raw features
  # (hundreds of dimensions, a few examples per class) every class pair's
  # Bhattacharyya overlap underflows to 0 and GBC cannot tell models apart.
  del probabilities
  return gbc(pca(features, GBC_PCA_DIM), labels, num_classes=num_classes)


# name → (features, source probabilities, labels, num_classes) → score.
# Every score is higher-is-better.
SCORES: dict[str, Callable[..., Any]] = {
    "logme": lambda f, p, y, c: logme(f, y, num_classes=c),
    "leep": lambda f, p, y, c: leep(p, y, num_target_classes=c),
    "nce": _score_nce,
    "h_score": lambda f, p, y, c: h_score(f, y, num_classes=c),
    "shrinkage_h_score": lambda f, p, y, c: shrinkage_h_score(
        f, y, num_classes=c
    ),
    "gbc": _score_gbc,
    "transrate": lambda f, p, y, c: transrate(f, y, num_classes=c),
}
SCORE_NAMES = tuple(SCORES)
SCORE_TITLES = {
    "logme": "LogME",
    "leep": "LEEP",
    "nce": "NCE",
    "h_score": "H-score",
    "shrinkage_h_score": "shrinkage H-score",
    "gbc": "GBC",
    "transrate": "TransRate",
}


def check_score_names(names: Sequence[str]) -> tuple[str, ...]:
  """The score names, validated; ``ValueError`` naming unknown ones."""
  if isinstance(names, str):
    names = (names,)
  names = tuple(names)
  unknown = [name for name in names if name not in SCORES]
  if unknown or not names:
    raise ValueError(
        f"unknown score names {unknown}; known scores: " f"{list(SCORE_NAMES)}"
        if unknown
        else f"no score names given; known scores: {list(SCORE_NAMES)}"
    )
  if len(set(names)) != len(names):
    raise ValueError(f"score names are repeated: {list(names)}")
  return names


def compute_scores(
    features: Any,
    probabilities: Any,
    labels: Any,
    *,
    num_classes: int,
    scores: Sequence[str] = SCORE_NAMES,
) -> dict[str, float]:
  """Every requested score of one model on one labeled target set.

  Args:
    features: ``(N, D)`` features of the labeled target examples.
    probabilities: ``(N, Z)`` source-head class probabilities on them (LEEP;
      NCE uses their argmax as the source label).
    labels: ``(N,)`` target labels in ``[0, num_classes)``.
    num_classes: the number of target classes.
    scores: names from :data:`SCORE_NAMES`.

  Returns:
    ``{score name: value}`` as Python floats (higher is better). Every score
    is the :mod:`tljax.select` function on these arrays, GBC on the
    features' first 64 principal components (:func:`pca`), as its authors
    compute it.
  """
  scores = check_score_names(scores)
  features = np.asarray(features, np.float32)
  probabilities = np.asarray(probabilities, np.float32)
  labels = np.asarray(labels, np.int32)
  return {
      name: float(SCORES[name](features, probabilities, labels, num_classes))
      for name in scores
  }


def effective_rank(features: Any) -> float:
  """The participation ratio (Σσ²)² / Σσ⁴ of the centred features' spectrum.

  A diagnostic, not a score: how many directions the features spread over
  (1 for features on a line, D for isotropic ones).
  """
  features = np.asarray(features, np.float64)
  variances = (
      np.linalg.svd(features - features.mean(axis=0), compute_uv=False) ** 2
  )
  total = variances.sum()
  return float(total**2 / np.sum(variances**2)) if total > 0 else 0.0


def ranking(rows: Sequence[Mapping], score: str) -> list[str]:
  """Source names by decreasing ``score`` (ties keep the input order)."""
  check_score_names([score])
  order = sorted(range(len(rows)), key=lambda i: -rows[i]["scores"][score])
  return [rows[i]["name"] for i in order]


def weighted_tau(scores: Sequence[float], accuracies: Sequence[float]) -> float:
  """Weighted Kendall τ of scores and accuracies, ranked by the accuracies.

  ``scipy.stats.weightedtau(accuracies, scores, rank=None)``: hyperbolic
  weights by the decreasing rank of the measured accuracy, so disagreements
  among the best sources weigh most.
  """
  scores = np.asarray(scores, np.float64)
  accuracies = np.asarray(accuracies, np.float64)
  if scores.shape != accuracies.shape or scores.ndim != 1 or scores.size < 2:
    raise ValueError(
        f"scores and accuracies must be 1-D of one length >= 2, "
        f"got shapes {scores.shape} and {accuracies.shape}"
    )
  return float(stats.weightedtau(accuracies, scores, rank=None).statistic)


def correlations(
    rows: Sequence[Mapping],
    accuracy: Mapping[str, Sequence[float]],
    scores: Sequence[str],
) -> dict[str, dict[str, float]]:
  """Per score: weighted τ and Kendall τ against the mean measured accuracy."""
  names = [row["name"] for row in rows]
  measured = [float(np.mean(accuracy[name])) for name in names]
  result = {}
  for score in scores:
    values = [row["scores"][score] for row in rows]
    result[score] = {
        "weighted_tau": weighted_tau(values, measured),
        "kendall_tau": float(stats.kendalltau(values, measured).statistic),
    }
  return result


def transfer_gaps(
    accuracy: Mapping[str, Sequence[float]], target_only: Sequence[float]
) -> dict[str, dict]:
  """Per source: ε(transfer) − ε(target only), paired over seeds, 95 % CI."""
  reference = [1 - value for value in target_only]
  gaps = {}
  for name, values in accuracy.items():
    gap = negative_transfer_gap([1 - value for value in values], reference)
    gaps[name] = {
        "gap": gap.gap,
        "low": gap.low,
        "high": gap.high,
        "seeds": gap.num_seeds,
        "verdict": gap.verdict,
    }
  return gaps


def predicted_negative(
    rows: Sequence[Mapping], reference: Mapping, scores: Sequence[str]
) -> dict[str, list[str]]:
  """Per score: the sources scoring below the untrained network."""
  return {
      score: [
          row["name"]
          for row in rows
          if row["scores"][score] < reference["scores"][score]
      ]
      for score in scores
  }
