"""Section ``logme``: :func:`tljax.select.logme` next to a NumPy LogME (You et al., ICML 2021).

Part of ``scripts/benchmark.py`` (its docstring describes every section).
"""

from __future__ import annotations

import math

import numpy as np

from benchmarks.common import (
    Section,
    Table,
    fmt,
    interleaved_medians,
    loglog_slope,
    median_seconds,
    ratio,
)

# --- Section: LogME vs NumPy ---------------------------------------------------


def logme_numpy(
    features, labels, *, tolerance: float = 1e-10, max_iterations: int = 100_000
) -> float:
  """LogME in NumPy, float64: You et al., ICML 2021, Algorithm 1, per class.

  For each class ``k`` the one-hot column ``y`` is Bayesian linear
  regression on ``F``; with the eigen-decomposition of ``FᵀF`` (eigenvalues
  ``σ_i``, left singular vectors ``u_i``) and ``z = Uᵀy``, the fixed point
  from ``α = β = 1`` is::

    γ = Σ βσ_i / (α + βσ_i)
    ‖m‖² = Σ β²σ_i z_i² / (α + βσ_i)²
    ‖Fm − y‖² = Σ α² z_i² / (α + βσ_i)² + ‖y − UUᵀy‖²
    α ← γ / ‖m‖²,   β ← (N − γ) / ‖Fm − y‖²

  (evaluated through ``r = α/β`` so nothing overflows when the weights go to
  zero and α grows without bound), until α/β changes by at most
  ``tolerance`` (relative) or the evidence per example by at most
  ``tolerance``. The evidence ``D/2 log α + N/2 log β − N/2 log 2π
  − β/2 ‖Fm − y‖² − α/2 ‖m‖² − 1/2 log|αI + βFᵀF|`` divided by ``N``,
  averaged over the classes present, is the score. An independent
  reference for the tests.
  """
  features = np.asarray(features, np.float64)
  labels = np.asarray(labels)
  num_examples, dim = features.shape
  if dim <= num_examples:
    eigenvalues, vectors = np.linalg.eigh(features.T @ features)
    keep = eigenvalues > max(num_examples, dim) * np.finfo(float).eps * max(
        eigenvalues.max(), 0.0
    )
    sigma = eigenvalues[keep]
    left = features @ vectors[:, keep] / np.sqrt(sigma)
  else:
    left, singular, _ = np.linalg.svd(features, full_matrices=False)
    keep = singular > max(num_examples, dim) * np.finfo(float).eps * singular[0]
    sigma, left = singular[keep] ** 2, left[:, keep]
  rank = sigma.shape[0]

  def terms(alpha, beta, z2, outside):
    """(L/N, γ, ‖m‖², ‖Fm − y‖²) at (α, β)."""
    r = alpha / beta
    denominator = r + sigma
    gamma = float(np.sum(sigma / denominator))
    weight_norm = float(np.sum(sigma * z2 / denominator**2))
    residual = float(np.sum(r * r * z2 / denominator**2)) + outside
    # β²σz²/(α+βσ)² = σz²/(r+σ)²; log(α + βσ) = log β + log(r + σ).
    log_det = (
        rank * math.log(beta)
        + float(np.sum(np.log(denominator)))
        + (dim - rank) * math.log(alpha)
    )
    evidence = (
        dim / 2 * math.log(alpha)
        + num_examples / 2 * math.log(beta)
        - num_examples / 2 * math.log(2 * math.pi)
        - beta / 2 * residual
        - alpha / 2 * weight_norm
        - log_det / 2
    )
    return evidence / num_examples, gamma, weight_norm, residual

  scores = []
  for k in np.unique(labels):
    y = (labels == k).astype(np.float64)
    z = left.T @ y
    z2 = z * z
    outside = max(float(y @ y - z2.sum()), 0.0)
    alpha, beta, previous = 1.0, 1.0, -math.inf
    for _ in range(max_iterations):
      evidence, gamma, weight_norm, residual = terms(alpha, beta, z2, outside)
      new_alpha = gamma / weight_norm
      new_beta = (num_examples - gamma) / residual
      converged = (
          abs(new_alpha / new_beta - alpha / beta) <= tolerance * alpha / beta
          or abs(evidence - previous) <= tolerance
      )
      alpha, beta, previous = new_alpha, new_beta, evidence
      if converged:
        break
    scores.append(terms(alpha, beta, z2, outside)[0])
  return float(np.mean(scores))


def logme_data(n: int, dim: int, num_classes: int, seed: int = 0):
  """Features with class structure: class means plus unit noise; balanced labels."""
  rng = np.random.default_rng(seed)
  labels = np.arange(n) % num_classes
  rng.shuffle(labels)
  means = rng.standard_normal((num_classes, dim))
  features = means[labels] + rng.standard_normal((n, dim)) * 2.0
  return features.astype(np.float32), labels.astype(np.int32)


def section_logme(args, ctx) -> Section:
  import jax

  from tljax import select

  dim, classes = args.logme_dim, args.logme_classes
  # Calls take milliseconds: more of them than --repeats, in turns.
  repeats = max(args.repeats, 9)
  section = Section("LogME next to a NumPy LogME")
  section.intro = [
      f"n examples of {dim}-dimensional features (class means plus noise), "
      f"{classes} classes. tljax: `select.logme` (float32, first call with "
      f"compilation, then the median of {repeats} warm calls); NumPy: "
      "`logme_numpy` of this script (float64, the paper's fixed point per "
      "class, run to convergence), median of the same number of calls, "
      "the two called in turns so that both see the same machine load, "
      "each after 0.2 s of sleep (the other's BLAS threads spin for a while "
      "after a call). "
      "Ratio: NumPy's time ÷ tljax's warm time (above 1: tljax faster)."
  ]
  table = Table(
      [
          "n",
          "tljax first call (s)",
          "tljax warm (s)",
          "NumPy (s)",
          "NumPy ÷ tljax warm",
          "|score difference|",
      ]
  )
  points = []
  for n in args.logme_sizes:
    features, labels = logme_data(n, dim, classes, seed=n)

    def ours(features=features, labels=labels):
      return jax.block_until_ready(
          select.logme(features, labels, num_classes=classes)
      )

    first = median_seconds(ours, 1)
    warm, reference = interleaved_medians(
        [ours, lambda: logme_numpy(features, labels)], repeats, pause=0.2
    )
    difference = abs(float(ours()) - logme_numpy(features, labels))
    points.append((n, warm, reference))
    table.add(
        n,
        fmt(first),
        fmt(warm),
        fmt(reference),
        ratio(reference, warm),
        f"{difference:.1e}",
    )
    print(
        f"logme n={n}: tljax {warm:.4f} s, numpy {reference:.4f} s", flush=True
    )
  sizes = [n for n, _, _ in points]
  section.tables.append(table)
  slopes = Table(["implementation", "log-log slope of time vs n"])
  slopes.add(
      "tljax (warm)", fmt(loglog_slope(sizes, [t for _, t, _ in points]), 2)
  )
  slopes.add("NumPy", fmt(loglog_slope(sizes, [t for _, _, t in points]), 2))
  section.tables.append(slopes)
  section.notes = [
      "Both form the D × D Gram matrix (O(n·D²)), decompose it once with "
      "LAPACK (`eigh`: jaxlib's, NumPy's OpenBLAS) and iterate on its "
      "eigenvalues, so the cost grows at most linearly in n at fixed D; a "
      "slope near 0 means the n-independent D × D eigendecomposition (and, "
      "on a busy machine, the BLAS threads waiting for a core) dominates at "
      "these sizes.",
  ]
  return section
