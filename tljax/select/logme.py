"""LogME: the log maximum evidence of a linear model on the features."""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tljax.checks import check_int, check_positive, is_traced
from tljax.select._checks import (
    as_float,
    as_jax_array,
    as_parameter,
    check_features,
    check_finite,
    check_finite_result,
    check_labels,
    check_real_dtype,
    dot,
    gram,
    max_abs_scale,
    nan_if_out_of_range,
    to_array,
)

__all__ = ["logme"]


def logme(
    features: Any,
    labels: Any,
    *,
    regression: bool = False,
    num_classes: int | None = None,
    max_iterations: int = 100,
    tolerance: float = 1e-6,
) -> jax.Array:
  r"""LogME, the average log maximum evidence per example.

  You, Liu, Wang and Long, "LogME: Practical assessment of pre-trained models
  for transfer learning", ICML 2021. Each target column ``y`` (a one-hot
  class indicator, or a regression target) is modelled as Bayesian linear
  regression on the features ``F`` (``N × D``), ``y = F w + noise`` with
  ``w ~ N(0, α⁻¹ I_D)`` and noise ``~ N(0, β⁻¹ I_N)``. Its log evidence is

    L(α, β) = D/2 log α + N/2 log β − N/2 log 2π − β/2 ‖F m − y‖²
              − α/2 ‖m‖² − 1/2 log |A|,
    A = α I_D + β FᵀF,   m = β A⁻¹ Fᵀ y,

  maximised by the paper's fixed-point iteration (Algorithm 1), from
  ``α = β = 1``: with ``σ_i`` the eigenvalues of ``FᵀF``,

    γ = Σ_i β σ_i / (α + β σ_i),   α ← γ / ‖m‖²,   β ← (N − γ) / ‖F m − y‖².

  The score is ``L(α*, β*) / N`` averaged over the target columns: over the
  classes for classification, over the target dimensions for regression.
  Higher is better.

  The iteration stops when the relative change of ``α/β``, or the change of
  ``L/N``, is at most ``tolerance`` (or after ``max_iterations`` steps). When
  ``y`` lies in the span of the features (always when ``N < D`` and ``F`` has
  rank ``N``) the evidence may keep increasing as ``β → ∞``, towards the
  finite evidence of the noise-free model; ``α/β`` then shrinks
  geometrically while ``L`` converges, and the second test stops at that
  limit. ``N − γ`` is computed as ``(N − r) + Σ_i α / (α + β σ_i)`` so that
  it stays accurate there.

  Computation: one eigendecomposition, of the Gram matrix of the smaller side
  (``FᵀF`` when ``D ≤ N``, ``F Fᵀ`` when ``N < D``), shared by every column;
  the per-column iterations then run together on vectors, which costs
  ``O(min(N, D) · C)`` per step. ``FᵀF`` always has ``D`` eigenvalues: when
  ``N < D`` the ``D − N`` not among ``F Fᵀ``'s are zero, and they enter
  ``log |A|`` as ``(D − N) log α`` (they add nothing to ``γ``). Eigenvalues
  below ``max(N, D) · eps · σ_max`` (numerical rank) count as zero.

  Deviations from the authors' code (thuml/LogME): (1) the iteration runs to
  convergence as above, where the code stops after at most 11 steps (at a
  relative tolerance of 1e-2 or 1e-3 on ``α/β``), and adds no ``1e-5`` to
  the denominators; (2) the features are divided by ``√σ_max`` before
  iterating, which does not change the evidence (the marginal likelihood of
  ``y`` depends on ``α`` and ``F`` only through ``α⁻¹ F Fᵀ``) but makes the
  start ``α = β = 1`` independent of the feature scale, so the score is
  invariant to scaling the features; (3) the code's default path
  (``_fit_fixed_point``) sums ``log(α + β σ_i)`` over the ``min(N, D)`` (or,
  for ``N > D``, rank-many) singular values only, dropping the
  ``(D − r) log α`` of the zero eigenvalues counted here, so its scores
  differ from the paper's evidence when ``N < D`` or the features are rank
  deficient (its ``_fit_icml`` path counts them); (4) classes absent from
  ``labels`` (possible with an explicit ``num_classes``) are left out of the
  average instead of producing NaN.

  Numerical robustness (exact, or at the float limit): the features are first
  divided by ``max |F|`` (the evidence is invariant, see (2)), so features of
  any magnitude (1e30, 1e-30) give the same score; each regression target
  column is divided by ``s = max |y|`` and ``log s`` subtracted from its
  score, exactly the change of the per-example log evidence,
  ``p(s y) = p(y) / s^N``; when ``y`` is orthogonal to the features
  (``‖m‖² = 0``) the evidence increases towards its finite ``α → ∞`` limit
  and ``α/β`` is capped at ``1/eps`` (with ``σ_max = 1``), where the score
  has reached that limit in floating point. A score that still comes out
  non-finite from concrete inputs (labels exactly in the span of the
  features when ``N > D``, a noise-free fit whose evidence is unbounded)
  raises a ValueError.

  Args:
    features: ``(N, D)`` features of the target examples, e.g. a pretrained
      backbone's penultimate activations.
    labels: classification: ``(N,)`` integer labels in ``[0, C)``, at least
      two distinct classes; regression: ``(N,)`` or ``(N, C)`` real targets.
    regression: whether ``labels`` are regression targets.
    num_classes: the number of classes ``C`` (classification); ``None`` takes
      ``max(labels) + 1``. Needed under ``jax.jit``, where a label out of
      range makes the score NaN.
    max_iterations: cap on the fixed-point steps, >= 1.
    tolerance: relative change of ``α/β``, or absolute change of ``L/N``
      (nats per example), that stops the iteration, > 0.

  Returns:
    The scalar LogME score (float32, or float64 for float64 features).

  Raises:
    ValueError: on a malformed argument; the message names it. Also when
      the evidence of concrete inputs is not finite (see above).
  """
  if not isinstance(regression, bool):
    raise ValueError(f"regression must be a bool, got {regression!r}.")
  max_iterations = check_int(max_iterations, "max_iterations", minimum=1)
  check_positive(tolerance, "tolerance")
  features = check_features(features, "features")
  if not is_traced(features) and not np.any(np.asarray(features)):
    raise ValueError(
        "features must not be all zero; the evidence has no maximum."
    )
  num_examples = features.shape[0]
  if regression:
    targets = _check_regression_targets(labels, num_examples)
    present = jnp.ones((targets.shape[1],), bool)
  else:
    labels, num_classes = check_labels(
        labels,
        "labels",
        length=num_examples,
        length_of="features",
        num_classes=num_classes,
        num_classes_argument="num_classes",
        min_present=2,
    )
    targets = jax.nn.one_hot(labels, num_classes, dtype=features.dtype)
    present = jnp.any(targets > 0, axis=0)
  tolerance = as_parameter(tolerance, features.dtype, "tolerance")
  score = _logme(
      features,
      targets.astype(features.dtype),
      present,
      tolerance,
      max_iterations=max_iterations,
  )
  if not regression:
    score = nan_if_out_of_range(score, labels, num_classes)
  return check_finite_result(
      score,
      "logme: the evidence is not finite for these features and labels; the labels "
      "(targets) may lie exactly in the span of the features, a noise-free fit whose "
      "evidence has no maximum.",
  )


