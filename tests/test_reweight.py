"""Tests for tljax.reweight against independent references.

References: SciPy's SLSQP on the KMM quadratic program (and cvxopt's QP
solver when installed, with the KKT conditions written here), on the
projection QP and on KLIEP's constrained likelihood maximisation (its
objective, KKT conditions and cross-validation scores); uLSIF/RuLSIF's
closed form and their leave-one-out scores by explicit refitting, in NumPy (float64); brute-force nearest-neighbour counts
and the weighted losses in NumPy; and 1-D Gaussians with a known density
ratio, ``N(0, 1)`` source and ``N(0.5, 0.8²)`` target.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize
import scipy.special
import scipy.stats
import threadpoolctl

from tljax import reweight
from tljax.reweight.kmm import INTERIOR_POINT_MAX_SOURCE


def numpy_gaussian(first, second, gamma):
  first = np.asarray(first, np.float64)
  second = np.asarray(second, np.float64)
  distances = np.sum((first[:, None, :] - second[None, :, :]) ** 2, axis=-1)
  return np.exp(-gamma * distances)


def numpy_basis(points, centers, sigma):
  return numpy_gaussian(points, centers, 1.0 / (2.0 * sigma**2))


def kmm_problem(source, target, gamma):
  """``K`` and ``κ`` of the KMM QP, in float64."""
  kernel = numpy_gaussian(source, source, gamma)
  kappa = (
      len(source)
      / len(target)
      * numpy_gaussian(source, target, gamma).sum(axis=1)
  )
  return kernel, kappa


def slsqp_kmm(kernel, kappa, upper, eps):
  """The KMM QP solved by SciPy's SLSQP, from β = 1."""
  n = len(kappa)
  constraints = [
      {
          "type": "ineq",
          "fun": lambda b: n * (1 + eps) - b.sum(),
          "jac": lambda b: -np.ones(n),
      },
      {
          "type": "ineq",
          "fun": lambda b: b.sum() - n * (1 - eps),
          "jac": lambda b: np.ones(n),
      },
  ]
  # One BLAS thread: SLSQP's small dense solves slow down ~10x when the
  # threads of a shared machine are oversubscribed.
  with threadpoolctl.threadpool_limits(1):
    result = scipy.optimize.minimize(
        lambda b: 0.5 * b @ kernel @ b - kappa @ b,
        np.ones(n),
        jac=lambda b: kernel @ b - kappa,
        bounds=[(0.0, upper)] * n,
        constraints=constraints,
        method="SLSQP",
        options={"maxiter": 3000, "ftol": 1e-15},
    )
  return result.x, result.fun


def gaussian_shift(n, seed=0, dim=1):
  rng = np.random.default_rng(seed)
  source = rng.normal(size=(n, dim)).astype(np.float32)
  target = (0.5 + 0.8 * rng.normal(size=(n, dim))).astype(np.float32)
  return source, target


# --- KMM ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "dim, n, upper, eps",
    [
        (8, 200, 1000.0, None),  # the defaults: neither bound active
        (3, 200, 2.0, 0.02),  # many weights at B, the sum at its lower bound
        (5, 250, 1.5, 0.02),
        (1, 200, 1000.0, None),  # the sample-selection toy: ill-conditioned K
    ],
)
def test_kmm_matches_scipy_qp(dim, n, upper, eps):
  if dim == 1:
    rng = np.random.default_rng(0)
    source = rng.normal(0.0, 0.5, (n, 1)).astype(np.float32)
    target = rng.uniform(-1.5, 1.5, (n, 1)).astype(np.float32)
  else:
    source, target = gaussian_shift(n, seed=dim, dim=dim)
  # The default stopping rule (tolerance 1e-6, at most 10,000 iterations).
  result = reweight.kmm(source, target, B=upper, eps=eps)
  gamma, eps = float(result.gamma), float(result.eps)
  kernel, kappa = kmm_problem(source, target, gamma)
  reference_weights, reference = slsqp_kmm(kernel, kappa, upper, eps)
  weights = np.asarray(result.weights, np.float64)
  objective = 0.5 * weights @ kernel @ weights - kappa @ weights

  assert abs(objective - reference) <= 1e-4 * abs(reference)
  # The reference itself is feasible and no better than kmm by more than 1e-4.
  assert (
      reference_weights.min() >= -1e-8
      and reference_weights.max() <= upper + 1e-8
  )
  np.testing.assert_allclose(float(result.objective), objective, rtol=1e-5)
  assert weights.min() >= 0.0 and weights.max() <= upper * (1 + 1e-6)
  assert (
      n * (1 - eps) * (1 - 1e-5) <= weights.sum() <= n * (1 + eps) * (1 + 1e-5)
  )
  if eps == 0.02:
    assert weights.sum() == pytest.approx(n * (1 - eps), rel=1e-5)
    assert np.sum(weights >= upper * (1 - 1e-6)) > 10


def test_kmm_median_heuristic_gamma():
  source, target = gaussian_shift(40, dim=2)
  pooled = np.concatenate([source, target]).astype(np.float64)
  rows, cols = np.triu_indices(len(pooled), 1)
  median = np.median(np.sum((pooled[rows] - pooled[cols]) ** 2, axis=1))
  result = reweight.kmm(source, target)
  assert float(result.gamma) == pytest.approx(1.0 / (2.0 * median), rel=1e-5)
  np.testing.assert_allclose(
      reweight.kmm(source, target, gamma=0.3).gamma, 0.3, rtol=1e-7
  )


