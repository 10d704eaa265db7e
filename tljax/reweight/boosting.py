r"""Instance-transfer boosting: TrAdaBoost and two-stage TrAdaBoost.R2.

Both methods reweight a large labelled *source* sample and a small labelled
*target* sample while boosting a weighted base learner, so that source
examples that disagree with the target task lose influence:

* :func:`tradaboost` — classification, Dai, Yang, Xue and Yu, "Boosting for
  transfer learning", ICML 2007 (Algorithm 1, TrAdaBoost).
* :func:`tradaboost_r2` — regression, Pardoe and Stone, "Boosting for
  regression transfer", ICML 2010 (Algorithm 3, two-stage TrAdaBoost.R2),
  built on :func:`adaboost_r2` (Drucker, "Improving regressors using
  boosting techniques", ICML 1997, with optionally frozen weights: the
  paper's AdaBoost.R2′).

Base learners: :class:`WeightedLogisticRegression` and :class:`WeightedRidge`
are fitted by tljax in JAX; any scikit-learn estimator whose ``fit`` takes
``sample_weight`` works as well (it is cloned with ``sklearn.base.clone``
before every fit).

Learners receive the boosting distribution ``p`` (``Σ p = 1``) scaled to
mean 1, i.e. ``sample_weight = len(p) · p``: estimators whose regularisation
is relative to the total weight (scikit-learn's ``LogisticRegression`` ``C``,
``Ridge`` ``alpha``) then behave as without weights when ``p`` is uniform.
The tljax learners and decision trees do not depend on this scale.

Everything here runs eagerly on concrete data (NumPy float64 for the
boosting weights); the JAX learners jit their fits.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from scipy.special import logsumexp

from tljax.checks import check_int, check_key, check_positive
from tljax.reweight._common import power_of_two_exponent
from tljax.solvers import minimize_lbfgs

__all__ = [
  "LOSSES",
  "AdaBoostR2Model",
  "TrAdaBoostR2Result",
  "TrAdaBoostResult",
  "WeightedLogisticRegression",
  "WeightedRidge",
  "adaboost_r2",
  "tradaboost",
  "tradaboost_r2",
]

#: Adjusted-error functions of AdaBoost.R2 (Drucker 1997) for ``r = |y − h(x)| / D``.
LOSSES = ("linear", "square", "exponential")

#: TrAdaBoost clips the target error ``ε_t`` into ``[MIN_ERROR, MAX_ERROR]``.
MIN_ERROR = 1e-10
MAX_ERROR = 0.499

#: Boosting weights are rescaled (which changes no distribution ``p``) when
#: their sum leaves ``[1 / WEIGHT_RESCALE, WEIGHT_RESCALE]``.
WEIGHT_RESCALE = 1e200


# ---------------------------------------------------------------------------
# Argument checks (NumPy: the data stay float64 for scikit-learn learners).


def _as_numeric(array: Any, argument: str) -> np.ndarray:
  try:
    array = np.asarray(array)
  except Exception as error:  # e.g. a jax tracer
    raise ValueError(
      f"{argument} must be a concrete array of numbers: {error}"
    ) from None
  if array.dtype == np.bool_:
    return array.astype(np.int64)
  if not (
    np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)
  ):
    raise ValueError(f"{argument} must hold real numbers, got dtype {array.dtype}.")
  return array


def _check_inputs(array: Any, argument: str, rows: str) -> np.ndarray:
  """A finite ``(rows, dim)`` matrix with both sizes positive, as float64."""
  array = _as_numeric(array, argument)
  if array.ndim != 2 or 0 in array.shape:
    raise ValueError(
      f"{argument} must have shape ({rows}, dim) with both sizes positive, got "
      f"shape {array.shape}."
    )
  if not np.all(np.isfinite(array)):
    raise ValueError(f"{argument} must be finite (it holds NaN or infinity).")
  return array.astype(np.float64)


def _check_same_columns(first: np.ndarray, second: np.ndarray, first_argument: str,
                        second_argument: str) -> None:
  if first.shape[1] != second.shape[1]:
    raise ValueError(
      f"{second_argument} must have the feature dimension of {first_argument} "
      f"({first.shape[1]}), got shape {second.shape}."
    )


def _check_labels(labels: Any, argument: str, *, length: int, length_of: str,
                  integer: bool) -> np.ndarray:
  """Finite ``(length,)`` labels; integer-valued if ``integer`` (returned as int64)."""
  labels = _as_numeric(labels, argument)
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


def _check_sample_weight(weights: Any, argument: str, length: int) -> np.ndarray:
  """``None`` (ones) or finite non-negative ``(length,)`` weights with a positive sum."""
  if weights is None:
    return np.ones(length)
  weights = _as_numeric(weights, argument)
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


def _check_learner(learner: Any) -> None:
  if not (callable(getattr(learner, "fit", None))
          and callable(getattr(learner, "predict", None))
          and callable(getattr(learner, "get_params", None))):
    raise ValueError(
      "learner must be None or an unfitted estimator with get_params(), "
      "fit(X, y, sample_weight=...) and predict(X) (a tljax learner of this "
      f"module or a scikit-learn estimator), got {learner!r}."
    )


def _check_choice(value: Any, argument: str, allowed: tuple[str, ...]) -> str:
  if not isinstance(value, str) or value not in allowed:
    raise ValueError(
      f"{argument} must be one of {', '.join(map(repr, allowed))}, got {value!r}."
    )
  return value


def _fit(learner: Any, inputs: np.ndarray, labels: np.ndarray,
         distribution: np.ndarray) -> Any:
  """A fresh clone of ``learner`` fitted with ``sample_weight = len(p) · p``."""
  from sklearn.base import clone  # pylint: disable=g-import-not-at-top

  fitted = clone(learner)
  fitted.fit(inputs, labels, sample_weight=distribution * len(distribution))
  return fitted


def _predict(learner: Any, inputs: np.ndarray) -> np.ndarray:
  predictions = np.asarray(learner.predict(inputs))
  if predictions.shape != (inputs.shape[0],):
    raise ValueError(
      f"learner.predict must return one prediction per row, shape "
      f"({inputs.shape[0]},), got shape {predictions.shape}."
    )
  return predictions


def _predict_real(learner: Any, inputs: np.ndarray) -> np.ndarray:
  predictions = _predict(learner, inputs).astype(np.float64)
  if not np.all(np.isfinite(predictions)):
    raise ValueError("learner.predict returned NaN or infinity.")
  return predictions


# ---------------------------------------------------------------------------
# Base learners fitted in JAX.


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


def _check_fit_data(inputs: Any, labels: Any, sample_weight: Any, *,
                    integer: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  inputs = _check_inputs(inputs, "X", "num_examples")
  labels = _check_labels(labels, "y", length=inputs.shape[0], length_of="X",
                         integer=integer)
  weights = _check_sample_weight(sample_weight, "sample_weight", inputs.shape[0])
  return inputs, labels, weights / weights.sum()


def _padded(inputs: np.ndarray, labels: np.ndarray, weights: np.ndarray, label_dtype):
  """JAX arrays padded with zero-weight rows up to a power of two (at least 8).

  Fits on similar sizes (the folds of a cross-validation, say) then share
  one compilation; the padding rows change neither objective.
  """
  padding = max(8, 1 << (inputs.shape[0] - 1).bit_length()) - inputs.shape[0]
  dtype = jnp.promote_types(jnp.float32, jnp.asarray(inputs).dtype)
  return (jnp.asarray(np.pad(inputs, ((0, padding), (0, 0))), dtype),
          jnp.asarray(np.pad(labels, (0, padding)), label_dtype or dtype),
          jnp.asarray(np.pad(weights, (0, padding)), dtype))


def _check_fitted(learner: Any) -> None:
  if not hasattr(learner, "coef_"):
    raise ValueError(
      f"X: {type(learner).__name__} must be fitted (call fit(X, y)) before it "
      "predicts."
    )


def _check_predict_inputs(inputs: Any, num_features: int, argument: str = "X"):
  inputs = _check_inputs(inputs, argument, "num_examples")
  if inputs.shape[1] != num_features:
    raise ValueError(
      f"{argument} must have the feature dimension of the fitted data "
      f"({num_features}), got shape {inputs.shape}."
    )
  return inputs


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

  def __init__(self, l2_regularization: float = 1e-2, max_iterations: int = 500,
               tolerance: float = 1e-5):
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
        inputs, encoded, weights,
        jnp.asarray(self.l2_regularization, inputs.dtype),
        jnp.asarray(self.tolerance, inputs.dtype),
        num_classes=num_classes, max_iterations=int(self.max_iterations),
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
    inputs = _check_predict_inputs(X, self.coef_.shape[1])
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
def _fit_logistic(inputs, labels, weights, l2_regularization, tolerance, *,
                  num_classes, max_iterations):
  dim = inputs.shape[1]
  outputs = 1 if num_classes == 2 else num_classes

  def objective(parameters):
    coef, intercept = parameters
    logits = inputs @ coef.T + intercept
    if num_classes == 2:
      losses = optax.sigmoid_binary_cross_entropy(logits[:, 0],
                                                  labels.astype(inputs.dtype))
    else:
      losses = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    return (jnp.sum(weights * losses)
            + 0.5 * l2_regularization * jnp.sum(jnp.square(coef)))

  initial = (jnp.zeros((outputs, dim), inputs.dtype),
             jnp.zeros((outputs,), inputs.dtype))
  return minimize_lbfgs(objective, initial, max_iterations=max_iterations,
                        tolerance=tolerance)


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
    inputs, targets, weights = _check_fit_data(X, y, sample_weight, integer=False)
    # Centre with the weighted means and scale each feature and the targets
    # by a power of two, in float64: w_j = (B / A_j) ω_j solves the same
    # problem with the penalty λ / A_j² on ω_j, so the solution is unchanged
    # while data at 1e30 no longer overflow the float32 Gram matrix.
    input_mean = weights @ inputs
    target_mean = float(weights @ targets)
    centred = inputs - input_mean
    input_exponents = np.array([power_of_two_exponent(v)
                                for v in np.max(np.abs(centred), axis=0)])
    target_exponent = power_of_two_exponent(
      float(np.max(np.abs(targets - target_mean))))
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
      scaled_inputs, scaled_targets, weights, None)
    coef = np.asarray(_fit_ridge(scaled_inputs, scaled_targets, weights,
                                 jnp.asarray(penalties, dtype)), np.float64)
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
    inputs = _check_predict_inputs(X, self.coef_.shape[0])
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
# TrAdaBoost (classification).


@dataclasses.dataclass(frozen=True, eq=False)
class TrAdaBoostResult:
  """What :func:`tradaboost` returns.

  Attributes:
    learners: the ``N`` fitted hypotheses ``h_1 … h_N``; they predict class
      *indices* into ``classes``.
    classes: the sorted distinct labels of the source and target examples.
    betas: ``(N,)`` the ``β_t = ε_t / (1 − ε_t)`` used, from the clipped error.
    errors: ``(N,)`` the weighted target errors ``ε_t`` as measured (unclipped).
    source_beta: ``β = 1 / (1 + √(2 ln n / N))``.
    weights: ``(n + m,)`` the weight vector ``w^{N+1}`` after the last round
      (source first, then target).
    weight_history: ``(N + 1, n + m)``, row ``t`` the weights ``w^{t+1}``
      (row 0 the initial weights).
    first_voting_round: 0-based index of the first hypothesis in the vote,
      ``⌈N/2⌉ − 1``.
    num_features: the input dimension ``d``.
  """

  learners: tuple[Any, ...]
  classes: np.ndarray
  betas: np.ndarray
  errors: np.ndarray
  source_beta: float
  weights: np.ndarray
  weight_history: np.ndarray
  first_voting_round: int
  num_features: int

  def predict(self, inputs: Any) -> np.ndarray:
    """The final hypothesis ``h_f`` at ``(M, d)`` ``inputs``: ``(M,)`` labels.

    Two classes (indices 0, 1): ``h_f(x) = 1`` iff
    ``Π_t β_t^{−h_t(x)} ≥ Π_t β_t^{−1/2}`` over the rounds
    ``t = ⌈N/2⌉ … N``, evaluated as ``Σ_t a_t h_t(x) ≥ ½ Σ_t a_t`` with
    ``a_t = ln(1/β_t)``. More classes: ``argmax_k Σ_t a_t 1[h_t(x) = k]``
    (ties to the smaller label), which is the same rule for two classes up
    to ties.
    """
    inputs = _check_predict_inputs(inputs, self.num_features, "inputs")
    voters = self.learners[self.first_voting_round:]
    vote_weights = np.log(1.0 / self.betas[self.first_voting_round:])
    hypotheses = np.stack([_predict(h, inputs) for h in voters])  # (T, M)
    if len(self.classes) == 2:
      chosen = (vote_weights @ hypotheses >= 0.5 * vote_weights.sum()).astype(int)
    else:
      scores = np.stack([vote_weights @ (hypotheses == k)
                         for k in range(len(self.classes))], axis=1)
      chosen = np.argmax(scores, axis=1)
    return self.classes[chosen]


def tradaboost(
  source_inputs: Any,
  source_labels: Any,
  target_inputs: Any,
  target_labels: Any,
  *,
  num_rounds: int = 20,
  learner: Any = None,
  initial_weights: Any = None,
) -> TrAdaBoostResult:
  r"""TrAdaBoost: boosting that lowers misclassified source examples' weights.

  Dai, Yang, Xue and Yu, "Boosting for transfer learning", ICML 2007,
  Algorithm 1. With ``n`` source (different-distribution) and ``m`` target
  (same-distribution) labelled examples, ``N = num_rounds`` and
  ``β = 1 / (1 + √(2 ln n / N))``, each round ``t = 1 … N``:

  1. ``p^t = w^t / Σ_i w^t_i``;
  2. fit the learner on source ∪ target with the distribution ``p^t``,
     giving ``h_t``;
  3. ``ε_t = Σ_{target} w^t_i |h_t(x_i) − y_i| / Σ_{target} w^t_i``, the
     weighted error on the target examples only;
  4. ``β_t = ε_t / (1 − ε_t)``;
  5. ``w^{t+1}_i = w^t_i β^{|h_t(x_i) − y_i|}`` for source examples and
     ``w^t_i β_t^{−|h_t(x_i) − y_i|}`` for target examples.

  The final hypothesis (:meth:`TrAdaBoostResult.predict`) votes over the
  rounds ``t = ⌈N/2⌉ … N``: ``h_f(x) = 1`` iff
  ``Π_t β_t^{−h_t(x)} ≥ Π_t β_t^{−1/2}``.

  Deviations and choices:

  * The paper requires ``ε_t < 1/2`` and ``ε_t = 0`` makes ``β_t = 0``.
    Here ``ε_t`` is clipped into ``[1e-10, 0.499]`` before ``β_t`` is
    formed: a perfect round gets a large but finite vote ``ln(1e10)`` and
    leaves the target weights unchanged; a round with ``ε_t ≥ 1/2`` gets a
    near-zero vote and barely raises its misclassified target weights.
    Boosting never stops early. ``errors`` keeps the measured ``ε_t``.
  * More than two classes (an extension; the paper is binary): labels are
    encoded as indices ``0 … K−1``, the error indicator is
    ``1[h_t(x) ≠ y]`` (``= |h_t(x) − y|`` for two classes) and the vote is
    ``argmax_k Σ_t ln(1/β_t) 1[h_t(x) = k]`` over the same rounds; ``ε_t``
    is still clipped below 1/2, a stronger requirement than chance level
    for ``K > 2``.
  * Any integer labels are accepted; for two classes the larger label plays
    the paper's class 1.
  * The weights are rescaled by their sum (which changes no ``p^t``) only
    if that sum leaves ``[1e-200, 1e200]``.

  With ``n ≫ m`` and all-ones ``w^1`` the target examples first hold little
  of the weight, and rounds whose target error reaches 1/2 barely raise
  them while misclassified source examples keep losing weight; initial
  weights that give each domain half the total (``1/(2n)`` and ``1/(2m)``)
  often work better (the paper leaves ``w^1`` free).

  Args:
    source_inputs: ``(n, d)`` source examples.
    source_labels: ``(n,)`` integer source labels.
    target_inputs: ``(m, d)`` labelled target examples.
    target_labels: ``(m,)`` integer target labels.
    num_rounds: ``N >= 1``.
    learner: an unfitted classifier with ``fit(X, y, sample_weight=...)``
      and ``predict``: :class:`WeightedLogisticRegression` (the default,
      ``None``) or a scikit-learn estimator; cloned for every round.
    initial_weights: ``(n + m,)`` non-negative ``w^1`` (source first), with
      a positive target part; ``None`` for all ones.

  Returns:
    A :class:`TrAdaBoostResult`.

  Raises:
    ValueError: on an empty, non-matrix or non-finite input, labels of the
      wrong length or not integers, fewer than two classes, ``num_rounds < 1``
      or another malformed argument; the message names it.
  """
  source_inputs = _check_inputs(source_inputs, "source_inputs", "n_source")
  target_inputs = _check_inputs(target_inputs, "target_inputs", "n_target")
  _check_same_columns(source_inputs, target_inputs, "source_inputs", "target_inputs")
  num_source, num_target = source_inputs.shape[0], target_inputs.shape[0]
  source_labels = _check_labels(source_labels, "source_labels", length=num_source,
                                length_of="source_inputs", integer=True)
  target_labels = _check_labels(target_labels, "target_labels", length=num_target,
                                length_of="target_inputs", integer=True)
  num_rounds = check_int(num_rounds, "num_rounds", minimum=1)
  if learner is None:
    learner = WeightedLogisticRegression()
  _check_learner(learner)
  total = num_source + num_target
  weights = _check_sample_weight(initial_weights, "initial_weights", total)
  if not weights[num_source:].sum() > 0:
    raise ValueError("initial_weights must give the target examples a positive total.")

  classes, encoded = np.unique(np.concatenate([source_labels, target_labels]),
                               return_inverse=True)
  if len(classes) < 2:
    raise ValueError(
      "source_labels and target_labels together must hold at least 2 classes, "
      f"got only {classes.tolist()}."
    )
  inputs = np.concatenate([source_inputs, target_inputs])
  source = slice(0, num_source)
  target = slice(num_source, total)
  source_beta = 1.0 / (1.0 + math.sqrt(2.0 * math.log(num_source) / num_rounds))

  learners, betas, errors, history = [], [], [], [weights.copy()]
  for _ in range(num_rounds):
    distribution = weights / weights.sum()
    hypothesis = _fit(learner, inputs, encoded, distribution)
    predictions = _predict(hypothesis, inputs)
    if not np.all(np.isin(predictions, np.arange(len(classes)))):
      raise ValueError(
        "learner.predict must return the class indices 0 … K−1 it was fitted on."
      )
    wrong = (predictions != encoded).astype(np.float64)
    error = float(weights[target] @ wrong[target] / weights[target].sum())
    beta = min(max(error, MIN_ERROR), MAX_ERROR)
    beta = beta / (1.0 - beta)
    weights = weights.copy()
    weights[source] *= source_beta ** wrong[source]
    weights[target] *= beta ** -wrong[target]
    weight_sum = weights.sum()
    if not 1.0 / WEIGHT_RESCALE <= weight_sum <= WEIGHT_RESCALE:
      weights /= weight_sum
    learners.append(hypothesis)
    betas.append(beta)
    errors.append(error)
    history.append(weights.copy())

  return TrAdaBoostResult(
    learners=tuple(learners), classes=classes, betas=np.asarray(betas),
    errors=np.asarray(errors), source_beta=source_beta, weights=weights,
    weight_history=np.stack(history),
    first_voting_round=math.ceil(num_rounds / 2) - 1,
    num_features=source_inputs.shape[1],
  )


# ---------------------------------------------------------------------------
# AdaBoost.R2 / AdaBoost.R2′ (regression).


def _adjusted_errors(predictions: np.ndarray, labels: np.ndarray, loss: str) -> np.ndarray:
  """Drucker's ``L_i`` in ``[0, 1]`` from ``r_i = |y_i − h(x_i)| / max_j |y_j − h(x_j)|``."""
  residuals = np.abs(predictions - labels)
  largest = residuals.max()
  ratios = residuals / largest if largest > 0 else np.zeros_like(residuals)
  if loss == "square":
    return ratios ** 2
  if loss == "exponential":
    return 1.0 - np.exp(-ratios)
  return ratios