def _check_regression_targets(labels: Any, num_examples: int) -> jax.Array:
  traced = is_traced(labels)
  original = to_array(labels, "labels")
  targets = as_jax_array(original)
  if targets.ndim == 1:
    targets = targets[:, None]
  if (
      targets.ndim != 2
      or targets.shape[0] != num_examples
      or targets.shape[1] < 1
  ):
    raise ValueError(
        f"labels must have shape ({num_examples},) or ({num_examples}, num_targets) "
        f"for regression (one row per row of features), got shape {jnp.shape(labels)}."
    )
  check_real_dtype(targets, "labels")
  targets = as_float(targets)
  if not traced:
    check_finite(targets, original, "labels")
    values = np.asarray(original, np.float64)
    if values.ndim == 1:
      values = values[:, None]
    zero = np.flatnonzero(~np.any(values != 0, axis=0)).tolist()
    if zero:
      raise ValueError(
          f"labels target columns {zero} are identically zero; their evidence "
          "has no maximum."
      )
  return targets


@functools.partial(jax.jit, static_argnames=("max_iterations",))
def _logme(features, targets, present, tolerance, *, max_iterations):
  num_examples, dim = features.shape
  eps = jnp.finfo(features.dtype).eps
  # Exact rescalings (see the docstring) that keep Gram matrices and squared
  # norms in range: features to max |F| = 1, each target column to
  # max |y_c| = 1, its evidence then shifted by −log of that scale.
  features = features / max_abs_scale(features)
  target_scales = jnp.max(jnp.abs(targets), axis=0)
  target_scales = jnp.where(
      target_scales >= jnp.finfo(targets.dtype).tiny, target_scales, 1.0
  )
  targets = targets / target_scales
  if dim <= num_examples:
    eigenvalues, eigenvectors = jnp.linalg.eigh(gram(features))
  else:
    eigenvalues, eigenvectors = jnp.linalg.eigh(gram(features.T))
  largest = jnp.max(eigenvalues)
  keep = eigenvalues > max(num_examples, dim) * eps * largest
  # Scaled so that the largest eigenvalue is 1 (see the docstring).
  sigma = jnp.where(keep, eigenvalues / largest, 0.0)
  if dim <= num_examples:
    # With the left singular vectors u_i = F v_i / √σ_i of the kept
    # directions, z = Uᵀy = diag(1/√σ) Vᵀ (Fᵀy), and the part of y outside
    # their span is the least-squares residual y − F w, w = V diag(1/σ) Vᵀ Fᵀy:
    # O(N·D·C) work, where forming U would cost O(N·D²).
    inverse = jnp.where(keep, 1.0 / jnp.where(keep, eigenvalues, 1.0), 0.0)
    rotated = dot(eigenvectors.T, dot(features.T, targets))  # Vᵀ Fᵀ y, (D, C)
    projections = jnp.sqrt(inverse)[:, None] * rotated
    weights = dot(eigenvectors, inverse[:, None] * rotated)
    outside = jnp.sum(jnp.square(targets - dot(features, weights)), axis=0)
  else:
    # F Fᵀ's eigenvectors are a complete basis of R^N: nothing lies outside.
    projections = dot(eigenvectors.T, targets)
    outside = jnp.zeros((targets.shape[1],), features.dtype)
  squared = jnp.square(projections)  # (r, C), r = min(N, D)

  def evaluate(alpha, beta):
    """Per column: L(α, β) / N, γ, N − γ, ‖m‖² and ‖F m − y‖²."""
    ratio = alpha / beta
    denominator = sigma[:, None] + ratio
    gamma = jnp.sum(sigma[:, None] / denominator, axis=0)
    # N − γ without cancellation as β → ∞ (see the docstring).
    effective_noise = (
        num_examples - sigma.shape[0] + jnp.sum(ratio / denominator, axis=0)
    )
    weight_norm = jnp.sum(
        sigma[:, None] * squared / jnp.square(denominator), axis=0
    )
    residual = (
        jnp.sum(squared * jnp.square(ratio / denominator), axis=0) + outside
    )
    # D log α + N log β − log|A|, where log|A| = Σ_{i≤r} log(α + β σ_i)
    # + (D − r) log α counts the D − r zero eigenvalues of FᵀF missing from
    # sigma; regrouped as below, no two large terms cancel when β → ∞.
    log_terms = (num_examples - sigma.shape[0]) * jnp.log(beta) + jnp.sum(
        jnp.log(alpha / denominator), axis=0
    )
    evidence = (
        0.5
        * (
            log_terms
            - num_examples * math.log(2 * math.pi)
            - beta * residual
            - alpha * weight_norm
        )
        / num_examples
    )
    return evidence, gamma, effective_noise, weight_norm, residual

  def step(state):
    alpha, beta, previous, done, iteration = state
    evidence, gamma, effective_noise, weight_norm, residual = evaluate(
        alpha, beta
    )
    new_beta = effective_noise / residual
    # ‖m‖² = 0 (y orthogonal to the features' span): the evidence grows
    # towards its finite α → ∞ limit; α/β is capped at 1/eps (σ_max = 1).
    positive = weight_norm > 0
    new_alpha = jnp.where(
        positive, gamma / jnp.where(positive, weight_norm, 1.0), jnp.inf
    )
    new_alpha = jnp.minimum(new_alpha, new_beta / eps)
    ratio = alpha / beta
    converged = (jnp.abs(new_alpha / new_beta - ratio) <= tolerance * ratio) | (
        jnp.abs(evidence - previous) <= tolerance
    )
    alpha = jnp.where(done, alpha, new_alpha)
    beta = jnp.where(done, beta, new_beta)
    return alpha, beta, evidence, done | converged, iteration + 1

  def running(state):
    *_, done, iteration = state
    return (iteration < max_iterations) & ~jnp.all(done)

  ones = jnp.ones(targets.shape[1], features.dtype)
  start = (ones, ones, jnp.full_like(ones, jnp.inf), ~present, 0)
  alpha, beta, *_ = jax.lax.while_loop(running, step, start)
  evidence = evaluate(alpha, beta)[0] - jnp.log(target_scales)
  evidence = jnp.where(present, evidence, 0.0)
  return jnp.sum(evidence) / jnp.sum(present)
