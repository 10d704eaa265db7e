r"""Boosting for regression transfer: AdaBoost.R2 and two-stage TrAdaBoost.R2.

* :func:`adaboost_r2` — Drucker, "Improving regressors using boosting
  techniques", ICML 1997, with optionally frozen weights (AdaBoost.R2′ of
  Pardoe and Stone);
* :func:`tradaboost_r2` — Pardoe and Stone, "Boosting for regression
  transfer", ICML 2010 (Algorithm 3, two-stage TrAdaBoost.R2), which runs
  AdaBoost.R2′ at each step of a schedule that moves the weight from the
  source to the target examples.

The base learner is :class:`~tljax.reweight.boosting.learners.WeightedRidge`
by default, or any scikit-learn regressor taking ``sample_weight``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import numpy as np
from scipy.special import logsumexp

from tljax.checks import check_int, check_key
from tljax.reweight.boosting._base import (
    check_choice,
    check_example_labels,
    check_inputs,
    check_learner,
    check_predict_inputs,
    check_same_columns,
    check_sample_weight,
    fit_clone,
    predict_real,
)
from tljax.reweight.boosting.classification import MIN_ERROR
from tljax.reweight.boosting.learners import WeightedRidge

__all__ = [
    "LOSSES",
    "AdaBoostR2Model",
    "TrAdaBoostR2Result",
    "adaboost_r2",
    "tradaboost_r2",
]

#: Adjusted-error functions of AdaBoost.R2 (Drucker 1997) for ``r = |y − h(x)| / D``.
LOSSES = ("linear", "square", "exponential")


def _adjusted_errors(
    predictions: np.ndarray, labels: np.ndarray, loss: str
) -> np.ndarray:
  """Drucker's ``L_i`` in ``[0, 1]`` from ``r_i = |y_i − h(x_i)| / max_j |y_j − h(x_j)|``."""
  residuals = np.abs(predictions - labels)
  largest = residuals.max()
  ratios = residuals / largest if largest > 0 else np.zeros_like(residuals)
  if loss == "square":
    return ratios**2
  if loss == "exponential":
    return 1.0 - np.exp(-ratios)
  return ratios


def _weighted_median(
    predictions: np.ndarray, vote_weights: np.ndarray
) -> np.ndarray:
  """Per column of ``(T, M)`` predictions: the smallest ``h_t`` whose
  cumulative vote weight (in increasing order of ``h_t``) reaches half the total.
  """
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
    inputs = check_predict_inputs(inputs, self.num_features, "inputs")
    predictions = np.stack([predict_real(h, inputs) for h in self.learners])
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
  inputs = check_inputs(inputs, "inputs", "num_examples")
  labels = check_example_labels(
      labels,
      "labels",
      length=inputs.shape[0],
      length_of="inputs",
      integer=False,
  )
  num_rounds = check_int(num_rounds, "num_rounds", minimum=1)
  if learner is None:
    learner = WeightedRidge()
  check_learner(learner)
  loss = check_choice(loss, "loss", LOSSES)
  weights = check_sample_weight(sample_weight, "sample_weight", inputs.shape[0])
  if frozen is None:
    frozen = np.zeros(inputs.shape[0], bool)
  else:
    frozen = np.asarray(frozen)
    if frozen.dtype != bool or frozen.shape != (inputs.shape[0],):
      raise ValueError(
          f"frozen must be None or a boolean mask of shape ({inputs.shape[0]},), got "
          f"dtype {frozen.dtype} and shape {frozen.shape}."
      )
  return _adaboost_r2(
      inputs,
      labels,
      weights / weights.sum(),
      frozen,
      num_rounds=num_rounds,
      learner=learner,
      loss=loss,
  )


def _adaboost_r2(
    inputs, labels, distribution, frozen, *, num_rounds, learner, loss
):
  learners, betas, errors = [], [], []
  free = ~frozen
  for _ in range(num_rounds):
    hypothesis = fit_clone(learner, inputs, labels, distribution)
    losses = _adjusted_errors(predict_real(hypothesis, inputs), labels, loss)
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
      learners=tuple(learners),
      betas=betas,
      errors=np.asarray(errors),
      vote_weights=vote_weights,
      weights=distribution,
      num_features=inputs.shape[1],
  )


