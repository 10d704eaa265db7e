"""A scikit-learn-style front end to OTDA, the linear Monge mapping and JDOT.

Thin over the pure functions of :mod:`tljax.transport`, with the shape of
POT's ``ot.da`` estimators (and of :mod:`tljax.reweight`'s facade):
``fit(Xs, ys, Xt)`` learns the map from the source to the target, and
``transform(X)`` moves source points; a classifier is then trained on the
moved source and applied to the target as it is::

  transport = SinkhornTransport("lpl1", epsilon=1.0).fit(Xs, ys, Xt)
  classifier.fit(transport.transform(Xs), ys).predict(Xt)

JDOT fits its own predictor on the target: ``JDOTClassifier().fit(Xs, ys,
Xt).predict(Xt)``.

Results are NumPy arrays, computed in float32 (float64 under
``jax.enable_x64``).
"""

from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np

from tljax.align._arrays import check_hyperparameter, check_matrix
from tljax.checks import check_labels
from tljax.transport._checks import (
    check_iterations,
    check_pair,
    check_threshold,
)
from tljax.transport.class_regularized import sinkhorn_l1l2, sinkhorn_lpl1
from tljax.transport.jdot import (
    DISTANCE_SCALES,
    KERNELS,
    jdot,
    jdot_predict,
)
from tljax.transport.linear_monge import linear_monge_mapping
from tljax.transport.otda import (
    barycentric_mapping,
    entropic_mapping,
    nearest_neighbor_mapping,
)
from tljax.transport.sinkhorn import (
    _squared_euclidean_cost,
    check_solver,
    entropic_plan,
)

__all__ = [
    "CLASS_REGULARIZATIONS",
    "JDOTClassifier",
    "JDOTRegressor",
    "LinearMongeTransport",
    "OUT_OF_SAMPLE_MAPS",
    "SinkhornTransport",
]

#: ``class_regularization`` of :class:`SinkhornTransport`.
CLASS_REGULARIZATIONS = (None, "lpl1", "l1l2")
#: ``out_of_sample_map`` of :class:`SinkhornTransport`.
OUT_OF_SAMPLE_MAPS = ("ferradans", "entropic")


def _check_fitted(estimator, attribute: str, method: str) -> None:
  """Raises ``ValueError`` when ``estimator`` has no ``attribute`` (not fitted)."""
  if not hasattr(estimator, attribute):
    raise ValueError(
        "call fit(source_inputs, source_labels, target_inputs) before "
        f"{method}."
    )


def _check_new_inputs(inputs, argument: str, columns: int):
  """``inputs`` as a finite matrix with the fitted number of ``columns``."""
  inputs = check_matrix(inputs, argument, finite=True)
  if inputs.shape[1] != columns:
    raise ValueError(
        f"{argument} must have {columns} columns, as the fitted inputs, got "
        f"shape {inputs.shape}."
    )
  return inputs