def _weighted_median(predictions: np.ndarray, vote_weights: np.ndarray) -> np.ndarray:
  """Per column of ``(T, M)`` predictions: the smallest ``h_t`` whose
  cumulative vote weight (in increasing order of ``h_t``) reaches half the total."""
  order = np.argsort(predictions, axis=0, kind="stable")
  ranked = np.take_along_axis(predictions, order, axis=0)
  cumulative = np.cumsum(vote_weights[order], axis=0)
  reached = cumulative >= 0.5 * cumulative[-1:]
  return ranked[np.argmax(reached, axis=0), np.arange(predictions.shape[1])]


@dataclasses.dataclass(frozen=True, eq=False)
class AdaBoostR2Model:
  """What :func:`adaboost_r2` returns.

  Attributes:
    learners: the kept fitted regressors ``h_1 … h_T`` (``T <= num_rounds``).
    betas: ``(T,)`` ``β_t = L̄_t / (1 − L̄_t)`` (``L̄_t`` clipped below at
      1e-10); the vote weights are ``ln(1/β_t)``.
    errors: ``(T,)`` the average adjusted losses ``L̄_t``.
    vote_weights: ``(T,)`` the weights of the weighted median.
    weights: ``(n,)`` the last distribution ``p`` (summing to 1).
    num_features: the input dimension ``d``.
  """

  learners: tuple[Any, ...]
  betas: np.ndarray
  errors: np.ndarray
  vote_weights: np.ndarray
  weights: np.ndarray
  num_features: int

  def predict(self, inputs: Any) -> np.ndarray:
    """The weighted median of the ``h_t(x)`` with weights ``ln(1/β_t)``: ``(M,)``."""
    inputs = _check_predict_inputs(inputs, self.num_features, "inputs")
    predictions = np.stack([_predict_real(h, inputs) for h in self.learners])
    return _weighted_median(predictions, self.vote_weights)


