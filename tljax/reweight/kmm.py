r"""Kernel mean matching (KMM): importance weights that match kernel means.

:func:`kmm` checks its arguments and picks the kernel (exact, blocked or
Nyström) and the solver; the solvers are in :mod:`tljax.reweight._kmm_solvers`
and the exact projection onto the feasible set they use,
:func:`project_box_slab`, in :mod:`tljax.reweight.projection` (still
importable from here).
"""

from __future__ import annotations

import contextlib
import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from tljax.align._arrays import check_choice
from tljax.checks import (
    check_finite_result,
    check_int,
    check_key,
    check_non_negative,
    check_positive,
)
from tljax.reweight._kmm_solvers import (
    INTERIOR_POINT_MAX_STEPS,
    interior_point,
    one_blas_thread,
    projected_gradient,
)
from tljax.reweight._common import (
    blocked_rows,
    check_domains,
    check_representable,
    gaussian_kernel,
    matmul,
    median_squared_distance,
    normalize,
)
from tljax.reweight.projection import (
    project_box_slab,
    project_box_slab_unchecked,
)

__all__ = ["KERNEL_APPROXIMATIONS", "KMMResult", "kmm", "project_box_slab"]

KERNEL_APPROXIMATIONS = ("exact", "nystroem")

#: Largest number of source examples for which the exact kernel is kept in memory
#: by default (a 4096² float64 matrix is 128 MiB).
DENSE_MAX_SOURCE = 4096

SOLVERS = ("auto", "interior_point", "projected_gradient")

#: Largest number of source examples for which ``solver='auto'`` picks the
#: interior-point method.
INTERIOR_POINT_MAX_SOURCE = 400


class KMMResult(NamedTuple):
  """What :func:`kmm` returns (a NamedTuple, hence a JAX pytree).

  Attributes:
    weights: ``(n_s,)`` importance weights ``β``, in ``[0, B]``, their sum in
      ``[n_s (1 − ε), n_s (1 + ε)]``.
    objective: ``½ βᵀKβ − κᵀβ`` at ``weights`` (with the kernel the solver
      used: the Nyström kernel for ``kernel_approximation='nystroem'``).
    gamma: the kernel's ``γ`` (given or from the median heuristic).
    eps: the slab half-width ``ε`` used.
    num_iterations: the solver's iterations: Newton steps plus the
      projected-gradient iterations that finish them (``'interior_point'``),
      or accelerated projected-gradient iterations.
    converged: whether the projected-gradient stopping rule was met before
      ``max_iterations`` iterations (the last stage of both solvers).
  """

  weights: jax.Array
  objective: jax.Array
  gamma: jax.Array
  eps: jax.Array
  num_iterations: jax.Array
  converged: jax.Array