class SinkhornTransport:
  """OTDA (Courty et al., TPAMI 2017): an entropic plan, then the barycentric mapping.

  ``class_regularization`` picks the plan: ``None`` the entropic plan
  (:func:`~tljax.transport.entropic_plan`; POT's ``SinkhornTransport``),
  ``"lpl1"`` :func:`~tljax.transport.sinkhorn_lpl1` (POT's
  ``SinkhornLpl1Transport``), ``"l1l2"`` :func:`~tljax.transport.sinkhorn_l1l2`
  (POT's ``SinkhornL1l2Transport``); the cost is the squared Euclidean
  distance and the weights uniform. ``transform`` moves the fitted source
  points by :func:`~tljax.transport.barycentric_mapping` and other points
  by ``out_of_sample_map``: ``"ferradans"``
  (:func:`~tljax.transport.nearest_neighbor_mapping`, POT's
  ``out_of_sample_map='ferradans'``, the only one of its class-regularised
  estimators) or, without class regularisation, ``"entropic"``
  (:func:`~tljax.transport.entropic_mapping`, POT's ``'continuous'``, the
  default of its ``SinkhornTransport`` since 0.9.5).

  Args:
    class_regularization: ``None``, ``"lpl1"`` or ``"l1l2"``.
    epsilon: the entropic ``ε > 0`` (POT's ``reg_e``, 1), in squared input
      units.
    eta: the class penalty's weight ``η >= 0`` (POT's ``reg_cl``, 0.1).
    out_of_sample_map: ``"ferradans"`` or ``"entropic"``.
    threshold: each Sinkhorn solve stops when ``‖Pᵀ 1 − b‖₁`` is below it
      (POT's ``tol``, 1e-8, is for float64; the default suits float32).
    max_iterations: the most Sinkhorn iterations without class
      regularisation (POT's ``max_iter``, 1000).
    outer_iterations: majorisation or conditional-gradient steps of the
      class-regularised plans (POT's ``max_iter``, 10).
    inner_iterations: the most Sinkhorn iterations of each of those steps
      (POT's ``max_inner_iter``, 200).
    cost_tolerance: ``"l1l2"`` stops when its objective changes by less
      than this, relative (POT's ``SinkhornL1l2Transport`` uses its ``tol``,
      1e-8, so).
    solver: the plain plan's solver, ``"log"`` or ``"kernel"``
      (:func:`~tljax.transport.sinkhorn`: the same plan, the kernel one
      several times faster on a CPU); the class-regularised plans' inner
      solves are log-domain.

  Attributes (after ``fit``): ``plan_`` (the ``(n_s, n_t)`` plan),
  ``transported_source_`` (the fitted source points moved),
  ``source_inputs_``, ``target_inputs_``; without class regularisation also
  ``target_potential_`` and ``converged_``.
  """

  def __init__(
      self,
      class_regularization: str | None = None,
      *,
      epsilon: float = 1.0,
      eta: float = 0.1,
      out_of_sample_map: str = "ferradans",
      threshold: float = 1e-6,
      max_iterations: int = 1000,
      outer_iterations: int = 10,
      inner_iterations: int = 200,
      cost_tolerance: float = 1e-8,
      solver: str = "log",
  ):
    if class_regularization not in CLASS_REGULARIZATIONS:
      raise ValueError(
          f"class_regularization must be one of {CLASS_REGULARIZATIONS}, got "
          f"{class_regularization!r}."
      )
    if out_of_sample_map not in OUT_OF_SAMPLE_MAPS:
      raise ValueError(
          f"out_of_sample_map must be one of {OUT_OF_SAMPLE_MAPS}, got "
          f"{out_of_sample_map!r}."
      )
    if out_of_sample_map == "entropic" and class_regularization is not None:
      raise ValueError(
          "out_of_sample_map='entropic' needs the potentials of a plain "
          "entropic plan; with class_regularization use 'ferradans'."
      )
    check_hyperparameter(epsilon, "epsilon", positive=True)
    check_hyperparameter(eta, "eta")
    self.class_regularization = class_regularization
    self.epsilon = epsilon
    self.eta = eta
    self.out_of_sample_map = out_of_sample_map
    self.threshold = check_threshold(threshold)
    self.max_iterations = check_iterations(max_iterations, "max_iterations")
    self.outer_iterations = check_iterations(
        outer_iterations, "outer_iterations"
    )
    self.inner_iterations = check_iterations(
        inner_iterations, "inner_iterations"
    )
    self.cost_tolerance = check_threshold(cost_tolerance, "cost_tolerance")
    self.solver = check_solver(solver)

  def get_params(self, deep: bool = True) -> dict:
    del deep
    return {
        "class_regularization": self.class_regularization,
        "epsilon": self.epsilon,
        "eta": self.eta,
        "out_of_sample_map": self.out_of_sample_map,
        "threshold": self.threshold,
        "max_iterations": self.max_iterations,
        "outer_iterations": self.outer_iterations,
        "inner_iterations": self.inner_iterations,
        "cost_tolerance": self.cost_tolerance,
        "solver": self.solver,
    }

  def fit(self, source_inputs, source_labels=None, target_inputs=None):
    """Fits the plan from the source (with its labels) to the target.

    Raises:
      ValueError: on inputs that are not finite matrices of the same
        number of columns, ``target_inputs`` missing, or, with class
        regularisation, ``source_labels`` missing or not integers in
        ``[0, num_classes)``, one per source row.
    """
    if target_inputs is None:
      raise ValueError(
          "target_inputs is required: fit(source_inputs, source_labels, "
          "target_inputs)."
      )
    source, target = check_pair(
        source_inputs, target_inputs, "source_inputs", "target_inputs"
    )
    if self.class_regularization is None:
      result = entropic_plan(
          source,
          target,
          epsilon=self.epsilon,
          threshold=self.threshold,
          max_iterations=self.max_iterations,
          solver=self.solver,
      )
      plan = result.plan
      self.target_potential_ = np.asarray(result.target_potential)
      self.converged_ = bool(result.converged)
    else:
      if source_labels is None:
        raise ValueError(
            f"source_labels is required with class_regularization="
            f"{self.class_regularization!r}."
        )
      if self.class_regularization == "lpl1":
        solver = sinkhorn_lpl1
      else:
        solver = functools.partial(
            sinkhorn_l1l2, cost_tolerance=self.cost_tolerance
        )
      plan = solver(
          _squared_euclidean_cost(source, target),
          source_labels,
          epsilon=self.epsilon,
          class_regularization=self.eta,
          outer_iterations=self.outer_iterations,
          inner_iterations=self.inner_iterations,
          threshold=self.threshold,
      )
    self.plan_ = np.asarray(plan)
    self.source_inputs_ = np.asarray(source)
    self.target_inputs_ = np.asarray(target)
    self.transported_source_ = np.asarray(barycentric_mapping(plan, target))
    return self

  def transform(self, source_inputs) -> np.ndarray:
    """The source points moved onto the target domain.

    The fitted source points (the same array) by the barycentric mapping;
    other points by ``out_of_sample_map``.

    Raises:
      ValueError: before ``fit``, or on inputs that are not a finite matrix
        with the fitted number of columns.
    """
    _check_fitted(self, "plan_", "transform")
    _, inputs = check_pair(
        self.source_inputs_,
        source_inputs,
        "the fitted source_inputs",
        "source_inputs",
    )
    if np.array_equal(np.asarray(inputs), self.source_inputs_):
      return self.transported_source_
    if self.out_of_sample_map == "entropic":
      return np.asarray(
          entropic_mapping(
              inputs,
              self.target_inputs_,
              self.target_potential_,
              epsilon=self.epsilon,
          )
      )
    return np.asarray(
        nearest_neighbor_mapping(
            inputs, self.source_inputs_, self.transported_source_
        )
    )

  def fit_transform(
      self, source_inputs, source_labels=None, target_inputs=None
  ) -> np.ndarray:
    """``fit``, then ``transform`` of the fitted source."""
    return self.fit(source_inputs, source_labels, target_inputs).transform(
        source_inputs
    )


