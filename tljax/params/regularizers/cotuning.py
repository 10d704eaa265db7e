r"""Co-Tuning: the source head trained on target labels translated to source labels.

You et al., NeurIPS 2020. :func:`cotuning_relationship` (the direct
approach) and :func:`cotuning_reverse_relationship` (the reverse approach)
estimate the category relationship ``p(y_s | y_t)``; :func:`cotuning_loss`
is the term.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from tljax.checks import (
    check_int,
    check_labels,
    check_non_negative,
    check_positive,
    check_probability_rows,
    is_traced,
)
from tljax.params.regularizers._checks import (
    as_float,
    check_array,
    check_finite_result,
    check_probabilities,
)
from tljax.solvers import minimize_lbfgs

__all__ = [
    "cotuning_loss",
    "cotuning_relationship",
    "cotuning_reverse_relationship",
]

# The grid of inverse regularisation strengths the Co-Tuning code searches
# for its reverse approach (thuml/CoTuning, module/relationship_learning.py).
# fmt: off
COTUNING_INVERSE_REGULARIZATIONS = (
  1e4, 3e3, 1e3, 3e2, 1e2, 3e1, 1e1, 3.0, 1.0, 3e-1, 1e-1, 3e-2, 1e-2, 3e-3,
  1e-3, 3e-4, 1e-4,
)
# fmt: on


def cotuning_relationship(
    source_probabilities: jax.Array,
    target_labels: jax.Array,
    *,
    num_target_classes: int,
) -> jax.Array:
  r"""Co-Tuning's category relationship ``p(y_s | y_t)``, direct approach.

  You, Kou, Long and Wang, "Co-Tuning for transfer learning", NeurIPS 2020.
  Co-Tuning keeps the pretrained source head and translates each target
  label into a distribution over source classes, ``p(y_s | y_t)``, learned
  from the pretrained model's predictions on the target training data. The
  direct approach averages those predictions per target class::

    p(y_s | y_t = c) = (1 / n_c) Σ_{i : y_t,i = c} p_s(y_s | x_i)

  Deviation: the authors' released code (thuml/CoTuning, ``train.py``) uses
  the paper's *reverse* approach, available as
  :func:`cotuning_reverse_relationship`; this direct one is what the
  Transfer-Learning-Library ships (``tllib``'s Co-Tuning
  ``get_category_relationship``), needs no validation split and is jittable.
  The paper learns the relationship from calibrated source predictions; the
  authors calibrate their ImageNet model by temperature scaling (logits
  times 0.884) before the softmax, so pass calibrated probabilities.

  Args:
    source_probabilities: ``(N, C_s)`` predicted source-class probabilities
      of the pretrained model (its source head, evaluation mode) on the
      target training examples; rows sum to one.
    target_labels: ``(N,)`` integer target labels in
      ``[0, num_target_classes)``.
    num_target_classes: ``C_t``; every class needs at least one example.

  Returns:
    ``(C_t, C_s)`` float32 matrix; row ``c`` is ``p(y_s | y_t = c)`` and sums
    to one. Pass it to :func:`cotuning_loss`.

  Raises:
    ValueError: on a shape mismatch, probability rows that are not
      distributions, labels out of range, or a target class without examples
      (value checks run on concrete arrays, not under ``jax.jit``).
  """
  num_target_classes = check_int(
      num_target_classes, "num_target_classes", minimum=1
  )
  source_probabilities = check_probabilities(
      source_probabilities, "source_probabilities"
  )
  target_labels, _ = check_labels(
      target_labels,
      "target_labels",
      length=source_probabilities.shape[0],
      length_of="source_probabilities",
      num_classes=num_target_classes,
      num_classes_argument="num_target_classes",
  )
  _check_every_class_present(target_labels, num_target_classes)
  one_hot = jax.nn.one_hot(target_labels, num_target_classes, dtype=jnp.float32)
  sums = one_hot.T @ as_float(source_probabilities)
  counts = jnp.sum(one_hot, axis=0)
  return sums / counts[:, None]


def _check_every_class_present(
    target_labels: jax.Array, num_target_classes: int
):
  if is_traced(target_labels):
    return
  counts = np.bincount(np.asarray(target_labels), minlength=num_target_classes)
  empty = np.flatnonzero(counts == 0).tolist()
  if empty:
    raise ValueError(
        f"target_labels has no example of target classes {empty}; the "
        "relationship p(y_s | y_t) needs every class."
    )


def cotuning_reverse_relationship(
    source_probabilities: jax.Array,
    target_labels: jax.Array,
    validation_probabilities: jax.Array,
    validation_labels: jax.Array,
    *,
    num_target_classes: int,
    inverse_regularizations: Sequence[float] = COTUNING_INVERSE_REGULARIZATIONS,
    max_iterations: int = 500,
) -> jax.Array:
  r"""Co-Tuning's category relationship ``p(y_s | y_t)``, reverse approach.

  You et al., NeurIPS 2020 (see :func:`cotuning_relationship`). Instead of
  averaging source predictions, the reverse approach learns the easier
  direction ``p(y_t | y_s)`` with a classifier from source-class
  probabilities to target labels, then applies Bayes' rule with the source
  marginal ``p(y_s)``::

    p(y_s | y_t) ∝ p(y_t | y_s) p(y_s)

  Steps, as in the authors' code (thuml/CoTuning,
  ``module/relationship_learning.py``, ``relationship_learning``):

  1. fit a multinomial logistic regression without intercept, weights
     ``V`` of shape ``(C_s, C_t)``, on the training probabilities for each
     inverse regularisation strength ``c`` (minimising
     ``c Σ_i CE(p_i V, y_i) + ½ ‖V‖²``, scikit-learn's objective), and keep
     the one with the best validation accuracy (the first, on ties);
  2. calibrate it: the temperature ``s`` minimising the validation
     cross-entropy of ``s · p V``;
  3. ``p(y_t | y_s = i) = softmax(s V_i)``, the classifier's prediction for
     a one-hot source class ``i``;
  4. ``p(y_s)``: the mean source probabilities over training and validation
     examples; then normalise ``p(y_t | y_s) p(y_s)`` over source classes.

  Differences from that code: the regressions are solved with
  ``optax.lbfgs`` (run to a gradient tolerance or ``max_iterations``) rather
  than scikit-learn's L-BFGS, and the temperature by ``optax.lbfgs`` rather
  than PyTorch's; the code's fixed ImageNet temperature (logits times 0.884
  before the softmax) is the caller's to apply when computing
  ``source_probabilities``.

  Args:
    source_probabilities: ``(N, C_s)`` pretrained source-head probabilities
      on the target training examples (rows sum to one).
    target_labels: ``(N,)`` their target labels.
    validation_probabilities: ``(M, C_s)`` the same on held-out target
      examples, used to pick the regularisation and the temperature (a split
      of the target *training* data, never its test data).
    validation_labels: ``(M,)`` their labels.
    num_target_classes: ``C_t``; every class needs a training example.
    inverse_regularizations: candidate strengths ``c`` (> 0), searched in
      order; default: the authors' grid, ``1e4`` down to ``1e-4``.
    max_iterations: L-BFGS iteration cap per regression.

  Returns:
    ``(C_t, C_s)`` float32 matrix whose rows sum to one, for
    :func:`cotuning_loss`.

  Raises:
    ValueError: on shape mismatches, invalid probabilities or labels, an
      empty target class, or a non-positive regularisation strength.
  """
  num_target_classes = check_int(
      num_target_classes, "num_target_classes", minimum=1
  )
  max_iterations = check_int(max_iterations, "max_iterations", minimum=1)
  source_probabilities = check_probabilities(
      source_probabilities, "source_probabilities"
  )
  validation_probabilities = check_probabilities(
      validation_probabilities, "validation_probabilities"
  )
  num_source_classes = source_probabilities.shape[1]
  if validation_probabilities.shape[1] != num_source_classes:
    raise ValueError(
        f"validation_probabilities must have {num_source_classes} columns like "
        f"source_probabilities, got shape {validation_probabilities.shape}."
    )
  target_labels, _ = check_labels(
      target_labels,
      "target_labels",
      length=source_probabilities.shape[0],
      length_of="source_probabilities",
      num_classes=num_target_classes,
      num_classes_argument="num_target_classes",
  )
  validation_labels, _ = check_labels(
      validation_labels,
      "validation_labels",
      length=validation_probabilities.shape[0],
      length_of="validation_probabilities",
      num_classes=num_target_classes,
      num_classes_argument="num_target_classes",
  )
  _check_every_class_present(target_labels, num_target_classes)
  if (
      isinstance(inverse_regularizations, (str, bytes))
      or not isinstance(inverse_regularizations, Sequence)
      or not inverse_regularizations
  ):
    raise ValueError(
        "inverse_regularizations must be a non-empty sequence of positive numbers, "
        f"got {inverse_regularizations!r}."
    )
  for strength in inverse_regularizations:
    check_positive(strength, "inverse_regularizations")

  train = as_float(source_probabilities)
  return _reverse_relationship(
      train,
      jax.nn.one_hot(target_labels, num_target_classes, dtype=train.dtype),
      as_float(validation_probabilities),
      validation_labels,
      jnp.asarray(inverse_regularizations, train.dtype),
      max_iterations=max_iterations,
  )


@functools.partial(jax.jit, static_argnames="max_iterations")
def _reverse_relationship(
    train,
    train_targets,
    validation,
    validation_labels,
    strengths,
    *,
    max_iterations,
):
  """The computation of :func:`cotuning_reverse_relationship`, compiled once."""
  validation_targets = jax.nn.one_hot(
      validation_labels, train_targets.shape[1], dtype=train.dtype
  )

  def fit(strength):
    return _fit_logistic_regression(
        train, train_targets, strength, max_iterations=max_iterations
    )

  coefficients = jax.vmap(fit)(strengths)  # (num_strengths, C_s, C_t)
  validation_logits = jnp.einsum("ms,kst->kmt", validation, coefficients)
  accuracies = jnp.mean(
      jnp.argmax(validation_logits, axis=-1) == validation_labels, axis=-1
  )
  best = jnp.argmax(accuracies)  # the first best, as numpy's argmax
  coefficient = coefficients[best]
  temperature = _calibrate_temperature(
      validation_logits[best], validation_targets, max_iterations=max_iterations
  )
  target_given_source = jax.nn.softmax(coefficient * temperature, axis=1)
  source_marginal = jnp.mean(jnp.concatenate([train, validation]), axis=0)
  joint = (target_given_source * source_marginal[:, None]).T  # (C_t, C_s)
  return joint / jnp.sum(joint, axis=1, keepdims=True)


def _fit_logistic_regression(inputs, targets, strength, *, max_iterations):
  """``argmin_V strength Σ_i CE(x_i V, t_i) + ½ ‖V‖²``, no intercept.

  The objective is divided by ``strength · N`` (same minimiser) so that the
  gradient tolerance does not depend on the data size or the strength.
  """
  num_examples = inputs.shape[0]

  def objective(coefficients):
    cross_entropy = jnp.mean(
        optax.softmax_cross_entropy(inputs @ coefficients, targets)
    )
    penalty = jnp.sum(jnp.square(coefficients)) / (2 * strength * num_examples)
    return cross_entropy + penalty

  initial = jnp.zeros((inputs.shape[1], targets.shape[1]), inputs.dtype)
  return minimize_lbfgs(
      objective, initial, max_iterations=max_iterations, tolerance=1e-6
  )


def _calibrate_temperature(logits, targets, *, max_iterations):
  """The scale ``s`` minimising the mean cross-entropy of ``s · logits``."""

  def objective(scale):
    return jnp.mean(optax.softmax_cross_entropy(logits * scale, targets))

  return minimize_lbfgs(
      objective,
      jnp.ones((), logits.dtype),
      max_iterations=max_iterations,
      tolerance=1e-7,
  )


def cotuning_loss(
    source_logits: jax.Array,
    target_labels: jax.Array,
    relationship: jax.Array,
    *,
    trade_off: float = 2.3,
) -> jax.Array:
  r"""Co-Tuning's source-head loss: cross-entropy to translated source labels.

  You et al., NeurIPS 2020 (see :func:`cotuning_relationship`). The
  fine-tuned model keeps the pretrained source head next to its new target
  head; besides the target cross-entropy, the source head is trained on the
  soft source labels ``p(y_s | y_t)`` of each example's target label::

    λ · (1/N) Σ_n CE(relationship[y_t,n], softmax(source_logits_n))
      = −λ · (1/N) Σ_n Σ_s relationship[y_t,n, s] log softmax(source_logits_n)_s

  so the full objective is ``cross_entropy(target_logits, target_labels) +
  cotuning_loss(source_logits, target_labels, relationship)``. Default
  ``λ = 2.3``, the trade-off of the authors' code (thuml/CoTuning,
  ``train.py`` and its README) and of the Transfer-Learning-Library's
  example.

  Args:
    source_logits: ``(N, C_s)`` logits of the source head on the batch.
    target_labels: ``(N,)`` integer target labels. Checked to lie in
      ``[0, C_t)`` when concrete; under ``jax.jit`` an out-of-range label
      makes the loss NaN rather than silently reading another row.
    relationship: ``(C_t, C_s)`` matrix from :func:`cotuning_relationship` or
      :func:`cotuning_reverse_relationship`; a constant (no gradient).
    trade_off: ``λ``, >= 0.

  Returns:
    The scalar loss (float32 or wider).

  Raises:
    ValueError: on shape mismatches, labels out of range or a negative
      ``trade_off``; when concrete, non-finite logits or relationship, a
      relationship whose rows are not distributions, or a loss that
      overflows.
  """
  check_non_negative(trade_off, "trade_off")
  source_logits = check_array(source_logits, "source_logits")
  logits_shape = tuple(source_logits.shape)
  if len(logits_shape) != 2 or 0 in logits_shape:
    raise ValueError(
        f"source_logits must have shape (batch, num_source_classes), got shape "
        f"{logits_shape}."
    )
  relationship = check_array(relationship, "relationship")
  relationship_shape = tuple(relationship.shape)
  if (
      len(relationship_shape) != 2
      or relationship_shape[1] != logits_shape[1]
      or relationship_shape[0] == 0
  ):
    raise ValueError(
        f"relationship must have shape (num_target_classes, {logits_shape[1]}) to "
        f"match source_logits, got shape {relationship_shape}."
    )
  check_probability_rows(relationship, "relationship")
  target_labels, _ = check_labels(
      target_labels,
      "target_labels",
      length=logits_shape[0],
      length_of="source_logits",
      num_classes=relationship_shape[0],
      num_classes_argument="num_target_classes",
  )
  soft_labels = jnp.take(
      jax.lax.stop_gradient(as_float(relationship)),
      target_labels,
      axis=0,
      mode="fill",
      fill_value=jnp.nan,
  )
  log_probabilities = jax.nn.log_softmax(as_float(source_logits), axis=-1)
  # A source class with soft label 0 adds 0, never 0 · ∞ = NaN when its
  # log-probability underflows to -∞ (logits spread beyond the float range).
  terms = jnp.where(soft_labels == 0, 0.0, soft_labels * log_probabilities)
  return check_finite_result(
      trade_off * -jnp.mean(jnp.sum(terms, axis=-1)),
      "cotuning_loss overflows: the cross-entropy of these source_logits "
      "against the relationship's soft labels is not finite in float32 "
      "(logits spread by 1e38 or more); rescale the source_logits.",
  )
