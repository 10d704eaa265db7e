"""Tests for tljax.transport against POT and known answers.

References: POT (``ot.sinkhorn``, ``ot.sinkhorn2``, ``ot.da.SinkhornTransport``
with both out-of-sample maps, ``SinkhornLpl1Transport``,
``SinkhornL1l2Transport``, ``LinearTransport``) on the same float64 data,
``ε`` and iteration limits; the entropic cost ``⟨P, C⟩ + ε KL(P | a bᵀ)``
written here in NumPy from POT's plans; central finite differences; and a
Gaussian shifted by a known vector. POT is a test-only dependency (the
``test`` extra): the comparisons skip without it.

Tolerances. The plain plans are solved to a marginal error of 1e-12 on both
sides (POT's L2 error, ott's L1 error): the plans then agree to about 1e-13
(entries ~1e-2), so the tests allow 1e-10 on plans and 1e-9 relative on
costs and mappings. The class-regularised solvers stop their inner Sinkhorn
solves at 200 iterations or a 1e-12 error, like POT's with ``tol=1e-12``:
their iterates are POT's in the log domain, measured equal to 1e-15, allowed
1e-10. The linear Monge map is closed-form: 1e-9 relative.

Each solver is compiled once for the module (one shape, one set of static
iteration limits; ``ε`` and ``η`` are traced), so the file stays fast.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tljax import transport

NUM_POINTS = 40  # both domains, so every solve shares one compiled program
THRESHOLD = 1e-12
MAX_ITERATIONS = 10_000
RNG = np.random.default_rng(0)
SOURCE_LABELS = np.arange(NUM_POINTS) % 3
CLASS_MEANS = np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 3.0]])
SOURCE = RNG.normal(size=(NUM_POINTS, 2)) * 0.7 + CLASS_MEANS[SOURCE_LABELS]
TARGET = (
    RNG.normal(size=(NUM_POINTS, 2)) * 0.8
    + CLASS_MEANS[RNG.permutation(SOURCE_LABELS)]
    @ np.array([[0.9, 0.3], [-0.3, 0.9]])
    + np.array([1.0, 0.5])
)
NEW_SOURCE = RNG.normal(size=(7, 2)) * 2.0
UNIFORM = np.full(NUM_POINTS, 1.0 / NUM_POINTS)
SHIFT = np.array([2.0, -1.0])


@pytest.fixture(scope="module")
def ot():
  return pytest.importorskip("ot")


@pytest.fixture(autouse=True)
def float64():
  with jax.enable_x64(True):
    yield


def numpy_entropic_cost(plan, cost, epsilon, a, b):
  """``⟨P, C⟩ + ε KL(P | a bᵀ)`` with ``0 log 0 = 0``."""
  positive = plan > 0
  ratio = plan[positive] / np.outer(a, b)[positive]
  return np.sum(plan * cost) + epsilon * np.sum(plan[positive] * np.log(ratio))


def squared_distances(first, second):
  return np.sum((first[:, None, :] - second[None, :, :]) ** 2, axis=-1)


# --- The entropic plan -------------------------------------------------------


def test_sinkhorn_plan_and_costs_match_pot(ot):
  cost = ot.dist(SOURCE, TARGET)
  np.testing.assert_allclose(cost, squared_distances(SOURCE, TARGET))
  for epsilon in (1.0, 0.3):
    expected = ot.sinkhorn(
        UNIFORM,
        UNIFORM,
        cost,
        epsilon,
        numItermax=MAX_ITERATIONS,
        stopThr=THRESHOLD,
    )
    result = transport.sinkhorn(
        cost,
        epsilon=epsilon,
        threshold=THRESHOLD,
        max_iterations=MAX_ITERATIONS,
    )
    assert bool(result.converged)
    assert float(result.marginal_error) < THRESHOLD
    assert result.plan.dtype == jnp.float64
    np.testing.assert_allclose(result.plan, expected, rtol=0, atol=1e-10)
    np.testing.assert_allclose(
        result.transport_cost,
        ot.sinkhorn2(
            UNIFORM,
            UNIFORM,
            cost,
            epsilon,
            numItermax=MAX_ITERATIONS,
            stopThr=THRESHOLD,
        ),
        rtol=1e-9,
    )
    np.testing.assert_allclose(
        result.regularized_cost,
        numpy_entropic_cost(expected, cost, epsilon, UNIFORM, UNIFORM),
        rtol=1e-9,
    )
    # The potentials give the plan: P = exp((f + g − C) / ε).
    np.testing.assert_allclose(
        np.exp(
            (
                np.asarray(result.source_potential)[:, None]
                + np.asarray(result.target_potential)[None, :]
                - cost
            )
            / epsilon
        ),
        expected,
        atol=1e-10,
    )


def test_entropic_plan_is_sinkhorn_of_the_squared_distances():
  result = transport.entropic_plan(
      SOURCE,
      TARGET,
      epsilon=1.0,
      threshold=THRESHOLD,
      max_iterations=MAX_ITERATIONS,
  )
  direct = transport.sinkhorn(
      squared_distances(SOURCE, TARGET),
      epsilon=1.0,
      threshold=THRESHOLD,
      max_iterations=MAX_ITERATIONS,
  )
  np.testing.assert_allclose(result.plan, direct.plan, atol=1e-12)
  np.testing.assert_allclose(result.plan.sum(axis=1), UNIFORM, atol=1e-12)
  # Weights are relative: scaled to sum 1.
  scaled = transport.entropic_plan(
      SOURCE,
      TARGET,
      epsilon=1.0,
      source_weights=np.full(NUM_POINTS, 3.0),
      threshold=THRESHOLD,
      max_iterations=MAX_ITERATIONS,
  )
  np.testing.assert_allclose(scaled.plan, result.plan, atol=1e-12)


# --- OTDA --------------------------------------------------------------------


def test_sinkhorn_transport_matches_pot(ot):
  ours = transport.SinkhornTransport(
      epsilon=1.0, threshold=THRESHOLD, max_iterations=MAX_ITERATIONS
  ).fit(SOURCE, SOURCE_LABELS, TARGET)
  theirs = ot.da.SinkhornTransport(
      reg_e=1.0,
      tol=THRESHOLD,
      max_iter=MAX_ITERATIONS,
      out_of_sample_map="ferradans",
  ).fit(Xs=SOURCE, Xt=TARGET)
  assert ours.converged_
  np.testing.assert_allclose(ours.plan_, theirs.coupling_, atol=1e-10)
  np.testing.assert_allclose(
      ours.transform(SOURCE), theirs.transform(Xs=SOURCE), rtol=1e-9
  )
  np.testing.assert_allclose(
      ours.transform(NEW_SOURCE), theirs.transform(Xs=NEW_SOURCE), rtol=1e-9
  )
  # The entropic (POT: 'continuous') out-of-sample map.
  ours.out_of_sample_map = "entropic"
  continuous = ot.da.SinkhornTransport(
      reg_e=1.0,
      tol=THRESHOLD,
      max_iter=MAX_ITERATIONS,
      method="sinkhorn_log",
      out_of_sample_map="continuous",
  ).fit(Xs=SOURCE, Xt=TARGET)
  np.testing.assert_allclose(
      ours.transform(NEW_SOURCE),
      continuous.transform(Xs=NEW_SOURCE),
      rtol=1e-9,
  )
  # At the fitted points the entropic map is the barycentric one.
  np.testing.assert_allclose(
      transport.entropic_mapping(
          SOURCE, TARGET, ours.target_potential_, epsilon=1.0
      ),
      theirs.transform(Xs=SOURCE),
      rtol=1e-9,
  )


@pytest.mark.parametrize(
    "regularization, pot_class",
    [("lpl1", "SinkhornLpl1Transport"), ("l1l2", "SinkhornL1l2Transport")],
)
@pytest.mark.parametrize("epsilon, eta", [(1.0, 0.1), (0.5, 10.0)])
def test_class_regularized_transport_matches_pot(
    ot, regularization, pot_class, epsilon, eta
):
  ours = transport.SinkhornTransport(
      regularization,
      epsilon=epsilon,
      eta=eta,
      threshold=THRESHOLD,
      cost_tolerance=THRESHOLD,
  ).fit(SOURCE, SOURCE_LABELS, TARGET)
  theirs = getattr(ot.da, pot_class)(
      reg_e=epsilon, reg_cl=eta, tol=THRESHOLD
  ).fit(Xs=SOURCE, ys=SOURCE_LABELS, Xt=TARGET)
  # POT's l1l2 stops its inner solves at a fixed 1e-9 (L2) error: 2e-10 on
  # the plan and 3e-8 on the mapped points measured there.
  plan_tolerance, map_tolerance = (
      (1e-10, 1e-9) if regularization == "lpl1" else (1e-9, 1e-7)
  )
  np.testing.assert_allclose(ours.plan_, theirs.coupling_, atol=plan_tolerance)
  np.testing.assert_allclose(
      ours.transform(SOURCE), theirs.transform(Xs=SOURCE), atol=map_tolerance
  )
  np.testing.assert_allclose(
      ours.transform(NEW_SOURCE),
      theirs.transform(Xs=NEW_SOURCE),
      atol=map_tolerance,
  )


def test_class_regularization_concentrates_each_column_on_one_class():
  cost = squared_distances(SOURCE, TARGET)

  def purity(plan):  # mass of each column's main class, on average
    plan = np.asarray(plan)
    by_class = np.stack([plan[SOURCE_LABELS == c].sum(0) for c in range(3)])
    return np.mean(by_class.max(0) / by_class.sum(0))

  plain = transport.sinkhorn(
      cost, epsilon=1.0, threshold=THRESHOLD, max_iterations=MAX_ITERATIONS
  ).plan
  # Measured: plain 0.894, lpl1 1.000, l1l2 0.921.
  lpl1 = transport.sinkhorn_lpl1(
      cost,
      SOURCE_LABELS,
      epsilon=1.0,
      class_regularization=10.0,
      threshold=THRESHOLD,
  )
  l1l2 = transport.sinkhorn_l1l2(
      cost,
      SOURCE_LABELS,
      epsilon=1.0,
      class_regularization=10.0,
      threshold=THRESHOLD,
      cost_tolerance=THRESHOLD,
  )
  for plan in (lpl1, l1l2):
    np.testing.assert_allclose(np.sum(plan, axis=1), UNIFORM, atol=1e-10)
  assert purity(lpl1) > 0.99 > purity(plain)
  assert purity(l1l2) > purity(plain) + 0.02


def test_linear_transport_matches_pot(ot):
  ours = transport.LinearMongeTransport().fit(SOURCE, None, TARGET)
  theirs = ot.da.LinearTransport().fit(Xs=SOURCE, Xt=TARGET)
  np.testing.assert_allclose(ours.matrix_, theirs.A_, rtol=1e-9, atol=1e-12)
  np.testing.assert_allclose(
      ours.offset_, np.ravel(theirs.B_), rtol=1e-9, atol=1e-12
  )
  np.testing.assert_allclose(
      ours.transform(NEW_SOURCE), theirs.transform(Xs=NEW_SOURCE), rtol=1e-9
  )
  unbiased = ot.da.LinearTransport(bias=False, reg=1e-3).fit(
      Xs=SOURCE, Xt=TARGET
  )
  mapping = transport.linear_monge_mapping(
      SOURCE, TARGET, regularization=1e-3, bias=False
  )
  np.testing.assert_allclose(mapping.matrix, unbiased.A_, rtol=1e-9)
  np.testing.assert_allclose(mapping.offset, 0.0)


def test_linear_monge_mapping_matches_the_gaussians_closed_form():
  # Covariance of the mapped source = the target's; means too.
  mapping = transport.linear_monge_mapping(SOURCE, TARGET, regularization=0.0)
  mapped = SOURCE @ np.asarray(mapping.matrix) + np.asarray(mapping.offset)
  np.testing.assert_allclose(mapped.mean(0), TARGET.mean(0), atol=1e-12)
  np.testing.assert_allclose(
      np.cov(mapped.T, bias=True), np.cov(TARGET.T, bias=True), atol=1e-12
  )
  eigenvalues = np.linalg.eigvalsh(np.asarray(mapping.matrix))
  assert np.all(eigenvalues > 0)  # the gradient of a convex function


def test_mappings_recover_a_known_shift():
  target = SOURCE + SHIFT
  linear = transport.LinearMongeTransport(regularization=0.0).fit(
      SOURCE, None, target
  )
  np.testing.assert_allclose(linear.matrix_, np.eye(2), atol=1e-10)
  np.testing.assert_allclose(linear.offset_, SHIFT, atol=1e-10)
  np.testing.assert_allclose(
      linear.transform(NEW_SOURCE), NEW_SOURCE + SHIFT, atol=1e-10
  )
  # A translation is the optimal map, so the entropic plan between a grid
  # and its translate is close to the identity permutation: every point
  # moves by the shift up to the entropic blur (largest at the grid's edge),
  # and the mean moves by it exactly (the plan's marginals).
  grid = np.stack(np.meshgrid(np.arange(8.0), np.arange(5.0)), -1)
  grid = grid.reshape(NUM_POINTS, 2) * 1.5
  otda = transport.SinkhornTransport(
      epsilon=0.5, threshold=THRESHOLD, max_iterations=MAX_ITERATIONS
  ).fit(grid, None, grid + SHIFT)
  assert otda.converged_
  moved = otda.transform(grid)
  np.testing.assert_allclose(moved.mean(0), grid.mean(0) + SHIFT, atol=1e-10)
  np.testing.assert_allclose(moved, grid + SHIFT, atol=0.02)
  inside = np.array([[1.0, 1.2], [5.0, 3.3]])
  np.testing.assert_allclose(otda.transform(inside), inside + SHIFT, atol=1e-3)


def test_mapping_helpers():
  plan = np.array([[0.2, 0.3], [0.0, 0.0], [0.5, 0.0]])
  target = np.array([[1.0, 2.0], [3.0, 4.0]])
  np.testing.assert_allclose(
      transport.barycentric_mapping(plan, target),
      [[2.2, 3.2], [0.0, 0.0], [1.0, 2.0]],
  )
  source = np.array([[0.0, 0.0], [10.0, 0.0]])
  moved = np.array([[1.0, 1.0], [10.0, 5.0]])
  np.testing.assert_allclose(
      transport.nearest_neighbor_mapping(
          np.array([[1.0, 0.0], [9.0, 1.0]]), source, moved
      ),
      [[2.0, 1.0], [9.0, 6.0]],
  )


# --- The Sinkhorn divergence -------------------------------------------------


def pot_divergence(ot, source, target, epsilon):
  def entropic(first, second):
    a = np.full(len(first), 1.0 / len(first))
    b = np.full(len(second), 1.0 / len(second))
    cost = ot.dist(first, second)
    plan = ot.sinkhorn(a, b, cost, epsilon, numItermax=100_000, stopThr=1e-13)
    return numpy_entropic_cost(plan, cost, epsilon, a, b)

  return (
      entropic(source, target)
      - 0.5 * entropic(source, source)
      - 0.5 * entropic(target, target)
  )


# One compiled program for the divergence: value and gradient with the
# default ε, the features traced (so the input checks also run under jit).
DIVERGENCE = jax.jit(
    jax.value_and_grad(
        functools.partial(
            transport.sinkhorn_divergence, threshold=1e-12, max_iterations=5000
        )
    )
)


def default_epsilon(source, target):
  return 0.05 * squared_distances(source, target).mean()


def test_sinkhorn_divergence_matches_pot_and_finite_differences(ot):
  value, gradient = DIVERGENCE(SOURCE, TARGET)
  assert value.dtype == jnp.float64
  np.testing.assert_allclose(
      value,
      pot_divergence(ot, SOURCE, TARGET, default_epsilon(SOURCE, TARGET)),
      rtol=1e-8,
  )
  # Central differences along three random directions. The default ε moves
  # with the features but its gradient is stopped, so the directions are
  # taken orthogonal to ε's gradient, 2 (x_i − mean(target)) / n: there ε
  # changes only at second order, equally for ±step, which the central
  # difference cancels.
  toward = (SOURCE - TARGET.mean(0)).ravel()
  step = 1e-5
  for direction in np.random.default_rng(1).normal(size=(3, SOURCE.size)):
    direction -= toward * (direction @ toward) / (toward @ toward)
    direction = direction.reshape(SOURCE.shape)
    numeric = (
        DIVERGENCE(SOURCE + step * direction, TARGET)[0]
        - DIVERGENCE(SOURCE - step * direction, TARGET)[0]
    ) / (2 * step)
    np.testing.assert_allclose(
        np.sum(np.asarray(gradient) * direction), numeric, rtol=1e-6
    )


def test_sinkhorn_divergence_is_zero_for_identical_inputs_positive_otherwise():
  value, gradient = DIVERGENCE(SOURCE, SOURCE)
  assert abs(float(value)) < 1e-10
  np.testing.assert_allclose(gradient, 0.0, atol=1e-8)
  for target in (TARGET, SOURCE + 0.1, SOURCE[::-1] * 1.01):
    assert float(DIVERGENCE(SOURCE, target)[0]) > 1e-6
  # The order of the points does not matter.
  np.testing.assert_allclose(
      DIVERGENCE(SOURCE[::-1], TARGET)[0],
      DIVERGENCE(SOURCE, TARGET)[0],
      rtol=1e-9,
  )


def test_normalized_divergence_is_the_divergence_over_the_mean_squared_distance():
  normalized = jax.jit(
      jax.value_and_grad(
          functools.partial(
              transport.sinkhorn_divergence,
              threshold=1e-12,
              max_iterations=5000,
              normalize=True,
          )
      )
  )
  value, gradient = normalized(SOURCE, TARGET)
  raw, raw_gradient = DIVERGENCE(SOURCE, TARGET)
  scale = squared_distances(SOURCE, TARGET).mean()
  np.testing.assert_allclose(value, raw / scale, rtol=1e-10)
  # The scale's gradient is stopped: the raw gradient over the scale.
  np.testing.assert_allclose(gradient, raw_gradient / scale, rtol=1e-8)
  # Scale-free: the same number for features 1000x larger (default ε).
  np.testing.assert_allclose(
      normalized(1e3 * SOURCE, 1e3 * TARGET)[0], value, rtol=1e-8
  )
  assert float(raw) > 10 * float(value)  # this pair's scale is ~ 20


def test_float32_default_path():
  with jax.enable_x64(False):
    fitted = transport.SinkhornTransport().fit(
        SOURCE.astype(np.float32), SOURCE_LABELS, TARGET.astype(np.float32)
    )
    assert fitted.plan_.dtype == np.float32
    assert fitted.converged_  # the default threshold, 1e-6, is reachable
  reference = transport.SinkhornTransport(
      threshold=THRESHOLD, max_iterations=MAX_ITERATIONS
  ).fit(SOURCE, SOURCE_LABELS, TARGET)
  np.testing.assert_allclose(
      fitted.transform(SOURCE), reference.transform(SOURCE), atol=1e-4
  )


# --- Clear failures ----------------------------------------------------------

BAD = np.array([[0.0, np.nan]])
COST = squared_distances(SOURCE, TARGET)


@pytest.mark.parametrize(
    "call, argument",
    [
        (lambda: transport.sinkhorn(COST[0], epsilon=1.0), "cost_matrix"),
        (lambda: transport.sinkhorn(COST * np.inf, epsilon=1.0), "cost_matrix"),
        (lambda: transport.sinkhorn(COST, epsilon=0.0), "epsilon"),
        (
            lambda: transport.sinkhorn(COST, epsilon=1.0, threshold=0),
            "threshold",
        ),
        (
            lambda: transport.sinkhorn(COST, epsilon=1.0, max_iterations=0),
            "max_iterations",
        ),
        (
            lambda: transport.sinkhorn(
                COST, epsilon=1.0, source_weights=-UNIFORM
            ),
            "source_weights",
        ),
        (
            lambda: transport.sinkhorn(
                COST, epsilon=1.0, target_weights=UNIFORM[:-1]
            ),
            "target_weights",
        ),
        (
            lambda: transport.sinkhorn(
                COST, epsilon=1.0, target_weights=0 * UNIFORM
            ),
            "target_weights",
        ),
        (
            lambda: transport.entropic_plan(SOURCE, TARGET[:, :1], epsilon=1.0),
            "target_features",
        ),
        (lambda: transport.sinkhorn_divergence(BAD, TARGET), "source_features"),
        (
            lambda: transport.sinkhorn_divergence(SOURCE, np.zeros((0, 2))),
            "target_features",
        ),
        (
            lambda: transport.sinkhorn_divergence(SOURCE, TARGET, epsilon=-1.0),
            "epsilon",
        ),
        (
            lambda: transport.sinkhorn_divergence(
                SOURCE, TARGET, source_weights=np.ones((NUM_POINTS, 1))
            ),
            "source_weights",
        ),
        (
            lambda: transport.sinkhorn_lpl1(
                COST, SOURCE_LABELS[1:], epsilon=1.0
            ),
            "source_labels",
        ),
        (
            lambda: transport.sinkhorn_l1l2(
                COST, SOURCE_LABELS - 1, epsilon=1.0
            ),
            "source_labels",
        ),
        (
            lambda: transport.sinkhorn_l1l2(
                COST, SOURCE_LABELS, epsilon=1.0, class_regularization=-1.0
            ),
            "class_regularization",
        ),
        (
            lambda: transport.barycentric_mapping(COST[:, :5], TARGET),
            "plan",
        ),
        (
            lambda: transport.nearest_neighbor_mapping(
                NEW_SOURCE, SOURCE, TARGET[:5]
            ),
            "transported_source",
        ),
        (
            lambda: transport.entropic_mapping(
                NEW_SOURCE, TARGET, UNIFORM[:5], epsilon=1.0
            ),
            "target_potential",
        ),
        (
            lambda: transport.linear_monge_mapping(SOURCE, BAD),
            "target_features",
        ),
        (
            lambda: transport.linear_monge_mapping(
                SOURCE, TARGET, regularization=-1.0
            ),
            "regularization",
        ),
        (lambda: transport.SinkhornTransport("l2"), "class_regularization"),
        (
            lambda: transport.SinkhornTransport(out_of_sample_map="knn"),
            "out_of_sample_map",
        ),
        (
            lambda: transport.SinkhornTransport("lpl1").fit(
                SOURCE, None, TARGET
            ),
            "source_labels",
        ),
        (
            lambda: transport.SinkhornTransport().fit(SOURCE, SOURCE_LABELS),
            "target_inputs",
        ),
        (
            lambda: transport.SinkhornTransport().transform(SOURCE),
            "fit",
        ),
        (
            lambda: transport.LinearMongeTransport()
            .fit(SOURCE, None, TARGET)
            .transform(SOURCE[:, :1]),
            "source_inputs",
        ),
    ],
)
def test_bad_input_raises_naming_the_argument(call, argument):
  with pytest.raises(ValueError, match=argument):
    call()