@pytest.mark.parametrize("case", ["inside", "above", "below", "box"])
def test_project_box_slab_matches_qp(case):
  rng = np.random.default_rng(["inside", "above", "below", "box"].index(case))
  n, upper = 30, 2.0
  values = rng.normal(loc=1.0, scale=1.5, size=n)
  lower_sum, upper_sum = {
      "inside": (
          0.5 * np.clip(values, 0, upper).sum(),
          2.0 * np.clip(values, 0, upper).sum(),
      ),
      "above": (1.0, 0.5 * np.clip(values, 0, upper).sum()),
      "below": (
          1.5 * np.clip(values, 0, upper).sum(),
          2.0 * np.clip(values, 0, upper).sum(),
      ),
      "box": (n * upper * 0.98, n * upper),  # nearly every entry at the bound
  }[case]
  with jax.enable_x64(True):
    projection = np.asarray(
        reweight.project_box_slab(
            jnp.asarray(values, jnp.float64), upper, lower_sum, upper_sum
        )
    )
  constraints = [
      {
          "type": "ineq",
          "fun": lambda b: upper_sum - b.sum(),
          "jac": lambda b: -np.ones(n),
      },
      {
          "type": "ineq",
          "fun": lambda b: b.sum() - lower_sum,
          "jac": lambda b: np.ones(n),
      },
  ]
  with threadpoolctl.threadpool_limits(1):
    reference = scipy.optimize.minimize(
        lambda b: 0.5 * np.sum((b - values) ** 2),
        np.clip(values, 0, upper),
        jac=lambda b: b - values,
        bounds=[(0.0, upper)] * n,
        constraints=constraints,
        method="SLSQP",
        options={"maxiter": 500, "ftol": 1e-15},
    ).x
  np.testing.assert_allclose(projection, reference, atol=1e-6)
  assert lower_sum - 1e-9 <= projection.sum() <= upper_sum + 1e-9
  if case == "inside":
    np.testing.assert_array_equal(projection, np.clip(values, 0, upper))
  else:
    bound = upper_sum if case == "above" else lower_sum
    assert projection.sum() == pytest.approx(bound, rel=1e-12)


def test_kmm_blocked_matches_dense_and_nystroem_objective():
  source, target = gaussian_shift(3000, dim=3)
  options = dict(max_iterations=15, power_iterations=10)
  dense = reweight.kmm(source, target, materialize_kernel=True, **options)
  blocked = reweight.kmm(
      source, target, materialize_kernel=False, block_size=448, **options
  )  # 3000 rows: the last block is padded
  np.testing.assert_allclose(
      blocked.weights, dense.weights, rtol=1e-4, atol=1e-4
  )
  np.testing.assert_allclose(blocked.objective, dense.objective, rtol=1e-5)
  assert int(blocked.num_iterations) == int(dense.num_iterations) == 15

  # The Nyström weights, scored with the exact kernel, are near-optimal.
  small_source, small_target = source[:800, :2], target[:800, :2]
  exact = reweight.kmm(
      small_source, small_target, tolerance=1e-6, max_iterations=3000
  )
  nystroem = reweight.kmm(
      small_source,
      small_target,
      kernel_approximation="nystroem",
      rank=200,
      tolerance=1e-6,
      max_iterations=3000,
  )
  kernel, kappa = kmm_problem(small_source, small_target, float(exact.gamma))

  def objective(weights):
    weights = np.asarray(weights, np.float64)
    return 0.5 * weights @ kernel @ weights - kappa @ weights

  optimum = objective(exact.weights)
  assert objective(nystroem.weights) == pytest.approx(optimum, rel=1e-4)
  weights = np.asarray(nystroem.weights)
  assert weights.min() >= 0 and weights.sum() == pytest.approx(
      800, rel=float(nystroem.eps)
  )


# --- KMM solvers: interior point, projected gradient, against SLSQP and cvxopt ----------


# Problems for the solver tests: (n_s, n_t, dim, B, ε), ε None for the
# default (√n_s − 1)/√n_s.
KMM_QP_PROBLEMS = [
    (20, 20, 1, 1000.0, None),
    (60, 60, 2, 2.0, 0.02),  # weights at B, the sum at its lower bound
    (100, 100, 4, 1000.0, 0.0),  # ε = 0: the sum is n_s
    (120, 80, 3, 1000.0, None),  # n_t ≠ n_s
    (150, 150, 5, 1000.0, None),
    (300, 300, 5, 1.2, 0.01),  # most weights at B
]
KMM_QP_IDS = [
    "1d-20",
    "box-and-sum-60",
    "eps0-100",
    "nt80-120",
    "5d-150",
    "box-300",
]


@functools.cache
def kmm_reference(index):
  """Problem ``index`` (data representable in float32, the median-heuristic γ
  computed here) and its optimum by SLSQP, in float64."""
  num_source, num_target, dim, upper, eps = KMM_QP_PROBLEMS[index]
  rng = np.random.default_rng(index)
  source = (
      rng.normal(size=(num_source, dim)).astype(np.float32).astype(np.float64)
  )
  target = (0.5 + 0.8 * rng.normal(size=(num_target, dim))).astype(np.float32)
  target = target.astype(np.float64)
  pooled = np.concatenate([source, target])
  distances = np.sum((pooled[:, None] - pooled[None]) ** 2, axis=-1)
  gamma = 1.0 / (2.0 * np.median(distances[np.triu_indices(len(pooled), 1)]))
  if eps is None:
    eps = (np.sqrt(num_source) - 1.0) / np.sqrt(num_source)
  kernel, kappa = kmm_problem(source, target, gamma)
  _, optimum = slsqp_kmm(kernel, kappa, upper, eps)
  return source, target, gamma, upper, eps, kernel, kappa, optimum


