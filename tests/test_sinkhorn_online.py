"""Tests for the online (memory-light) mode of tljax.transport's Sinkhorn.

References: the dense mode (ott-jax's solver on the ``n × m`` cost
matrix, an independent implementation of the same iterates); POT's
``ot.sinkhorn(method='sinkhorn_log')`` on the same float64 data and ``ε``,
with the entropic cost ``⟨P, C⟩ + ε KL(P | a bᵀ)`` and the debiased
divergence written here in NumPy from POT's plans; and the jaxpr and XLA's
memory analysis of the compiled online programs at ``n = m = 4096``.

Tolerances. Against the dense mode at the same threshold the online mode
runs the same iterations in another summation order: equal iteration
counts, potentials and costs to 1e-10 (float64). Against POT both are
solved to a marginal error of 1e-12 (ours the L1 error of ``Pᵀ 1``, POT's
the L2 error): plans then agree to about 1e-13 (entries ~1e-3), so the tests
allow 1e-9 relative on costs, plan products and divergences. Divergence
gradients (Danskin's, block by block) against central differences
(step 1e-5, solves to 1e-11): 1e-6 relative.
"""

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tljax import transport

# The module (tljax.transport.sinkhorn is shadowed by the function).
sinkhorn_module = importlib.import_module("tljax.transport.sinkhorn")

NUM_SOURCE, NUM_TARGET = 57, 43  # neither a multiple of the batch sizes below
RNG = np.random.default_rng(0)
SOURCE = RNG.normal(size=(NUM_SOURCE, 3))
TARGET = RNG.normal(size=(NUM_TARGET, 3)) * 0.8 + np.array([1.0, 0.5, 0.0])
SOURCE_WEIGHTS = RNG.uniform(0.5, 1.5, size=NUM_SOURCE)
TARGET_WEIGHTS = RNG.uniform(0.5, 1.5, size=NUM_TARGET)
EPSILON = 0.5
THRESHOLD = 1e-12
MAX_ITERATIONS = 10_000


@pytest.fixture(scope="module")
def ot():
  return pytest.importorskip("ot")


@pytest.fixture(autouse=True)
def float64():
  with jax.enable_x64(True):
    yield


def squared_distances_numpy(first, second):
  return np.sum((first[:, None, :] - second[None, :, :]) ** 2, axis=-1)


def solve(batch_size, **kwargs):
  return transport.entropic_plan(
      SOURCE,
      TARGET,
      epsilon=EPSILON,
      source_weights=SOURCE_WEIGHTS,
      target_weights=TARGET_WEIGHTS,
      threshold=THRESHOLD,
      max_iterations=MAX_ITERATIONS,
      batch_size=batch_size,
      **kwargs,
  )


@pytest.mark.parametrize("batch_size", [16, 1000])
def test_online_matches_dense(batch_size):
  dense = solve(None)
  online = solve(batch_size)
  assert isinstance(online, sinkhorn_module.OnlineSinkhornResult)
  assert int(online.iterations) == int(dense.iterations) > 0
  assert bool(online.converged) and bool(dense.converged)
  for name in ("source_potential", "target_potential"):
    np.testing.assert_allclose(
        getattr(online, name), getattr(dense, name), rtol=0, atol=1e-10
    )
  for name in ("transport_cost", "regularized_cost"):
    np.testing.assert_allclose(
        getattr(online, name), getattr(dense, name), rtol=1e-10
    )
  assert float(online.marginal_error) < THRESHOLD
  matrix = RNG.normal(size=(NUM_TARGET, 4))
  np.testing.assert_allclose(
      online.apply_plan(matrix), dense.plan @ matrix, rtol=0, atol=1e-12
  )
  np.testing.assert_allclose(
      online.apply_plan(SOURCE[:, 0], transpose=True),
      dense.plan.T @ SOURCE[:, 0],
      rtol=0,
      atol=1e-12,
  )