class LinearMongeTransport:
  """The linear Monge mapping (Knott and Smith; Flamary et al. 2019), POT's ``LinearTransport``.

  See :func:`~tljax.transport.linear_monge_mapping`.

  Args:
    regularization: the ridge ``λ >= 0`` on both covariances (1e-8).
    bias: an affine map between centred domains (``True``) or a linear one.

  Attributes (after ``fit``): ``matrix_`` (``A``), ``offset_`` (``b``):
  ``transform(X) = X @ A + b``.
  """

  def __init__(self, regularization: float = 1e-8, bias: bool = True):
    check_hyperparameter(regularization, "regularization")
    if not isinstance(bias, (bool, np.bool_)):
      raise ValueError(f"bias must be True or False, got {bias!r}.")
    self.regularization = regularization
    self.bias = bool(bias)

  def get_params(self, deep: bool = True) -> dict:
    del deep
    return {"regularization": self.regularization, "bias": self.bias}

  def fit(self, source_inputs, source_labels=None, target_inputs=None):
    """Fits the map from the source's Gaussian approximation to the target's.

    ``source_labels`` is not used (accepted for the common signature).

    Raises:
      ValueError: on ``target_inputs`` missing, or as
        :func:`~tljax.transport.linear_monge_mapping`.
    """
    del source_labels
    if target_inputs is None:
      raise ValueError(
          "target_inputs is required: fit(source_inputs, source_labels, "
          "target_inputs)."
      )
    mapping = linear_monge_mapping(
        check_matrix(source_inputs, "source_inputs", finite=True),
        check_matrix(target_inputs, "target_inputs", finite=True),
        regularization=self.regularization,
        bias=self.bias,
    )
    self.matrix_ = np.asarray(mapping.matrix)
    self.offset_ = np.asarray(mapping.offset)
    return self

  def transform(self, source_inputs) -> np.ndarray:
    """``source_inputs @ matrix_ + offset_``.

    Raises:
      ValueError: before ``fit``, or on inputs that are not a finite matrix
        with the fitted number of columns.
    """
    _check_fitted(self, "matrix_", "transform")
    inputs = _check_new_inputs(
        source_inputs, "source_inputs", self.matrix_.shape[0]
    )
    return np.asarray(
        inputs @ jnp.asarray(self.matrix_, inputs.dtype)
        + jnp.asarray(self.offset_, inputs.dtype)
    )

  def fit_transform(
      self, source_inputs, source_labels=None, target_inputs=None
  ) -> np.ndarray:
    """``fit``, then ``transform`` of the source."""
    return self.fit(source_inputs, source_labels, target_inputs).transform(
        source_inputs
    )