def fit_kmm(index, x64, **options):
  """kmm on problem ``index`` in float64 (``x64``) or float32, and its weights
  as a float64 NumPy array."""
  source, target, gamma, upper, eps = kmm_reference(index)[:5]
  dtype = np.float64 if x64 else np.float32
  with jax.enable_x64(x64):
    result = reweight.kmm(
        source.astype(dtype),
        target.astype(dtype),
        gamma=gamma,
        B=upper,
        eps=eps,
        **options,
    )
    assert result.weights.dtype == dtype
  return result, np.asarray(result.weights, np.float64)


def kkt_violation(kernel, kappa, weights, upper, eps, at_bound):
  """The largest violation of the KKT conditions of the KMM QP, over max |κ|.

  With ``g = Kβ − κ`` and ``ν`` the multiplier of the sum constraint
  (``g + ν 1 = λ_lower − λ_upper``, the box's multipliers): ``g_i + ν >= 0``
  where ``β_i < B``, ``g_i + ν <= 0`` where ``β_i > 0``, ``ν <= 0`` unless
  the sum is at its upper bound and ``ν >= 0`` unless it is at its lower
  one. A weight (a sum) within ``at_bound`` (``n_s · at_bound``) of a
  bound counts as on it.
  """
  n = len(weights)
  gradient = kernel @ weights - kappa
  above_lower, below_upper = weights > at_bound, weights < upper - at_bound
  free = above_lower & below_upper
  multiplier = -np.median(gradient[free])
  shifted = gradient + multiplier
  violations = [
      np.max(shifted[above_lower], initial=0.0),
      np.max(-shifted[below_upper], initial=0.0),
  ]
  total, slack = weights.sum(), at_bound * n
  if total > n * (1 - eps) + slack:
    violations.append(-multiplier)  # the lower sum bound is inactive: ν >= 0
  if total < n * (1 + eps) - slack:
    violations.append(multiplier)  # the upper one: ν <= 0
  return max(violations) / np.max(np.abs(kappa))


def assert_feasible(weights, upper, eps, dtype):
  """0 <= β <= B (B rounded to ``dtype``) exactly; the sum in the slab to the
  rounding of summing n_s numbers in ``dtype``."""
  n = len(weights)
  assert weights.min() >= 0.0 and weights.max() <= float(
      np.asarray(upper, dtype)
  )
  rounding = n * np.finfo(dtype).eps
  assert (
      n * (1 - eps) * (1 - rounding)
      <= weights.sum()
      <= n * (1 + eps) * (1 + rounding)
  )


@pytest.mark.parametrize("x64", [False, True], ids=["float32", "float64"])
@pytest.mark.parametrize("index", range(len(KMM_QP_PROBLEMS)), ids=KMM_QP_IDS)
def test_kmm_interior_point_reaches_the_optimum(index, x64):
  *_, upper, eps, kernel, kappa, optimum = kmm_reference(index)
  result, weights = fit_kmm(index, x64, solver="interior_point")
  objective = 0.5 * weights @ kernel @ weights - kappa @ weights
  # SLSQP agreed with a float64 interior-point solve at 8 units of rounding
  # to 1e-12 on these problems. float32 (solves stop at 8 units of its
  # rounding, about 1e-6; γ and the bounds round too): observed below 1e-6.
  assert abs(objective - optimum) <= (1e-7 if x64 else 1e-5) * abs(optimum)
  assert bool(result.converged) and int(result.num_iterations) < 1000
  np.testing.assert_allclose(
      float(result.objective), objective, rtol=1e-12 if x64 else 1e-5
  )
  assert_feasible(weights, upper, eps, np.float64 if x64 else np.float32)
  # The stopping rule (tolerance 1e-6 on the projected-gradient step) leaves
  # gradient residuals of about 1e-5 max |κ|.
  assert kkt_violation(kernel, kappa, weights, upper, eps, 1e-6) <= 1e-4


@pytest.mark.parametrize("index", [0, 1, 2], ids=KMM_QP_IDS[:3])
def test_kmm_solvers_agree(index):
  *_, upper, eps, kernel, kappa, optimum = kmm_reference(index)
  options = {"tolerance": 1e-11, "max_iterations": 100_000}
  interior, interior_weights = fit_kmm(
      index, True, solver="interior_point", **options
  )
  projected, projected_weights = fit_kmm(
      index, True, solver="projected_gradient", **options
  )
  assert bool(interior.converged) and bool(projected.converged)
  for weights in (interior_weights, projected_weights):
    objective = 0.5 * weights @ kernel @ weights - kappa @ weights
    assert objective == pytest.approx(optimum, rel=1e-10)
    assert kkt_violation(kernel, kappa, weights, upper, eps, 1e-9) <= 1e-8
  # The same active set (the weights themselves are ill-determined: K is
  # nearly singular).
  np.testing.assert_array_equal(interior_weights == 0, projected_weights == 0)