def adaboost_r2(
  inputs: Any,
  labels: Any,
  *,
  num_rounds: int = 10,
  learner: Any = None,
  loss: str = "linear",
  sample_weight: Any = None,
  frozen: Any = None,
) -> AdaBoostR2Model:
  r"""AdaBoost.R2 (Drucker 1997), with optionally frozen weights (AdaBoost.R2′).

  Drucker, "Improving regressors using boosting techniques", ICML 1997, as
  restated by Pardoe and Stone (ICML 2010, Algorithm 1). From
  ``p^1 ∝ sample_weight``, each round ``t = 1 … N``:

  1. fit the learner with the distribution ``p^t``, giving ``h_t``;
  2. adjusted losses ``L_i = L(|y_i − h_t(x_i)| / D_t)`` with
     ``D_t = max_j |y_j − h_t(x_j)|`` and ``L(r) = r`` (``'linear'``),
     ``r²`` (``'square'``) or ``1 − e^{−r}`` (``'exponential'``);
  3. ``L̄_t = Σ_i p^t_i L_i``; if ``L̄_t >= 1/2``, stop and discard ``h_t``;
  4. ``β_t = L̄_t / (1 − L̄_t)`` and ``p^{t+1}_i ∝ p^t_i β_t^{1 − L_i}``.

  The model predicts the weighted median of the ``h_t(x)`` with weights
  ``ln(1/β_t)``.

  ``frozen`` gives AdaBoost.R2′ of Pardoe and Stone's two-stage
  TrAdaBoost.R2: the frozen examples' weights are never modified, i.e. their
  entries of ``p`` stay fixed, and the others are updated as above and then
  rescaled to keep their total (our reading of "never modified" for
  normalised weights; ``L̄_t`` and ``D_t`` still run over all examples, as
  in AdaBoost.R2).

  Deviations: the learner is fitted with the weights (Pardoe and Stone)
  rather than on a weighted resample (Drucker). If the first round already
  has ``L̄_1 >= 1/2`` it is kept, alone with vote weight 1, so the model is
  never empty; a perfect round (``L̄_t = 0``) is kept with ``L̄_t`` taken
  as 1e-10 and boosting stops.

  Args:
    inputs: ``(n, d)`` examples.
    labels: ``(n,)`` real targets.
    num_rounds: ``N >= 1``.
    learner: an unfitted regressor with ``fit(X, y, sample_weight=...)``
      and ``predict``: :class:`WeightedRidge` (the default, ``None``) or a
      scikit-learn estimator; cloned for every round.
    loss: ``'linear'``, ``'square'`` or ``'exponential'``.
    sample_weight: ``(n,)`` non-negative initial weights with a positive
      sum; ``None`` for uniform.
    frozen: ``None`` or an ``(n,)`` boolean mask of the examples whose
      weights stay fixed.

  Returns:
    An :class:`AdaBoostR2Model`.

  Raises:
    ValueError: on a malformed argument; the message names it.
  """
  inputs = _check_inputs(inputs, "inputs", "num_examples")
  labels = _check_labels(labels, "labels", length=inputs.shape[0],
                         length_of="inputs", integer=False)
  num_rounds = check_int(num_rounds, "num_rounds", minimum=1)
  if learner is None:
    learner = WeightedRidge()
  _check_learner(learner)
  loss = _check_choice(loss, "loss", LOSSES)
  weights = _check_sample_weight(sample_weight, "sample_weight", inputs.shape[0])
  if frozen is None:
    frozen = np.zeros(inputs.shape[0], bool)
  else:
    frozen = np.asarray(frozen)
    if frozen.dtype != bool or frozen.shape != (inputs.shape[0],):
      raise ValueError(
        f"frozen must be None or a boolean mask of shape ({inputs.shape[0]},), got "
        f"dtype {frozen.dtype} and shape {frozen.shape}."
      )
  return _adaboost_r2(inputs, labels, weights / weights.sum(), frozen,
                      num_rounds=num_rounds, learner=learner, loss=loss)