def kmm(
    source: Any,
    target: Any,
    *,
    gamma: float | None = None,
    B: float = 1000.0,  # noqa: N803 (the paper's name)
    eps: float | None = None,
    kernel_approximation: str = "exact",
    rank: int = 1000,
    materialize_kernel: bool | None = None,
    solver: str = "auto",
    block_size: int = 128,
    max_iterations: int = 10000,
    tolerance: float = 1e-6,
    power_iterations: int = 30,
    key: jax.Array | None = None,
) -> KMMResult:
  r"""Kernel mean matching: source weights whose kernel mean matches the target's.

  Huang, Smola, Gretton, Borgwardt and Schölkopf, "Correcting sample
  selection bias by unlabeled data", NIPS 2007 (eq. 6 and 7). With ``K``
  the Gaussian kernel matrix of the ``n_s`` source examples,
  ``K_ij = k(x_i, x_j) = exp(−γ ‖x_i − x_j‖²)``, and
  ``κ_i = (n_s / n_t) Σ_j k(x_i, x'_j)`` over the ``n_t`` target examples,
  KMM solves the quadratic program::

    min_β  ½ βᵀ K β − κᵀ β
    s.t.   0 ≤ β_i ≤ B,   |Σ_i β_i − n_s| ≤ n_s ε,

  i.e. it makes the weighted source mean ``(1/n_s) Σ β_i Φ(x_i)`` in the
  kernel's feature space as close as possible to the target mean
  ``(1/n_t) Σ_j Φ(x'_j)`` (the objective is ``n_s²/2`` times their squared
  distance, up to a constant), with weights bounded by ``B`` and summing to
  about ``n_s``. Defaults: ``B = 1000`` and ``ε = (√n_s − 1) / √n_s``, the
  values common in KMM implementations (not checked against the paper's
  experiments); the paper's analysis takes ``ε`` of order ``B / √n_s``. The
  default ``ε`` is nearly 1, so the sum constraint is loose.

  Bandwidth: ``γ = 1 / (2 σ²)`` with ``σ²`` the median of ``‖z_i − z_j‖²``
  over the pairs of the pooled source and target examples (the median
  heuristic; over a random subset of 1000 pooled examples, drawn with
  ``key``, when there are more). The paper gives no default (its
  experiments fix ``σ``).

  Solvers (``solver``). ``'interior_point'``: the primal-dual
  interior-point method with Mehrotra's predictor-corrector (Mehrotra, SIAM
  J. Optim. 1992), as in Nocedal and Wright, *Numerical Optimization*, 2nd
  ed. 2006, section 16.6, Algorithm 16.4: the kind of generic QP solver the
  paper calls (``adapt`` calls cvxopt's). It solves the QP divided by
  ``n_s``, with the sum constraint written as ``mean(β) = 1 + ε s``, ``s``
  in ``[−1, 1]`` a variable of the problem, so that ``ε = 0`` (an
  equality) needs no special case. Each Newton step factors
  ``K / n_s + D`` once (Cholesky; ``D`` diagonal, from the box's slacks and
  multipliers) for both the predictor and the corrector, and takes the sum
  constraint's multiplier in closed form. Deviations from Algorithm 16.4: a
  plain start (``β = min(1, B/2)``, slacks ``max(g(β), 1)``, multipliers
  1); a fixed 0.995 of the step to the boundary; a ridge of 10 units of
  rounding (of ``K / n_s``'s diagonal) on the Newton matrix, raised
  100-fold if the factorisation fails. It stops when the duality gap is at
  most ``tolerance`` times ``½ βᵀKβ + |κᵀβ|`` and every residual at most
  ``tolerance`` relative to the terms it is made of (``tolerance`` taken
  at least 8 units of the dtype's rounding, about ``1e-6`` in float32,
  below which rounding stalls the residuals), or after
  ``min(max_iterations, 100)`` steps. The iterate, projected onto the
  feasible set, is then finished by the projected-gradient method below
  (power iteration included), which moves the weights of the active
  bounds, left at the tolerance's distance, onto them. Cost: 4–20 Newton
  steps of ``n_s³/3`` operations and ``n_s²`` memory, then up to a few
  hundred projected-gradient iterations. It runs with one BLAS thread
  (threadpoolctl, when installed): XLA calls SciPy's LAPACK for the
  Cholesky factor, and OpenBLAS's threads, next to other busy processes,
  made single solves 10–100 times slower at random on the 2-core
  development machine.

  ``'projected_gradient'``: accelerated projected gradient (FISTA: Beck
  and Teboulle, SIAM J. Imaging Sci. 2009) from ``β = 1`` with step
  ``1/L``, ``L`` the largest eigenvalue of ``K`` estimated by
  ``power_iterations`` steps of power iteration (times 1.01, as the
  estimate is a lower bound), with the gradient-based adaptive restart of
  O'Donoghue and Candès (Found. Comput. Math. 2015); each step projects
  exactly onto the feasible set (:func:`project_box_slab`). It stops when
  the projected-gradient step ``‖β_{k+1} − y_k‖`` falls below
  ``tolerance · max(‖β_{k+1}‖, 1)`` or after ``max_iterations`` steps. Its
  only access to ``K`` is matrix-vector products, so it also serves the
  blocked and Nyström kernels; a deviation from the paper, whose generic
  solver's ``O(n_s³)`` cost and ``n_s²`` memory do not scale.

  ``'auto'`` (the default): the interior point when ``K`` is in memory and
  ``n_s <= 400``, projected gradient otherwise. Measured on the
  development machine (2 CPU cores shared with other jobs; medians of 7
  alternating calls; ``N(0, I_5)`` source, ``N(0.5, 0.8² I_5)`` target,
  ``B = 1000``, default ``ε``, median-heuristic ``γ``), the interior point
  took 1/1.4 to 1/2.2 of projected gradient's time at ``n_s = 150``–``400``
  and 0.94–1.2 times it at 500–700, in float32 and float64 (projected
  gradient ran 1,700–3,800 iterations); on a better-conditioned problem
  (1-D, ``γ = 2``) the ratios spread from 1/2.5 to 2.2. Accuracy, on 60
  problems of 20–500 points (1–5 dimensions; bounds active or not;
  ``ε = 0``; ``B = 1 − ε``; ``γ`` from ``1e-4`` to ``1e4``; duplicated
  points; ``n_t = 3 n_s``), float32, default tolerance, relative objective
  gap to a float64 interior-point solve at 8 units of rounding:
  ``'interior_point'`` within ``7.7e-7`` (median ``3.3e-8``; ``8e-6``
  where ``γ = 1e4``, ``K ≈ I`` and the objective nearly cancels), after
  4–20 Newton steps and 1–580 projected-gradient iterations (median 35);
  ``'projected_gradient'`` within ``1.6e-5`` (median ``8e-8``), after up
  to 4,650 iterations.

  Scale. ``kernel_approximation='exact'`` keeps ``K`` in memory when
  ``materialize_kernel`` is true (default: when ``n_s <= 4096``); otherwise
  every product ``Kv`` (and ``κ``) is computed in blocks of ``block_size``
  source rows, without ever forming ``K``: memory is ``O(block_size · n)``
  but each iteration costs ``n_s²`` kernel evaluations. Measured once on
  the development machine (2 CPU cores shared with other jobs, float32,
  ``n_s = n_t = 50,000`` in 5 dimensions, defaults, by
  ``scripts/benchmark_reweight.py``, with ``tolerance=1e-5``, the default
  then): one blocked product takes about
  3–3.6 s; the exact solve took 956 s (308 iterations, converged) with a
  peak of 0.45 GiB resident memory; the Nyström solve with 1,000 landmarks
  took 50 s (235 iterations) and 1.6 GiB, and its weights, scored with the
  exact kernel, were within ``1.0e-5`` (relative) of the exact optimum.
  ``kernel_approximation='nystroem'`` replaces
  ``k`` by its Nyström approximation (Williams and Seeger, NIPS 2001) on
  ``rank`` landmarks drawn with ``key`` from the pooled data,
  ``k̃(x, y) = k(x, Z) W⁺ k(Z, y)``, ``W = k(Z, Z)``, and solves KMM
  exactly for ``k̃`` (also in ``κ``) at ``O(n · rank)`` per iteration. Its
  cost in accuracy is that of ``k̃``. Measured on ``N(0, I)`` source and
  ``N(0.5, 0.8² I)`` target samples, with the objective of the *exact*
  kernel evaluated at the Nyström weights: 1-D and 5-D, 1,000–2,000
  points, 100–300 landmarks, within ``1.5e-5`` (relative) of the exact
  optimum, i.e. ``1e-4`` of the decrease from ``β = 1``; 20-D, 2,000
  points: ``1.2e-4`` with 300 landmarks, ``4e-5`` with 1,000. The weights
  themselves are less determined than the objective (the QP is
  ill-conditioned: Spearman correlations with the exact weights of 0.78 to
  0.995 in those runs). More landmarks are needed in high dimension or
  with a narrow kernel.

  Degenerate data (see :mod:`tljax.reweight._common`): the kernels are
  evaluated on the data translated by their pooled mean and scaled by a
  power of two (``γ`` scaled to match), so that data at ``1e30`` or
  ``1e-30`` give the weights of the same data at scale 1; duplicated points
  and constant features get the median heuristic's fallback (the median of
  the positive squared distances, or ``σ² = 1`` in the rescaled units when
  all points coincide) instead of ``σ = 0``. ``KMMResult.gamma`` is in the
  data's units, rounded to their dtype (``0`` if it underflows, clipped at
  the largest finite number).

  Args:
    source: ``(n_s, d)`` source examples (to be weighted).
    target: ``(n_t, d)`` target examples.
    gamma: the Gaussian kernel's ``γ > 0`` (finite in the data's dtype);
      ``None`` for the median heuristic.
    B: the upper bound ``B > 0`` on each weight; with ``ε`` it must leave a
      feasible point, ``B >= 1 − ε``, and ``n_s · B`` must be finite in the
      data's dtype.
    eps: ``ε`` in ``[0, 1)``; ``None`` for ``(√n_s − 1) / √n_s``.
    kernel_approximation: ``'exact'`` or ``'nystroem'``.
    rank: the number of Nyström landmarks, ``1 <= rank <= n_s + n_t``; only
      with ``'nystroem'``.
    materialize_kernel: with ``'exact'``, ``True`` to form ``K`` once,
      ``False`` for blocked products, ``None`` for ``n_s <= 4096``.
    solver: ``'auto'``, ``'interior_point'`` (forms ``K``, whatever
      ``n_s``: only with ``'exact'`` and ``materialize_kernel`` not
      ``False``) or ``'projected_gradient'``.
    block_size: source rows per block of the blocked products, >= 1.
    max_iterations: the cap on projected-gradient iterations, and on
      Newton steps (at most 100 in any case), >= 1.
    tolerance: the relative stopping tolerance of both solvers, > 0.
    power_iterations: power-iteration steps for ``L``, >= 1.
    key: a ``jax.random`` key for the median heuristic's subset and the
      Nyström landmarks; ``None`` for ``jax.random.key(0)``.

  Returns:
    A :class:`KMMResult`; its ``weights`` are the ``(n_s,)`` importance
    weights.

  Raises:
    ValueError: on an empty, non-matrix or non-finite ``source`` or
      ``target``, different feature dimensions, ``gamma <= 0``, ``B <= 0``,
      ``eps`` outside ``[0, 1)``, ``B < 1 − eps`` (no feasible weights), a
      hyper-parameter beyond the data's dtype, ``solver='interior_point'``
      without the exact kernel in memory, another malformed argument, or
      (naming ``gamma``) a kernel so degenerate that the solve gives NaN;
      the message names it.
  """
  source, target = check_domains(source, target)
  num_source = source.shape[0]
  dtype = source.dtype
  if gamma is not None:
    check_positive(gamma, "gamma")
    check_representable(gamma, "gamma", dtype)
  check_positive(B, "B")
  check_representable(B, "B", dtype, factor=num_source)
  if eps is None:
    eps = (math.sqrt(num_source) - 1.0) / math.sqrt(num_source)
  else:
    check_non_negative(eps, "eps")
    if not float(eps) < 1.0:
      raise ValueError(f"eps must lie in [0, 1), got {float(eps)}.")
  if float(B) < 1.0 - float(eps):
    raise ValueError(
        f"B must be >= 1 - eps = {1.0 - float(eps):.6g} for the weights to be able "
        f"to sum to n_s (1 - eps); got B={float(B)}."
    )
  kernel_approximation = check_choice(
      kernel_approximation, "kernel_approximation", KERNEL_APPROXIMATIONS
  )
  rank = check_int(rank, "rank", minimum=1)
  if kernel_approximation == "nystroem" and rank > num_source + target.shape[0]:
    raise ValueError(
        f"rank must be at most the number of pooled examples "
        f"{num_source + target.shape[0]}, got {rank}."
    )
  if materialize_kernel is not None and not isinstance(
      materialize_kernel, (bool, np.bool_)
  ):
    raise ValueError(
        f"materialize_kernel must be None, True or False, got {materialize_kernel!r}."
    )
  solver = check_choice(solver, "solver", SOLVERS)
  if solver == "interior_point" and (
      kernel_approximation != "exact" or materialize_kernel is False
  ):
    raise ValueError(
        "solver='interior_point' needs the exact kernel matrix in memory "
        "(kernel_approximation='exact', materialize_kernel None or True), got "
        f"kernel_approximation={kernel_approximation!r}, "
        f"materialize_kernel={materialize_kernel!r}."
    )
  block_size = check_int(block_size, "block_size", minimum=1)
  max_iterations = check_int(max_iterations, "max_iterations", minimum=1)
  check_positive(tolerance, "tolerance")
  check_representable(tolerance, "tolerance", dtype)
  power_iterations = check_int(power_iterations, "power_iterations", minimum=1)
  if key is not None:
    key = check_key(key, allow_none=True)
  if kernel_approximation == "nystroem":
    mode = "nystroem"
  elif materialize_kernel is None:
    mode = (
        "dense"
        if num_source <= DENSE_MAX_SOURCE or solver == "interior_point"
        else "blocked"
    )
  else:
    mode = "dense" if materialize_kernel else "blocked"
  if solver == "auto":
    solver = (
        "interior_point"
        if mode == "dense" and num_source <= INTERIOR_POINT_MAX_SOURCE
        else "projected_gradient"
    )

  # Fit on translated and rescaled data (see tljax.reweight._common): the
  # kernel, hence the weights, are unchanged, and γ is scaled to match.
  normalization, (source, target) = normalize(source, target)
  if gamma is None:
    median_key = jax.random.split(check_key(key, allow_none=True))[0]
    scaled_gamma = 1.0 / (
        2.0 * float(median_squared_distance(source, target, median_key))
    )
    gamma = normalization.inverse_gamma(scaled_gamma, dtype)
  else:
    scaled_gamma = normalization.gamma(gamma, dtype)
  # The key is split only when used (a split is a dispatch of its own).
  landmark_key = (
      jax.random.split(check_key(key, allow_none=True))[1]
      if mode == "nystroem"
      else None
  )
  with (
      one_blas_thread()
      if solver == "interior_point"
      else contextlib.nullcontext()
  ):
    weights, objective, iterations, converged = jax.block_until_ready(
        _kmm(
            source,
            target,
            np.asarray(scaled_gamma, dtype),
            np.asarray(B, dtype),
            np.asarray(eps, dtype),
            np.asarray(tolerance, dtype),
            landmark_key,
            mode=mode,
            solver=solver,
            block_size=min(block_size, num_source),
            rank=rank,
            max_iterations=max_iterations,
            power_iterations=power_iterations,
        )
    )
  check_finite_result(
      weights,
      "gamma: the fit produced NaN or infinity (the "
      "kernel is numerically degenerate; try the "
      "median-heuristic gamma=None or more landmarks).",
  )
  return KMMResult(
      weights,
      objective,
      jnp.asarray(np.asarray(gamma, dtype)),
      jnp.asarray(np.asarray(eps, dtype)),
      iterations,
      converged,
  )