def test_kmm_auto_solver_by_size():
  # 'auto': the interior point up to INTERIOR_POINT_MAX_SOURCE source examples.
  rng = np.random.default_rng(0)
  source = rng.normal(size=(INTERIOR_POINT_MAX_SOURCE + 1, 2))
  target = rng.normal(0.5, 0.8, size=(300, 2))
  for size, solver in [
      (INTERIOR_POINT_MAX_SOURCE, "interior_point"),
      (INTERIOR_POINT_MAX_SOURCE + 1, "projected_gradient"),
  ]:
    auto = reweight.kmm(source[:size], target, max_iterations=50)
    chosen = reweight.kmm(
        source[:size], target, max_iterations=50, solver=solver
    )
    np.testing.assert_array_equal(auto.weights, chosen.weights)


def cvxopt_kmm(kernel, kappa, upper, eps):
  """The KMM QP solved by cvxopt's interior-point QP solver (adapt's)."""
  solvers = pytest.importorskip("cvxopt.solvers")
  matrix = pytest.importorskip("cvxopt").matrix
  n = len(kappa)
  constraints = np.vstack(
      [-np.eye(n), np.eye(n), -np.ones((1, n)), np.ones((1, n))]
  )
  bounds = np.concatenate(
      [np.zeros(n), np.full(n, upper), [-n * (1 - eps), n * (1 + eps)]]
  )
  solution = solvers.qp(
      matrix(kernel),
      matrix(-kappa),
      matrix(constraints),
      matrix(bounds),
      options={
          "show_progress": False,
          "abstol": 1e-10,
          "reltol": 1e-10,
          "feastol": 1e-10,
      },
  )
  assert solution["status"] == "optimal", solution["status"]
  weights = np.clip(np.asarray(solution["x"]).ravel(), 0.0, upper)
  return 0.5 * weights @ kernel @ weights - kappa @ weights


# cvxopt needs a strictly feasible sum: not ε = 0.
@pytest.mark.parametrize(
    "index", [0, 1, 3, 5], ids=[KMM_QP_IDS[i] for i in [0, 1, 3, 5]]
)
def test_kmm_matches_cvxopt_if_installed(index):
  *_, upper, eps, kernel, kappa, _ = kmm_reference(index)
  reference = cvxopt_kmm(kernel, kappa, upper, eps)
  _, weights = fit_kmm(index, True)
  assert 0.5 * weights @ kernel @ weights - kappa @ weights == pytest.approx(
      reference, rel=1e-7
  )


# --- Known density ratio -----------------------------------------------------------


@pytest.fixture(scope="module")
def shifted_gaussians():
  source, target = gaussian_shift(1000)
  true_ratio = scipy.stats.norm.pdf(
      source[:, 0], 0.5, 0.8
  ) / scipy.stats.norm.pdf(source[:, 0])
  return source, target, true_ratio


@pytest.mark.parametrize(
    "method", ["kmm", "kliep", "ulsif", "rulsif", "classifier"]
)
def test_weights_follow_the_true_ratio(shifted_gaussians, method):
  source, target, true_ratio = shifted_gaussians
  estimate = {
      "kmm": lambda: reweight.kmm(source, target).weights,
      "kliep": lambda: reweight.kliep(source, target).weights,
      "ulsif": lambda: reweight.ulsif(source, target).weights,
      "rulsif": lambda: reweight.rulsif(
          source, target
      ).weights,  # monotone in p_t/p_s
      "classifier": lambda: reweight.classifier_density_ratio(source, target),
  }[method]
  weights = np.asarray(estimate())
  assert weights.shape == (1000,) and np.all(weights >= 0)
  assert scipy.stats.spearmanr(weights, true_ratio)[0] > 0.9


def test_kliep_constraint_and_fit(shifted_gaussians):
  source, target, _ = shifted_gaussians
  fit = reweight.kliep(source[:300], target[:300], num_centers=50)
  assert fit.centers.shape == (50, 1) and fit.cv_scores.shape == (9,)
  assert np.all(np.asarray(fit.alpha) >= 0)
  # The constraint (1/n_s) Σ ŵ(x_i) = 1, and ratio() reproduces the weights.
  assert float(np.mean(fit.weights)) == pytest.approx(1.0, rel=1e-4)
  np.testing.assert_allclose(fit.ratio(source[:300]), fit.weights, rtol=1e-5)
  best = int(np.nanargmax(np.asarray(fit.cv_scores)))
  widths = np.sqrt(
      np.median(
          np.sum(
              (
                  np.concatenate([source[:300], target[:300]])[:, None]
                  - np.concatenate([source[:300], target[:300]])[None]
              )
              ** 2,
              axis=-1,
          )[np.triu_indices(600, 1)]
      )
  ) * np.logspace(-1, 1, 9)
  assert float(fit.sigma) == pytest.approx(widths[best], rel=1e-4)
  # The fitted ratio's log-likelihood on the target beats the constant ratio 1.
  assert float(np.mean(np.log(fit.ratio(target[:300])))) > 0.05
  single = reweight.kliep(
      source[:300], target[:300], sigmas=0.5, num_centers=50
  )
  assert np.all(np.isnan(np.asarray(single.cv_scores)))
  assert float(single.sigma) == pytest.approx(0.5)