def _adaboost_r2(inputs, labels, distribution, frozen, *, num_rounds, learner, loss):
  learners, betas, errors = [], [], []
  free = ~frozen
  for _ in range(num_rounds):
    hypothesis = _fit(learner, inputs, labels, distribution)
    losses = _adjusted_errors(_predict_real(hypothesis, inputs),
                              labels, loss)
    error = float(distribution @ losses)
    if error >= 0.5:
      if not learners:
        learners, betas, errors = [hypothesis], [math.nan], [error]
      break
    beta = max(error, MIN_ERROR) / (1.0 - max(error, MIN_ERROR))
    learners.append(hypothesis)
    betas.append(beta)
    errors.append(error)
    if error <= 0:
      break
    updated = distribution[free] * beta ** (1.0 - losses[free])
    if updated.sum() > 0:
      distribution = distribution.copy()
      distribution[free] = updated * (distribution[free].sum() / updated.sum())
  betas = np.asarray(betas)
  vote_weights = np.ones(1) if np.isnan(betas[0]) else np.log(1.0 / betas)
  return AdaBoostR2Model(
    learners=tuple(learners), betas=betas, errors=np.asarray(errors),
    vote_weights=vote_weights, weights=distribution, num_features=inputs.shape[1],
  )


# ---------------------------------------------------------------------------
# Two-stage TrAdaBoost.R2.


