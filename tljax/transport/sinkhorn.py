r"""Entropic optimal transport on ott-jax: the Sinkhorn plan and the Sinkhorn divergence.

For weights ``a`` (source, ``n``), ``b`` (target, ``m``), each summing to 1,
a cost matrix ``C`` and ``ε > 0``, the entropic OT problem (Cuturi,
"Sinkhorn distances: lightspeed computation of optimal transport", NeurIPS
2013) is::

  OT_ε(a, b) = min_{P 1 = a, Pᵀ 1 = b, P >= 0}  ⟨P, C⟩ + ε KL(P | a bᵀ),

whose solution is ``P_ij = exp((f_i + g_j − C_ij) / ε)`` for the dual
potentials ``f``, ``g``. It is solved by ott-jax's log-domain Sinkhorn
(Cuturi, Meng-Papaxanthos, Tian, Bunne, Davis and Teboul, "Optimal Transport
Tools (OTT)", 2022): alternate exact updates of ``g`` then ``f`` from zero,
stopped when the target marginal's L1 error ``‖Pᵀ 1 − b‖₁`` is below
``threshold`` (checked every 10 iterations, so ``max_iterations`` is rounded
up to a multiple of 10) or after ``max_iterations``. Its iterates are POT's
``ot.sinkhorn`` (``method='sinkhorn'``: ``v`` then ``u`` from uniform
scalings) written in the log domain, so the plans agree to rounding after
the same number of iterations; POT stops on the L2 error instead, checked
after iterations 1, 11, 21, ... The KL term differs from POT's and ott's
``−ε H(P)`` by a constant given the marginals, so the plan is the same;
``regularized_cost`` reports the KL form, which makes the debiased
divergence below non-negative.

Memory, mode by mode. :func:`sinkhorn` takes the ``n × m`` cost matrix and
returns the plan, so it is dense only. :func:`entropic_plan` and
:func:`sinkhorn_divergence` are dense by default (``batch_size=None``:
ott-jax's solver on the cost matrix, or its point clouds, holding ``n × m``
floats, and ``n × n`` and ``m × m`` for the divergence) and online with an
integer ``batch_size``: the log-sum-exp of every update recomputes the
squared Euclidean cost ``batch_size`` rows at a time, so no ``n × m`` array
exists (memory ``O((n + m) · batch_size)``; at ``n = m = 20,000`` in
float32 a dense cost is 1.6 GB, a 128-row block 10 MB). The online plan is
never formed: :class:`OnlineSinkhornResult` applies it to a matrix
(:meth:`~OnlineSinkhornResult.apply_plan`, e.g. for the barycentric
mapping). The online iterates are the dense ones (same updates from zero,
same 10-iteration error checks, same stopping rule), so the two modes agree
to rounding after the same number of iterations (the online solver is in
:mod:`tljax.transport.online`).

ott's own online point clouds (``PointCloud(..., batch_size=...)``) would
do the same, but fail on JAX >= 0.9 in ott-jax 0.6.0: ``utils.batched_vmap``
calls ``jax.interpreters.batching.is_vmappable``, which JAX removed
(``AttributeError`` at the first Sinkhorn update, whatever the cost
function; ott-jax issue 700, fixed on its main branch by pull request 701,
not yet released), hence the online mode here. (Replacing ``ott.utils``'s
``batching`` by an object whose ``is_vmappable`` returns ``False``, what
JAX's returned for arrays, makes ott's mode run and agree with its dense
one, but it patches another library's module for the whole process, so
tljax does not.)
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from ott.geometry import geometry, pointcloud
from ott.problems.linear import linear_problem
from ott.solvers.linear import sinkhorn as ott_sinkhorn
from ott.tools import sinkhorn_divergence as ott_divergence

from tljax.align._arrays import (
    check_finite_result,
    check_hyperparameter,
    check_matrix,
    squared_distances,
)
from tljax.checks import check_int
from tljax.transport._checks import (
    check_iterations,
    check_pair,
    check_threshold,
    check_weights,
)
from tljax.transport.kernel import solve_kernel
from tljax.transport.result import SinkhornResult, sinkhorn_result
from tljax.transport.online import (
    OnlineSinkhornResult,
    _online_regularized_cost,
    _sizes,
    _solve_online,
)

__all__ = [
    "DEFAULT_RELATIVE_EPSILON",
    "OnlineSinkhornResult",
    "SOLVERS",
    "SinkhornResult",
    "entropic_plan",
    "sinkhorn",
    "sinkhorn_divergence",
]

#: The dense solvers of :func:`sinkhorn` and :func:`entropic_plan`.
SOLVERS = ("log", "kernel")

#: ``epsilon=None`` of :func:`sinkhorn_divergence`: this fraction of the mean
#: source-target squared distance (ott-jax's default scale, 0.05).
DEFAULT_RELATIVE_EPSILON = 0.05


def sinkhorn(
    cost_matrix: jax.Array,
    *,
    epsilon: float,
    source_weights: jax.Array | None = None,
    target_weights: jax.Array | None = None,
    threshold: float = 1e-6,
    max_iterations: int = 1000,
    solver: str = "log",
) -> SinkhornResult:
  r"""The entropic OT plan for a cost matrix (Cuturi 2013), as POT's ``ot.sinkhorn``.

  Solves ``min ⟨P, C⟩ + ε KL(P | a bᵀ)`` over couplings of ``a`` and ``b``.
  ``solver="log"`` (the default): ott-jax's log-domain Sinkhorn (module
  docstring); jittable (the iteration limits are static) and
  differentiable (ott's implicit differentiation of the fixed point).
  ``solver="kernel"``: scaling iterations on a fixed kernel, two
  matrix-vector products per iteration instead of an exponential per entry,
  with a log-domain warm start, absorption and over-relaxation
  (:mod:`tljax.transport.kernel`); same plan to the threshold, several
  times faster on a CPU (docs/benchmarks.md), jittable, but a constant for
  gradients.

  Args:
    cost_matrix: the ``(n, m)`` cost ``C``.
    epsilon: the entropic regularisation ``ε > 0`` (POT's ``reg``), in the
      units of ``C``.
    source_weights: ``(n,)`` non-negative weights ``a`` (scaled to sum 1);
      ``None`` for uniform.
    target_weights: ``(m,)`` weights ``b``, likewise.
    threshold: stop when ``‖Pᵀ 1 − b‖₁ < threshold`` (> 0). Float32 reaches
      about 1e-7 at best; POT's default 1e-9 needs float64.
    max_iterations: the most iterations (rounded up to a multiple of 10).
    solver: ``"log"`` or ``"kernel"`` (above).

  Returns:
    A :class:`SinkhornResult`.

  Raises:
    ValueError: on a cost matrix that is not a finite ``(n, m)`` matrix,
      weights of the wrong shape, negative or all zero, a non-positive
      ``epsilon`` or ``threshold``, ``max_iterations < 1``, or an unknown
      ``solver``.
  """
  cost_matrix = check_matrix(
      cost_matrix,
      "cost_matrix",
      rows="num_source",
      columns="num_target",
      finite=True,
  )
  check_hyperparameter(epsilon, "epsilon", positive=True)
  solve = _dense_solver(solver)
  source_weights, target_weights = _check_marginals(
      source_weights, target_weights, *cost_matrix.shape, cost_matrix.dtype
  )
  result = solve(
      cost_matrix,
      source_weights,
      target_weights,
      epsilon,
      threshold=check_threshold(threshold),
      max_iterations=check_iterations(max_iterations, "max_iterations"),
  )
  # The potentials are -inf at zero-weight points, by design.
  check_finite_result(
      (result.plan, result.regularized_cost),
      "sinkhorn is not finite: epsilon is too small for the scale of "
      "cost_matrix in this float type; increase epsilon or rescale the cost.",
  )
  return result


def entropic_plan(
    source_features: jax.Array,
    target_features: jax.Array,
    *,
    epsilon: float,
    source_weights: jax.Array | None = None,
    target_weights: jax.Array | None = None,
    threshold: float = 1e-6,
    max_iterations: int = 1000,
    batch_size: int | None = None,
    solver: str = "log",
) -> SinkhornResult | OnlineSinkhornResult:
  r""":func:`sinkhorn` with the squared Euclidean cost ``C_ij = ‖x_i − y_j‖²``.

  The plan of OTDA (Courty, Flamary, Tuia and Rakotomamonjy, "Optimal
  transport for domain adaptation", TPAMI 2017): POT's
  ``ot.da.SinkhornTransport`` with ``metric='sqeuclidean'``, ``norm=None``
  and uniform weights.

  Two modes. Dense (``batch_size=None``): :func:`sinkhorn`'s ``solver`` on
  the ``n × m`` cost matrix, returning the plan (a :class:`SinkhornResult`). Online
  (``batch_size`` an int): the same iterates (module docstring) with the
  cost recomputed ``batch_size`` rows at a time inside each log-sum-exp,
  so memory is ``O((n + m) · batch_size)``, never ``n × m``; it returns an
  :class:`OnlineSinkhornResult`, whose :meth:`~OnlineSinkhornResult.apply_plan`
  applies the plan without forming it. Each iteration then recomputes the
  cost twice (``2 n m dim`` more multiply-adds), the price of the memory.
  The online mode is jittable but not differentiable (use
  :func:`sinkhorn_divergence` for a loss).

  Args:
    source_features: ``(n, dim)`` source points.
    target_features: ``(m, dim)`` target points.
    epsilon: ``ε > 0`` (POT's ``reg_e``), in squared feature units.
    source_weights, target_weights, threshold, max_iterations, solver: as
      :func:`sinkhorn` (the online mode has the log-domain solver only).
    batch_size: ``None`` for the dense mode, else the rows (an int >= 1)
      of the cost recomputed at a time in the online mode, which holds
      a few ``batch_size × max(n, m)`` blocks at once. Blocks that fit
      the CPU's cache run fastest: on 2 CPU cores at ``n = m = 5,000``,
      ``dim = 64``, 128 rows made a pass as fast as the dense mode's, 1,024
      rows 25 % slower.

  Returns:
    A :class:`SinkhornResult` (dense) or :class:`OnlineSinkhornResult`
    (online).

  Raises:
    ValueError: as :func:`sinkhorn`, on features that are not finite
      ``(rows, dim)`` matrices of the same ``dim``, on a ``batch_size``
      that is neither ``None`` nor an int >= 1, and on ``solver="kernel"``
      with a ``batch_size``.
  """
  source, target = check_pair(
      source_features, target_features, "source_features", "target_features"
  )
  if batch_size is None:
    return sinkhorn(
        _squared_euclidean_cost(source, target),
        epsilon=epsilon,
        source_weights=source_weights,
        target_weights=target_weights,
        threshold=threshold,
        max_iterations=max_iterations,
        solver=solver,
    )
  batch_size = check_int(batch_size, "batch_size", minimum=1)
  if check_solver(solver) != "log":
    raise ValueError(
        f"solver={solver!r} is dense only; the online mode (batch_size="
        f"{batch_size}) has the log-domain solver: pass solver='log' or "
        "batch_size=None"
    )
  check_hyperparameter(epsilon, "epsilon", positive=True)
  source_weights, target_weights = _check_marginals(
      source_weights, target_weights, *_sizes(source, target), source.dtype
  )
  return check_finite_result(
      _solve_online(
          source,
          target,
          source_weights,
          target_weights,
          jnp.asarray(epsilon, source.dtype),
          threshold=check_threshold(threshold),
          max_iterations=check_iterations(max_iterations, "max_iterations"),
          batch_size=batch_size,
      ),
      "entropic_plan is not finite: epsilon is too small for the scale of "
      "the features in this float type; increase epsilon.",
  )


def sinkhorn_divergence(
    source_features: jax.Array,
    target_features: jax.Array,
    *,
    epsilon: float | None = None,
    source_weights: jax.Array | None = None,
    target_weights: jax.Array | None = None,
    threshold: float = 1e-4,
    max_iterations: int = 1000,
    batch_size: int | None = None,
    normalize: bool = False,
) -> jax.Array:
  r"""The debiased Sinkhorn divergence between source and target features.

  Genevay, Peyré and Cuturi, "Learning generative models with Sinkhorn
  divergences", AISTATS 2018; in the form of Feydy, Séjourné, Vialard,
  Amari, Trouvé and Peyré, "Interpolating between optimal transport and
  MMD using Sinkhorn divergences", AISTATS 2019::

    S_ε(α, β) = OT_ε(α, β) − ½ OT_ε(α, α) − ½ OT_ε(β, β),

  ``OT_ε`` the entropic cost ``⟨P, C⟩ + ε KL(P | a bᵀ)`` with
  ``C_ij = ‖x_i − y_j‖²`` (Genevay et al. debias the transport cost
  ``⟨P, C⟩`` alone; Feydy et al. prove that with the KL term the divergence
  is non-negative, zero only when ``α = β``, and convex in each argument).
  It interpolates between OT (``ε → 0``) and an MMD with kernel ``−‖x − y‖``
  (``ε → ∞``). Computed by ott-jax's ``sinkhorn_divergence`` (the symmetric
  terms with Feydy et al.'s averaged updates), with ``ε`` shared by the
  three terms. Jittable and differentiable in the features (ott's implicit
  differentiation), so it serves as an alignment loss like
  :func:`tljax.align.mmd`:
  ``cross_entropy + trade_off * sinkhorn_divergence(source, target)``.

  Online mode (``batch_size`` an int): the cross term is solved as in
  :func:`entropic_plan`'s online mode, the symmetric terms with Feydy et
  al.'s averaged updates (as ott's), memory ``O((n + m) · batch_size)``;
  each ``OT_ε`` is the dual objective at the solved potentials (as ott's)
  and is differentiated by Danskin's theorem there (``∂/∂x_i =
  2 Σ_j P_ij (x_i − y_j)``, ``∂/∂a_i`` the potential, ``∂/∂ε =
  KL(P | a bᵀ)``), applying the plan block by block, so the gradient needs
  no ``n × m`` matrix either. Value and gradients agree with the dense
  mode's to the solvers' tolerance.

  At a solver's threshold the value is exact only to the solvers'
  tolerance: identical inputs give ``|S| ≲ ε · threshold``, not exactly 0,
  and the value is not clipped at 0 (clipping would stop the gradient).

  ``normalize=True`` divides ``S_ε`` by the weighted mean squared distance
  ``Σ_ij a_i b_j ‖x_i − y_j‖²`` (gradient stopped): the divergence in units
  of the batch's own scale, a number of order 0.01–1 whatever the feature
  width or magnitude (with the default ``ε`` it equals ``S`` of the features
  divided by their root mean squared distance). Not in Genevay et al. or
  Feydy et al., whose inputs have a fixed scale; as an alignment loss on
  learned features the raw value (hundreds for 256-d LeNet features) would
  outweigh the cross-entropy, as TLlib's detached kernel bandwidths keep
  DAN's MMD bounded.

  Args:
    source_features: ``(n, dim)`` source features.
    target_features: ``(m, dim)`` target features.
    epsilon: ``ε > 0`` in squared feature units; ``None`` for
      :data:`DEFAULT_RELATIVE_EPSILON` (0.05) times the weighted mean of
      ``‖x_i − y_j‖²`` (computed in ``O((n + m) dim)``, gradient stopped, so
      the loss moves the features, not ``ε``).
    source_weights: ``(n,)`` non-negative weights (scaled to sum 1);
      ``None`` for uniform.
    target_weights: ``(m,)`` weights, likewise.
    threshold: each Sinkhorn solve stops when its marginal's L1 error is
      below it (> 0).
    max_iterations: the most iterations of each solve (rounded up to a
      multiple of 10).
    batch_size: ``None`` for the dense mode (ott-jax's point clouds, which
      hold the ``n × m``, ``n × n`` and ``m × m`` costs), else the rows (an
      int >= 1) of the cost recomputed at a time in the online mode.
    normalize: divide by the (gradient-stopped) weighted mean squared
      source-target distance; see above.

  Returns:
    The scalar ``S_ε`` (float32 or wider), over the mean squared distance
    when ``normalize``.

  Raises:
    ValueError: on features that are not finite, non-empty ``(rows, dim)``
      matrices of the same ``dim``, bad weights (wrong shape, negative,
      all zero), a non-positive ``epsilon`` or ``threshold``,
      ``max_iterations < 1``, a ``batch_size`` that is neither ``None``
      nor an int >= 1, or (when concrete) a result that is not finite.
  """
  source, target = check_pair(
      source_features, target_features, "source_features", "target_features"
  )
  if batch_size is not None:
    batch_size = check_int(batch_size, "batch_size", minimum=1)
  if epsilon is not None:
    check_hyperparameter(epsilon, "epsilon", positive=True)
  source_weights, target_weights = _check_marginals(
      source_weights,
      target_weights,
      source.shape[0],
      target.shape[0],
      source.dtype,
      source_argument="source_weights",
      target_argument="target_weights",
  )
  scale = (
      _mean_squared_distance(source, target, source_weights, target_weights)
      if epsilon is None or normalize
      else None
  )
  if epsilon is None:
    epsilon = DEFAULT_RELATIVE_EPSILON * scale
  divergence = _divergence(
      source,
      target,
      source_weights,
      target_weights,
      jnp.asarray(epsilon, source.dtype),
      threshold=check_threshold(threshold),
      max_iterations=check_iterations(max_iterations, "max_iterations"),
      batch_size=batch_size,
  )
  if normalize:
    divergence = divergence / scale
  return check_finite_result(
      divergence,
      "sinkhorn_divergence is not finite: epsilon is too small for the scale "
      "of the features in this float type; increase epsilon.",
  )


# --- Internals ---------------------------------------------------------------


def _check_marginals(
    source_weights: Any,
    target_weights: Any,
    num_source: int,
    num_target: int,
    dtype: Any,
    *,
    source_argument: str = "source_weights",
    target_argument: str = "target_weights",
) -> tuple[jax.Array, jax.Array]:
  return (
      check_weights(
          source_weights,
          source_argument,
          length=num_source,
          length_of="the source",
          dtype=dtype,
      ),
      check_weights(
          target_weights,
          target_argument,
          length=num_target,
          length_of="the target",
          dtype=dtype,
      ),
  )


@functools.partial(jax.jit, static_argnames=("threshold", "max_iterations"))
def _solve(
    cost_matrix: jax.Array,
    source_weights: jax.Array,
    target_weights: jax.Array,
    epsilon: Any,
    *,
    threshold: float,
    max_iterations: int,
) -> SinkhornResult:
  """ott-jax's Sinkhorn on checked arrays (shared with the OTDA solvers)."""
  problem = linear_problem.LinearProblem(
      geometry.Geometry(cost_matrix=cost_matrix, epsilon=epsilon),
      a=source_weights,
      b=target_weights,
  )
  output = ott_sinkhorn.Sinkhorn(
      threshold=threshold, max_iterations=max_iterations
  )(problem)
  return sinkhorn_result(
      output.matrix,
      output.f,
      output.g,
      cost_matrix,
      source_weights,
      target_weights,
      epsilon,
      output.converged,
      output.n_iters,
  )


def check_solver(solver: Any) -> str:
  """``solver`` if it names one of :data:`SOLVERS`, else a ``ValueError``."""
  if not isinstance(solver, str) or solver not in SOLVERS:
    raise ValueError(f"solver must be one of {list(SOLVERS)}, got {solver!r}")
  return solver


def _dense_solver(solver: Any):
  return {"log": _solve, "kernel": solve_kernel}[check_solver(solver)]


#: ``‖x_i − y_j‖²`` for every row pair, jitted (eagerly, each operation of
#: it would compile on its own).
_squared_euclidean_cost = jax.jit(squared_distances)


@jax.jit
def _mean_squared_distance(source, target, source_weights, target_weights):
  """``Σ_ij a_i b_j ‖x_i − y_j‖²`` without the ``n × m`` matrix, gradient stopped.

  Floored at the smallest normal float, so identical single points give a
  tiny ``ε`` rather than 0.
  """
  source, target = jax.lax.stop_gradient((source, target))
  source_mean = source_weights @ source
  target_mean = target_weights @ target
  # Centred second moments plus the squared distance of the means: no
  # cancellation between large norms.
  value = (
      source_weights @ jnp.sum(jnp.square(source - source_mean), axis=1)
      + target_weights @ jnp.sum(jnp.square(target - target_mean), axis=1)
      + jnp.sum(jnp.square(source_mean - target_mean))
  )
  return jnp.maximum(value, np.finfo(source.dtype).tiny)


@functools.partial(
    jax.jit, static_argnames=("threshold", "max_iterations", "batch_size")
)
def _divergence(
    source,
    target,
    source_weights,
    target_weights,
    epsilon,
    *,
    threshold,
    max_iterations,
    batch_size,
):
  if batch_size is not None:

    def solve(first, second, first_weights, second_weights, symmetric):
      return _online_regularized_cost(
          first,
          second,
          first_weights,
          second_weights,
          epsilon,
          threshold,
          max_iterations,
          batch_size,
          symmetric,
      )

    return (
        solve(source, target, source_weights, target_weights, False)
        - (
            solve(source, source, source_weights, source_weights, True)
            + solve(target, target, target_weights, target_weights, True)
        )
        / 2
    )
  value, _ = ott_divergence.sinkhorn_divergence(
      pointcloud.PointCloud,
      source,
      target,
      a=source_weights,
      b=target_weights,
      epsilon=epsilon,
      solve_kwargs={"threshold": threshold, "max_iterations": max_iterations},
  )
  return value