def test_online_matches_pot(ot):
  a = SOURCE_WEIGHTS / SOURCE_WEIGHTS.sum()
  b = TARGET_WEIGHTS / TARGET_WEIGHTS.sum()
  cost = squared_distances_numpy(SOURCE, TARGET)
  plan = ot.sinkhorn(
      a,
      b,
      cost,
      EPSILON,
      method="sinkhorn_log",
      stopThr=1e-13,
      numItermax=MAX_ITERATIONS,
  )
  online = solve(16)
  transport_cost = np.sum(plan * cost)
  regularized_cost = transport_cost + EPSILON * np.sum(
      plan * np.log(plan / np.outer(a, b))
  )
  np.testing.assert_allclose(online.transport_cost, transport_cost, rtol=1e-9)
  np.testing.assert_allclose(
      online.regularized_cost, regularized_cost, rtol=1e-9
  )
  # The barycentric mapping of OTDA, from the plan applied to the target.
  mapped = (
      online.apply_plan(TARGET)
      / online.apply_plan(np.ones(NUM_TARGET))[:, None]
  )
  np.testing.assert_allclose(
      mapped, (plan @ TARGET) / plan.sum(axis=1)[:, None], rtol=1e-9
  )
  # P = exp((f_i + g_j − C_ij) / ε) recovered entry by entry from the
  # potentials (small problem: the test may hold the matrix).
  rebuilt = np.exp(
      (
          np.asarray(online.source_potential)[:, None]
          + np.asarray(online.target_potential)[None, :]
          - cost
      )
      / EPSILON
  )
  np.testing.assert_allclose(rebuilt, plan, rtol=1e-9, atol=1e-15)


def test_online_divergence_matches_pot(ot):
  a = SOURCE_WEIGHTS / SOURCE_WEIGHTS.sum()
  b = TARGET_WEIGHTS / TARGET_WEIGHTS.sum()

  def entropic_cost(first, second, first_weights, second_weights):
    cost = squared_distances_numpy(first, second)
    plan = ot.sinkhorn(
        first_weights,
        second_weights,
        cost,
        EPSILON,
        method="sinkhorn_log",
        stopThr=1e-13,
        numItermax=MAX_ITERATIONS,
    )
    return np.sum(plan * cost) + EPSILON * np.sum(
        plan * np.log(plan / np.outer(first_weights, second_weights))
    )

  expected = entropic_cost(SOURCE, TARGET, a, b) - 0.5 * (
      entropic_cost(SOURCE, SOURCE, a, a) + entropic_cost(TARGET, TARGET, b, b)
  )
  value = transport.sinkhorn_divergence(
      SOURCE,
      TARGET,
      epsilon=EPSILON,
      source_weights=SOURCE_WEIGHTS,
      target_weights=TARGET_WEIGHTS,
      threshold=THRESHOLD,
      max_iterations=MAX_ITERATIONS,
      batch_size=16,
  )
  np.testing.assert_allclose(value, expected, rtol=1e-9)


def test_online_divergence_gradients_match_finite_differences():
  @jax.jit
  def divergence(source, target, source_weights, epsilon):
    return transport.sinkhorn_divergence(
        source,
        target,
        epsilon=epsilon,
        source_weights=source_weights,
        threshold=1e-11,
        max_iterations=MAX_ITERATIONS,
        batch_size=16,
    )

  arguments = (SOURCE, TARGET, SOURCE_WEIGHTS, np.float64(EPSILON))
  gradients = jax.grad(divergence, argnums=(0, 1, 2, 3))(*arguments)
  step = 1e-5
  for argument, index in [
      (0, (3, 1)),
      (0, (40, 2)),
      (1, (5, 0)),
      (2, 7),
      (3, ()),
  ]:
    plus = [np.array(value, np.float64) for value in arguments]
    minus = [np.array(value, np.float64) for value in arguments]
    plus[argument][index] += step
    minus[argument][index] -= step
    expected = (divergence(*plus) - divergence(*minus)) / (2 * step)
    np.testing.assert_allclose(
        gradients[argument][index], expected, rtol=1e-6, atol=1e-8
    )
  # The source gradient is not trivially small.
  assert np.max(np.abs(gradients[0])) > 1e-3


def test_online_is_jittable():
  @jax.jit
  def run(source, target):
    result = transport.entropic_plan(
        source,
        target,
        epsilon=EPSILON,
        threshold=THRESHOLD,
        max_iterations=MAX_ITERATIONS,
        batch_size=16,
    )
    return result, result.apply_plan(target)

  result, applied = run(SOURCE, TARGET)
  dense = transport.entropic_plan(
      SOURCE,
      TARGET,
      epsilon=EPSILON,
      threshold=THRESHOLD,
      max_iterations=MAX_ITERATIONS,
  )
  assert result.batch_size == 16
  np.testing.assert_allclose(
      result.regularized_cost, dense.regularized_cost, rtol=1e-10
  )
  np.testing.assert_allclose(applied, dense.plan @ TARGET, rtol=0, atol=1e-12)


