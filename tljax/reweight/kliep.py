r"""KLIEP: the Kullback-Leibler importance estimation procedure."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tljax.checks import check_int
from tljax.reweight._common import (DEFAULT_WIDTH_MULTIPLIERS, argbest,
                                    check_domains, check_grid, check_key,
                                    gaussian_basis, matmul, prepare_basis)
from tljax.reweight.basis import DensityRatioFit

__all__ = ["kliep"]

#: Step sizes of the projected gradient ascent, each used while it improves.
STEP_SIZES = tuple(float(10.0 ** e) for e in range(3, -4, -1))


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
  ``x_i``. Solved by the papers' projected gradient ascent (with ``A_jl =
  φ_l(x'_j)`` and ``b_l = (1/n_s) Σ_i φ_l(x_i)``)::

    α ← α + ε Aᵀ(1 ./ Aα)
    α ← α + (1 − bᵀα) b / (bᵀb),   α ← max(0, α),   α ← α / (bᵀα),

  from ``α = 1 / (bᵀ1)``. The papers leave the step ``ε`` open; here the
  gradient is that of the *mean* log-likelihood and ``ε`` runs through
  ``10³, 10², …, 10⁻³``, each step size being used (at most
  ``max_iterations`` times) while it increases the objective, so the
  ascent is monotone. The fitted weights satisfy the constraint: their
  mean over the source is 1.

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

  Scale: the fit holds ``n_t × b`` and ``n_s × b`` basis matrices, never an
  ``n × n`` one; each ascent step costs ``O(n_t b)``.

  Args:
    source: ``(n_s, d)`` source examples (the denominator ``p_s``).
    target: ``(n_t, d)`` target examples (the numerator ``p_t``), at least
      ``num_folds`` of them when there are several widths.
    sigmas: a width ``σ > 0`` or a sequence of candidate widths; ``None``
      for the default grid.
    num_centers: the number of basis functions ``b`` (at most ``n_t``), >= 1.
    num_folds: the number of cross-validation folds, >= 2.
    max_iterations: ascent steps per step size, >= 1.
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
  key = check_key(key)
  median_key, center_key, fold_key = jax.random.split(key, 3)
  num_target = target.shape[0]
  checked = check_grid(sigmas, "sigmas")
  num_widths = len(DEFAULT_WIDTH_MULTIPLIERS) if checked is None else checked.size
  if num_widths > 1 and num_target < num_folds:
    raise ValueError(
      f"target must have at least num_folds={num_folds} examples for the "
      f"cross-validation over sigmas, got {num_target}."
    )
  basis = prepare_basis(source, target, sigmas, num_centers, median_key,
                        center_key)
  source, target, centers, center_rows = (basis.source, basis.target,
                                          basis.centers, basis.center_rows)
  widths, scaled_widths = basis.widths, basis.scaled_widths
  dtype = source.dtype
  steps = jnp.asarray(STEP_SIZES, dtype)

  if widths.size > 1:
    order = jax.random.permutation(fold_key, num_target)
    folds = jnp.zeros(num_target, jnp.int32).at[order].set(
      jnp.arange(num_target, dtype=jnp.int32) % num_folds
    )
    scores = np.asarray(_lcv_scores(
      source, target, centers, center_rows, scaled_widths, folds,
      steps, num_folds=num_folds, max_iterations=max_iterations,
    ))
    (best,) = argbest(scores, maximize=True)
  else:
    scores = np.full(1, np.nan)
    best = 0
  alpha, weights = _kliep_final(
    source, target, centers, scaled_widths[best], steps,
    max_iterations=max_iterations,
  )
  values = np.asarray(weights)
  if not (np.all(np.isfinite(values)) and np.any(values > 0)):
    raise ValueError(
      f"sigmas: at sigma={float(widths[best]):.4g} the Gaussian basis functions "
      "vanish (in floating point) at every source example, so no ratio can "
      "average 1 over the source; use wider sigmas."
    )
  return DensityRatioFit(
    weights=weights, alpha=alpha, centers=basis.original_centers,
    sigma=jnp.asarray(widths[best], dtype),
    regularization=jnp.zeros((), dtype), cv_scores=jnp.asarray(scores, dtype),
  )


def _normalise(alpha, source_mean):
  """The papers' step onto ``{α ≥ 0, bᵀα = 1}`` (not an exact projection)."""
  alpha = alpha + (1.0 - jnp.vdot(source_mean, alpha)) * source_mean / jnp.vdot(
    source_mean, source_mean
  )
  alpha = jnp.maximum(alpha, 0.0)
  return alpha / jnp.vdot(source_mean, alpha)