def kliep_problem(source, target, centers, sigma):
  """KLIEP's ``A_jl = φ_l(x'_j)`` and ``b_l = mean_i φ_l(x_i)``, in float64."""
  return (
      numpy_basis(target, centers, sigma),
      numpy_basis(source, centers, sigma).mean(axis=0),
  )


def kliep_objective(design, source_mean, alpha):
  """``mean_j log (Aα)_j − log bᵀα``: the mean target log-likelihood of the
  ratio ``Aα / bᵀα`` (which averages 1 over the source), in nats."""
  alpha = np.asarray(alpha, np.float64)
  return np.mean(np.log(design @ alpha)) - np.log(source_mean @ alpha)


def slsqp_kliep(design, source_mean):
  """The papers' problem as stated: max mean log(Aα) s.t. bᵀα = 1, α ≥ 0."""
  size = design.shape[1]

  def negative_likelihood(alpha):
    fitted = np.maximum(design @ alpha, 1e-300)
    return -np.mean(np.log(fitted)), -design.T @ (1.0 / fitted) / len(fitted)

  result = scipy.optimize.minimize(
      negative_likelihood,
      np.full(size, 1.0 / source_mean.sum()),
      jac=True,
      method="SLSQP",
      bounds=[(0.0, None)] * size,
      constraints=[
          {
              "type": "eq",
              "fun": lambda alpha: source_mean @ alpha - 1.0,
              "jac": lambda alpha: source_mean,
          }
      ],
      options={"maxiter": 2000, "ftol": 1e-14},
  )
  assert result.success, result.message
  return result.x


def two_gaussians(seed, num_source, num_target, dim, shift=0.5, scale=0.8):
  """Source ``N(0, I)``, target ``N(shift, scale² I)`` (float64), and the
  median distance between the pooled points."""
  rng = np.random.default_rng(seed)
  source = rng.standard_normal((num_source, dim))
  target = scale * rng.standard_normal((num_target, dim)) + shift
  pooled = np.concatenate([source, target])
  distances = np.sum((pooled[:, None] - pooled[None]) ** 2, axis=-1)
  median = np.sqrt(np.median(distances[np.triu_indices(len(pooled), 1)]))
  return source, target, median


# (seed, n_s, n_t, d, shift, scale, σ / median distance). The first is the
# reproduction of issue 19 (tljax's earlier projected-gradient ascent: 0.283
# nats against the optimum 0.386); the earlier solver stopped short on all
# of them, by 0.002 to 0.18 nats.
KLIEP_PROBLEMS = [
    (3300, 300, 200, 2, 0.5, 0.8, 1.0),
    (1, 300, 200, 2, 0.5, 0.8, 0.25),
    (2, 500, 300, 5, 0.5, 0.8, 1.0),
    (3, 200, 150, 1, 1.0, 0.5, 0.5),
    (4, 400, 200, 3, 0.3, 1.2, 2.0),
]


@pytest.mark.parametrize(
    "problem",
    KLIEP_PROBLEMS,
    ids=["issue19", "2d-narrow", "5d", "1d", "3d-wide"],
)
def test_kliep_reaches_the_scipy_optimum(problem):
  seed, num_source, num_target, dim, shift, scale, multiple = problem
  source, target, median = two_gaussians(
      seed, num_source, num_target, dim, shift, scale
  )
  sigma = multiple * median
  # Every target example is a centre, as in the reproduction.
  fit = reweight.kliep(source, target, sigmas=sigma, num_centers=num_target)
  design, source_mean = kliep_problem(
      source, target, np.asarray(fit.centers), sigma
  )
  alpha = np.asarray(fit.alpha, np.float64)
  reference = slsqp_kliep(design, source_mean)
  value = kliep_objective(design, source_mean, alpha)
  assert abs(value - kliep_objective(design, source_mean, reference)) <= 1e-4
  assert np.all(alpha >= 0)
  assert float(np.mean(fit.weights)) == pytest.approx(1.0, rel=1e-5)
  # KKT conditions of max f(α) = mean log(Aα) s.t. bᵀα = 1, α ≥ 0: there is a
  # ν with ∇f(α)_l ≤ ν b_l for all l, with equality where α_l > 0. Since
  # αᵀ∇f(α) = 1, ν = 1 / bᵀα.
  gradient = design.T @ (1.0 / (design @ alpha)) / len(design)
  ratios = gradient / (source_mean / (source_mean @ alpha))
  assert np.max(ratios) <= 1.0 + 1e-4
  # β_l = b_l α_l / bᵀα is the share of the source mass on basis function l.
  active = source_mean * alpha / (source_mean @ alpha) > 1e-3
  assert np.any(active)
  np.testing.assert_allclose(ratios[active], 1.0, atol=1e-3)