# --- Memory: no n × m array -------------------------------------------------

LARGE = 4096
LARGE_BATCH = 256


def largest_intermediate(closed_jaxpr) -> int:
  """The most elements of any value in a jaxpr, its sub-jaxprs included."""

  def sub_jaxprs(value):
    if isinstance(value, jax.extend.core.ClosedJaxpr):
      yield value.jaxpr
    elif isinstance(value, jax.extend.core.Jaxpr):
      yield value
    elif isinstance(value, (tuple, list)):
      for item in value:
        yield from sub_jaxprs(item)

  def walk(jaxpr) -> int:
    largest = 0
    for equation in jaxpr.eqns:
      for variable in equation.outvars:
        largest = max(largest, int(np.prod(variable.aval.shape)))
      for value in equation.params.values():
        for sub in sub_jaxprs(value):
          largest = max(largest, walk(sub))
    return largest

  return walk(closed_jaxpr.jaxpr)


def online_plan(source, target):
  result = transport.entropic_plan(
      source, target, epsilon=1.0, batch_size=LARGE_BATCH
  )
  return (
      result.source_potential,
      result.regularized_cost,
      result.apply_plan(target),
  )


def online_divergence_gradient(source, target):
  return jax.grad(
      lambda first, second: transport.sinkhorn_divergence(
          first, second, batch_size=LARGE_BATCH
      ),
      argnums=(0, 1),
  )(source, target)


def dense_plan(source, target):
  return transport.entropic_plan(source, target, epsilon=1.0).plan


@pytest.fixture(scope="module")
def large_spec():
  return jax.ShapeDtypeStruct((LARGE, 8), jnp.float32)


@pytest.mark.parametrize("function", [online_plan, online_divergence_gradient])
def test_online_holds_no_n_by_m_array(function, large_spec):
  with jax.enable_x64(False):
    block = LARGE_BATCH * LARGE
    assert (
        largest_intermediate(jax.make_jaxpr(function)(large_spec, large_spec))
        <= block
    )
    memory = (
        jax.jit(function)
        .lower(large_spec, large_spec)
        .compile()
        .memory_analysis()
    )
    if memory is None:
      pytest.skip("XLA gives no memory analysis on this backend")
    # A float32 n × m matrix is 64 MiB; a block 4 MiB.
    assert memory.temp_size_in_bytes < LARGE * LARGE * 4 / 4


def test_the_memory_check_sees_the_dense_matrix(large_spec):
  with jax.enable_x64(False):
    assert (
        largest_intermediate(jax.make_jaxpr(dense_plan)(large_spec, large_spec))
        >= LARGE * LARGE
    )


# --- Input checks -------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [0, -3, 2.0, True, "8"])
def test_bad_batch_size_raises(batch_size):
  with pytest.raises(ValueError, match="batch_size"):
    solve(batch_size)
  with pytest.raises(ValueError, match="batch_size"):
    transport.sinkhorn_divergence(SOURCE, TARGET, batch_size=batch_size)


def test_online_checks_the_other_arguments():
  with pytest.raises(ValueError, match="epsilon"):
    transport.entropic_plan(SOURCE, TARGET, epsilon=0.0, batch_size=8)
  with pytest.raises(ValueError, match="threshold"):
    transport.entropic_plan(
        SOURCE, TARGET, epsilon=1.0, threshold=-1.0, batch_size=8
    )
  with pytest.raises(ValueError, match="target_weights"):
    transport.entropic_plan(
        SOURCE,
        TARGET,
        epsilon=1.0,
        target_weights=np.ones(NUM_TARGET + 1),
        batch_size=8,
    )
  with pytest.raises(ValueError, match="target_features"):
    transport.entropic_plan(SOURCE, TARGET[:, :2], epsilon=1.0, batch_size=8)


def test_apply_plan_checks_the_matrix():
  result = solve(16)
  with pytest.raises(ValueError, match="matrix"):
    result.apply_plan(np.ones((NUM_SOURCE, 2)))
  with pytest.raises(ValueError, match="matrix"):
    result.apply_plan(np.ones(NUM_TARGET), transpose=True)
  with pytest.raises(ValueError, match="matrix"):
    result.apply_plan(np.ones((NUM_TARGET, 2, 2)))
  assert result.apply_plan(np.ones((NUM_SOURCE, 2)), transpose=True).shape == (
      NUM_TARGET,
      2,
  )
