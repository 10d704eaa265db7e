"""The two solvers of the KMM quadratic program (see :func:`tljax.reweight.kmm`).

``projected_gradient``: accelerated projected gradient (FISTA) with adaptive
restart, whose only access to the kernel is matrix-vector products.
``interior_point``: Mehrotra's primal-dual predictor-corrector on the dense
kernel, for small problems. ``one_blas_thread`` limits the BLAS/LAPACK
threads while the interior point's Cholesky factorisations run.
"""

from __future__ import annotations

import contextlib
import functools
import math

import jax
import jax.numpy as jnp

from tljax.reweight._common import matmul

#: Power-iteration estimates are lower bounds of λ_max(K); the step uses this
#: multiple of the estimate.
LIPSCHITZ_SAFETY = 1.01

#: Newton steps at most (4–20 were needed at the default tolerance).
INTERIOR_POINT_MAX_STEPS = 100

#: The fraction of the step to the boundary of the positive orthant taken.
FRACTION_TO_BOUNDARY = 0.995

#: The ridge added to the Newton matrix, in units of its rounding level.
RIDGE = 10.0

#: The interior-point tolerance is at least this many units of rounding.
TOLERANCE_FLOOR = 8.0


def one_blas_thread() -> contextlib.AbstractContextManager:
  """The BLAS/LAPACK libraries limited to one thread while the block runs.

  On the CPU, XLA runs the interior-point Cholesky factorisations through
  SciPy's LAPACK (OpenBLAS in its wheels), which factors larger matrices on
  several threads. Next to other busy processes those threads wait on each
  other: on the 2-core development machine, loaded by other jobs, single
  solves at ``n_s = 150``–``600`` took 10 to 100 times their one-thread
  time, at random (from ``n_s = 150`` in float64, ``300`` in float32). One
  thread costs little at the sizes this solver is chosen for. A no-op
  without ``threadpoolctl`` (a dependency of scikit-learn).
  """
  controller = _blas_controller()
  if controller is None:
    return contextlib.nullcontext()
  return controller.limit(limits=1, user_api="blas")


@functools.cache
def _blas_controller():
  """A ``threadpoolctl.ThreadpoolController`` (found once: finding costs ~1 ms)."""
  try:
    # XLA's LAPACK: loaded before the controller lists the libraries.
    import scipy.linalg.cython_lapack  # noqa: F401 pylint: disable=g-import-not-at-top
    import threadpoolctl  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  return threadpoolctl.ThreadpoolController()


def projected_gradient(
    matvec,
    kappa,
    project,
    start,
    tolerance,
    *,
    max_iterations,
    power_iterations,
    floor,
):
  """FISTA with adaptive restart from the feasible ``start``."""
  num_source = kappa.shape[0]
  dtype = kappa.dtype

  # λ_max(K) by power iteration from the all-ones vector (K has positive
  # entries, so it is not orthogonal to the leading eigenvector).
  def power_step(_, state):
    vector, _ = state
    product = matvec(vector)
    estimate = jnp.vdot(vector, product)
    norm = jnp.linalg.norm(product)
    return (
        jnp.where(norm > 0, product / jnp.where(norm > 0, norm, 1.0), vector),
        estimate,
    )

  unit = jnp.full((num_source,), 1.0 / math.sqrt(num_source), dtype)
  _, largest = jax.lax.fori_loop(
      0, power_iterations, power_step, (unit, jnp.zeros((), dtype))
  )
  # The exact kernel has K_ii = 1, hence λ_max >= 1 (a floor that only bites
  # when a huge γ rounds the diagonal of K to 0); the Nyström kernel's may be
  # smaller.
  step = 1.0 / (LIPSCHITZ_SAFETY * jnp.maximum(largest, floor))

  def running(state):
    count, _, _, _, done = state
    return (count < max_iterations) & ~done

  def iterate(state):
    count, weights, extrapolated, momentum, _ = state
    gradient = matvec(extrapolated) - kappa
    updated = project(extrapolated - step * gradient)
    change = updated - extrapolated
    done = jnp.linalg.norm(change) <= tolerance * jnp.maximum(
        jnp.linalg.norm(updated), 1.0
    )
    # Restart when the step direction and the gradient mapping disagree.
    restart = jnp.vdot(-change, updated - weights) > 0
    next_momentum = jnp.where(
        restart, 1.0, 0.5 * (1.0 + jnp.sqrt(1.0 + 4.0 * jnp.square(momentum)))
    )
    factor = jnp.where(restart, 0.0, (momentum - 1.0) / next_momentum)
    extrapolated = updated + factor * (updated - weights)
    return count + 1, updated, extrapolated, next_momentum, done

  count, weights, _, _, converged = jax.lax.while_loop(
      running,
      iterate,
      (
          jnp.zeros((), jnp.int32),
          start,
          start,
          jnp.ones((), dtype),
          jnp.zeros((), bool),
      ),
  )
  return weights, count, converged