def _solve_source_beta(source_weights: np.ndarray, source_losses: np.ndarray,
                       target_mass: float, fraction: float) -> float:
  r"""``β`` in ``[0, 1]`` with ``T / (T + Σ_src w_i β^{L_i}) = fraction``, by bisection.

  Bisection on ``u = ln β <= 0``, over which the source mass
  ``S(u) = Σ w_i e^{u L_i}`` increases; ``0`` (the limit ``u → −∞``, with
  ``0⁰ = 1``) when the fraction cannot be reached because the source
  examples with ``L_i = 0`` already hold too much weight.
  """
  positive = source_weights > 0
  if not positive.any():
    return 1.0
  log_weights = np.log(source_weights[positive])
  losses = source_losses[positive]
  log_wanted = math.log(target_mass * (1.0 - fraction) / fraction)

  def log_mass(u: float) -> float:
    return float(logsumexp(log_weights + u * losses))

  if log_mass(0.0) <= log_wanted:  # already there (fraction <= current one)
    return 1.0
  if (losses == 0).any() and logsumexp(log_weights[losses == 0]) >= log_wanted:
    return 0.0
  low, high = -1.0, 0.0
  while log_mass(low) > log_wanted:
    high, low = low, 2.0 * low
    if low < -1e300:
      return 0.0
  for _ in range(200):
    middle = 0.5 * (low + high)
    if log_mass(middle) > log_wanted:
      high = middle
    else:
      low = middle
    if high - low <= 1e-14 * max(1.0, -low):
      break
  return math.exp(0.5 * (low + high))


