"""A scikit-learn-style front end for tabular users: weight, then fit.

:class:`ImportanceWeightedClassifier` and :class:`ImportanceWeightedRegressor`
are thin over the pure functions: ``fit(Xs, ys, Xt)`` estimates the source
weights with one of the estimators of :mod:`tljax.reweight` (``weights_``),
then fits a learner on the weighted source examples (importance-weighted
ERM, Shimodaira 2000) — by default tljax's JAX learners
(:class:`~tljax.reweight.boosting.WeightedLogisticRegression`,
:class:`~tljax.reweight.boosting.WeightedRidge`), or any scikit-learn
estimator whose ``fit`` takes ``sample_weight`` (it is cloned).

  model = ImportanceWeightedClassifier("kliep").fit(Xs, ys, Xt)
  model.weights_, model.predict(Xt)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tljax.reweight import boosting
from tljax.reweight.classifier import classifier_density_ratio
from tljax.reweight.kliep import kliep
from tljax.reweight.kmm import kmm
from tljax.reweight.lsif import rulsif, ulsif
from tljax.reweight.nearest_neighbors import nearest_neighbors_weighting

__all__ = ["ESTIMATORS", "ImportanceWeightedClassifier",
           "ImportanceWeightedRegressor", "estimate_weights"]

ESTIMATORS = {
    "kmm": kmm,
    "kliep": kliep,
    "ulsif": ulsif,
    "rulsif": rulsif,
    "classifier_density_ratio": classifier_density_ratio,
    "nearest_neighbors_weighting": nearest_neighbors_weighting,
    "uniform": None,
}


def estimate_weights(estimator: str, source: Any, target: Any,
                     **kwargs) -> np.ndarray:
  """One non-negative weight per source row by the named estimator.

  ``"uniform"`` gives all ones (the unweighted baseline). ``kwargs`` go to
  the estimator (e.g. ``B`` for KMM, ``alpha`` for RuLSIF).

  Raises:
    ValueError: an unknown ``estimator`` (the message lists the known ones),
      or what the estimator raises for its arguments.
  """
  if estimator not in ESTIMATORS:
    raise ValueError(f"estimator {estimator!r} is unknown; allowed: "
                     f"{sorted(ESTIMATORS)}")
  source = np.asarray(source)
  if estimator == "uniform":
    if source.ndim != 2 or not len(source):
      raise ValueError(f"source must be a non-empty (n, d) matrix, got shape "
                       f"{source.shape}")
    return np.ones(len(source))
  result = ESTIMATORS[estimator](source, target, **kwargs)
  return np.asarray(getattr(result, "weights", result), np.float64)


class _ImportanceWeighted:
  _default_learner = None

  def __init__(self, estimator: str = "kmm", learner: Any = None,
               **estimator_kwargs):
    if estimator not in ESTIMATORS:
      raise ValueError(f"estimator {estimator!r} is unknown; allowed: "
                       f"{sorted(ESTIMATORS)}")
    self.estimator = estimator
    self.learner = learner
    self.estimator_kwargs = estimator_kwargs

  def get_params(self, deep: bool = True) -> dict:
    del deep
    return {"estimator": self.estimator, "learner": self.learner,
            **self.estimator_kwargs}

  def fit(self, source_inputs, source_labels, target_inputs):
    """Estimates ``weights_`` from both domains' inputs, then fits the learner."""
    source_inputs = np.asarray(source_inputs)
    source_labels = np.asarray(source_labels)
    if source_labels.shape[:1] != source_inputs.shape[:1]:
      raise ValueError(f"source_labels must have one entry per row of "
                       f"source_inputs ({source_inputs.shape[:1]}), got shape "
                       f"{source_labels.shape}")
    self.weights_ = estimate_weights(self.estimator, source_inputs,
                                     target_inputs, **self.estimator_kwargs)
    if self.learner is None:
      self.learner_ = self._default_learner()
    else:
      from sklearn.base import clone
      self.learner_ = clone(self.learner)
    # Mean-1 weights: the learner's regularisation means what it does unweighted.
    self.learner_.fit(source_inputs, source_labels,
                      sample_weight=self.weights_ / self.weights_.mean())
    return self

  def predict(self, inputs):
    """The fitted learner's predictions."""
    if not hasattr(self, "learner_"):
      raise ValueError("call fit(source_inputs, source_labels, target_inputs) "
                       "before predict")
    return np.asarray(self.learner_.predict(inputs))


class ImportanceWeightedClassifier(_ImportanceWeighted):
  """Importance-weighted classifier (default learner: weighted logistic regression).

  Args:
    estimator: a name of :data:`ESTIMATORS` (``"uniform"``: no weighting).
    learner: ``None`` or a scikit-learn classifier taking ``sample_weight``.
    **estimator_kwargs: passed to the estimator.

  Attributes (after ``fit``): ``weights_`` (the raw estimated weights),
  ``learner_`` (the fitted learner).
  """
  _default_learner = boosting.WeightedLogisticRegression

  def score(self, inputs, labels) -> float:
    """Accuracy on ``(inputs, labels)``."""
    return float(np.mean(self.predict(inputs) == np.asarray(labels)))


class ImportanceWeightedRegressor(_ImportanceWeighted):
  """Importance-weighted regressor (default learner: weighted ridge regression).

  Same arguments and attributes as :class:`ImportanceWeightedClassifier`.
  """
  _default_learner = boosting.WeightedRidge

  def score(self, inputs, targets) -> float:
    """Mean squared error on ``(inputs, targets)`` (lower is better)."""
    return float(np.mean((self.predict(inputs) - np.asarray(targets)) ** 2))