def interior_point(kernel, kappa, upper, eps, tolerance, *, max_steps):
  """Mehrotra's predictor-corrector on the scaled QP (see :func:`kmm`).

  Returns the last iterate (not projected), the number of Newton steps and
  whether the stopping rule was met.
  """
  num_source = kappa.shape[0]
  dtype = kappa.dtype
  # The QP divided by n_s, with the sum constraint on the mean: the
  # weights, slacks and multipliers are then of order 1. The mean of β is
  # 1 + ε s with s in [−1, 1], a variable of the problem (a range of width 2
  # also when ε is 0 or below rounding). The inequalities g(β, s) >= 0 are
  # (β, B − β, 1 + s, 1 − s): slacks y and multipliers z of length 2 n_s + 2.
  hessian = kernel / num_source
  linear = -kappa / num_source
  num_constraints = 2 * num_source + 2
  diagonal = jnp.arange(num_source)
  rounding = jnp.finfo(dtype).eps
  # Below a few units of rounding the residuals stop decreasing.
  tolerance = jnp.maximum(tolerance, TOLERANCE_FLOOR * rounding)

  def inequalities(weights, position):
    return jnp.concatenate(
        [weights, upper - weights, jnp.stack([1.0 + position, 1.0 - position])]
    )

  def split(values):  # the rows of β ≥ 0, of β ≤ B, and of s
    return (values[:num_source], values[num_source:-2], values[-2], values[-1])

  def largest_step(values, directions):
    """The largest α <= 1 keeping ``values + α directions`` >= 0."""
    negative = directions < 0
    return jnp.minimum(
        1.0,
        jnp.min(
            jnp.where(
                negative,
                -values / jnp.where(negative, directions, -1.0),
                jnp.inf,
            )
        ),
    )

  def residuals(point):
    weights, position, product, slacks, multipliers, equality = point
    lower, bound, above, below = split(multipliers)
    stationarity = product + linear - lower + bound - equality / num_source
    range_stationarity = eps * equality - above + below
    coupling = jnp.mean(weights) - 1.0 - eps * position
    primal = inequalities(weights, position) - slacks
    return stationarity, range_stationarity, coupling, primal

  def converged(point):
    weights, _, product, slacks, multipliers, equality = point
    lower, bound, _, _ = split(multipliers)
    stationarity, range_stationarity, coupling, primal = residuals(point)
    size = 0.5 * jnp.vdot(weights, product) + jnp.abs(jnp.vdot(linear, weights))
    largest = jnp.max(jnp.abs(weights))
    # The gap, and each residual relative to the terms it is made of (what
    # rounding allows): the gradient's row by row, the constraints' over
    # each kind of constraint (an active bound's terms tend to 0 with it).
    primal_scale = jnp.concatenate(
        [
            jnp.full((num_source,), jnp.maximum(largest, 1.0), dtype),
            jnp.full((num_source,), upper + largest, dtype),
            jnp.full((2,), 2.0, dtype),
        ]
    )
    return (
        (jnp.vdot(slacks, multipliers) <= tolerance * size)
        & jnp.all(
            jnp.abs(stationarity)
            <= tolerance
            * (
                product
                + jnp.abs(linear)
                + lower
                + bound
                + jnp.abs(equality) / num_source
            )
        )
        & (jnp.abs(range_stationarity) <= tolerance * size)
        & (jnp.abs(coupling) <= tolerance * (jnp.mean(jnp.abs(weights)) + 2.0))
        & jnp.all(jnp.abs(primal) <= tolerance * primal_scale)
    )

  def newton_step(state):
    count, point, ridge, _, _ = state
    weights, position, _, slacks, multipliers, equality = point
    stationarity, range_stationarity, coupling, primal = residuals(point)
    mu = jnp.vdot(slacks, multipliers) / num_constraints
    lower_ratio, bound_ratio, above_ratio, below_ratio = split(
        multipliers / slacks
    )
    # Eliminating y and z leaves, for the directions of β, s and the
    # multiplier ν of mean(β) = 1 + ε s,
    #   (K/n_s + D) Δβ − Δν/n_s 1 = r₁,  ε Δν + d Δs = r₂,  mean(Δβ) − ε Δs = r₃
    # with D = diag(z/y) over the box and d = Σ z/y over the range of s:
    # one Cholesky factor of K/n_s + D, then Δν in closed form.
    matrix = hessian.at[diagonal, diagonal].add(
        lower_ratio + bound_ratio + ridge
    )
    factor = jax.lax.linalg.cholesky(matrix, symmetrize_input=False)
    range_ratio = above_ratio + below_ratio

    def solve(complementarity, ones_solved=None):
      """The Newton direction for the right-hand side of Z Δy + Y Δz."""
      lower, bound, above, below = split(
          (complementarity - multipliers * primal) / slacks
      )
      first = lower - bound - stationarity
      second = above - below - range_stationarity
      if ones_solved is None:  # the predictor: both right-hand sides at once
        solved, ones_solved = jax.scipy.linalg.cho_solve(
            (factor, True), jnp.stack([first, jnp.ones_like(first)], axis=1)
        ).T
      else:
        solved = jax.scipy.linalg.cho_solve((factor, True), first)
      spread = jnp.mean(ones_solved) / num_source
      equality_step = (
          eps * second - range_ratio * (jnp.mean(solved) + coupling)
      ) / (range_ratio * spread + eps**2)
      weight_step = solved + ones_solved * (equality_step / num_source)
      position_step = (second - eps * equality_step) / range_ratio
      slack_step = (
          jnp.concatenate(
              [
                  weight_step,
                  -weight_step,
                  jnp.stack([position_step, -position_step]),
              ]
          )
          + primal
      )
      multiplier_step = (complementarity - multipliers * slack_step) / slacks
      return (
          weight_step,
          position_step,
          slack_step,
          multiplier_step,
          equality_step,
          ones_solved,
      )

    # Predictor (affine scaling) step, then the centred and corrected one.
    _, _, slack_affine, multiplier_affine, _, ones_solved = solve(
        -slacks * multipliers
    )
    alpha = jnp.minimum(
        largest_step(slacks, slack_affine),
        largest_step(multipliers, multiplier_affine),
    )
    mu_affine = (
        jnp.vdot(
            slacks + alpha * slack_affine,
            multipliers + alpha * multiplier_affine,
        )
        / num_constraints
    )
    centering = jnp.clip(mu_affine / mu, 0.0, 1.0) ** 3
    (
        weight_step,
        position_step,
        slack_step,
        multiplier_step,
        equality_step,
        _,
    ) = solve(
        -slacks * multipliers
        - slack_affine * multiplier_affine
        + centering * mu,
        ones_solved,
    )
    alpha = FRACTION_TO_BOUNDARY * jnp.minimum(
        largest_step(slacks, slack_step),
        largest_step(multipliers, multiplier_step),
    )

    new_weights = weights + alpha * weight_step
    new_point = (
        new_weights,
        position + alpha * position_step,
        matmul(hessian, new_weights),
        slacks + alpha * slack_step,
        multipliers + alpha * multiplier_step,
        equality + alpha * equality_step,
    )
    # A failed factorisation (K/n_s + D singular at rounding level: many
    # free weights and a nearly singular K) retries with a 100 times larger
    # ridge; a step that gives NaN or does not move ends the iteration.
    factored = jnp.all(jnp.isfinite(factor))
    usable = (
        factored
        & (alpha > 0)
        & jnp.all(
            jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in new_point])
        )
    )
    point = jax.tree.map(
        lambda new, old: jnp.where(usable, new, old), new_point, point
    )
    stalled = (factored & ~usable) | (ridge > 1.0)
    ridge = jnp.where(factored, ridge, 100.0 * ridge)
    return count + 1, point, ridge, usable & converged(point), stalled

  def running(state):
    count, _, _, done, stalled = state
    return (count < max_steps) & ~done & ~stalled

  weights = jnp.full((num_source,), jnp.minimum(1.0, 0.5 * upper), dtype)
  position = jnp.zeros((), dtype)
  slacks = jnp.maximum(inequalities(weights, position), 1.0)
  point = (
      weights,
      position,
      matmul(hessian, weights),
      slacks,
      jnp.ones_like(slacks),
      jnp.zeros((), dtype),
  )
  ridge = RIDGE * rounding * jnp.max(jnp.diagonal(hessian))
  count, point, _, done, _ = jax.lax.while_loop(
      running,
      newton_step,
      (
          jnp.zeros((), jnp.int32),
          point,
          ridge,
          jnp.zeros((), bool),
          jnp.zeros((), bool),
      ),
  )
  return point[0], count, done