# --- Solver ------------------------------------------------------------------------


@functools.partial(
    jax.jit,
    static_argnames=(
        "mode",
        "solver",
        "block_size",
        "rank",
        "max_iterations",
        "power_iterations",
    ),
)
def _kmm(
    source,
    target,
    gamma,
    upper,
    eps,
    tolerance,
    key,
    *,
    mode,
    solver,
    block_size,
    rank,
    max_iterations,
    power_iterations,
):
  num_source, num_target = source.shape[0], target.shape[0]
  dtype = source.dtype
  scale = num_source / num_target

  if mode == "nystroem":
    pooled = jnp.concatenate([source, target])
    landmarks = pooled[
        jax.random.choice(key, pooled.shape[0], (rank,), replace=False)
    ]
    eigenvalues, eigenvectors = jnp.linalg.eigh(
        gaussian_kernel(landmarks, landmarks, gamma)
    )
    # The pseudo-inverse square root of W, dropping eigenvalues at rounding level.
    cutoff = jnp.max(eigenvalues) * rank * jnp.finfo(dtype).eps
    keep = eigenvalues > cutoff
    inverse_root = eigenvectors * jnp.where(
        keep, jax.lax.rsqrt(jnp.where(keep, eigenvalues, 1.0)), 0.0
    )
    source_features = matmul(
        gaussian_kernel(source, landmarks, gamma), inverse_root
    )
    target_features = matmul(
        gaussian_kernel(target, landmarks, gamma), inverse_root
    )
    kappa = scale * matmul(source_features, jnp.sum(target_features, axis=0))

    def matvec(vector):
      return matmul(source_features, matmul(source_features.T, vector))

  else:
    kappa = scale * blocked_rows(
        lambda block: jnp.sum(gaussian_kernel(block, target, gamma), axis=1),
        source,
        block_size,
    )
    if mode == "dense":
      kernel = gaussian_kernel(source, source, gamma)

      def matvec(vector):
        return matmul(kernel, vector)

    else:

      def matvec(vector):
        return blocked_rows(
            lambda block: matmul(gaussian_kernel(block, source, gamma), vector),
            source,
            block_size,
        )

  lower_sum = num_source * (1.0 - eps)
  upper_sum = num_source * (1.0 + eps)

  def project(vector):
    return project_box_slab_unchecked(vector, upper, lower_sum, upper_sum)

  def objective(weights):
    return 0.5 * jnp.vdot(weights, matvec(weights)) - jnp.vdot(kappa, weights)

  def finish(start):
    return projected_gradient(
        matvec,
        kappa,
        project,
        start,
        tolerance,
        max_iterations=max_iterations,
        power_iterations=power_iterations,
        floor=jnp.finfo(dtype).tiny if mode == "nystroem" else 1.0,
    )

  if solver == "interior_point":
    weights, steps, _ = interior_point(
        kernel,
        kappa,
        upper,
        eps,
        tolerance,
        max_steps=min(max_iterations, INTERIOR_POINT_MAX_STEPS),
    )
    # The iterate, projected, is finished by projected gradient: the
    # weights of the active bounds (left at the tolerance's distance) go
    # to their bounds and the stopping rule is the same for both solvers.
    weights, count, converged = finish(project(weights))
    count = count + steps
  else:
    weights, count, converged = finish(project(jnp.ones((num_source,), dtype)))
  return weights, objective(weights), count, converged