def test_kliep_cross_validation_uses_the_optimum():
  """The LCV scores are those of fold fits at the optimum (SLSQP per fold),
  and the refit at the chosen width is the optimum there."""
  source, target, _ = two_gaussians(7, 80, 60, 2)
  sigmas = [0.3, 0.8, 2.0]
  fit = reweight.kliep(
      source, target, sigmas=sigmas, num_centers=30, num_folds=3
  )
  centers = np.asarray(fit.centers, np.float64)
  # The folds as kliep draws them: the third of three keys from key(0), a
  # permutation, then fold = position mod num_folds.
  _, _, fold_key = jax.random.split(jax.random.key(0), 3)
  order = np.asarray(jax.random.permutation(fold_key, len(target)))
  folds = np.zeros(len(target), int)
  folds[order] = np.arange(len(target)) % 3
  rounded = target.astype(np.float32).astype(np.float64)
  center_rows = [
      int(np.argmin(np.sum((rounded - c) ** 2, axis=1))) for c in centers
  ]
  expected = []
  for sigma in sigmas:
    design, source_mean = kliep_problem(source, target, centers, sigma)
    scores = []
    for fold in range(3):
      # A centre drawn from a held-out example is left out of that fold's model.
      train, kept = folds != fold, folds[center_rows] != fold
      alpha = np.zeros(len(centers))
      alpha[kept] = slsqp_kliep(design[train][:, kept], source_mean[kept])
      scores.append(np.mean(np.log(design[~train] @ alpha)))
    expected.append(np.mean(scores))
  # Held-out scores are not what the fit optimises, hence the looser tolerance
  # (the earlier ascent was 0.04-0.15 off here).
  np.testing.assert_allclose(np.asarray(fit.cv_scores), expected, atol=1e-3)
  assert float(fit.sigma) == pytest.approx(
      sigmas[int(np.argmax(expected))], rel=1e-6
  )
  design, source_mean = kliep_problem(source, target, centers, float(fit.sigma))
  assert (
      abs(
          kliep_objective(design, source_mean, fit.alpha)
          - kliep_objective(
              design, source_mean, slsqp_kliep(design, source_mean)
          )
      )
      <= 1e-4
  )


def test_kliep_default_grid_refit_is_optimal():
  # The data with the default arguments: nine widths, five folds.
  source, target, _ = two_gaussians(3300, 300, 200, 2)
  fit = reweight.kliep(source, target)
  design, source_mean = kliep_problem(
      source, target, np.asarray(fit.centers), float(fit.sigma)
  )
  assert (
      abs(
          kliep_objective(design, source_mean, fit.alpha)
          - kliep_objective(
              design, source_mean, slsqp_kliep(design, source_mean)
          )
      )
      <= 1e-4
  )


# --- uLSIF and RuLSIF --------------------------------------------------------------


def numpy_lsif(source, target, centers, sigma, lam, relative):
  source_design = numpy_basis(source, centers, sigma)
  target_design = numpy_basis(target, centers, sigma)
  second = relative * target_design.T @ target_design / len(target) + (
      1 - relative
  ) * source_design.T @ source_design / len(source)
  first = target_design.mean(axis=0)
  return np.maximum(
      0.0, np.linalg.solve(second + lam * np.eye(len(centers)), first)
  )


def numpy_leave_one_out(source, target, centers, sigma, lam, relative):
  """The held-out objective, refitting without each pair (x_k, x'_k)."""
  total = 0.0
  pairs = min(len(source), len(target))
  for k in range(pairs):
    coefficients = numpy_lsif(
        np.delete(source, k, 0),
        np.delete(target, k, 0),
        centers,
        sigma,
        lam,
        relative,
    )
    fit_target = (
        numpy_basis(target[k : k + 1], centers, sigma) @ coefficients
    )[0]
    fit_source = (
        numpy_basis(source[k : k + 1], centers, sigma) @ coefficients
    )[0]
    total += (
        0.5 * relative * fit_target**2
        + 0.5 * (1 - relative) * fit_source**2
        - fit_target
    )
  return total / pairs


