r"""TrAdaBoost: instance-transfer boosting for classification.

Dai, Yang, Xue and Yu, "Boosting for transfer learning", ICML 2007
(Algorithm 1): boosting over a large labelled source sample and a small
labelled target sample in which misclassified source examples lose weight.
See :func:`tradaboost`; the base learner is
:class:`~tljax.reweight.boosting.learners.WeightedLogisticRegression` by
default, or any scikit-learn classifier taking ``sample_weight``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from tljax.checks import check_int
from tljax.reweight.boosting._base import (
    check_example_labels,
    check_inputs,
    check_learner,
    check_predict_inputs,
    check_same_columns,
    check_sample_weight,
    fit_clone,
    predict,
)
from tljax.reweight.boosting.learners import WeightedLogisticRegression

__all__ = [
    "MAX_ERROR",
    "MIN_ERROR",
    "TrAdaBoostResult",
    "WEIGHT_RESCALE",
    "tradaboost",
]

#: TrAdaBoost clips the target error ``ε_t`` into ``[MIN_ERROR, MAX_ERROR]``.
MIN_ERROR = 1e-10
MAX_ERROR = 0.499

#: Boosting weights are rescaled (which changes no distribution ``p``) when
#: their sum leaves ``[1 / WEIGHT_RESCALE, WEIGHT_RESCALE]``.
WEIGHT_RESCALE = 1e200


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
    inputs = check_predict_inputs(inputs, self.num_features, "inputs")
    voters = self.learners[self.first_voting_round :]
    vote_weights = np.log(1.0 / self.betas[self.first_voting_round :])
    hypotheses = np.stack([predict(h, inputs) for h in voters])  # (T, M)
    if len(self.classes) == 2:
      chosen = (vote_weights @ hypotheses >= 0.5 * vote_weights.sum()).astype(
          int
      )
    else:
      scores = np.stack(
          [vote_weights @ (hypotheses == k) for k in range(len(self.classes))],
          axis=1,
      )
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
      integer=True,
  )
  target_labels = check_example_labels(
      target_labels,
      "target_labels",
      length=num_target,
      length_of="target_inputs",
      integer=True,
  )
  num_rounds = check_int(num_rounds, "num_rounds", minimum=1)
  if learner is None:
    learner = WeightedLogisticRegression()
  check_learner(learner)
  total = num_source + num_target
  weights = check_sample_weight(initial_weights, "initial_weights", total)
  if not weights[num_source:].sum() > 0:
    raise ValueError(
        "initial_weights must give the target examples a positive total."
    )

  classes, encoded = np.unique(
      np.concatenate([source_labels, target_labels]), return_inverse=True
  )
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
    hypothesis = fit_clone(learner, inputs, encoded, distribution)
    predictions = predict(hypothesis, inputs)
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
      learners=tuple(learners),
      classes=classes,
      betas=np.asarray(betas),
      errors=np.asarray(errors),
      source_beta=source_beta,
      weights=weights,
      weight_history=np.stack(history),
      first_voting_round=math.ceil(num_rounds / 2) - 1,
      num_features=source_inputs.shape[1],
  )


# ---------------------------------------------------------------------------
# AdaBoost.R2 / AdaBoost.R2′ (regression).
