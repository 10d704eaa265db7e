"""Tests for the exact plan and JDOT (tljax.transport) against POT and known answers.

References: POT's ``ot.emd`` (the exact plan: costs to 1e-9 relative, plans
equal where the optimum is unique, which random continuous costs make it);
a JDOT alternation written here in NumPy with ``ot.emd`` and
``numpy.linalg.solve`` (predictions to 1e-8 in float64); skada 0.6.0's
``solve_jdot_regression`` with scikit-learn's ``Ridge`` (only when skada is
installed: it is not a test dependency); and shifted Gaussian problems where
the target's labels are known: JDOT recovers them, a source-only fit does
not. POT is the ``test`` extra's; the comparisons skip without it.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tljax import transport

RNG = np.random.default_rng(0)
NUM_SOURCE = 60
NUM_TARGET = 50
SHIFT = np.array([4.0, 2.0])


@pytest.fixture(scope="module")
def ot():
  return pytest.importorskip("ot")


@pytest.fixture(autouse=True)
def float64():
  with jax.enable_x64(True):
    yield


def regression_problem(num_source, num_target, seed):
  """y = sin(x₀) + x₁ / 2 on the source; the target is the source shifted."""
  rng = np.random.default_rng(seed)
  source = rng.normal(size=(num_source, 2))
  target = rng.normal(size=(num_target, 2))
  labels = np.sin(source[:, 0]) + 0.5 * source[:, 1]
  target_labels = np.sin(target[:, 0]) + 0.5 * target[:, 1]
  return source, labels, target + SHIFT, target_labels


def mixture_problem(num_source, num_target, seed):
  """Three Gaussian classes; the target is the source shifted by SHIFT."""
  rng = np.random.default_rng(seed)
  means = np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 3.0]])
  source_labels = np.arange(num_source) % 3
  target_labels = rng.permutation(np.arange(num_target) % 3)
  source = rng.normal(size=(num_source, 2)) * 0.6 + means[source_labels]
  target = rng.normal(size=(num_target, 2)) * 0.6 + means[target_labels] + SHIFT
  return source, source_labels, target, target_labels


# --- The exact plan ----------------------------------------------------------


@pytest.mark.parametrize(
    "num_source, num_target, weighted",
    [(30, 30, False), (20, 33, False), (25, 25, True), (17, 40, True)],
)
def test_exact_plan_matches_pot(ot, num_source, num_target, weighted):
  cost = RNG.random((num_source, num_target)) * 3.0
  if weighted:
    a = RNG.random(num_source) + 0.1
    b = RNG.random(num_target) + 0.1
    a, b = a / a.sum(), b / b.sum()
    plan = np.asarray(transport.exact_plan(cost, a, b))
    # Traced weights (the values then reach the solver at run time).
    np.testing.assert_array_equal(
        jax.jit(transport.exact_plan)(cost, a, b), plan
    )
  else:
    a = np.full(num_source, 1.0 / num_source)
    b = np.full(num_target, 1.0 / num_target)
    plan = np.asarray(transport.exact_plan(cost))
  expected = ot.emd(a, b, cost)
  assert plan.dtype == np.float64 and plan.shape == cost.shape
  np.testing.assert_allclose(
      np.sum(plan * cost), np.sum(expected * cost), rtol=1e-9
  )
  np.testing.assert_allclose(plan, expected, atol=1e-10)
  np.testing.assert_allclose(plan.sum(1), a, atol=1e-12)
  np.testing.assert_allclose(plan.sum(0), b, atol=1e-12)


def test_exact_plan_of_a_permutation_cost_is_the_permutation():
  permutation = RNG.permutation(12)
  cost = np.ones((12, 12))
  cost[np.arange(12), permutation] = 0.0
  plan = np.asarray(transport.exact_plan(cost))
  expected = np.zeros((12, 12))
  expected[np.arange(12), permutation] = 1.0 / 12
  np.testing.assert_array_equal(plan, expected)


def test_exact_plan_jits_vmaps_and_is_a_constant_for_gradients(ot):
  costs = RNG.random((3, 9, 9))
  plans = jax.jit(jax.vmap(transport.exact_plan))(costs)
  for cost, plan in zip(costs, np.asarray(plans)):
    np.testing.assert_allclose(
        plan, ot.emd(np.ones(9) / 9, np.ones(9) / 9, cost)
    )
  # d⟨P(C), C⟩/dC = P: the plan does not depend on C for differentiation.
  gradient = jax.grad(lambda c: jnp.sum(transport.exact_plan(c) * c))(
      jnp.asarray(costs[0])
  )
  np.testing.assert_allclose(gradient, plans[0])
  weights = jnp.full(9, 1.0 / 9)
  gradient = jax.grad(
      lambda w: jnp.sum(transport.exact_plan(costs[1], w, weights) * costs[1])
  )(weights)
  np.testing.assert_array_equal(gradient, np.zeros(9))


def test_exact_plan_keeps_float32():
  with jax.enable_x64(False):
    plan = transport.exact_plan(np.eye(4, dtype=np.float32))
    assert plan.dtype == jnp.float32


@pytest.mark.parametrize(
    "arguments, match",
    [
        ((np.ones(5),), "cost_matrix must have shape"),
        ((np.ones((0, 3)),), "cost_matrix must have shape"),
        ((np.array([[0.0, np.nan], [1.0, 0.0]]),), "cost_matrix"),
        ((np.ones((2, 3)), np.ones(3) / 3), "source_weights must have shape"),
        (
            (np.ones((2, 3)), None, np.ones(2) / 2),
            "target_weights must have shape",
        ),
        (
            (np.ones((2, 2)), np.array([1.5, -0.5]), np.ones(2) / 2),
            "source_weights must be finite and non-negative",
        ),
        (
            (np.ones((2, 2)), np.ones(2) / 2, np.array([np.nan, 1.0])),
            "target_weights must be finite and non-negative",
        ),
        (
            (np.ones((2, 3)), np.ones(2) / 2, np.ones(3)),
            "source_weights and target_weights must have the same sum",
        ),
        (
            (np.ones((2, 2)), np.zeros(2), np.zeros(2)),
            "source_weights must have a positive sum",
        ),
    ],
)
def test_exact_plan_bad_input_names_the_argument(arguments, match):
  with pytest.raises(ValueError, match=match):
    transport.exact_plan(*arguments)


# --- JDOT --------------------------------------------------------------------


def numpy_jdot(source, targets, target, *, alpha, ridge, iterations, ot):
  """The alternation of Courty et al. 2017: ot.emd, then linear ridge with intercept.

  The feature cost divided by its median; ``f`` minimises
  ``‖Ŷ − Zw − b‖² + λ‖w‖²`` (normal equations, intercept unpenalised).
  """
  distances = ot.dist(source, target)
  distances = distances / np.median(distances)
  a = np.full(len(source), 1.0 / len(source))
  b = np.full(len(target), 1.0 / len(target))
  design = np.hstack([target, np.ones((len(target), 1))])
  penalty = ridge * np.diag([1.0] * target.shape[1] + [0.0])
  cost = alpha * distances
  for _ in range(iterations):
    plan = ot.emd(a, b, cost)
    transported = len(target) * plan.T @ targets
    weights = np.linalg.solve(
        design.T @ design + penalty, design.T @ transported
    )
    predictions = design @ weights
    cost = alpha * distances + ot.dist(targets, predictions)
  return weights, plan


def test_jdot_matches_a_numpy_alternation(ot):
  source, labels, target, _ = regression_problem(NUM_SOURCE, NUM_TARGET, 1)
  targets = np.stack([labels, labels**2], axis=1)  # two outputs
  expected_weights, expected_plan = numpy_jdot(
      source, targets, target, alpha=0.7, ridge=2.0, iterations=6, ot=ot
  )
  result = transport.jdot(
      source, targets, target, alpha=0.7, ridge=2.0, iterations=6
  )
  np.testing.assert_allclose(result.plan, expected_plan, atol=1e-12)
  new = RNG.normal(size=(9, 2)) + SHIFT
  np.testing.assert_allclose(
      transport.jdot_predict(result, target, new),
      np.hstack([new, np.ones((9, 1))]) @ expected_weights,
      rtol=1e-8,
      atol=1e-8,
  )


def test_jdot_regressor_agrees_with_skada(ot):
  skada = pytest.importorskip("skada")
  from sklearn.linear_model import Ridge

  source, labels, target, _ = regression_problem(NUM_SOURCE, NUM_TARGET, 2)
  # skada's cost (1 − a) D/mean(D) + a L with a = 0.5 is α = 1 with the
  # mean scale; tol=0 runs its 8 iterations as tljax does.
  with pytest.warns(UserWarning, match="Maximum number of iterations"):
    estimator, *_ = skada.solve_jdot_regression(
        Ridge(alpha=3.0), source, labels, target, alpha=0.5, n_iter_max=8, tol=0
    )
  regressor = transport.JDOTRegressor(
      ridge=3.0, iterations=8, distance_scale="mean"
  ).fit(source, labels, target)
  new = RNG.normal(size=(11, 2)) + SHIFT
  np.testing.assert_allclose(
      regressor.predict(new), estimator.predict(new), rtol=1e-8, atol=1e-8
  )


def test_jdot_regressor_recovers_a_shifted_regression_function():
  source, labels, target, target_labels = regression_problem(100, 100, 3)
  regressor = transport.JDOTRegressor(kernel="rbf", gamma=0.5, ridge=1.0)
  predictions = regressor.fit(source, labels, target).predict(target)
  assert predictions.shape == (100,)
  jdot_error = np.mean((predictions - target_labels) ** 2)
  # Source-only: the same kernel ridge fitted on the source (JDOT's plan
  # replaced by the identity pairing of the source with itself).
  source_only = transport.JDOTRegressor(
      kernel="rbf", gamma=0.5, ridge=1.0, iterations=1
  ).fit(source, labels, source)
  source_only_error = np.mean(
      (source_only.predict(target) - target_labels) ** 2
  )
  assert jdot_error < 0.1 * np.var(target_labels)
  assert jdot_error < 0.1 * source_only_error


def test_jdot_classifier_recovers_the_classes_of_a_shifted_mixture():
  source, labels, target, target_labels = mixture_problem(90, 75, 4)
  classifier = transport.JDOTClassifier(kernel="rbf", gamma=0.5, ridge=1.0)
  classifier.fit(source, labels, target)
  accuracy = np.mean(classifier.predict(target) == target_labels)
  assert classifier.num_classes_ == 3
  assert classifier.decision_function(target).shape == (75, 3)
  source_only = transport.JDOTClassifier(
      kernel="rbf", gamma=0.5, ridge=1.0, iterations=1
  ).fit(source, labels, source)
  source_only_accuracy = np.mean(source_only.predict(target) == target_labels)
  assert accuracy > 0.95
  assert accuracy > source_only_accuracy + 0.3


def test_jdot_classifier_is_jdot_on_one_hot_labels():
  source, labels, target, _ = mixture_problem(30, 24, 5)
  classifier = transport.JDOTClassifier(iterations=4).fit(
      source, labels, target
  )
  result = transport.jdot(source, np.eye(3)[labels], target, iterations=4)
  scores = transport.jdot_predict(result, target, target)
  np.testing.assert_allclose(classifier.decision_function(target), scores)
  np.testing.assert_array_equal(
      classifier.predict(target), np.argmax(scores, 1)
  )


@pytest.mark.parametrize(
    "arguments, options, match",
    [
        ((np.ones((4, 2)), np.ones(3), np.ones((5, 2))), {}, "source_targets"),
        ((np.ones((4, 2)), np.ones(4), np.ones((5, 3))), {}, "target_features"),
        (
            (
                np.ones((4, 2)),
                np.array([0.0, 1.0, np.inf, 2.0]),
                np.ones((5, 2)),
            ),
            {},
            "source_targets",
        ),
        (
            (np.full((4, 2), np.nan), np.ones(4), np.ones((5, 2))),
            {},
            "source_features",
        ),
        ((np.ones((4, 2)), np.ones(4), np.ones((0, 2))), {}, "target_features"),
        (
            (np.ones((4, 2)), np.ones(4), np.ones((5, 2))),
            {"alpha": -1},
            "alpha",
        ),
        ((np.ones((4, 2)), np.ones(4), np.ones((5, 2))), {"ridge": 0}, "ridge"),
        (
            (np.ones((4, 2)), np.ones(4), np.ones((5, 2))),
            {"kernel": "poly"},
            "kernel",
        ),
        (
            (np.ones((4, 2)), np.ones(4), np.ones((5, 2))),
            {"kernel": "rbf", "gamma": -1.0},
            "gamma",
        ),
        (
            (np.ones((4, 2)), np.ones(4), np.ones((5, 2))),
            {"iterations": 0},
            "iterations",
        ),
        (
            (np.ones((4, 2)), np.ones(4), np.ones((5, 2))),
            {"distance_scale": "max"},
            "distance_scale",
        ),
    ],
)
def test_jdot_bad_input_names_the_argument(arguments, options, match):
  with pytest.raises(ValueError, match=match):
    transport.jdot(*arguments, **options)


def test_jdot_facades_check_their_input():
  source, labels, target, _ = mixture_problem(12, 9, 6)
  with pytest.raises(ValueError, match="source_labels must be >= 0"):
    transport.JDOTClassifier().fit(source, labels - 1, target)
  with pytest.raises(ValueError, match="source_labels must have shape"):
    transport.JDOTClassifier().fit(source, labels[:5], target)
  with pytest.raises(ValueError, match="source_labels must hold integers"):
    transport.JDOTClassifier().fit(source, labels + 0.5, target)
  with pytest.raises(ValueError, match="target_inputs is required"):
    transport.JDOTRegressor().fit(source, labels.astype(float))
  with pytest.raises(ValueError, match="before predict"):
    transport.JDOTRegressor().predict(target)
  with pytest.raises(ValueError, match="ridge"):
    transport.JDOTRegressor(ridge=-1.0)
  fitted = transport.JDOTClassifier().fit(source, labels, target)
  with pytest.raises(ValueError, match="inputs must have 2 columns"):
    fitted.predict(np.ones((3, 4)))
