"""The kernel-domain solver (``solver="kernel"``) against POT and the log-domain solver.

References: POT's ``ot.sinkhorn`` (scaling iterations in float64, stopped at
an L2 marginal error of 1e-13, far below the threshold tested here), the
optimality condition ``P_ij = exp((f_i + g_j − C_ij) / ε)`` with the
returned potentials, the marginals, and tljax's log-domain solver on a
problem whose kernel ``exp(−C/ε)`` underflows in float32. Tolerance: both
tljax solvers stop at an L1 marginal error of 1e-10 in float64, so plans
agree with POT's to ~1e-10 (entries ~1e-3).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tljax import transport

RNG = np.random.default_rng(3)
SOURCE = RNG.normal(size=(60, 5))
TARGET = 0.5 + 0.8 * RNG.normal(size=(50, 5))
COST = np.sum((SOURCE[:, None] - TARGET[None]) ** 2, axis=-1)
THRESHOLD = 1e-10


@pytest.fixture(scope="module")
def ot():
  return pytest.importorskip("ot")


def solve(cost, epsilon, solver, a=None, b=None, threshold=THRESHOLD):
  return transport.sinkhorn(
      cost,
      epsilon=epsilon,
      source_weights=a,
      target_weights=b,
      threshold=threshold,
      max_iterations=20_000,
      solver=solver,
  )


def test_the_plan_is_pots_and_the_potentials_generate_it(ot):
  a = RNG.random(60) + 0.1
  a /= a.sum()
  b = np.full(50, 1 / 50)
  epsilon = 0.05 * COST.mean()
  with jax.enable_x64(True):
    result = solve(COST, epsilon, "kernel", a, b)
    expected = ot.sinkhorn(
        a, b, COST, epsilon, numItermax=100_000, stopThr=1e-13
    )
    plan = np.asarray(result.plan)
    assert bool(result.converged) and float(result.marginal_error) < THRESHOLD
    np.testing.assert_allclose(plan, expected, atol=1e-10)
    np.testing.assert_allclose(plan.sum(axis=1), a, atol=1e-14)  # exact rows
    np.testing.assert_allclose(
        plan,
        np.exp(
            (
                np.asarray(result.source_potential)[:, None]
                + np.asarray(result.target_potential)[None, :]
                - COST
            )
            / epsilon
        ),
        rtol=1e-9,
    )
    np.testing.assert_allclose(
        float(result.transport_cost), np.sum(expected * COST), rtol=1e-9
    )
    log_domain = solve(COST, epsilon, "log", a, b)
    np.testing.assert_allclose(
        float(result.regularized_cost),
        float(log_domain.regularized_cost),
        rtol=1e-9,
    )
    # Over-relaxation: fewer iterations than plain Sinkhorn's.
    assert int(result.iterations) < int(log_domain.iterations)


def test_zero_weight_points_get_no_mass(ot):
  # POT divides by the weights, so its reference is the problem without
  # the zero-weight points; the plan must be that plan, padded with zeros.
  empty_rows, empty_columns = [3, 17, 40, 59], [0, 25]
  a = np.full(60, 1 / 56)
  a[empty_rows] = 0.0
  b = np.full(50, 1 / 48)
  b[empty_columns] = 0.0
  rows, columns = a > 0, b > 0
  epsilon = 0.05 * COST.mean()
  with jax.enable_x64(True):
    result = solve(COST, epsilon, "kernel", a, b)
  expected = ot.sinkhorn(
      a[rows],
      b[columns],
      COST[rows][:, columns],
      epsilon,
      numItermax=100_000,
      stopThr=1e-13,
  )
  plan = np.asarray(result.plan)
  assert np.all(plan[empty_rows] == 0) and np.all(plan[:, empty_columns] == 0)
  np.testing.assert_allclose(plan[rows][:, columns], expected, atol=1e-10)
  assert np.all(np.isneginf(np.asarray(result.source_potential)[empty_rows]))
  assert np.all(np.isfinite(np.asarray(result.source_potential)[rows]))


def test_float32_where_the_plain_kernel_underflows():
  # C/ε up to ~700: exp(-C/ε) is 0 in float32 for most entries, and the
  # scalings of plain kernel iterations from 1 would overflow. The warm
  # start and absorption keep it finite; the plan is the log domain's.
  epsilon = 0.005 * COST.mean()
  assert np.mean(np.exp(-COST / epsilon).astype(np.float32) == 0) > 0.5
  cost = COST.astype(np.float32)
  kernel = solve(cost, epsilon, "kernel", threshold=1e-5)
  log_domain = solve(cost, epsilon, "log", threshold=1e-5)
  assert bool(kernel.converged) and bool(log_domain.converged)
  assert np.all(np.isfinite(np.asarray(kernel.plan)))
  np.testing.assert_allclose(kernel.plan, log_domain.plan, atol=2e-5)
  np.testing.assert_allclose(
      float(kernel.transport_cost), float(log_domain.transport_cost), rtol=1e-4
  )


def test_entropic_plan_jit_and_a_constant_for_gradients():
  source = SOURCE.astype(np.float32)
  target = TARGET.astype(np.float32)

  def cost_of(x):
    return transport.entropic_plan(
        x, target, epsilon=2.0, threshold=1e-5, solver="kernel"
    ).transport_cost

  eager = transport.entropic_plan(
      source, target, epsilon=2.0, threshold=1e-5, solver="log"
  ).transport_cost
  np.testing.assert_allclose(jax.jit(cost_of)(source), eager, rtol=1e-4)
  assert np.all(np.asarray(jax.grad(cost_of)(jnp.asarray(source))) == 0)


def test_bad_solvers_name_the_argument():
  with pytest.raises(ValueError, match="solver must be one of"):
    transport.sinkhorn(COST, epsilon=1.0, solver="sinkhorn_log")
  with pytest.raises(ValueError, match="solver='kernel' is dense only"):
    transport.entropic_plan(
        SOURCE, TARGET, epsilon=1.0, solver="kernel", batch_size=16
    )


def test_the_facade_takes_the_solver():
  source = SOURCE.astype(np.float32)
  target = TARGET.astype(np.float32)
  fitted = {
      solver: transport.SinkhornTransport(
          epsilon=2.0, threshold=1e-6, solver=solver
      ).fit(source, None, target)
      for solver in ("log", "kernel")
  }
  assert fitted["kernel"].get_params()["solver"] == "kernel"
  assert fitted["kernel"].converged_
  np.testing.assert_allclose(
      fitted["kernel"].transform(source),
      fitted["log"].transform(source),
      atol=1e-4,
  )
  with pytest.raises(ValueError, match="solver must be one of"):
    transport.SinkhornTransport(solver="exact")


def test_an_unreachable_float32_threshold_stops_at_the_floor():
  # 1e-12 is far below float32's rounding: the solve stops once the error
  # stops falling (not converged), long before max_iterations, with the
  # plan as good as float32 makes it.
  cost = COST.astype(np.float32)
  epsilon = 0.05 * float(COST.mean())
  stalled = solve(cost, epsilon, "kernel", threshold=1e-12)
  assert not bool(stalled.converged) and int(stalled.iterations) < 20_000
  assert float(stalled.marginal_error) < 1e-6
  reference = solve(cost, epsilon, "log", threshold=1e-6)
  np.testing.assert_allclose(stalled.plan, reference.plan, atol=1e-6)
