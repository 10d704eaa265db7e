"""What the boosting learners and algorithms share: NumPy argument checks, fits.

The data stay NumPy float64 here, so that scikit-learn learners see them as
their users passed them; each check raises a ``ValueError`` naming the
argument. :func:`fit_clone`, :func:`predict` and :func:`predict_real` are how
the algorithms call any learner (tljax's or scikit-learn's).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def as_numeric(array: Any, argument: str) -> np.ndarray:
  try:
    array = np.asarray(array)
  except Exception as error:  # e.g. a jax tracer
    raise ValueError(
        f"{argument} must be a concrete array of numbers: {error}"
    ) from None
  if array.dtype == np.bool_:
    return array.astype(np.int64)
  if not (
      np.issubdtype(array.dtype, np.floating)
      or np.issubdtype(array.dtype, np.integer)
  ):
    raise ValueError(
        f"{argument} must hold real numbers, got dtype {array.dtype}."
    )
  return array


def check_inputs(array: Any, argument: str, rows: str) -> np.ndarray:
  """A finite ``(rows, dim)`` matrix with both sizes positive, as float64."""
  array = as_numeric(array, argument)
  if array.ndim != 2 or 0 in array.shape:
    raise ValueError(
        f"{argument} must have shape ({rows}, dim) with both sizes positive, got "
        f"shape {array.shape}."
    )
  if not np.all(np.isfinite(array)):
    raise ValueError(f"{argument} must be finite (it holds NaN or infinity).")
  return array.astype(np.float64)


def check_same_columns(
    first: np.ndarray,
    second: np.ndarray,
    first_argument: str,
    second_argument: str,
) -> None:
  if first.shape[1] != second.shape[1]:
    raise ValueError(
        f"{second_argument} must have the feature dimension of {first_argument} "
        f"({first.shape[1]}), got shape {second.shape}."
    )


def check_example_labels(
    labels: Any, argument: str, *, length: int, length_of: str, integer: bool
) -> np.ndarray:
  """Finite ``(length,)`` labels; integer-valued if ``integer`` (returned as int64)."""
  labels = as_numeric(labels, argument)
  if labels.shape != (length,):
    raise ValueError(
        f"{argument} must have shape ({length},) (one label per row of "
        f"{length_of}), got shape {labels.shape}."
    )
  if not np.all(np.isfinite(labels)):
    raise ValueError(f"{argument} must be finite (it holds NaN or infinity).")
  if not integer:
    return labels.astype(np.float64)
  if not np.all(labels == np.round(labels)):
    raise ValueError(
        f"{argument} must hold integer class labels, got non-integer values such as "
        f"{labels[labels != np.round(labels)][0]!r}."
    )
  return labels.astype(np.int64)


def check_sample_weight(weights: Any, argument: str, length: int) -> np.ndarray:
  """``None`` (ones) or finite non-negative ``(length,)`` weights with a positive sum."""
  if weights is None:
    return np.ones(length)
  weights = as_numeric(weights, argument)
  if weights.shape != (length,):
    raise ValueError(
        f"{argument} must have shape ({length},) (one weight per example), got "
        f"shape {weights.shape}."
    )
  weights = weights.astype(np.float64)
  if not np.all(np.isfinite(weights)) or np.any(weights < 0):
    raise ValueError(f"{argument} must be finite and non-negative.")
  if not weights.sum() > 0:
    raise ValueError(f"{argument} must have a positive sum.")
  return weights


def check_learner(learner: Any) -> None:
  if not (
      callable(getattr(learner, "fit", None))
      and callable(getattr(learner, "predict", None))
      and callable(getattr(learner, "get_params", None))
  ):
    raise ValueError(
        "learner must be None or an unfitted estimator with get_params(), "
        "fit(X, y, sample_weight=...) and predict(X) (a tljax learner of this "
        f"module or a scikit-learn estimator), got {learner!r}."
    )


def check_choice(value: Any, argument: str, allowed: tuple[str, ...]) -> str:
  if not isinstance(value, str) or value not in allowed:
    raise ValueError(
        f"{argument} must be one of {', '.join(map(repr, allowed))}, got {value!r}."
    )
  return value


def fit_clone(
    learner: Any,
    inputs: np.ndarray,
    labels: np.ndarray,
    distribution: np.ndarray,
) -> Any:
  """A fresh clone of ``learner`` fitted with ``sample_weight = len(p) · p``."""
  from sklearn.base import clone  # pylint: disable=g-import-not-at-top

  fitted = clone(learner)
  fitted.fit(inputs, labels, sample_weight=distribution * len(distribution))
  return fitted


def predict(learner: Any, inputs: np.ndarray) -> np.ndarray:
  predictions = np.asarray(learner.predict(inputs))
  if predictions.shape != (inputs.shape[0],):
    raise ValueError(
        f"learner.predict must return one prediction per row, shape "
        f"({inputs.shape[0]},), got shape {predictions.shape}."
    )
  return predictions


def predict_real(learner: Any, inputs: np.ndarray) -> np.ndarray:
  predictions = predict(learner, inputs).astype(np.float64)
  if not np.all(np.isfinite(predictions)):
    raise ValueError("learner.predict returned NaN or infinity.")
  return predictions


def check_predict_inputs(inputs: Any, num_features: int, argument: str = "X"):
  """``inputs`` as :func:`check_inputs` wants them, with the fitted feature count."""
  inputs = check_inputs(inputs, argument, "num_examples")
  if inputs.shape[1] != num_features:
    raise ValueError(
        f"{argument} must have the feature dimension of the fitted data "
        f"({num_features}), got shape {inputs.shape}."
    )
  return inputs