@pytest.mark.parametrize("sizes", [(30, 40), (40, 30)])
@pytest.mark.parametrize("relative", [0.0, 0.3])
def test_least_squares_fit_matches_numpy(sizes, relative):
  rng = np.random.default_rng(sum(sizes))
  source = rng.normal(size=(sizes[0], 2))
  target = 0.5 + 0.8 * rng.normal(size=(sizes[1], 2))
  sigmas, lambdas = [0.5, 1.0], [0.01, 0.1]
  with jax.enable_x64(True):
    fit = reweight.rulsif(
        source,
        target,
        alpha=relative,
        sigmas=sigmas,
        lambdas=lambdas,
        num_centers=10,
    )
    assert fit.cv_scores.shape == (2, 2)
    centers = np.asarray(fit.centers)
    # Centres are target examples.
    assert all(np.any(np.all(target == center, axis=1)) for center in centers)
    for i, sigma in enumerate(sigmas):
      for j, lam in enumerate(lambdas):
        np.testing.assert_allclose(
            fit.cv_scores[i, j],
            numpy_leave_one_out(source, target, centers, sigma, lam, relative),
            rtol=1e-9,
        )
    best = np.unravel_index(np.argmin(np.asarray(fit.cv_scores)), (2, 2))
    assert float(fit.sigma) == sigmas[best[0]]
    assert float(fit.regularization) == lambdas[best[1]]
    coefficients = numpy_lsif(
        source,
        target,
        centers,
        float(fit.sigma),
        float(fit.regularization),
        relative,
    )
    np.testing.assert_allclose(fit.alpha, coefficients, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(
        fit.weights,
        numpy_basis(source, centers, float(fit.sigma)) @ coefficients,
        rtol=1e-9,
        atol=1e-12,
    )
    points = rng.normal(size=(7, 2))
    np.testing.assert_allclose(
        fit.ratio(points),
        numpy_basis(points, centers, float(fit.sigma)) @ coefficients,
        rtol=1e-9,
        atol=1e-12,
    )


def test_ulsif_closed_form_float32_defaults(shifted_gaussians):
  source, target, _ = shifted_gaussians
  fit = reweight.ulsif(source[:400], target[:400], sigmas=0.8, lambdas=0.1)
  assert np.all(np.isnan(np.asarray(fit.cv_scores)))
  coefficients = numpy_lsif(
      source[:400], target[:400], np.asarray(fit.centers), 0.8, 0.1, 0.0
  )
  np.testing.assert_allclose(fit.alpha, coefficients, rtol=1e-3, atol=1e-5)


def test_rulsif_with_alpha_zero_is_ulsif(shifted_gaussians):
  source, target, _ = shifted_gaussians
  source, target = source[:300], target[:300]
  relative = reweight.rulsif(source, target, alpha=0.0)
  plain = reweight.ulsif(source, target)
  for field in (
      "weights",
      "alpha",
      "centers",
      "sigma",
      "regularization",
      "cv_scores",
  ):
    np.testing.assert_array_equal(
        getattr(relative, field), getattr(plain, field)
    )
  # α > 0 bounds the relative ratio by 1/α (approximately, for the estimate).
  bounded = reweight.rulsif(source, target, alpha=0.5)
  assert float(np.max(bounded.weights)) < 2.0 * 1.25


# --- Nearest neighbours ------------------------------------------------------------


def test_nearest_neighbors_weighting_matches_brute_force():
  rng = np.random.default_rng(3)
  source = rng.normal(size=(300, 3))
  target = 0.3 + rng.normal(size=(500, 3))
  nearest = np.argmin(
      np.sum((target[:, None, :] - source[None, :, :]) ** 2, axis=-1), axis=1
  )
  counts = np.bincount(nearest, minlength=300).astype(np.float64)
  with jax.enable_x64(True):
    got_counts = reweight.nearest_neighbor_counts(source, target, block_size=64)
    weights = reweight.nearest_neighbors_weighting(
        source, target, block_size=64
    )
    plain = reweight.nearest_neighbors_weighting(source, target, smoothing=0)
  np.testing.assert_array_equal(got_counts, counts)
  np.testing.assert_allclose(
      weights, 300 * (counts + 1) / (500 + 300), rtol=1e-12
  )
  np.testing.assert_allclose(plain, 300 * counts / 500, rtol=1e-12)
  assert np.asarray(weights).mean() == pytest.approx(1.0)
  # float32, several blocks: the counts still add up to n_t.
  float32 = reweight.nearest_neighbor_counts(
      source.astype(np.float32), target.astype(np.float32), block_size=128
  )
  assert float(np.sum(float32)) == 500
  assert np.mean(np.asarray(float32) == counts) > 0.99


# --- Losses ------------------------------------------------------------------------


def test_weighted_losses_match_numpy():
  rng = np.random.default_rng(4)
  logits = rng.normal(size=(12, 5)).astype(np.float32)
  labels = rng.integers(0, 5, size=12)
  weights = rng.uniform(0, 3, size=12).astype(np.float32)
  log_probabilities = logits - scipy.special.logsumexp(
      logits, axis=1, keepdims=True
  )
  expected = np.mean(weights * -log_probabilities[np.arange(12), labels])
  np.testing.assert_allclose(
      reweight.weighted_cross_entropy(logits, labels, weights),
      expected,
      rtol=1e-5,
  )
  # jit- and grad-safe; with unit weights it is the plain mean cross-entropy.
  jitted = jax.jit(reweight.weighted_cross_entropy)
  np.testing.assert_allclose(
      jitted(logits, labels, weights), expected, rtol=1e-5
  )
  gradient = jax.grad(reweight.weighted_cross_entropy)(logits, labels, weights)
  probabilities = np.exp(log_probabilities)
  one_hot = np.eye(5)[labels]
  np.testing.assert_allclose(
      gradient,
      weights[:, None] * (probabilities - one_hot) / 12,
      rtol=1e-4,
      atol=1e-7,
  )
  np.testing.assert_allclose(
      reweight.weighted_cross_entropy(logits, labels, np.ones(12)),
      np.mean(-log_probabilities[np.arange(12), labels]),
      rtol=1e-5,
  )

  predictions = rng.normal(size=(12, 3))
  targets = rng.normal(size=(12, 3))
  np.testing.assert_allclose(
      reweight.weighted_squared_error(predictions, targets, weights),
      np.mean(weights * np.sum((predictions - targets) ** 2, axis=1)),
      rtol=1e-5,
  )
  np.testing.assert_allclose(
      reweight.weighted_squared_error(
          predictions[:, 0], targets[:, 0], weights
      ),
      np.mean(weights * (predictions[:, 0] - targets[:, 0]) ** 2),
      rtol=1e-5,
  )


# --- Bad inputs --------------------------------------------------------------------


GOOD = np.random.default_rng(5).normal(size=(20, 2))
ESTIMATORS = {
    "kmm": reweight.kmm,
    "kliep": reweight.kliep,
    "ulsif": reweight.ulsif,
    "rulsif": reweight.rulsif,
    "classifier": reweight.classifier_density_ratio,
    "nearest_neighbors": reweight.nearest_neighbors_weighting,
}


def _with_nan():
  values = GOOD.copy()
  values[3, 1] = np.nan
  return values


def _with_inf():
  values = GOOD.copy()
  values[0, 0] = np.inf
  return values


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
@pytest.mark.parametrize(
    "source, target, argument",
    [
        (np.zeros((0, 2)), GOOD, "source"),
        (GOOD, np.zeros((0, 2)), "target"),
        (GOOD, GOOD[:, :1], "target"),  # different feature dimensions
        (_with_nan(), GOOD, "source"),
        (GOOD, _with_inf(), "target"),
        (GOOD[:, 0], GOOD, "source"),  # not a matrix
    ],
)
def test_estimators_reject_bad_data(name, source, target, argument):
  with pytest.raises(ValueError, match=argument):
    ESTIMATORS[name](source, target)


@pytest.mark.parametrize(
    "function, kwargs, argument",
    [
        (reweight.kmm, {"B": 0.0}, "B"),
        (reweight.kmm, {"B": -1.0}, "B"),
        (reweight.kmm, {"eps": -0.1}, "eps"),
        (reweight.kmm, {"eps": 1.0}, "eps"),
        (reweight.kmm, {"B": 0.5, "eps": 0.1}, "B"),  # infeasible: B < 1 - eps
        (reweight.kmm, {"gamma": 0.0}, "gamma"),
        (reweight.kmm, {"gamma": -2.0}, "gamma"),
        (
            reweight.kmm,
            {"kernel_approximation": "fourier"},
            "kernel_approximation",
        ),
        (
            reweight.kmm,
            {"kernel_approximation": "nystroem", "rank": 41},
            "rank",
        ),
        (reweight.kmm, {"solver": "newton"}, "solver"),
        (
            reweight.kmm,
            {
                "solver": "interior_point",
                "kernel_approximation": "nystroem",
                "rank": 5,
            },
            "solver",
        ),
        (
            reweight.kmm,
            {"solver": "interior_point", "materialize_kernel": False},
            "solver",
        ),
        (reweight.kliep, {"sigmas": [1.0, 0.0]}, "sigmas"),
        (reweight.kliep, {"sigmas": -1.0}, "sigmas"),
        (reweight.kliep, {"num_folds": 1}, "num_folds"),
        (reweight.kliep, {"num_folds": 21}, "num_folds"),
        (reweight.ulsif, {"sigmas": [0.0]}, "sigmas"),
        (reweight.ulsif, {"lambdas": [0.1, -1.0]}, "lambdas"),
        (reweight.ulsif, {"num_centers": 0}, "num_centers"),
        (reweight.rulsif, {"alpha": 1.0}, "alpha"),
        (reweight.rulsif, {"alpha": -0.1}, "alpha"),
        (reweight.rulsif, {"sigmas": [np.nan]}, "sigmas"),
        (
            reweight.classifier_density_ratio,
            {"l2_regularization": 0.0},
            "l2_regularization",
        ),
        (
            reweight.classifier_density_ratio,
            {"evaluation": np.ones((3, 5))},
            "evaluation",
        ),
        (
            reweight.nearest_neighbors_weighting,
            {"smoothing": -1.0},
            "smoothing",
        ),
        (reweight.nearest_neighbors_weighting, {"block_size": 0}, "block_size"),
    ],
)
def test_estimators_reject_bad_arguments(function, kwargs, argument):
  with pytest.raises(ValueError, match=argument):
    function(GOOD, GOOD + 0.1, **kwargs)


def test_other_bad_inputs():
  with pytest.raises(ValueError, match="source"):
    reweight.ulsif(GOOD[:1], GOOD)  # leave-one-out needs two of each
  with pytest.raises(ValueError, match="points"):
    reweight.ulsif(GOOD, GOOD + 0.1, sigmas=1.0, lambdas=0.1).ratio(
        np.ones((2, 3))
    )
  with pytest.raises(ValueError, match="upper_sum"):
    reweight.project_box_slab(np.ones(3), 1.0, 2.0, 1.0)
  with pytest.raises(ValueError, match="lower_sum"):
    reweight.project_box_slab(np.ones(3), 1.0, 4.0, 5.0)
  with pytest.raises(ValueError, match="upper"):
    reweight.project_box_slab(np.ones(3), 0.0, 1.0, 2.0)
  with pytest.raises(ValueError, match="key"):
    reweight.kmm(GOOD, GOOD, key=3)
  logits, labels = np.zeros((4, 3)), np.array([0, 1, 2, 1])
  with pytest.raises(ValueError, match="weights"):
    reweight.weighted_cross_entropy(
        logits, labels, np.array([1.0, -1.0, 1.0, 1.0])
    )
  with pytest.raises(ValueError, match="weights"):
    reweight.weighted_cross_entropy(logits, labels, np.ones(3))
  with pytest.raises(ValueError, match="labels"):
    reweight.weighted_cross_entropy(logits, np.array([0, 1, 3, 1]), np.ones(4))
  with pytest.raises(ValueError, match="targets"):
    reweight.weighted_squared_error(
        np.zeros((4, 2)), np.zeros((4, 3)), np.ones(4)
    )
  with pytest.raises(ValueError, match="weights"):
    reweight.weighted_squared_error(
        np.zeros(4), np.zeros(4), np.array([1, 1, np.nan, 1])
    )
  with pytest.raises(ValueError, match="logits"):
    reweight.weighted_cross_entropy(np.full((4, 3), np.nan), labels, np.ones(4))
  with pytest.raises(ValueError, match="predictions"):
    reweight.weighted_squared_error(
        np.array([np.inf, 0, 0, 0]), np.zeros(4), np.ones(4)
    )
