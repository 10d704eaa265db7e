r"""The class-regularised OTDA plans (Courty et al., TPAMI 2017).

Courty, Flamary, Tuia and Rakotomamonjy, "Optimal transport for domain
adaptation", TPAMI 2017: an entropic plan from the labelled source to the
target with a group penalty, so that each target point receives mass from
one source class only:

* :func:`sinkhorn_lpl1` — the non-convex ``ℓ_p-ℓ_1`` group penalty,
  ``p = ½``, by majorisation-minimisation;
* :func:`sinkhorn_l1l2` — the convex group lasso ``ℓ_1-ℓ_2``, by
  generalised conditional gradient.

The solvers follow POT's ``ot.da.sinkhorn_lpl1_mm`` and
``ot.da.sinkhorn_l1l2_gl`` step for step (the tests compare them), with the
inner Sinkhorn solves on ott-jax (:func:`tljax.transport.sinkhorn`). The
plans are ``n × m`` matrices held in memory; the source is then moved by
:func:`tljax.transport.barycentric_mapping`.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp

from tljax.align._arrays import (
    check_finite_result,
    check_hyperparameter,
    check_matrix,
)
from tljax.checks import check_labels
from tljax.transport._checks import (
    check_iterations,
    check_threshold,
    check_weights,
)
from tljax.transport.sinkhorn import _solve

__all__ = [
    "sinkhorn_l1l2",
    "sinkhorn_lpl1",
]

# ℓ_p-ℓ_1: the exponent p and the smoothing of the majorisation (POT's).
_LPL1_POWER = 0.5
_LPL1_SMOOTHING = 1e-3
# ℓ_1-ℓ_2: group norms are floored here in the gradient (POT's eps).
_GROUP_NORM_FLOOR = 1e-12
# The conditional gradient's absolute stop on the cost change (POT's stopThr2).
_ABSOLUTE_COST_TOLERANCE = 1e-9
# Armijo line search (scipy's scalar_search_armijo as POT calls it).
_ARMIJO_C1 = 1e-4
_ARMIJO_FIRST_STEP = 0.99
_ARMIJO_MAX_STEPS = 60


def sinkhorn_lpl1(
    cost_matrix: jax.Array,
    source_labels: jax.Array,
    *,
    epsilon: float,
    class_regularization: float = 0.1,
    num_classes: int | None = None,
    source_weights: jax.Array | None = None,
    target_weights: jax.Array | None = None,
    outer_iterations: int = 10,
    inner_iterations: int = 200,
    threshold: float = 1e-9,
) -> jax.Array:
  r"""The entropic plan with the ``ℓ_p-ℓ_1`` class penalty (Courty et al. 2017).

  Minimises ``⟨P, C⟩ + ε Ω_e(P) + η Σ_j Σ_c (Σ_{i ∈ c} P_ij)^p`` with
  ``p = ½``: the concave group term pushes each target column to take its
  mass from one source class. Solved by majorisation-minimisation (Courty
  et al.; POT's ``ot.da.sinkhorn_lpl1_mm``): from ``W = 0``,
  ``outer_iterations`` times, solve the entropic problem for the cost
  ``C + η W`` (:func:`tljax.transport.sinkhorn` with ``inner_iterations``
  and ``threshold``), then set the majoriser's weights

    W_ij = p (Σ_{i' ∈ class(i)} P_i'j + 10⁻³)^{p − 1}.

  The returned plan is the last solve's. Jittable with ``num_classes``
  given.

  Args:
    cost_matrix: the ``(n, m)`` cost.
    source_labels: ``(n,)`` integer classes in ``[0, num_classes)``.
    epsilon: the entropic ``ε > 0`` (POT's ``reg``/``reg_e``).
    class_regularization: ``η >= 0`` (POT's ``eta``/``reg_cl``).
    num_classes: the number of classes; ``None`` for ``max(labels) + 1``
      (needs concrete labels).
    source_weights, target_weights: as :func:`tljax.transport.sinkhorn`.
    outer_iterations: majorisation steps (POT's ``numItermax``, 10).
    inner_iterations: the most Sinkhorn iterations of each step (POT's
      ``numInnerItermax``, 200; rounded up to a multiple of 10).
    threshold: each Sinkhorn solve's stop on ``‖Pᵀ 1 − b‖₁`` (POT's
      ``stopInnerThr`` on the L2 error; in float32 the default 1e-9 is not
      reached and every solve runs ``inner_iterations``).

  Returns:
    The ``(n, m)`` plan.

  Raises:
    ValueError: as :func:`tljax.transport.sinkhorn`, on labels that are not
      ``(n,)`` integers in range, a negative ``class_regularization``, or
      iteration counts below 1.
  """
  arrays, options = _check_class_problem(
      cost_matrix,
      source_labels,
      num_classes,
      source_weights,
      target_weights,
      epsilon,
      class_regularization,
      outer_iterations,
      inner_iterations,
      threshold,
  )
  return check_finite_result(
      _sinkhorn_lpl1(*arrays, **options),
      "sinkhorn_lpl1 is not finite: epsilon is too small for the scale of "
      "cost_matrix in this float type.",
  )


def sinkhorn_l1l2(
    cost_matrix: jax.Array,
    source_labels: jax.Array,
    *,
    epsilon: float,
    class_regularization: float = 0.1,
    num_classes: int | None = None,
    source_weights: jax.Array | None = None,
    target_weights: jax.Array | None = None,
    outer_iterations: int = 10,
    inner_iterations: int = 200,
    threshold: float = 1e-9,
    cost_tolerance: float = 1e-9,
) -> jax.Array:
  r"""The entropic plan with the ``ℓ_1-ℓ_2`` group-lasso class penalty (Courty et al. 2017).

  Minimises ``⟨P, C⟩ + ε Ω_e(P) + η Σ_j Σ_c ‖P_{c, j}‖₂`` (``P_{c, j}`` the
  entries of column ``j`` in the rows of class ``c``), a convex penalty, by
  generalised conditional gradient (Rakotomamonjy, Flamary and Courty,
  "Generalized conditional gradient: analysis of convergence and
  applications", 2015; POT's ``ot.da.sinkhorn_l1l2_gl`` through
  ``ot.optim.gcg``). From ``P = a bᵀ``, each step:

  1. linearises the group term: ``C' = C + η ∇Ω_g(P)``, with
     ``∇Ω_g(P)_ij = P_ij / max(‖P_{class(i), j}‖₂, 10⁻¹²)``;
  2. solves the entropic problem for ``C'`` (``inner_iterations``,
     ``threshold``), giving ``P̃``;
  3. moves ``P ← P + α (P̃ − P)``, ``α`` from scipy's Armijo backtracking
     on ``F(P) = ⟨C, P⟩ + η Ω_g(P)`` (first step 0.99, ``c₁ = 10⁻⁴``, the
     slope taken as ``⟨P̃ − P, C'⟩``), as POT calls it;

  and stops after ``outer_iterations`` steps or when ``F`` changes by less
  than ``cost_tolerance`` relative or 10⁻⁹ absolute. As in POT, ``F`` leaves
  out the entropy (which enters only through the Sinkhorn step).
  Deviation: the line search gives up (``α = 0``) after 60 backtracking
  steps, where scipy halves the step until it underflows.

  Args:
    cost_matrix, source_labels, epsilon, class_regularization, num_classes,
    source_weights, target_weights: as :func:`sinkhorn_lpl1`.
    outer_iterations: conditional-gradient steps (POT's ``numItermax``, 10).
    inner_iterations: the most Sinkhorn iterations of each step (200).
    threshold: each Sinkhorn solve's stop (POT's inner ``stopThr``, 1e-9).
    cost_tolerance: the relative change of ``F`` that stops the steps
      (POT's ``stopThr``; ``ot.da.SinkhornL1l2Transport`` passes its ``tol``,
      1e-8).

  Returns:
    The ``(n, m)`` plan.

  Raises:
    ValueError: as :func:`sinkhorn_lpl1`, and on a non-positive
      ``cost_tolerance``.
  """
  arrays, options = _check_class_problem(
      cost_matrix,
      source_labels,
      num_classes,
      source_weights,
      target_weights,
      epsilon,
      class_regularization,
      outer_iterations,
      inner_iterations,
      threshold,
  )
  return check_finite_result(
      _sinkhorn_l1l2(
          *arrays,
          **options,
          cost_tolerance=check_threshold(cost_tolerance, "cost_tolerance"),
      ),
      "sinkhorn_l1l2 is not finite: epsilon is too small for the scale of "
      "cost_matrix in this float type.",
  )


# --- Internals ---------------------------------------------------------------


def _check_class_problem(
    cost_matrix,
    source_labels,
    num_classes,
    source_weights,
    target_weights,
    epsilon,
    class_regularization,
    outer_iterations,
    inner_iterations,
    threshold,
):
  cost_matrix = check_matrix(
      cost_matrix,
      "cost_matrix",
      rows="num_source",
      columns="num_target",
      finite=True,
  )
  num_source, num_target = cost_matrix.shape
  labels, num_classes = check_labels(
      source_labels,
      "source_labels",
      length=num_source,
      length_of="cost_matrix",
      num_classes=num_classes,
  )
  check_hyperparameter(epsilon, "epsilon", positive=True)
  check_hyperparameter(class_regularization, "class_regularization")
  dtype = cost_matrix.dtype
  arrays = (
      cost_matrix,
      labels,
      check_weights(
          source_weights,
          "source_weights",
          length=num_source,
          length_of="cost_matrix",
          dtype=dtype,
      ),
      check_weights(
          target_weights,
          "target_weights",
          length=num_target,
          length_of="cost_matrix's columns",
          dtype=dtype,
      ),
      epsilon,
      class_regularization,
  )
  options = dict(
      num_classes=num_classes,
      outer_iterations=check_iterations(outer_iterations, "outer_iterations"),
      inner_iterations=check_iterations(inner_iterations, "inner_iterations"),
      threshold=check_threshold(threshold),
  )
  return arrays, options


@functools.partial(
    jax.jit,
    static_argnames=(
        "num_classes",
        "outer_iterations",
        "inner_iterations",
        "threshold",
    ),
)
def _sinkhorn_lpl1(
    cost_matrix,
    labels,
    source_weights,
    target_weights,
    epsilon,
    class_regularization,
    *,
    num_classes,
    outer_iterations,
    inner_iterations,
    threshold,
):
  classes = jax.nn.one_hot(labels, num_classes, dtype=cost_matrix.dtype)

  def step(_, carry):
    majoriser, _ = carry
    plan = _solve(
        cost_matrix + class_regularization * majoriser,
        source_weights,
        target_weights,
        epsilon,
        threshold=threshold,
        max_iterations=inner_iterations,
    ).plan
    class_mass = classes @ (classes.T @ plan)  # Σ_{i' ∈ class(i)} P_i'j
    majoriser = _LPL1_POWER * (class_mass + _LPL1_SMOOTHING) ** (
        _LPL1_POWER - 1
    )
    return majoriser, plan

  zeros = jnp.zeros_like(cost_matrix)
  _, plan = jax.lax.fori_loop(0, outer_iterations, step, (zeros, zeros))
  return plan


@functools.partial(
    jax.jit,
    static_argnames=(
        "num_classes",
        "outer_iterations",
        "inner_iterations",
        "threshold",
        "cost_tolerance",
    ),
)
def _sinkhorn_l1l2(
    cost_matrix,
    labels,
    source_weights,
    target_weights,
    epsilon,
    class_regularization,
    *,
    num_classes,
    outer_iterations,
    inner_iterations,
    threshold,
    cost_tolerance,
):
  classes = jax.nn.one_hot(labels, num_classes, dtype=cost_matrix.dtype)

  def group_norms(plan):  # ‖P_{c, j}‖₂, (classes, m)
    return jnp.sqrt(classes.T @ jnp.square(plan))

  def objective(plan):
    return jnp.sum(cost_matrix * plan) + class_regularization * jnp.sum(
        group_norms(plan)
    )

  def gradient(plan):
    floored = jnp.maximum(group_norms(plan), _GROUP_NORM_FLOOR)
    return plan / (classes @ floored)

  def step(state):
    plan, value, iteration, _ = state
    linearised = cost_matrix + class_regularization * gradient(plan)
    direction = (
        _solve(
            linearised,
            source_weights,
            target_weights,
            epsilon,
            threshold=threshold,
            max_iterations=inner_iterations,
        ).plan
        - plan
    )
    alpha, new_value = _armijo(
        lambda alpha: objective(plan + alpha * direction),
        value,
        jnp.sum(direction * linearised),
    )
    change = jnp.abs(new_value - value)
    relative = jnp.where(new_value != 0, change / jnp.abs(new_value), jnp.nan)
    iteration = iteration + 1
    done = (
        (iteration >= outer_iterations)
        | (relative < cost_tolerance)
        | (change < _ABSOLUTE_COST_TOLERANCE)
    )
    return plan + alpha * direction, new_value, iteration, done

  plan = source_weights[:, None] * target_weights[None, :]
  plan, _, _, _ = jax.lax.while_loop(
      lambda state: ~state[3],
      step,
      (plan, objective(plan), jnp.asarray(0), jnp.asarray(False)),
  )
  return plan


def _armijo(
    phi: Callable[[jax.Array], jax.Array], phi0: jax.Array, slope: Any
) -> tuple[jax.Array, jax.Array]:
  """scipy's ``scalar_search_armijo`` as POT's ``line_search_armijo`` calls it.

  ``phi`` is evaluated at ``max(alpha, 0)``; returns ``(alpha, phi(alpha))``
  with ``alpha >= 0``, or ``(0, phi0)`` when no step satisfies Armijo's
  condition ``phi(α) <= phi0 + c₁ α slope``.
  """
  dtype = jnp.result_type(phi0)

  def value(alpha):
    return phi(jnp.maximum(alpha, 0.0))

  def sufficient(alpha, value_at_alpha):
    return value_at_alpha <= phi0 + _ARMIJO_C1 * alpha * slope

  alpha0 = jnp.asarray(_ARMIJO_FIRST_STEP, dtype)
  phi_a0 = value(alpha0)
  # The minimiser of the quadratic through phi0, slope and phi(alpha0).
  alpha1 = -slope * alpha0**2 / 2.0 / (phi_a0 - phi0 - slope * alpha0)
  phi_a1 = value(alpha1)

  def cubic_step(state):
    alpha0, alpha1, phi_a0, phi_a1, _, _, _, steps = state
    factor = alpha0**2 * alpha1**2 * (alpha1 - alpha0)
    a = (
        alpha0**2 * (phi_a1 - phi0 - slope * alpha1)
        - alpha1**2 * (phi_a0 - phi0 - slope * alpha0)
    ) / factor
    b = (
        -(alpha0**3) * (phi_a1 - phi0 - slope * alpha1)
        + alpha1**3 * (phi_a0 - phi0 - slope * alpha0)
    ) / factor
    alpha2 = (-b + jnp.sqrt(jnp.abs(b**2 - 3 * a * slope))) / (3.0 * a)
    phi_a2 = value(alpha2)
    found = sufficient(alpha2, phi_a2)
    next_alpha = jnp.where(
        ((alpha1 - alpha2) > alpha1 / 2.0) | ((1 - alpha2 / alpha1) < 0.96),
        alpha1 / 2.0,
        alpha2,
    )
    return (
        alpha1,
        next_alpha,
        phi_a1,
        phi_a2,
        found,
        alpha2,
        phi_a2,
        steps + 1,
    )

  def searching(state):
    _, alpha1, _, _, found, _, _, steps = state
    return ~found & (alpha1 > 0) & (steps < _ARMIJO_MAX_STEPS)

  first = sufficient(alpha0, phi_a0)
  second = ~first & sufficient(alpha1, phi_a1)
  state = (
      alpha0,
      alpha1,
      phi_a0,
      phi_a1,
      first | second,
      jnp.where(first, alpha0, alpha1),
      jnp.where(first, phi_a0, phi_a1),
      jnp.asarray(0),
  )
  *_, found, alpha, phi_alpha, _ = jax.lax.while_loop(
      searching, cubic_step, state
  )
  return (
      jnp.where(found, jnp.maximum(alpha, 0.0), 0.0),
      jnp.where(found, phi_alpha, phi0),
  )