class JDOTRegressor:
  """JDOT (Courty et al., NeurIPS 2017) with kernel ridge regression.

  :func:`~tljax.transport.jdot` (see it for the cost, the alternation and
  the deviations from the authors' code and skada's): ``fit(Xs, ys, Xt)``
  fits ``f`` on the target with the labels transported by the exact plan of
  the joint cost, ``predict(X)`` applies ``f``. skada's ``JDOTRegressor``
  with ``base_estimator=Ridge(alpha=ridge)``, ``alpha=0.5`` is this with
  ``kernel="linear"``, ``distance_scale="mean"``, ``alpha=1``.

  Args:
    alpha: the feature term's weight ``α >= 0`` (1).
    ridge: the ridge ``λ > 0`` (10, the authors' ``lambd``).
    kernel: ``"linear"`` or ``"rbf"``.
    gamma: the RBF width ``γ > 0``; ``None`` for ``1 / dim``.
    iterations: alternations (10).
    distance_scale: ``"median"`` (the authors'), ``"mean"`` (skada's) or
      ``"none"``.

  Attributes (after ``fit``): ``plan_`` (the last ``(n_s, n_t)`` plan),
  ``dual_coef_``, ``intercept_``, ``transported_labels_``, ``joint_cost_``,
  ``target_inputs_``.
  """

  def __init__(
      self,
      *,
      alpha: float = 1.0,
      ridge: float = 10.0,
      kernel: str = "linear",
      gamma: float | None = None,
      iterations: int = 10,
      distance_scale: str = "median",
  ):
    check_hyperparameter(alpha, "alpha")
    check_hyperparameter(ridge, "ridge", positive=True)
    if kernel not in KERNELS:
      raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}.")
    if gamma is not None:
      check_hyperparameter(gamma, "gamma", positive=True)
    if distance_scale not in DISTANCE_SCALES:
      raise ValueError(
          f"distance_scale must be one of {DISTANCE_SCALES}, got "
          f"{distance_scale!r}."
      )
    self.alpha = alpha
    self.ridge = ridge
    self.kernel = kernel
    self.gamma = gamma
    self.iterations = check_iterations(iterations, "iterations")
    self.distance_scale = distance_scale

  def get_params(self, deep: bool = True) -> dict:
    del deep
    return {
        "alpha": self.alpha,
        "ridge": self.ridge,
        "kernel": self.kernel,
        "gamma": self.gamma,
        "iterations": self.iterations,
        "distance_scale": self.distance_scale,
    }

  def _fit(self, source_inputs, source_targets, target_inputs):
    if target_inputs is None:
      raise ValueError(
          "target_inputs is required: fit(source_inputs, source_labels, "
          "target_inputs)."
      )
    source, target = check_pair(
        source_inputs, target_inputs, "source_inputs", "target_inputs"
    )
    result = jdot(
        source,
        source_targets,
        target,
        alpha=self.alpha,
        ridge=self.ridge,
        kernel=self.kernel,
        gamma=self.gamma,
        iterations=self.iterations,
        distance_scale=self.distance_scale,
    )
    self.result_ = result
    self.plan_ = np.asarray(result.plan)
    self.dual_coef_ = np.asarray(result.dual_coefficients)
    self.intercept_ = np.asarray(result.intercept)
    self.transported_labels_ = np.asarray(result.transported_labels)
    self.joint_cost_ = float(result.joint_cost)
    self.target_inputs_ = np.asarray(target)
    return self

  def fit(self, source_inputs, source_labels=None, target_inputs=None):
    """Fits ``f`` by JDOT from the labelled source to the target.

    Raises:
      ValueError: on ``target_inputs`` or ``source_labels`` missing, or as
        :func:`~tljax.transport.jdot`.
    """
    if source_labels is None:
      raise ValueError("source_labels is required: the source's targets.")
    self.output_shape_ = np.shape(source_labels)[1:]
    return self._fit(source_inputs, source_labels, target_inputs)

  def _decision(self, inputs) -> np.ndarray:
    _check_fitted(self, "result_", "predict")
    inputs = _check_new_inputs(inputs, "inputs", self.target_inputs_.shape[1])
    return np.asarray(
        jdot_predict(
            self.result_,
            self.target_inputs_,
            inputs,
            kernel=self.kernel,
            gamma=self.gamma,
        )
    )

  def predict(self, inputs) -> np.ndarray:
    """``f(inputs)``, of shape ``(q,)`` for ``(n,)`` labels, else ``(q, k)``.

    Raises:
      ValueError: before ``fit``, or on inputs that are not a finite matrix
        with the fitted number of columns.
    """
    predictions = self._decision(inputs)
    return predictions.reshape((-1, *self.output_shape_))