def _ascend(design, source_mean, mask, steps, max_iterations):
  """Maximises ``mean_{j: mask_j} log (Aα)_j`` over the constraint set.

  A basis function whose column of ``design`` and entry of ``source_mean``
  are zeroed is left out (its coefficient stays 0).
  """
  count = jnp.sum(mask)
  tiny = jnp.finfo(design.dtype).tiny

  def objective(alpha):
    return jnp.sum(mask * jnp.log(jnp.maximum(matmul(design, alpha), tiny))) / count

  def for_step(index, state):
    step = steps[index]

    def running(inner):
      count_, _, _, improved = inner
      return (count_ < max_iterations) & improved

    def ascend(inner):
      count_, alpha, score, _ = inner
      fitted = jnp.maximum(matmul(design, alpha), tiny)
      gradient = matmul(design.T, mask / fitted) / count
      candidate = _normalise(alpha + step * gradient, source_mean)
      candidate_score = objective(candidate)
      improved = candidate_score > score  # False for NaN
      return (count_ + 1, jnp.where(improved, candidate, alpha),
              jnp.where(improved, candidate_score, score), improved)

    alpha, score = state
    _, alpha, score, _ = jax.lax.while_loop(
      running, ascend, (jnp.zeros((), jnp.int32), alpha, score, jnp.array(True))
    )
    return alpha, score

  used = (source_mean > 0).astype(design.dtype)
  initial = used / jnp.sum(source_mean)
  alpha, _ = jax.lax.fori_loop(
    0, steps.shape[0], for_step, (initial, objective(initial))
  )
  return alpha


@functools.partial(jax.jit, static_argnames=("num_folds", "max_iterations"))
def _lcv_scores(source, target, centers, center_rows, widths, folds, steps, *,
                num_folds, max_iterations):
  fold_ids = jnp.arange(num_folds)
  held_out = (folds[None, :] == fold_ids[:, None]).astype(source.dtype)
  # A centre drawn from a held-out example is left out of that fold's model.
  kept_centers = (folds[center_rows][None, :] != fold_ids[:, None]).astype(source.dtype)

  def score(sigma):
    design = gaussian_basis(target, centers, sigma)
    source_mean = jnp.mean(gaussian_basis(source, centers, sigma), axis=0)

    def fold_score(out, kept):
      alpha = _ascend(design * kept, source_mean * kept, 1.0 - out, steps,
                      max_iterations)
      log_ratios = jnp.log(matmul(design, alpha))  # −inf where the fit is 0
      return jnp.sum(jnp.where(out > 0, log_ratios, 0.0)) / jnp.sum(out)

    return jnp.mean(jax.vmap(fold_score)(held_out, kept_centers))

  return jax.lax.map(score, widths)


@functools.partial(jax.jit, static_argnames=("max_iterations",))
def _kliep_final(source, target, centers, sigma, steps, *, max_iterations):
  design = gaussian_basis(target, centers, sigma)
  source_design = gaussian_basis(source, centers, sigma)
  source_mean = jnp.mean(source_design, axis=0)
  mask = jnp.ones(target.shape[0], source.dtype)
  alpha = _ascend(design, source_mean, mask, steps, max_iterations)
  return alpha, matmul(source_design, alpha)