def _solve_source_beta(
    source_weights: np.ndarray,
    source_losses: np.ndarray,
    target_mass: float,
    fraction: float,
) -> float:
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
  source_inputs = check_inputs(source_inputs, "source_inputs", "n_source")
  target_inputs = check_inputs(target_inputs, "target_inputs", "n_target")
  check_same_columns(
      source_inputs, target_inputs, "source_inputs", "target_inputs"
  )
  num_source, num_target = source_inputs.shape[0], target_inputs.shape[0]
  source_labels = check_example_labels(
      source_labels,
      "source_labels",
      length=num_source,
      length_of="source_inputs",
      integer=False,
  )
  target_labels = check_example_labels(
      target_labels,
      "target_labels",
      length=num_target,
      length_of="target_inputs",
      integer=False,
  )
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
  check_learner(learner)
  loss = check_choice(loss, "loss", LOSSES)
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
    cv_errors.append(
        _cross_validate(
            source_inputs,
            source_labels,
            target_inputs,
            target_labels,
            weights[source],
            weights[target],
            folds,
            num_rounds=num_rounds,
            learner=learner,
            loss=loss,
        )
    )
    if step == num_steps - 1:
      break
    weights = weights.copy()
    if step == num_steps - 2:  # the schedule reaches 1: no source weight left
      beta = 0.0
      weights[source] = 0.0
    else:
      hypothesis = fit_clone(learner, inputs, labels, weights)
      errors = _adjusted_errors(predict_real(hypothesis, inputs), labels, loss)
      fraction = start_fraction + (step + 1) / (num_steps - 1) * (
          1 - start_fraction
      )
      beta = _solve_source_beta(
          weights[source], errors[source], weights[target].sum(), fraction
      )
      if beta > 0:
        weights[source] *= beta ** errors[source]
      else:
        weights[source] *= errors[source] == 0
    weights /= weights.sum()
    betas.append(beta)

  cv_errors = np.asarray(cv_errors)
  best = int(np.argmin(cv_errors))
  frozen = np.arange(total) < num_source
  model = _adaboost_r2(
      inputs,
      labels,
      history[best],
      frozen,
      num_rounds=num_rounds,
      learner=learner,
      loss=loss,
  )
  history = np.stack(history)
  return TrAdaBoostR2Result(
      model=model,
      best_step=best,
      cv_errors=cv_errors,
      betas=np.asarray(betas),
      target_weight_fractions=history[:, target].sum(axis=1),
      weight_history=history,
      weights=history[best],
  )


def _cross_validate(
    source_inputs,
    source_labels,
    target_inputs,
    target_labels,
    source_weights,
    target_weights,
    folds,
    *,
    num_rounds,
    learner,
    loss,
) -> float:
  """Mean squared target error of AdaBoost.R2′ over the ``folds`` of the target."""
  num_source = source_inputs.shape[0]
  squared_errors = np.empty(target_inputs.shape[0])
  for test in folds:
    train = np.setdiff1d(np.arange(target_inputs.shape[0]), test)
    train_weights = target_weights[train]
    if train_weights.sum() > 0:
      train_weights = train_weights * (
          target_weights.sum() / train_weights.sum()
      )
    weights = np.concatenate([source_weights, train_weights])
    frozen = np.arange(len(weights)) < num_source
    model = _adaboost_r2(
        np.concatenate([source_inputs, target_inputs[train]]),
        np.concatenate([source_labels, target_labels[train]]),
        weights / weights.sum(),
        frozen,
        num_rounds=num_rounds,
        learner=learner,
        loss=loss,
    )
    squared_errors[test] = (
        model.predict(target_inputs[test]) - target_labels[test]
    ) ** 2
  return float(squared_errors.mean())
