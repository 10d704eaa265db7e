"""Importance weights at a glance: their spread and where they fall in input space."""

from __future__ import annotations

import numpy as np

from tljax.report import _figure


def effective_sample_size(weights) -> float:
  """Kish's effective sample size (Σw)² / Σw² of non-negative weights.

  ``n`` for uniform weights, 1 when one example carries all the weight: how
  many unweighted examples the weighted sample is worth (Kish 1965).
  """
  weights = np.asarray(weights, np.float64)
  return float(weights.sum() ** 2 / np.sum(weights**2))


def _feature_axis(features, count: int, name: str) -> tuple[np.ndarray, str]:
  features = np.asarray(features, np.float64)
  if features.ndim == 1:
    features = features[:, None]
  if features.ndim != 2 or features.shape[0] != count or features.shape[1] < 1:
    raise ValueError(
        f"features must be (n,) or (n, d) with one row per weight "
        f"(n = {count}), got shape {features.shape}"
    )
  if not np.all(np.isfinite(features)):
    raise ValueError("features must be finite")
  if features.shape[1] == 1:
    return features[:, 0], name
  # The direction of largest variance: the most informative single axis.
  centred = features - features.mean(axis=0)
  _, _, axes = np.linalg.svd(centred, full_matrices=False)
  return centred @ axes[0], f"first principal component of the {name}"


def plot_weights(
    weights,
    path,
    *,
    features=None,
    feature_name: str = "features",
    title: str | None = None,
) -> str:
  """A histogram of importance weights and, with ``features``, weight against input.

  For the reweighting methods: ``ImportanceWeightedClassifier(...).fit(...)
  .weights_``, :func:`tljax.reweight.kmm` and the other estimators, or the
  mean-1 weights an ``importance_weighting`` run keeps in its checkpoint.
  The histogram's title gives Kish's :func:`effective_sample_size`; a dashed
  line marks the mean weight. With ``features`` (one row per weight) a
  second panel plots each weight against the feature (``(n,)`` or
  ``(n, 1)``) or, for ``(n, d)`` with ``d > 1``, against the projection on
  the features' first principal component.

  Args:
    weights: ``(n,)`` non-negative finite weights, not all zero.
    path: the ``.png`` file to write (its directory must exist).
    features: ``None``, ``(n,)`` or ``(n, d)``.
    feature_name: what the features are, for the axis label.
    title: the figure's title.

  Returns:
    ``path``.
  """
  path = _figure.check_png_path(path)
  weights = np.asarray(weights, np.float64)
  if weights.ndim != 1 or weights.size < 2:
    raise ValueError(
        f"weights must be a 1-D array of at least 2 weights, got "
        f"shape {weights.shape}"
    )
  if (
      not np.all(np.isfinite(weights))
      or np.any(weights < 0)
      or weights.sum() <= 0
  ):
    raise ValueError("weights must be finite, non-negative and not all zero")
  columns = 1 if features is None else 2
  feature, feature_label = (
      (None, None)
      if features is None
      else _feature_axis(features, weights.size, feature_name)
  )
  figure, axes = _figure.new_figure(1, columns)
  histogram = axes[0, 0]
  bins = int(np.clip(np.sqrt(weights.size), 10, 60))
  histogram.hist(weights, bins=bins, color="tab:blue", alpha=0.8)
  histogram.axvline(
      weights.mean(),
      color="black",
      linestyle="--",
      label=f"mean {weights.mean():.3g}",
  )
  histogram.set_xlabel("importance weight w(x)")
  histogram.set_ylabel("source examples")
  histogram.set_title(
      f"effective sample size "
      f"{effective_sample_size(weights):.0f} of {weights.size}"
  )
  histogram.legend(fontsize="small")
  if feature is not None:
    scatter = axes[0, 1]
    scatter.scatter(
        feature, weights, s=8, alpha=0.5, color="tab:blue", linewidths=0
    )
    scatter.set_xlabel(feature_label)
    scatter.set_ylabel("importance weight w(x)")
    scatter.set_title("weight against input")
    scatter.grid(alpha=0.3)
  if title:
    figure.suptitle(title)
  return _figure.save(figure, path)
