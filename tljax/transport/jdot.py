r"""JDOT: joint distribution optimal transport (kernel ridge), and DeepJDOT's term.

Courty, Flamary, Habrard and Rakotomamonjy, "Joint distribution optimal
transportation for domain adaptation", NeurIPS 2017. With source points
``x_i`` and their labels ``y_i`` (``n``), unlabelled target points ``z_j``
(``m``) and a predictor ``f``, JDOT minimises over the plan ``γ`` (uniform
marginals) and ``f``::

  Σ_ij γ_ij [α ‖x_i − z_j‖² / s + L(y_i, f(z_j))] + λ Ω(f),

alternating, for a fixed number of iterations (block coordinate descent):

1. ``γ`` for fixed ``f``: the exact plan of the joint cost
   (:func:`tljax.transport.exact_plan`, POT's ``ot.emd`` as in the paper);
   the first plan has the feature term only (no ``f`` yet), as in the
   authors' code and skada's;
2. ``f`` for fixed ``γ``: with the square loss
   ``L(y, f) = ‖y − f‖²`` and ``Σ_i γ_ij = 1/m``, minimising
   ``Σ_ij γ_ij L(y_i, f(z_j))`` is least squares on the target with the
   transported labels ``ŷ_j = m Σ_i γ_ij y_i``, solved in closed form.

``f`` is kernel ridge regression with an unpenalised intercept,
``f(z) = Σ_j β_j k(z, z_j) + b`` minimising
``Σ_j ‖ŷ_j − f(z_j)‖² + λ βᵀ K β`` (the LS-SVM system
``[[K + λI, 1], [1ᵀ, 0]] [β; b] = [Ŷ; 0]``; with the linear kernel it is
scikit-learn's ``Ridge(alpha=λ)``). Classification uses the same square
loss on one-hot labels (the authors' ``jdot_krr`` on a label matrix) and
predicts the arg-max.

Deviations, stated: (a) the authors' ``KRRClassifier`` penalises ``‖β‖²``,
not the RKHS norm ``βᵀKβ`` used here; (b) skada's ``JDOTClassifier``
(0.6.0) fits a multinomial logistic regression on the target points
repeated once per class and weighted by the transported label mass, with
the cross-entropy ``−log p_{y_i}(z_j)`` as ``L``; here the classifier is
the square loss on one-hot labels; (c) the number of alternations is fixed
(the paper's ``numIterBCD``, 10), where skada stops early when a loss
stops changing by ``tol``. ``s`` scales the squared distances (the median,
as the authors' ``jdot_krr``; skada divides by the mean, and its cost
``(1 − a) D/mean + a L`` is ``α = a / (1 − a)`` here, 1 for its default
``a = 0.5``).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from tljax.align._arrays import (
    check_hyperparameter,
    check_matrix,
    squared_distances,
)
from tljax.checks import check_labels
from tljax.transport._checks import check_iterations, check_pair
from tljax.transport.exact import exact_plan

__all__ = [
    "DISTANCE_SCALES",
    "JDOTResult",
    "KERNELS",
    "deepjdot_loss",
    "jdot",
    "jdot_predict",
]

#: ``kernel`` of :func:`jdot`.
KERNELS = ("linear", "rbf")
#: ``distance_scale`` of :func:`jdot`: what divides the squared distances.
DISTANCE_SCALES = ("median", "mean", "none")


class JDOTResult(NamedTuple):
  """What :func:`jdot` returns.

  Attributes:
    dual_coefficients: the ``(m, k)`` kernel weights ``β`` on the target
      points.
    intercept: the ``(k,)`` intercept ``b``.
    plan: the last ``(n, m)`` exact plan ``γ`` (the one ``f`` was fitted
      on).
    transported_labels: the ``(m, k)`` labels ``ŷ = m γᵀ Y`` ``f`` was
      fitted to.
    joint_cost: ``Σ_ij γ_ij C_ij`` of the last plan with the cost it was
      solved for.
  """

  dual_coefficients: jax.Array
  intercept: jax.Array
  plan: jax.Array
  transported_labels: jax.Array
  joint_cost: jax.Array


def jdot(
    source_features: jax.Array,
    source_targets: jax.Array,
    target_features: jax.Array,
    *,
    alpha: float = 1.0,
    ridge: float = 10.0,
    kernel: str = "linear",
    gamma: float | None = None,
    iterations: int = 10,
    distance_scale: str = "median",
) -> JDOTResult:
  r"""JDOT with kernel ridge regression (Courty et al., NeurIPS 2017).

  The alternation of the module docstring: ``iterations`` times, the exact
  plan of ``C_ij = α ‖x_i − z_j‖² / s + ‖y_i − f(z_j)‖²`` (the first
  without the label term), then ``f`` refitted on the target with the
  transported labels ``m γᵀ Y``. Jittable with the options static (the
  plans are :func:`jax.pure_callback` calls to SciPy).

  For classification pass one-hot labels as ``source_targets`` (what
  :class:`tljax.transport.JDOTClassifier` does) and take the arg-max of
  :func:`jdot_predict`.

  Args:
    source_features: ``(n, dim)`` source points ``x``.
    source_targets: ``(n,)`` or ``(n, k)`` real labels ``y``.
    target_features: ``(m, dim)`` target points ``z``.
    alpha: the feature term's weight ``α >= 0`` (the authors' code: 1).
    ridge: the ridge ``λ > 0`` of ``f`` (in the sum-of-squares form,
      scikit-learn's ``Ridge(alpha=λ)``; the authors' ``lambd``, 10).
    kernel: ``"linear"`` (``⟨z, z'⟩``) or ``"rbf"``
      (``exp(−γ ‖z − z'‖²)``).
    gamma: the RBF ``γ > 0``; ``None`` for ``1 / dim`` (scikit-learn's).
    iterations: alternations (the authors' ``numIterBCD``, 10).
    distance_scale: ``s``: ``"median"`` or ``"mean"`` of the squared
      source-target distances, or ``"none"`` (1).

  Returns:
    A :class:`JDOTResult`; ``source_targets`` of shape ``(n,)`` count as
    ``k = 1``.

  Raises:
    ValueError: on features that are not finite matrices with the same
      ``dim``, targets not finite or not one per source row, a negative
      ``alpha``, a non-positive ``ridge`` or ``gamma``, ``iterations``
      below 1, or an unknown ``kernel`` or ``distance_scale``.
  """
  source, target = check_pair(
      source_features, target_features, "source_features", "target_features"
  )
  targets = _check_targets(source_targets, source.shape[0])
  check_hyperparameter(alpha, "alpha")
  check_hyperparameter(ridge, "ridge", positive=True)
  gamma = _check_kernel(kernel, gamma, source.shape[1])
  if distance_scale not in DISTANCE_SCALES:
    raise ValueError(
        f"distance_scale must be one of {DISTANCE_SCALES}, got "
        f"{distance_scale!r}."
    )
  return _jdot(
      source,
      targets.astype(source.dtype),
      target,
      alpha,
      ridge,
      gamma,
      kernel=kernel,
      iterations=check_iterations(iterations, "iterations"),
      distance_scale=distance_scale,
  )


def jdot_predict(
    result: JDOTResult,
    target_features: jax.Array,
    new_features: jax.Array,
    *,
    kernel: str = "linear",
    gamma: float | None = None,
) -> jax.Array:
  """``f(x) = Σ_j β_j k(x, z_j) + b`` of a :func:`jdot` fit, at new points.

  Args:
    result: what :func:`jdot` returned.
    target_features: the ``(m, dim)`` target points it was fitted on.
    new_features: ``(q, dim)`` points to predict.
    kernel, gamma: as given to :func:`jdot`.

  Returns:
    The ``(q, k)`` predictions.

  Raises:
    ValueError: on features that are not finite matrices with the same
      ``dim``, ``target_features`` not one row per row of
      ``result.dual_coefficients``, or a bad ``kernel`` or ``gamma``.
  """
  new, target = check_pair(
      new_features, target_features, "new_features", "target_features"
  )
  coefficients = check_matrix(
      result.dual_coefficients, "result.dual_coefficients", finite=True
  )
  if coefficients.shape[0] != target.shape[0]:
    raise ValueError(
        f"target_features must have one row per row of "
        f"result.dual_coefficients ({coefficients.shape[0]}), got "
        f"{target.shape[0]}."
    )
  gamma = _check_kernel(kernel, gamma, target.shape[1])
  return _kernel(new, target, kernel, gamma) @ coefficients.astype(
      new.dtype
  ) + jnp.asarray(result.intercept, new.dtype)


# --- Internals ---------------------------------------------------------------


def _check_targets(source_targets: Any, num_source: int) -> jax.Array:
  targets = source_targets
  if np.ndim(targets) == 1:
    targets = jnp.reshape(jnp.asarray(targets), (-1, 1))
  targets = check_matrix(
      targets, "source_targets", columns="outputs", finite=True
  )
  if targets.shape[0] != num_source:
    raise ValueError(
        f"source_targets must have one row per row of source_features "
        f"({num_source}), got shape {np.shape(source_targets)}."
    )
  return targets


def _check_kernel(kernel: str, gamma: Any, dim: int) -> float | None:
  if kernel not in KERNELS:
    raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}.")
  if kernel == "linear":
    return None
  if gamma is None:
    return 1.0 / dim
  check_hyperparameter(gamma, "gamma", positive=True)
  return gamma


def _kernel(first, second, kernel, gamma):
  if kernel == "linear":
    return first @ second.T
  return jnp.exp(-gamma * squared_distances(first, second))


@functools.partial(
    jax.jit, static_argnames=("kernel", "iterations", "distance_scale")
)
def _jdot(
    source,
    targets,
    target,
    alpha,
    ridge,
    gamma,
    *,
    kernel,
    iterations,
    distance_scale,
):
  num_target = target.shape[0]
  distances = squared_distances(source, target)
  if distance_scale == "median":
    distances = distances / jnp.median(distances)
  elif distance_scale == "mean":
    distances = distances / jnp.mean(distances)
  feature_cost = alpha * distances
  gram = _kernel(target, target, kernel, gamma)
  ones = jnp.ones((num_target, 1), gram.dtype)
  # [[K + λI, 1], [1ᵀ, 0]]: kernel ridge with an unpenalised intercept.
  system = jnp.block(
      [
          [gram + ridge * jnp.eye(num_target, dtype=gram.dtype), ones],
          [ones.T, jnp.zeros((1, 1), gram.dtype)],
      ]
  )

  def fit(cost):
    plan = exact_plan(cost)
    transported = num_target * plan.T @ targets
    right = jnp.concatenate(
        [transported, jnp.zeros((1, targets.shape[1]), gram.dtype)]
    )
    solution = jnp.linalg.solve(system, right)
    coefficients, intercept = solution[:-1], solution[-1]
    return plan, transported, coefficients, intercept

  def step(_, carry):
    _, _, coefficients, intercept, _ = carry
    predictions = gram @ coefficients + intercept
    cost = feature_cost + squared_distances(targets, predictions)
    plan, transported, coefficients, intercept = fit(cost)
    return plan, transported, coefficients, intercept, jnp.sum(plan * cost)

  plan, transported, coefficients, intercept = fit(feature_cost)
  carry = (
      plan,
      transported,
      coefficients,
      intercept,
      jnp.sum(plan * feature_cost),
  )
  plan, transported, coefficients, intercept, joint_cost = jax.lax.fori_loop(
      0, iterations - 1, step, carry
  )
  return JDOTResult(coefficients, intercept, plan, transported, joint_cost)


def deepjdot_loss(
    source_features: jax.Array,
    target_features: jax.Array,
    source_labels: jax.Array,
    target_logits: jax.Array,
    *,
    alpha: float = 0.001,
    target_weight: float = 0.0001,
) -> tuple[jax.Array, jax.Array]:
  r"""DeepJDOT's transport term of a mini-batch (Damodaran et al., ECCV 2018).

  Damodaran, Kellenberger, Flamary, Tuia and Courty, "DeepJDOT: deep joint
  distribution optimal transport for unsupervised domain adaptation",
  ECCV 2018: with features ``g``, classifier ``f``, source labels ``y``::

    C_ij = α ‖g(x_i) − g(z_j)‖² + λ_t CE(y_i, f(g(z_j))),
    term = Σ_ij γ_ij C_ij,   γ = exact_plan(stop_gradient(C)),

  the exact plan (:func:`tljax.transport.exact_plan`, uniform weights) of
  the joint cost, held constant, so the gradient is ``Σ_ij γ_ij ∂C_ij``, as
  in the paper's alternation and skada's ``deepjdot_loss`` (``ot.emd2``).
  The paper's α = 0.001 and λ_t = 0.0001 are the defaults. Deviation: the
  authors' Keras code solves ``γ`` for ``‖e_{y_i} − softmax f(g(z_j))‖²`` in
  the place of the cross-entropy (their loss uses the cross-entropy); here,
  as in the paper's equation and skada, the plan is that of the loss's cost.

  Args:
    source_features: ``(n, dim)`` source features ``g(x)``.
    target_features: ``(m, dim)`` target features ``g(z)``.
    source_labels: ``(n,)`` integer classes in ``[0, num_classes)``.
    target_logits: ``(m, num_classes)`` target logits ``f(g(z))``.
    alpha: the feature term's ``α >= 0``.
    target_weight: the label term's ``λ_t >= 0``.

  Returns:
    ``(term, plan)``: the scalar term and the ``(n, m)`` plan.

  Raises:
    ValueError: on features that are not finite matrices with the same
      ``dim``, logits not ``(m, num_classes)`` or not finite, labels not
      ``(n,)`` integers in range, or a negative ``alpha`` or
      ``target_weight``.
  """
  source, target = check_pair(
      source_features, target_features, "source_features", "target_features"
  )
  logits = check_matrix(
      target_logits,
      "target_logits",
      rows="num_target",
      columns="num_classes",
      finite=True,
  )
  if logits.shape[0] != target.shape[0]:
    raise ValueError(
        f"target_logits must have one row per row of target_features "
        f"({target.shape[0]}), got shape {logits.shape}."
    )
  labels, _ = check_labels(
      source_labels,
      "source_labels",
      length=source.shape[0],
      length_of="source_features",
      num_classes=logits.shape[1],
      num_classes_argument="target_logits' number of columns",
  )
  check_hyperparameter(alpha, "alpha")
  check_hyperparameter(target_weight, "target_weight")
  return _deepjdot_loss(source, target, labels, logits, alpha, target_weight)


def _deepjdot_loss(source, target, labels, logits, alpha, target_weight):
  log_probabilities = jax.nn.log_softmax(logits.astype(source.dtype), axis=-1)
  cross_entropy = -log_probabilities[:, labels].T  # CE(y_i, f(g(z_j)))
  cost = alpha * squared_distances(source, target) + (
      target_weight * cross_entropy
  )
  plan = exact_plan(jax.lax.stop_gradient(cost))
  return jnp.sum(plan * cost), plan
