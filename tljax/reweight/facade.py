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

import inspect
from typing import Any

import numpy as np

from tljax.reweight._common import check_domains
from tljax.reweight.boosting._base import check_learner
from tljax.reweight.boosting.learners import (
    WeightedLogisticRegression,
    WeightedRidge,
)
from tljax.reweight.classifier import classifier_density_ratio
from tljax.reweight.kliep import kliep
from tljax.reweight.kmm import kmm
from tljax.reweight.lsif import rulsif, ulsif
from tljax.reweight.nearest_neighbors import nearest_neighbors_weighting

__all__ = [
    "ESTIMATORS",
    "ImportanceWeightedClassifier",
    "ImportanceWeightedRegressor",
    "estimate_weights",
]

ESTIMATORS = {
    "kmm": kmm,
    "kliep": kliep,
    "ulsif": ulsif,
    "rulsif": rulsif,
    "classifier_density_ratio": classifier_density_ratio,
    "nearest_neighbors_weighting": nearest_neighbors_weighting,
    "uniform": None,
}


def estimate_weights(
    estimator: str, source: Any, target: Any, **kwargs
) -> np.ndarray:
  """One non-negative weight per source row by the named estimator.

  ``"uniform"`` gives all ones (the unweighted baseline). ``kwargs`` go to
  the estimator (e.g. ``B`` for KMM, ``alpha`` for RuLSIF).

  Raises:
    ValueError: an unknown ``estimator`` (the message lists the known ones),
      a keyword argument it does not take (named), malformed ``source`` or
      ``target`` (also for ``"uniform"``), or what the estimator raises for
      its arguments.
  """
  _check_estimator(estimator, kwargs)
  if estimator == "uniform":
    source, _ = check_domains(source, target)
    return np.ones(source.shape[0])
  result = ESTIMATORS[estimator](source, target, **kwargs)
  return np.asarray(getattr(result, "weights", result), np.float64)


def _check_estimator(estimator: Any, kwargs: dict) -> None:
  """A known estimator name, and keyword arguments that it takes."""
  if not isinstance(estimator, str) or estimator not in ESTIMATORS:
    raise ValueError(
        f"estimator {estimator!r} is unknown; allowed: " f"{sorted(ESTIMATORS)}"
    )
  function = ESTIMATORS[estimator]
  allowed = (
      []
      if function is None
      else [
          name
          for name, parameter in inspect.signature(function).parameters.items()
          if parameter.kind is inspect.Parameter.KEYWORD_ONLY
      ]
  )
  for name in kwargs:
    if name not in allowed:
      raise ValueError(
          f"{name} is not an argument of estimator {estimator!r}; "
          f"allowed: {allowed}"
      )


class _ImportanceWeighted:
  _default_learner = None

  def __init__(
      self, estimator: str = "kmm", learner: Any = None, **estimator_kwargs
  ):
    _check_estimator(estimator, estimator_kwargs)
    if learner is not None:
      check_learner(learner)
    self.estimator = estimator
    self.learner = learner
    self.estimator_kwargs = estimator_kwargs

  def get_params(self, deep: bool = True) -> dict:
    del deep
    return {
        "estimator": self.estimator,
        "learner": self.learner,
        **self.estimator_kwargs,
    }

  def fit(self, source_inputs, source_labels, target_inputs):
    """Estimates ``weights_`` from both domains' inputs, then fits the learner.

    Raises:
      ValueError: on ``source_labels`` of the wrong length or not finite
        numbers, malformed inputs (named by the estimator), or weights that
        are all zero (e.g. uLSIF's when its fit is 0 at every source
        example), naming ``estimator``.
    """
    source_inputs = np.asarray(source_inputs)
    source_labels = np.asarray(source_labels)
    if source_labels.shape[:1] != source_inputs.shape[:1]:
      raise ValueError(
          f"source_labels must have one entry per row of "
          f"source_inputs ({source_inputs.shape[:1]}), got shape "
          f"{source_labels.shape}"
      )
    if not _is_real(source_labels) or not np.all(
        np.isfinite(source_labels.astype(np.float64))
    ):
      raise ValueError("source_labels must be finite numbers.")
    self.weights_ = estimate_weights(
        self.estimator, source_inputs, target_inputs, **self.estimator_kwargs
    )
    if not (
        np.all(np.isfinite(self.weights_))
        and np.all(self.weights_ >= 0)
        and self.weights_.sum() > 0
    ):
      raise ValueError(
          f"estimator {self.estimator!r} gave unusable weights (min "
          f"{self.weights_.min():g}, sum {self.weights_.sum():g}): all zero or "
          "not finite; try another estimator or its arguments"
      )
    if self.learner is None:
      self.learner_ = self._default_learner()
    else:
      from sklearn.base import clone

      self.learner_ = clone(self.learner)
    # Mean-1 weights: the learner's regularisation means what it does unweighted.
    self.learner_.fit(
        source_inputs,
        source_labels,
        sample_weight=self.weights_ / self.weights_.mean(),
    )
    return self

  def predict(self, inputs):
    """The fitted learner's predictions."""
    if not hasattr(self, "learner_"):
      raise ValueError(
          "call fit(source_inputs, source_labels, target_inputs) "
          "before predict"
      )
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

  _default_learner = WeightedLogisticRegression

  def score(self, inputs, labels) -> float:
    """Accuracy on ``(inputs, labels)``."""
    predictions = self.predict(inputs)
    return float(
        np.mean(
            predictions
            == _check_score_labels(labels, "labels", predictions.shape)
        )
    )


class ImportanceWeightedRegressor(_ImportanceWeighted):
  """Importance-weighted regressor (default learner: weighted ridge regression).

  Same arguments and attributes as :class:`ImportanceWeightedClassifier`.
  """

  _default_learner = WeightedRidge

  def score(self, inputs, targets) -> float:
    """Mean squared error on ``(inputs, targets)`` (lower is better)."""
    predictions = self.predict(inputs)
    targets = _check_score_labels(targets, "targets", predictions.shape)
    return float(np.mean((predictions - targets.astype(np.float64)) ** 2))


def _is_real(array: np.ndarray) -> bool:
  return (
      np.issubdtype(array.dtype, np.floating)
      or np.issubdtype(array.dtype, np.integer)
      or array.dtype == np.bool_
  )


def _check_score_labels(labels: Any, argument: str, shape: tuple) -> np.ndarray:
  labels = np.asarray(labels)
  if labels.shape != shape:
    raise ValueError(
        f"{argument} must have shape {shape} (one per row of "
        f"inputs), got {labels.shape}"
    )
  if not _is_real(labels) or not np.all(np.isfinite(labels.astype(np.float64))):
    raise ValueError(f"{argument} must be finite numbers.")
  return labels
