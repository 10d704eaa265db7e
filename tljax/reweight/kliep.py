r"""KLIEP: the Kullback-Leibler importance estimation procedure."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tljax.checks import check_int, check_key
from tljax.reweight._common import (
    DEFAULT_WIDTH_MULTIPLIERS,
    argbest,
    check_domains,
    check_grid,
    gaussian_basis,
    matmul,
    prepare_basis,
)
from tljax.reweight.basis import DensityRatioFit, _evaluate

__all__ = ["kliep"]

#: The interior-point method stops once the duality gap ``max_l c_l − 1``
#: (a bound on the distance to the optimum of the mean log-likelihood, in
#: nats) is at most this.
GAP_TOLERANCE = 1e-5
#: Each Newton step's barrier parameter is ``t = BARRIER_FACTOR · k / (βᵀz)``
#: (``k`` basis functions).
BARRIER_FACTOR = 10.0
#: The fraction of the largest step to the boundary of ``β ≥ 0, z ≥ 0`` taken at most.
BOUNDARY_FRACTION = 0.99
#: Backtracking accepts a step ``s`` that shrinks the residual by ``1 − 0.01 s``.
ARMIJO_FRACTION = 0.01
#: Backtracking gives up (and the iteration ends) below this step.
MIN_STEP = 2.0**-30
#: The iteration ends after this many Newton steps in a row that do not
#: lower the duality gap once it is below ``STALL_GAP`` (its rounding floor).
STALLED_STEPS = 3
#: See ``STALLED_STEPS``.
STALL_GAP = 1e-3
#: Added to the unit diagonal of the scaled Newton system (for duplicate centres).
NEWTON_RIDGE = 1e-7


def kliep(
    source: Any,
    target: Any,
    *,
    sigmas: Any = None,
    num_centers: int = 100,
    num_folds: int = 5,
    max_iterations: int = 100,
    key: jax.Array | None = None,
) -> DensityRatioFit:
  r"""KLIEP: the density ratio ``p_t / p_s`` that maximises the target likelihood.

  Sugiyama, Nakajima, Kashima, von Bünau and Kawanabe, "Direct importance
  estimation with model selection and its application to covariate shift
  adaptation", NIPS 2007, and Sugiyama, Suzuki, Nakajima, Kashima, von
  Bünau and Kawanabe, Annals of the Institute of Statistical Mathematics
  2008. The ratio is modelled as ``ŵ(x) = Σ_l α_l φ_l(x)`` with Gaussian
  basis functions ``φ_l(x) = exp(−‖x − c_l‖² / (2σ²))`` centred at ``b =
  min(num_centers, n_t)`` target examples drawn at random (with ``key``),
  and fitted so that ``ŵ p_s`` is closest to ``p_t`` in Kullback-Leibler
  divergence::

    max_α  Σ_j log ŵ(x'_j)   s.t.   (1/n_s) Σ_i ŵ(x_i) = 1,   α ≥ 0,

  over the ``n_t`` target examples ``x'_j`` and the ``n_s`` source examples
  ``x_i``. With ``A_jl = φ_l(x'_j)`` and ``b_l = (1/n_s) Σ_i φ_l(x_i)`` this
  is the concave problem ``max mean_j log (Aα)_j`` over ``{α ≥ 0, bᵀα =
  1}``, equivalently ``max_{α ≥ 0} mean_j log (Aα)_j − log bᵀα``, and it is
  solved to its optimum. Substituting ``β = b ∘ α`` turns it into the
  maximum-likelihood estimate of mixture proportions over the simplex
  (components ``Ã_jl = A_jl / b_l``), and the equality can be dropped
  (Kim, Carbonetto, Stephens and Anitescu, "A fast algorithm for maximum
  likelihood estimation of mixture proportions using sequential quadratic
  programming", JCGS 2020)::

    min_β  F(β) = −mean_j log (Ãβ)_j + 1ᵀβ   s.t.   β ≥ 0,

  whose minimiser has ``1ᵀβ = 1`` (scaling ``β`` by ``c`` changes ``F`` by
  ``−log c + (c − 1) 1ᵀβ``, smallest at ``c = 1/1ᵀβ``). ``F`` is minimised by
  the primal-dual interior-point method of Boyd and Vandenberghe, *Convex
  Optimization* (2004), §11.7: Newton steps on ``∇F(β) = z``, ``β_l z_l =
  1/t`` with ``t = 10 k / (βᵀz)`` (``k`` basis functions), each the largest
  that keeps ``β, z > 0`` (backed off by 1%) halved until the residual
  norm decreases, from ``β_l = 1/k``, ``z_l = 1``. It stops when the duality
  gap at ``β̂ = β / 1ᵀβ``::

    max_l c_l − 1,   c = Ãᵀ(1 ./ Ãβ̂) / n_t,

  an upper bound on the distance to the optimal mean log-likelihood (the
  Frank-Wolfe gap of the concave objective over the simplex; it is 0
  exactly at the optimum, where ``c_l ≤ 1`` with equality where ``β_l >
  0``), falls to ``10⁻⁵`` nats; or after ``max_iterations`` Newton steps;
  or where rounding stops it (in float32 the gap usually reaches about
  ``10⁻⁶``, a little less accurately over many target examples): when no
  step decreases the residual, or when, below ``10⁻³``, the gap has not
  decreased for 3 steps. Each step costs ``O(n_t k²)`` for the Newton
  system and ``O(k³)`` to solve it; it usually takes 7–15 steps. The
  coefficients are ``α = β / b`` rescaled so that the constraint holds: the
  fitted weights' mean over the source is 1.

  Deviation from the papers, which solve the problem by projected gradient
  ascent (``α ← α + ε Aᵀ(1 ./ Aα)``, then ``α ← α + (1 − bᵀα) b / (bᵀb)``,
  ``α ← max(0, α)``, ``α ← α / bᵀα``) with the step ``ε`` left open: that
  ascent is not an exact projection onto the constraint set and stalls far
  from the optimum (tljax's earlier solver, that ascent with decreasing
  steps, stopped 0.002–0.4 nats short on Gaussian examples); the
  interior-point method reaches the optimum of a general solver (SciPy's
  SLSQP in the tests) to within ``10⁻⁵`` nats. A basis function
  that vanishes (in floating point) at every source example, ``b_l = 0``,
  is left out (``α_l = 0``): the problem would be unbounded along it. In
  float32, basis values below about ``10⁻³⁸`` are 0, so at widths far below
  the distances between the examples the optimum is that of the rounded
  basis.

  The width ``σ`` is chosen by likelihood cross-validation (the papers'
  LCV): the target examples are split at random into ``num_folds`` folds;
  for each candidate ``σ`` and fold, ``α`` is fitted without that fold and
  the fold's mean ``log ŵ(x'_j)`` is its score; the ``σ`` with the largest
  mean score is refitted on all target examples. The centres are drawn once;
  deviation from the papers: in each fold the centres that are held-out
  examples are left out of the model (their coefficients fixed at 0), since
  a held-out example at the centre of its own basis function favours narrow
  widths. Default candidates (no default in the papers):
  nine widths from 1/10 to 10 times the median pooled distance (see
  :func:`kmm`), evenly spaced in log scale; a single ``σ`` skips the
  cross-validation.

  Degenerate data, as in :func:`kmm`: the fit runs on the data translated
  and scaled by a power of two (the widths scaled to match), so data at
  ``1e30`` or ``1e-30`` give the fit of the same data at scale 1, and the
  default widths of duplicated points or constant features fall back as in
  :func:`kmm` instead of ``σ = 0``. ``ratio`` and the returned ``centers``
  and ``sigma`` are in the data's units.

  Scale: the fit holds ``n_t × b`` and ``n_s × b`` basis matrices and a
  ``b × b`` Newton system, never an ``n × n`` matrix.

  Args:
    source: ``(n_s, d)`` source examples (the denominator ``p_s``).
    target: ``(n_t, d)`` target examples (the numerator ``p_t``), at least
      ``num_folds`` of them when there are several widths.
    sigmas: a width ``σ > 0`` or a sequence of candidate widths; ``None``
      for the default grid.
    num_centers: the number of basis functions ``b`` (at most ``n_t``), >= 1.
    num_folds: the number of cross-validation folds, >= 2.
    max_iterations: the most Newton steps of the interior-point method per
      fit (each cross-validation fold and the final fit), >= 1; it usually
      stops on the duality gap after 7–15.
    key: a ``jax.random`` key for the centres, the folds and the median
      heuristic's subset; ``None`` for ``jax.random.key(0)``.

  Returns:
    A :class:`DensityRatioFit`; ``weights`` are ``ŵ`` at the source examples,
    ``cv_scores`` the LCV score of each width (higher is better).

  Raises:
    ValueError: on an empty, non-matrix or non-finite ``source`` or
      ``target``, different feature dimensions, a width ``<= 0`` or beyond
      the data's dtype, fewer target examples than folds, another malformed
      argument, or (naming ``sigmas``) a width at which every basis
      function vanishes at the source examples, so that the constraint
      cannot be met and the fit is NaN; the message names it.
  """
  source, target = check_domains(source, target)
  num_centers = check_int(num_centers, "num_centers", minimum=1)
  num_folds = check_int(num_folds, "num_folds", minimum=2)
  max_iterations = check_int(max_iterations, "max_iterations", minimum=1)
  key = check_key(key, allow_none=True)
  median_key, center_key, fold_key = jax.random.split(key, 3)
  num_target = target.shape[0]
  checked = check_grid(sigmas, "sigmas")
  num_widths = (
      len(DEFAULT_WIDTH_MULTIPLIERS) if checked is None else checked.size
  )
  if num_widths > 1 and num_target < num_folds:
    raise ValueError(
        f"target must have at least num_folds={num_folds} examples for the "
        f"cross-validation over sigmas, got {num_target}."
    )
  basis = prepare_basis(
      source, target, sigmas, num_centers, median_key, center_key
  )
  source, target, centers, center_rows = (
      basis.source,
      basis.target,
      basis.centers,
      basis.center_rows,
  )
  widths, scaled_widths = basis.widths, basis.scaled_widths
  dtype = source.dtype
  # The source enters the fits only through b: the solver's programs depend
  # on n_t and the centres, so a new source size does not compile them again.
  source_means = _source_means(source, centers, scaled_widths)

  if widths.size > 1:
    order = jax.random.permutation(fold_key, num_target)
    folds = (
        jnp.zeros(num_target, jnp.int32)
        .at[order]
        .set(jnp.arange(num_target, dtype=jnp.int32) % num_folds)
    )
    scores = np.asarray(
        _lcv_scores(
            target,
            centers,
            center_rows,
            scaled_widths,
            source_means,
            folds,
            max_iterations,
            num_folds=num_folds,
        )
    )
    (best,) = argbest(scores, maximize=True)
  else:
    scores = np.full(1, np.nan)
    best = 0
  alpha = _kliep_final(
      target, centers, scaled_widths[best], source_means[best], max_iterations
  )
  weights = _evaluate(source, centers, scaled_widths[best], alpha)
  values = np.asarray(weights)
  if not (np.all(np.isfinite(values)) and np.any(values > 0)):
    raise ValueError(
        f"sigmas: at sigma={float(widths[best]):.4g} the Gaussian basis functions "
        "vanish (in floating point) at every source example, so no ratio can "
        "average 1 over the source; use wider sigmas."
    )
  return DensityRatioFit(
      weights=weights,
      alpha=alpha,
      centers=basis.original_centers,
      sigma=jnp.asarray(widths[best], dtype),
      regularization=jnp.zeros((), dtype),
      cv_scores=jnp.asarray(scores, dtype),
  )


def _maximise_likelihood(design, source_mean, mask, max_iterations):
  r"""``α`` maximising ``Σ_j mask_j log (Aα)_j`` over ``{α ≥ 0, bᵀα = 1}``.

  ``design`` is ``A`` (``n_t × b``), ``source_mean`` is ``b``, ``mask`` is
  1 on the target rows fitted and 0 on the others. A basis function whose
  entry of ``source_mean`` is 0 (left out of a fold, or vanishing in
  floating point at every source example) is left out: its coefficient is
  0. A row of ``design`` that is 0 at every basis function used adds the
  same ``log 0`` for every ``α`` and is left out of the objective.

  The primal-dual interior-point method of :func:`kliep`'s docstring on the
  mixture-proportion form: ``β = b ∘ α``, ``Ã = A diag(1/b)`` with each row
  divided by its largest entry (which shifts the objective by a constant),
  ``F(β) = −(1/m) Σ_j log (Ãβ)_j + 1ᵀβ`` over ``β ≥ 0``. The Newton system
  is solved by Cholesky after a symmetric diagonal (Jacobi) scaling; a
  direction that is not finite, or along which the residual does not
  decrease, ends the iteration where it is.
  """
  dtype = design.dtype
  used = (source_mean >= jnp.finfo(dtype).tiny).astype(dtype)
  num_used = jnp.sum(used)
  scaled = design * (used / jnp.where(used > 0, source_mean, 1.0))
  row_max = jnp.max(scaled, axis=1)
  rows = mask * (row_max > 0)
  scaled = scaled / jnp.where(row_max > 0, row_max, 1.0)[:, None]
  count = jnp.maximum(jnp.sum(rows), 1.0)
  both_used = (used[:, None] * used[None, :]) > 0
  ridge = NEWTON_RIDGE * jnp.eye(design.shape[1], dtype=dtype)

  def safe(values):
    return jnp.where(used > 0, values, 1.0)

  def inverse_fitted(beta):
    """``rows_j / (Ãβ)_j`` (0 on the rows left out)."""
    fitted = matmul(scaled, beta)
    return rows / jnp.where(rows > 0, fitted, 1.0)

  def gradient(beta):
    """``∇F(β) = 1 − Ãᵀ(1 / Ãβ) / m`` on the basis functions used."""
    return used * (1.0 - matmul(scaled.T, inverse_fitted(beta)) / count)

  def duality_gap(beta):
    """``max_l c_l − 1`` with ``c = Ãᵀ(1/Ãβ̂)/m`` at ``β̂ = β / 1ᵀβ``."""
    total = jnp.sum(beta)
    c = total * matmul(scaled.T, inverse_fitted(beta)) / count
    return jnp.max(jnp.where(used > 0, c, -jnp.inf)) - 1.0

  def residual(beta, dual, inverse_t):
    return jnp.sqrt(
        jnp.sum(jnp.square(gradient(beta) - dual))
        + jnp.sum(jnp.square(used * (beta * dual - inverse_t)))
    )

  def running(state):
    iteration, _, _, gap, moved, stalled = state
    return (
        (iteration < max_iterations)
        & (gap > GAP_TOLERANCE)
        & moved
        & (stalled < STALLED_STEPS)
    )

  def newton(state):
    iteration, beta, dual, gap, _, stalled = state
    inverse_t = jnp.vdot(beta, dual) / (BARRIER_FACTOR * num_used)
    inverse = inverse_fitted(beta)
    weighted = (
        scaled * inverse[:, None]
    )  # the rows of Ã divided by Ãβ (rows is 0 or 1)
    hessian = matmul(weighted.T, weighted) / count
    step_gradient = used * (1.0 - matmul(scaled.T, inverse) / count)
    system = jnp.where(
        both_used, hessian + jnp.diag(dual / safe(beta)), jnp.diag(1.0 - used)
    )
    scale = 1.0 / jnp.sqrt(jnp.diag(system))
    factor = jnp.linalg.cholesky(
        system * scale[:, None] * scale[None, :] + ridge
    )
    right = used * (inverse_t / safe(beta) - step_gradient)
    beta_step = (
        used * scale * jax.scipy.linalg.cho_solve((factor, True), scale * right)
    )
    dual_step = used * (inverse_t - beta * dual - dual * beta_step) / safe(beta)
    # The largest step keeping β > 0 and z > 0, backed off from the boundary.
    limits = jnp.concatenate(
        [
            jnp.where(
                beta_step < 0,
                -beta / jnp.where(beta_step < 0, beta_step, -1.0),
                jnp.inf,
            ),
            jnp.where(
                dual_step < 0,
                -dual / jnp.where(dual_step < 0, dual_step, -1.0),
                jnp.inf,
            ),
        ]
    )
    largest = jnp.minimum(1.0, BOUNDARY_FRACTION * jnp.min(limits))
    current = residual(beta, dual, inverse_t)

    def too_long(step):  # also for a NaN residual
      trial = residual(
          beta + step * beta_step, dual + step * dual_step, inverse_t
      )
      return ~(trial <= (1.0 - ARMIJO_FRACTION * step) * current) & (
          step >= MIN_STEP
      )

    step = jax.lax.while_loop(too_long, lambda step: 0.5 * step, largest)
    moved = step >= MIN_STEP
    beta = jnp.where(moved, beta + step * beta_step, beta)
    dual = jnp.where(moved, dual + step * dual_step, dual)
    new_gap = duality_gap(beta)
    # The gap is a sum over the target rows: rounding sets a floor under it.
    stalled = jnp.where((new_gap < gap) | (gap > STALL_GAP), 0, stalled + 1)
    return iteration + 1, beta, dual, jnp.minimum(new_gap, gap), moved, stalled

  initial = used / jnp.maximum(num_used, 1.0)
  solvable = (num_used > 0) & (jnp.sum(rows) > 0)
  _, beta, _, _, _, _ = jax.lax.while_loop(
      running,
      newton,
      (
          jnp.zeros((), jnp.int32),
          initial,
          used,
          jnp.where(solvable, duality_gap(initial), -jnp.inf),
          solvable,
          jnp.zeros((), jnp.int32),
      ),
  )
  alpha = used * beta / safe(source_mean)
  return alpha / jnp.vdot(source_mean, alpha)


@jax.jit
def _source_means(source, centers, widths):
  """``b_l = mean_i φ_l(x_i)`` at each width, ``(num_widths, b)``."""
  return jax.lax.map(
      lambda sigma: jnp.mean(gaussian_basis(source, centers, sigma), axis=0),
      widths,
  )


@functools.partial(jax.jit, static_argnames=("num_folds",))
def _lcv_scores(
    target,
    centers,
    center_rows,
    widths,
    source_means,
    folds,
    max_iterations,
    *,
    num_folds,
):
  fold_ids = jnp.arange(num_folds)
  held_out = (folds[None, :] == fold_ids[:, None]).astype(target.dtype)
  # A centre drawn from a held-out example is left out of that fold's model.
  kept_centers = (folds[center_rows][None, :] != fold_ids[:, None]).astype(
      target.dtype
  )

  def score(width_and_mean):
    sigma, source_mean = width_and_mean
    design = gaussian_basis(target, centers, sigma)

    def fold_score(out_and_kept):
      out, kept = out_and_kept
      alpha = _maximise_likelihood(
          design * kept, source_mean * kept, 1.0 - out, max_iterations
      )
      log_ratios = jnp.log(matmul(design, alpha))  # −inf where the fit is 0
      return jnp.sum(jnp.where(out > 0, log_ratios, 0.0)) / jnp.sum(out)

    # The folds one after the other, not vmapped: XLA on CPU sums the batched
    # products less accurately, enough to keep the duality gap from 10⁻⁵.
    return jnp.mean(jax.lax.map(fold_score, (held_out, kept_centers)))

  return jax.lax.map(score, (widths, source_means))


@jax.jit
def _kliep_final(target, centers, sigma, source_mean, max_iterations):
  design = gaussian_basis(target, centers, sigma)
  mask = jnp.ones(target.shape[0], target.dtype)
  return _maximise_likelihood(design, source_mean, mask, max_iterations)