@dataclasses.dataclass(frozen=True, eq=False)
class TrAdaBoostR2Result:
  """What :func:`tradaboost_r2` returns.

  Attributes:
    model: the AdaBoost.R2′ model (:class:`AdaBoostR2Model`) of the chosen
      step, trained on all data.
    best_step: 0-based index of the chosen step, ``argmin cv_errors``.
    cv_errors: ``(S,)`` cross-validated mean squared target error of
      AdaBoost.R2′ at each step's weights.
    betas: ``(S − 1,)`` the stage-1 ``β_t`` of the updates ``w^t → w^{t+1}``
      (0 for the last update, which removes the source weights).
    target_weight_fractions: ``(S,)`` the target examples' share of
      ``w^t``, ``t = 1 … S``.
    weight_history: ``(S, n + m)`` the weights ``w^1 … w^S`` (each summing
      to 1; source first).
    weights: ``(n + m,)`` the chosen step's weights ``w^{t*}``.
  """

  model: AdaBoostR2Model
  best_step: int
  cv_errors: np.ndarray
  betas: np.ndarray
  target_weight_fractions: np.ndarray
  weight_history: np.ndarray
  weights: np.ndarray

  def predict(self, inputs: Any) -> np.ndarray:
    """The chosen model's predictions at ``(M, d)`` ``inputs``: ``(M,)``."""
    return self.model.predict(inputs)


