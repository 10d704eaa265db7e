r"""Least-squares density-ratio fitting: uLSIF and its relative variant RuLSIF."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import jax.scipy.linalg
import numpy as np

from tljax.checks import (
    check_finite_result,
    check_int,
    check_key,
    check_non_negative,
)
from tljax.reweight._common import (
    argbest,
    check_domains,
    check_grid,
    check_representable,
    gaussian_basis,
    matmul,
    prepare_basis,
)
from tljax.reweight.basis import DensityRatioFit

__all__ = ["DEFAULT_LAMBDAS", "rulsif", "ulsif"]

#: The default regularisation candidates: ``10^{-3}, 10^{-2.5}, …, 10`` (nine
#: points, as in the uLSIF authors' code).
DEFAULT_LAMBDAS = tuple(float(10.0**e) for e in np.linspace(-3, 1, 9))


def ulsif(
    source: Any,
    target: Any,
    *,
    sigmas: Any = None,
    lambdas: Any = None,
    num_centers: int = 100,
    key: jax.Array | None = None,
) -> DensityRatioFit:
  r"""uLSIF: the density ratio ``p_t / p_s`` by regularised least squares, in closed form.

  Kanamori, Hido and Sugiyama, "A least-squares approach to direct
  importance estimation", JMLR 2009 (unconstrained least-squares importance
  fitting). The ratio ``w = p_t / p_s`` is modelled as ``ŵ(x) = Σ_l α_l
  φ_l(x)``, ``φ_l(x) = exp(−‖x − c_l‖² / (2σ²))`` centred at ``b =
  min(num_centers, n_t)`` target examples drawn at random (with ``key``),
  and fitted by minimising the squared error ``½ ∫ (ŵ − w)² p_s`` estimated
  from the samples, with a ridge penalty::

    min_β  ½ βᵀĤβ − ĥᵀβ + (λ/2) βᵀβ,
    Ĥ = (1/n_s) Σ_i φ(x_i) φ(x_i)ᵀ,   ĥ = (1/n_t) Σ_j φ(x'_j),

  whose solution is rounded up to 0: ``α = max(0, (Ĥ + λI)⁻¹ ĥ)``.

  Model selection: ``(σ, λ)`` minimises the leave-one-out score
  ``(1/n) Σ_k [½ ŵ_k(x_k)² − ŵ_k(x'_k)]`` of the held-out squared loss,
  where ``ŵ_k`` is fitted without the pair ``(x_k, x'_k)``, for the ``n =
  min(n_s, n_t)`` pairs of the *first* ``n`` source and target examples
  (as in the authors' code; shuffle data whose order means something). It is
  computed in closed form for all pairs at once with the Sherman-Morrison-
  Woodbury formula (the paper's Section 3.4; here through the general
  rank-two update of :func:`rulsif`, of which uLSIF is ``alpha = 0``).
  Default candidates: widths from 1/10 to 10 times the median pooled
  distance (nine, evenly spaced in log scale; the authors' code uses fixed
  widths ``10^{-3}, …, 10`` for standardised data) and ``λ`` in
  ``10^{-3}, 10^{-2.5}, …, 10`` (the authors' code). Deviation: ``λ`` must be
  positive (the authors allow 0, which leaves ``Ĥ`` singular when the basis
  functions are linearly dependent on the data).

  Degenerate data: as in :func:`kliep` (the fit runs on translated and
  rescaled data; the default widths of duplicated points or constant
  features fall back instead of ``σ = 0``); a leave-one-out score that is
  not finite (a rounding breakdown of the Woodbury update) counts as the
  worst.

  Scale: ``n × b`` basis matrices and ``b × b`` solves per candidate, never
  an ``n × n`` matrix.

  Args:
    source: ``(n_s, d)`` source examples (the denominator), ``n_s >= 2``.
    target: ``(n_t, d)`` target examples (the numerator), ``n_t >= 2``.
    sigmas: a width ``σ > 0`` or a sequence of candidates; ``None`` for the
      default grid.
    lambdas: a ``λ > 0`` or a sequence of candidates; ``None`` for the
      default grid.
    num_centers: the number of basis functions ``b`` (at most ``n_t``), >= 1.
    key: a ``jax.random`` key for the centres and the median heuristic's
      subset; ``None`` for ``jax.random.key(0)``.

  Returns:
    A :class:`DensityRatioFit`; ``weights`` are ``ŵ`` at the source examples,
    ``cv_scores`` the ``(num_sigmas, num_lambdas)`` leave-one-out scores
    (lower is better).

  Raises:
    ValueError: on a malformed argument (fewer than 2 examples in a domain,
      different feature dimensions, non-finite values, a width or ``λ``
      ``<= 0`` or beyond the data's dtype), or (naming ``lambdas``) a
      regularised system so ill-conditioned that the solve gives NaN; the
      message names it.
  """
  return _least_squares_fit(
      source, target, 0.0, sigmas, lambdas, num_centers, key
  )


def rulsif(
    source: Any,
    target: Any,
    *,
    alpha: float = 0.1,
    sigmas: Any = None,
    lambdas: Any = None,
    num_centers: int = 100,
    key: jax.Array | None = None,
) -> DensityRatioFit:
  r"""RuLSIF: the relative density ratio ``p_t / (α p_t + (1 − α) p_s)`` by least squares.

  Yamada, Suzuki, Kanamori, Hachiya and Sugiyama, "Relative density-ratio
  estimation for robust distribution comparison", NIPS 2011. The
  ``α``-relative ratio ``r_α = p_t / (α p_t + (1 − α) p_s)`` is bounded by
  ``1/α``, which makes it easier to estimate than ``p_t / p_s`` (the
  ``α = 0`` case, :func:`ulsif`). With the model of :func:`ulsif`::

    min_θ  ½ θᵀĤθ − ĥᵀθ + (λ/2) θᵀθ,
    Ĥ = (α/n_t) Σ_j φ(x'_j) φ(x'_j)ᵀ + ((1 − α)/n_s) Σ_i φ(x_i) φ(x_i)ᵀ,
    ĥ = (1/n_t) Σ_j φ(x'_j),

  and ``θ = max(0, (Ĥ + λI)⁻¹ ĥ)``. Deviation: the paper's estimator is the
  plain solution; it is rounded up to 0 here as in uLSIF, so the weights
  are non-negative and ``alpha = 0`` is exactly :func:`ulsif`.

  Model selection, adapted from uLSIF's closed-form leave-one-out (the
  paper uses cross-validation): removing the pair
  ``(x_k, x'_k)`` changes ``Ĥ + λI`` by a rank-two matrix, so every
  leave-one-out solution follows from the Woodbury formula at the cost of
  ``b × b`` solves; the score is the held-out value of the paper's
  objective, ``(1/n) Σ_k [(α/2) ĝ_k(x'_k)² + ((1 − α)/2) ĝ_k(x_k)² −
  ĝ_k(x'_k)]``, over the first ``n = min(n_s, n_t)`` pairs. The
  candidates and the centres are as in :func:`ulsif`.

  Args:
    source: ``(n_s, d)`` source examples, ``n_s >= 2``.
    target: ``(n_t, d)`` target examples, ``n_t >= 2``.
    alpha: the relative parameter ``α`` in ``[0, 1)``.
    sigmas: a width ``σ > 0`` or a sequence of candidates; ``None`` for the
      default grid.
    lambdas: a ``λ > 0`` or a sequence of candidates; ``None`` for the
      default grid.
    num_centers: the number of basis functions ``b`` (at most ``n_t``), >= 1.
    key: a ``jax.random`` key for the centres and the median heuristic's
      subset; ``None`` for ``jax.random.key(0)``.

  Returns:
    A :class:`DensityRatioFit` whose ``weights`` are the relative ratio
    ``r̂_α`` at the source examples (not ``p_t / p_s`` unless ``alpha = 0``).

  Raises:
    ValueError: as :func:`ulsif`, and for ``alpha`` outside ``[0, 1)``.
  """
  check_non_negative(alpha, "alpha")
  if not float(alpha) < 1.0:
    raise ValueError(f"alpha must lie in [0, 1), got {float(alpha)}.")
  return _least_squares_fit(
      source, target, float(alpha), sigmas, lambdas, num_centers, key
  )


def _least_squares_fit(
    source, target, relative, sigmas, lambdas, num_centers, key
):
  source, target = check_domains(
      source, target, min_rows=2, why="leave-one-out removes one of each"
  )
  dtype = source.dtype
  lambda_grid = check_grid(lambdas, "lambdas")
  if lambda_grid is None:
    lambda_grid = np.asarray(DEFAULT_LAMBDAS)
  check_representable(lambda_grid, "lambdas", dtype)
  num_centers = check_int(num_centers, "num_centers", minimum=1)
  key = check_key(key, allow_none=True)
  median_key, center_key = jax.random.split(key)
  basis = prepare_basis(
      source, target, sigmas, num_centers, median_key, center_key
  )
  source, target, centers = basis.source, basis.target, basis.centers
  widths, scaled_widths = basis.widths, basis.scaled_widths
  relative = jnp.asarray(relative, dtype)
  if widths.size * lambda_grid.size > 1:
    scores = np.asarray(
        _loo_scores(
            source,
            target,
            centers,
            scaled_widths,
            jnp.asarray(lambda_grid, dtype),
            relative,
        )
    )
    best_sigma, best_lambda = argbest(scores, maximize=False)
  else:
    scores = np.full((1, 1), np.nan)
    best_sigma = best_lambda = 0
  regularization = jnp.asarray(lambda_grid[best_lambda], dtype)
  coefficients, weights = _fit(
      source,
      target,
      centers,
      scaled_widths[best_sigma],
      regularization,
      relative,
  )
  check_finite_result(
      weights,
      "lambdas: the fit produced NaN or infinity (the regularised system at "
      f"sigma={float(widths[best_sigma]):.4g} and "
      f"lambda={float(lambda_grid[best_lambda]):.4g} is numerically singular; "
      "use larger lambdas).",
  )
  return DensityRatioFit(
      weights=weights,
      alpha=coefficients,
      centers=basis.original_centers,
      sigma=jnp.asarray(widths[best_sigma], dtype),
      regularization=regularization,
      cv_scores=jnp.asarray(scores, dtype),
  )


def _moments(source_design, target_design, relative):
  """``Ĥ`` and ``ĥ`` of the α-relative least-squares objective."""
  source_second = (
      matmul(source_design.T, source_design) / source_design.shape[0]
  )
  target_second = (
      matmul(target_design.T, target_design) / target_design.shape[0]
  )
  second = relative * target_second + (1.0 - relative) * source_second
  return second, jnp.mean(target_design, axis=0), source_second, target_second


@jax.jit
def _fit(source, target, centers, sigma, regularization, relative):
  source_design = gaussian_basis(source, centers, sigma)
  target_design = gaussian_basis(target, centers, sigma)
  second, first, _, _ = _moments(source_design, target_design, relative)
  system = second + regularization * jnp.eye(
      second.shape[0], dtype=second.dtype
  )
  coefficients = jnp.maximum(
      jax.scipy.linalg.solve(system, first, assume_a="pos"), 0.0
  )
  return coefficients, matmul(source_design, coefficients)


@jax.jit
def _loo_scores(source, target, centers, widths, lambdas, relative):
  num_source, num_target = source.shape[0], target.shape[0]
  pairs = min(num_source, num_target)
  # Removing x_k (source) and x'_k (target) from Ĥ + λI subtracts
  # c_t ψ_k ψ_kᵀ + c_s φ_k φ_kᵀ from M = α n_t/(n_t−1) Ĥ_t + (1−α) n_s/(n_s−1) Ĥ_s + λI.
  target_weight = relative / (num_target - 1)
  source_weight = (1.0 - relative) / (num_source - 1)

  def for_width(sigma):
    source_design = gaussian_basis(source, centers, sigma)
    target_design = gaussian_basis(target, centers, sigma)
    _, first, source_second, target_second = _moments(
        source_design, target_design, relative
    )
    base = (
        relative * num_target / (num_target - 1) * target_second
        + (1.0 - relative) * num_source / (num_source - 1) * source_second
    )
    held_target = target_design[:pairs].T  # ψ_k as columns, (b, n)
    held_source = source_design[:pairs].T  # φ_k

    def for_lambda(regularization):
      system = base + regularization * jnp.eye(base.shape[0], dtype=base.dtype)
      factor = jax.scipy.linalg.cho_factor(system)
      solve = functools.partial(jax.scipy.linalg.cho_solve, factor)
      solved_first = solve(first)
      solved_target = solve(held_target)  # M⁻¹ψ_k
      solved_source = solve(held_source)  # M⁻¹φ_k
      # M⁻¹ ĥ_k with ĥ_k = (n_t ĥ − ψ_k) / (n_t − 1).
      base_solution = (num_target * solved_first[:, None] - solved_target) / (
          num_target - 1
      )
      s_tt = jnp.sum(held_target * solved_target, axis=0)
      s_ss = jnp.sum(held_source * solved_source, axis=0)
      s_ts = jnp.sum(held_target * solved_source, axis=0)
      r_t = jnp.sum(held_target * base_solution, axis=0)
      r_s = jnp.sum(held_source * base_solution, axis=0)
      # Woodbury: (M − U C Uᵀ)⁻¹ = M⁻¹ + M⁻¹U C (I − S C)⁻¹ Uᵀ M⁻¹, S = UᵀM⁻¹U.
      m11 = 1.0 - s_tt * target_weight
      m12 = -s_ts * source_weight
      m21 = -s_ts * target_weight
      m22 = 1.0 - s_ss * source_weight
      determinant = m11 * m22 - m12 * m21
      z_t = (m22 * r_t - m12 * r_s) / determinant
      z_s = (m11 * r_s - m21 * r_t) / determinant
      solutions = jnp.maximum(
          base_solution
          + solved_target * (target_weight * z_t)
          + solved_source * (source_weight * z_s),
          0.0,
      )
      fit_target = jnp.sum(held_target * solutions, axis=0)
      fit_source = jnp.sum(held_source * solutions, axis=0)
      return jnp.mean(
          0.5 * relative * jnp.square(fit_target)
          + 0.5 * (1.0 - relative) * jnp.square(fit_source)
          - fit_target
      )

    return jax.lax.map(for_lambda, lambdas)

  return jax.lax.map(for_width, widths)