class JDOTClassifier(JDOTRegressor):
  """JDOT (Courty et al., NeurIPS 2017) for classes: square loss on one-hot labels.

  :class:`JDOTRegressor` fitted to the one-hot labels (the authors'
  ``jdot_krr`` on a label matrix), ``L(y, f) = ‖e_y − f‖²``; ``predict``
  is the arg-max of ``decision_function``. Deviation: skada's
  ``JDOTClassifier`` uses a multinomial logistic regression and the
  cross-entropy as ``L`` (see :func:`~tljax.transport.jdot`). Arguments as
  :class:`JDOTRegressor`; also ``num_classes_`` after ``fit``.
  """

  def fit(self, source_inputs, source_labels=None, target_inputs=None):
    """Fits the one-vs-all scores by JDOT.

    Raises:
      ValueError: on ``source_labels`` missing or not integers
        ``>= 0``, one per source row, or as :class:`JDOTRegressor`.
    """
    if source_labels is None:
      raise ValueError("source_labels is required: the source's classes.")
    source = check_matrix(source_inputs, "source_inputs", finite=True)
    labels, num_classes = check_labels(
        source_labels,
        "source_labels",
        length=source.shape[0],
        length_of="source_inputs",
    )
    self.num_classes_ = num_classes
    return self._fit(
        source, jnp.eye(num_classes)[np.asarray(labels)], target_inputs
    )

  def decision_function(self, inputs) -> np.ndarray:
    """The ``(q, num_classes)`` scores ``f(inputs)``."""
    return self._decision(inputs)

  def predict(self, inputs) -> np.ndarray:
    """The ``(q,)`` classes of the highest score.

    Raises:
      ValueError: before ``fit``, or on inputs that are not a finite matrix
        with the fitted number of columns.
    """
    return np.argmax(self._decision(inputs), axis=1)