def tradaboost_r2(
  source_inputs: Any,
  source_labels: Any,
  target_inputs: Any,
  target_labels: Any,
  *,
  num_steps: int = 10,
  num_rounds: int = 10,
  num_folds: int = 5,
  learner: Any = None,
  loss: str = "linear",
  key: jax.Array | None = None,
) -> TrAdaBoostR2Result:
  r"""Two-stage TrAdaBoost.R2: boosting for regression transfer.

  Pardoe and Stone, "Boosting for regression transfer", ICML 2010,
  Algorithm 3. With ``n`` source and ``m`` target labelled examples,
  ``S = num_steps`` and ``w^1_i = 1 / (n + m)``, each step ``t = 1 … S``:

  1. (stage 2, model selection) run AdaBoost.R2′ (:func:`adaboost_r2`:
     AdaBoost.R2 for ``N = num_rounds`` rounds with the source weights
     frozen) from ``w^t``, and estimate its error by ``F = num_folds``-fold
     cross-validation on the target: each fold's model is trained on all
     source examples and the other target folds, and tested on the fold;
  2. (stage 1) fit the learner on all examples with ``w^t``, giving
     ``h_t``; adjusted errors ``e_i = L(|y_i − h_t(x_i)| / D_t)``,
     ``D_t = max_j |y_j − h_t(x_j)|`` (``L`` as in :func:`adaboost_r2`);
  3. ``w^{t+1}_i = w^t_i β_t^{e_i} / Z_t`` for source examples and
     ``w^t_i / Z_t`` for target examples, ``β_t`` found by bisection so that
     the target examples hold ``m/(n+m) + t/(S−1) (1 − m/(n+m))`` of the
     total weight.

  The output is AdaBoost.R2′ trained on all data from ``w^{t*}``,
  ``t* = argmin_t`` of the cross-validated error. The source share of the
  weights thus falls linearly from ``n/(n+m)`` at ``t = 1`` to 0 at
  ``t = S``.

  Choices where the paper leaves room:

  * The CV error is the mean squared error over all target examples (each
    predicted once, by the model that did not see its fold); folds are a
    random partition (drawn with ``key``) into ``F`` near-equal parts. In a
    fold's training set the remaining target weights are scaled up to the
    full target total of ``w^t``, so the source/target split of the weight
    stays that of the step.
  * The model is trained on all data only for the chosen step (identical
    for deterministic learners to training it at every step).
  * The last update (``t = S − 1``) sets the source weights to 0 (the
    limit ``β_t → 0``; ``h_{S−1}`` is not needed and not fitted). When an
    earlier target share cannot be reached because source examples with
    ``e_i = 0`` keep their weight for every ``β``, ``β_t = 0`` (``0⁰ = 1``)
    and ``target_weight_fractions`` records the share reached.
  * No early stopping over the steps.

  Cost: about ``S · (F + 1) · N`` learner fits.

  Args:
    source_inputs: ``(n, d)`` source examples.
    source_labels: ``(n,)`` real source targets.
    target_inputs: ``(m, d)`` labelled target examples, ``m >= num_folds``.
    target_labels: ``(m,)`` real target targets.
    num_steps: ``S >= 1`` (``S = 1`` keeps the uniform weights).
    num_rounds: AdaBoost.R2′ rounds ``N >= 1``.
    num_folds: ``F >= 2``.
    learner: an unfitted regressor with ``fit(X, y, sample_weight=...)``
      and ``predict``: :class:`WeightedRidge` (the default, ``None``) or a
      scikit-learn estimator; cloned for every fit.
    loss: ``'linear'`` (the paper's), ``'square'`` or ``'exponential'``.
    key: a ``jax.random`` key for the folds; ``None`` for ``jax.random.key(0)``.

  Returns:
    A :class:`TrAdaBoostR2Result`.

  Raises:
    ValueError: on an empty, non-matrix or non-finite input, targets of the
      wrong length, fewer target examples than folds or another malformed
      argument; the message names it.
  """
  source_inputs = _check_inputs(source_inputs, "source_inputs", "n_source")
  target_inputs = _check_inputs(target_inputs, "target_inputs", "n_target")
  _check_same_columns(source_inputs, target_inputs, "source_inputs", "target_inputs")
  num_source, num_target = source_inputs.shape[0], target_inputs.shape[0]
  source_labels = _check_labels(source_labels, "source_labels", length=num_source,
                                length_of="source_inputs", integer=False)
  target_labels = _check_labels(target_labels, "target_labels", length=num_target,
                                length_of="target_inputs", integer=False)
  num_steps = check_int(num_steps, "num_steps", minimum=1)
  num_rounds = check_int(num_rounds, "num_rounds", minimum=1)
  num_folds = check_int(num_folds, "num_folds", minimum=2)
  if num_folds > num_target:
    raise ValueError(
      f"num_folds must be at most the number of target examples ({num_target}), "
      f"got {num_folds}."
    )
  if learner is None:
    learner = WeightedRidge()
  _check_learner(learner)
  loss = _check_choice(loss, "loss", LOSSES)
  key = check_key(key, allow_none=True)

  total = num_source + num_target
  inputs = np.concatenate([source_inputs, target_inputs])
  labels = np.concatenate([source_labels, target_labels])
  source = slice(0, num_source)
  target = slice(num_source, total)
  permutation = np.asarray(jax.random.permutation(key, num_target))
  folds = np.array_split(permutation, num_folds)
  start_fraction = num_target / total

  weights = np.full(total, 1.0 / total)
  history, betas, cv_errors = [], [], []
  for step in range(num_steps):
    history.append(weights)
    cv_errors.append(_cross_validate(
      source_inputs, source_labels, target_inputs, target_labels,
      weights[source], weights[target], folds,
      num_rounds=num_rounds, learner=learner, loss=loss,
    ))
    if step == num_steps - 1:
      break
    weights = weights.copy()
    if step == num_steps - 2:  # the schedule reaches 1: no source weight left
      beta = 0.0
      weights[source] = 0.0
    else:
      hypothesis = _fit(learner, inputs, labels, weights)
      errors = _adjusted_errors(_predict_real(hypothesis, inputs),
                                labels, loss)
      fraction = start_fraction + (step + 1) / (num_steps - 1) * (1 - start_fraction)
      beta = _solve_source_beta(weights[source], errors[source],
                                weights[target].sum(), fraction)
      if beta > 0:
        weights[source] *= beta ** errors[source]
      else:
        weights[source] *= errors[source] == 0
    weights /= weights.sum()
    betas.append(beta)

  cv_errors = np.asarray(cv_errors)
  best = int(np.argmin(cv_errors))
  frozen = np.arange(total) < num_source
  model = _adaboost_r2(inputs, labels, history[best], frozen,
                       num_rounds=num_rounds, learner=learner, loss=loss)
  history = np.stack(history)
  return TrAdaBoostR2Result(
    model=model, best_step=best, cv_errors=cv_errors, betas=np.asarray(betas),
    target_weight_fractions=history[:, target].sum(axis=1),
    weight_history=history, weights=history[best],
  )


def _cross_validate(source_inputs, source_labels, target_inputs, target_labels,
                    source_weights, target_weights, folds, *, num_rounds, learner,
                    loss) -> float:
  """Mean squared target error of AdaBoost.R2′ over the ``folds`` of the target."""
  num_source = source_inputs.shape[0]
  squared_errors = np.empty(target_inputs.shape[0])
  for test in folds:
    train = np.setdiff1d(np.arange(target_inputs.shape[0]), test)
    train_weights = target_weights[train]
    if train_weights.sum() > 0:
      train_weights = train_weights * (target_weights.sum() / train_weights.sum())
    weights = np.concatenate([source_weights, train_weights])
    frozen = np.arange(len(weights)) < num_source
    model = _adaboost_r2(
      np.concatenate([source_inputs, target_inputs[train]]),
      np.concatenate([source_labels, target_labels[train]]),
      weights / weights.sum(), frozen,
      num_rounds=num_rounds, learner=learner, loss=loss,
    )
    squared_errors[test] = (model.predict(target_inputs[test])
                            - target_labels[test]) ** 2
  return float(squared_errors.mean())
