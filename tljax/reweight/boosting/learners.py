"""Weighted base learners fitted in JAX, with scikit-learn's estimator interface.

:class:`WeightedLogisticRegression` (L-BFGS) and :class:`WeightedRidge`
(closed form) take ``sample_weight`` in ``fit`` and have ``get_params`` /
``set_params``, so ``sklearn.base.clone`` copies them: they are the default
learners of the boosting algorithms (:mod:`tljax.reweight.boosting`) and of
the importance-weighted estimators (:mod:`tljax.reweight.facade`). Fits run
jitted on data padded to a power of two; predictions are NumPy float64.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from tljax.checks import check_int, check_positive
from tljax.reweight._common import power_of_two_exponent
from tljax.reweight.boosting._base import (
    check_example_labels,
    check_inputs,
    check_predict_inputs,
    check_sample_weight,
)
from tljax.solvers import minimize_lbfgs

__all__ = ["WeightedLogisticRegression", "WeightedRidge"]


class _Params:
  """``get_params``/``set_params`` as scikit-learn expects (so ``clone`` works)."""

  _param_names: tuple[str, ...] = ()

  def get_params(self, deep: bool = True) -> dict[str, Any]:
    del deep
    return {name: getattr(self, name) for name in self._param_names}

  def set_params(self, **params: Any):
    for name, value in params.items():
      if name not in self._param_names:
        raise ValueError(f"{name} is not a parameter of {type(self).__name__}.")
      setattr(self, name, value)
    self._check_params()
    return self

  def _check_params(self) -> None:
    raise NotImplementedError

  def __repr__(self) -> str:
    arguments = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
    return f"{type(self).__name__}({arguments})"


def _check_fit_data(
    inputs: Any, labels: Any, sample_weight: Any, *, integer: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  inputs = check_inputs(inputs, "X", "num_examples")
  labels = check_example_labels(
      labels, "y", length=inputs.shape[0], length_of="X", integer=integer
  )
  weights = check_sample_weight(sample_weight, "sample_weight", inputs.shape[0])
  return inputs, labels, weights / weights.sum()


def _padded(
    inputs: np.ndarray, labels: np.ndarray, weights: np.ndarray, label_dtype
):
  """JAX arrays padded with zero-weight rows up to a power of two (at least 8).

  Fits on similar sizes (the folds of a cross-validation, say) then share
  one compilation; the padding rows change neither objective.
  """
  padding = max(8, 1 << (inputs.shape[0] - 1).bit_length()) - inputs.shape[0]
  dtype = jnp.promote_types(jnp.float32, jnp.asarray(inputs).dtype)
  return (
      jnp.asarray(np.pad(inputs, ((0, padding), (0, 0))), dtype),
      jnp.asarray(np.pad(labels, (0, padding)), label_dtype or dtype),
      jnp.asarray(np.pad(weights, (0, padding)), dtype),
  )


def _check_fitted(learner: Any) -> None:
  if not hasattr(learner, "coef_"):
    raise ValueError(
        f"X: {type(learner).__name__} must be fitted (call fit(X, y)) before it "
        "predicts."
    )


class WeightedLogisticRegression(_Params):
  r"""L2-regularised logistic (softmax) regression with example weights, in JAX.

  Minimises, with ``p̃_i = s_i / Σ_j s_j`` the normalised ``sample_weight``::

    Σ_i p̃_i CE(W x_i + b, y_i) + λ/2 ‖W‖²

  (the intercept ``b`` is not penalised) by L-BFGS
  (:func:`tljax.solvers.minimize_lbfgs`) from zero. Two classes use one
  logit (sigmoid); more classes use one weight vector per class (softmax).
  This is scikit-learn's ``LogisticRegression(C=1 / (λ Σ_i s_i))`` objective
  (binary, or ``multinomial`` for more classes). Features are not
  standardised. Computation in float32 (float64 under ``jax_enable_x64``):
  with features at extreme scales (``1e30``) L-BFGS may stop at a poor but
  finite fit, and a fit that diverges to NaN raises a ``ValueError``
  naming ``X``; standardise such features. ``predict`` and friends before
  ``fit`` raise a ``ValueError`` too.

  Args:
    l2_regularization: ``λ > 0``.
    max_iterations: L-BFGS iteration cap, >= 1.
    tolerance: stop when the gradient norm falls below it, > 0.

  Attributes (after ``fit``):
    classes_: the sorted distinct labels seen by ``fit``.
    coef_: ``(1, d)`` for two classes, ``(K, d)`` for ``K > 2``.
    intercept_: ``(1,)`` or ``(K,)``.
  """

  _param_names = ("l2_regularization", "max_iterations", "tolerance")

  def __init__(
      self,
      l2_regularization: float = 1e-2,
      max_iterations: int = 500,
      tolerance: float = 1e-5,
  ):
    self.l2_regularization = l2_regularization
    self.max_iterations = max_iterations
    self.tolerance = tolerance
    self._check_params()

  def _check_params(self) -> None:
    check_positive(self.l2_regularization, "l2_regularization")
    check_int(self.max_iterations, "max_iterations", minimum=1)
    check_positive(self.tolerance, "tolerance")

  def fit(self, X: Any, y: Any, sample_weight: Any = None):  # noqa: N803
    """Fits on integer labels ``y`` with optional non-negative ``sample_weight``.

    Raises:
      ValueError: on a malformed ``X``, ``y`` (e.g. non-integer labels) or
        ``sample_weight``; the message names it.
    """
    inputs, labels, weights = _check_fit_data(X, y, sample_weight, integer=True)
    self.classes_, encoded = np.unique(labels, return_inverse=True)
    num_classes = len(self.classes_)
    dim = inputs.shape[1]
    if num_classes == 1:
      coef, intercept = np.zeros((1, dim)), np.zeros(1)
    else:
      inputs, encoded, weights = _padded(inputs, encoded, weights, jnp.int32)
      coef, intercept = _fit_logistic(
          inputs,
          encoded,
          weights,
          jnp.asarray(self.l2_regularization, inputs.dtype),
          jnp.asarray(self.tolerance, inputs.dtype),
          num_classes=num_classes,
          max_iterations=int(self.max_iterations),
      )
    coef, intercept = np.asarray(coef), np.asarray(intercept)
    if not (np.all(np.isfinite(coef)) and np.all(np.isfinite(intercept))):
      raise ValueError(
          "X: the logistic-regression fit diverged to NaN or infinity (features "
          f"too large for {coef.dtype}?); standardise X or raise l2_regularization."
      )
    self.coef_ = coef
    self.intercept_ = intercept
    return self

  def decision_function(self, X: Any) -> np.ndarray:  # noqa: N803
    """Logits: ``(n,)`` for two classes, ``(n, K)`` otherwise."""
    _check_fitted(self)
    inputs = check_predict_inputs(X, self.coef_.shape[1])
    logits = inputs @ self.coef_.T.astype(np.float64) + self.intercept_
    return logits[:, 0] if len(self.classes_) == 2 else logits

  def predict_proba(self, X: Any) -> np.ndarray:  # noqa: N803
    """``(n, K)`` class probabilities, columns in the order of ``classes_``."""
    _check_fitted(self)
    logits = self.decision_function(X)
    if len(self.classes_) == 1:
      return np.ones((logits.shape[0], 1))
    if len(self.classes_) == 2:
      positive = 1.0 / (1.0 + np.exp(-logits))
      return np.stack([1.0 - positive, positive], axis=1)
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)

  def predict(self, X: Any) -> np.ndarray:  # noqa: N803
    """The most probable class (a label from ``classes_``)."""
    _check_fitted(self)
    return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


@functools.partial(jax.jit, static_argnames=("num_classes", "max_iterations"))
def _fit_logistic(
    inputs,
    labels,
    weights,
    l2_regularization,
    tolerance,
    *,
    num_classes,
    max_iterations,
):
  dim = inputs.shape[1]
  outputs = 1 if num_classes == 2 else num_classes

  def objective(parameters):
    coef, intercept = parameters
    logits = inputs @ coef.T + intercept
    if num_classes == 2:
      losses = optax.sigmoid_binary_cross_entropy(
          logits[:, 0], labels.astype(inputs.dtype)
      )
    else:
      losses = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    return jnp.sum(weights * losses) + 0.5 * l2_regularization * jnp.sum(
        jnp.square(coef)
    )

  initial = (
      jnp.zeros((outputs, dim), inputs.dtype),
      jnp.zeros((outputs,), inputs.dtype),
  )
  return minimize_lbfgs(
      objective, initial, max_iterations=max_iterations, tolerance=tolerance
  )


class WeightedRidge(_Params):
  r"""Ridge regression with example weights, closed form in JAX.

  Minimises, with ``p̃_i = s_i / Σ_j s_j`` the normalised ``sample_weight``::

    Σ_i p̃_i (y_i − w·x_i − b)² + λ ‖w‖²

  (the intercept is not penalised): with the weighted means ``x̄, ȳ``,
  ``w = (X̃ᵀ P̃ X̃ + λ I)⁻¹ X̃ᵀ P̃ ỹ`` on the centred data and ``b = ȳ − w·x̄``.
  This is scikit-learn's ``Ridge(alpha=λ Σ_i s_i)`` objective. Computation in
  float32 (float64 under ``jax_enable_x64``), on data centred in float64 and
  scaled per feature (and the targets) by a power of two, the penalty
  scaled to match, so that features or targets at ``1e30`` or ``1e-30``
  give the solution of the same data at scale 1. Deviation, where the
  penalty is below rounding level: the scaled penalty is kept within
  ``[tiny, √max]`` of the dtype and at least ``eps`` times the largest
  diagonal entry of the scaled Gram matrix, so that collinear or constant
  features leave a solvable system (the ``λ → 0`` ridge limit).

  Args:
    l2_regularization: ``λ > 0``.

  Attributes (after ``fit``):
    coef_: ``(d,)`` weights.
    intercept_: the scalar intercept.
  """

  _param_names = ("l2_regularization",)

  def __init__(self, l2_regularization: float = 1e-3):
    self.l2_regularization = l2_regularization
    self._check_params()

  def _check_params(self) -> None:
    check_positive(self.l2_regularization, "l2_regularization")

  def fit(self, X: Any, y: Any, sample_weight: Any = None):  # noqa: N803
    """Fits on real targets ``y`` with optional non-negative ``sample_weight``.

    Raises:
      ValueError: on a malformed ``X``, ``y`` or ``sample_weight``; the
        message names it.
    """
    inputs, targets, weights = _check_fit_data(
        X, y, sample_weight, integer=False
    )
    # Centre with the weighted means and scale each feature and the targets
    # by a power of two, in float64: w_j = (B / A_j) ω_j solves the same
    # problem with the penalty λ / A_j² on ω_j, so the solution is unchanged
    # while data at 1e30 no longer overflow the float32 Gram matrix.
    input_mean = weights @ inputs
    target_mean = float(weights @ targets)
    centred = inputs - input_mean
    input_exponents = np.array(
        [power_of_two_exponent(v) for v in np.max(np.abs(centred), axis=0)]
    )
    target_exponent = power_of_two_exponent(
        float(np.max(np.abs(targets - target_mean)))
    )
    scaled_inputs = np.ldexp(centred, -input_exponents)
    scaled_targets = np.ldexp(targets - target_mean, -target_exponent)
    dtype = jnp.promote_types(jnp.float32, jnp.asarray(inputs).dtype)
    finfo = jnp.finfo(dtype)
    with np.errstate(over="ignore"):
      penalties = np.ldexp(float(self.l2_regularization), -2 * input_exponents)
    # Beyond these bounds the penalty is lost to rounding (too small) or
    # forces ω_j to rounding level anyway (too large).
    penalties = np.clip(penalties, finfo.tiny, math.sqrt(finfo.max))
    scaled_inputs, scaled_targets, weights = _padded(
        scaled_inputs, scaled_targets, weights, None
    )
    coef = np.asarray(
        _fit_ridge(
            scaled_inputs,
            scaled_targets,
            weights,
            jnp.asarray(penalties, dtype),
        ),
        np.float64,
    )
    self.coef_ = np.ldexp(coef, target_exponent - input_exponents)
    self.intercept_ = float(target_mean - input_mean @ self.coef_)
    if not (np.all(np.isfinite(self.coef_)) and math.isfinite(self.intercept_)):
      raise ValueError(
          "X and y: the ridge fit overflowed float64 (features or targets near "
          "1e308); rescale them."
      )
    return self

  def predict(self, X: Any) -> np.ndarray:  # noqa: N803
    _check_fitted(self)
    inputs = check_predict_inputs(X, self.coef_.shape[0])
    return inputs @ self.coef_.astype(np.float64) + self.intercept_


@jax.jit
def _fit_ridge(inputs, targets, weights, penalties):
  # The data come centred; centring again removes the rounding of that.
  input_mean = weights @ inputs
  target_mean = weights @ targets
  centred = inputs - input_mean
  gram = centred.T @ (weights[:, None] * centred)
  # A penalty below rounding level of the Gram matrix cannot regularise it
  # (collinear features would leave it singular): at least eps · max diag.
  floor = jnp.finfo(gram.dtype).eps * jnp.max(jnp.diag(gram))
  gram = gram + jnp.diag(jnp.maximum(penalties, floor))
  return jnp.linalg.solve(gram, centred.T @ (weights * (targets - target_mean)))


# ---------------------------------------------------------------------------
