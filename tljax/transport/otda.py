r"""OTDA: optimal transport for domain adaptation, the mapping of the source.

Courty, Flamary, Tuia and Rakotomamonjy, "Optimal transport for domain
adaptation", TPAMI 2017: find a plan ``P`` between the source points
``x_i`` (with labels ``y_i``) and the target points ``z_j``, move each
source point to the barycentre of its images, train on the moved source.

* the plan: entropic (:func:`tljax.transport.entropic_plan`),
  or class-regularised (:mod:`tljax.transport.class_regularized`:
  :func:`~tljax.transport.sinkhorn_lpl1`, :func:`~tljax.transport.sinkhorn_l1l2`);
* the mapping of the source:
  :func:`barycentric_mapping`, ``x̂_i = Σ_j P_ij z_j / Σ_j P_ij``;
* new points, not seen when ``P`` was fitted: :func:`nearest_neighbor_mapping`
  (Ferradans, Papadakis, Peyré and Aujol, "Regularized discrete optimal
  transport", SIAM J. Imaging Sci. 2014: move ``x`` as its nearest fitted
  source point moved, ``x̂ = x̂_k + x − x_k``) or :func:`entropic_mapping`
  (Pooladian and Niles-Weed, "Entropic estimation of optimal transport
  maps", 2021: the barycentric map of the entropic plan extended to any
  ``x`` through the target potential).

The plans are ``n × m`` matrices held in memory.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from tljax.align._arrays import (
    check_hyperparameter,
    check_matrix,
    squared_distances,
)
from tljax.checks import to_array
from tljax.transport._checks import check_pair

__all__ = [
    "barycentric_mapping",
    "entropic_mapping",
    "nearest_neighbor_mapping",
]


def barycentric_mapping(
    plan: jax.Array, target_features: jax.Array
) -> jax.Array:
  r"""Each source point moved to the barycentre of its images under ``plan``.

  Courty et al., TPAMI 2017: ``x̂_i = Σ_j P_ij z_j / Σ_j P_ij``
  (with uniform weights ``Σ_j P_ij = 1/n``). A row of ``plan`` with no mass
  maps to 0, as in POT's ``BaseTransport.transform``.

  Args:
    plan: the ``(n, m)`` non-negative plan.
    target_features: the ``(m, dim)`` target points.

  Returns:
    The ``(n, dim)`` transported source points.

  Raises:
    ValueError: on a plan or features that are not finite matrices, or a
      plan whose number of columns is not the number of target points.
  """
  plan = check_matrix(
      plan, "plan", rows="num_source", columns="num_target", finite=True
  )
  target = check_matrix(target_features, "target_features", finite=True)
  if plan.shape[1] != target.shape[0]:
    raise ValueError(
        f"plan must have one column per row of target_features "
        f"({target.shape[0]}), got shape {plan.shape}."
    )
  return _barycentric_mapping(plan, target)


def nearest_neighbor_mapping(
    new_source_features: jax.Array,
    source_features: jax.Array,
    transported_source: jax.Array,
) -> jax.Array:
  r"""Out-of-sample mapping of new source points (Ferradans et al. 2014).

  Each new point ``x`` moves as its nearest fitted source point ``x_k``
  (squared Euclidean distance, the first on ties) moved::

    x̂ = x̂_k + x − x_k,

  POT's ``BaseTransport.transform`` for points other than the fitted ones
  (``out_of_sample_map='ferradans'``). A fitted point maps to its own
  ``x̂_k``.

  Args:
    new_source_features: ``(q, dim)`` points to map.
    source_features: the ``(n, dim)`` source points the plan was fitted on.
    transported_source: their ``(n, dim)`` images, e.g.
      :func:`barycentric_mapping` of the plan.

  Returns:
    The ``(q, dim)`` mapped points.

  Raises:
    ValueError: on matrices that are not finite, or of different ``dim``,
      or ``transported_source`` not of the shape of ``source_features``.
  """
  new_source, source = check_pair(
      new_source_features,
      source_features,
      "new_source_features",
      "source_features",
  )
  transported = check_matrix(
      transported_source, "transported_source", finite=True
  )
  if transported.shape != source.shape:
    raise ValueError(
        f"transported_source must have the shape of source_features "
        f"{source.shape}, got {transported.shape}."
    )
  return _nearest_neighbor_mapping(new_source, source, transported)


def entropic_mapping(
    new_source_features: jax.Array,
    target_features: jax.Array,
    target_potential: jax.Array,
    *,
    epsilon: float,
) -> jax.Array:
  r"""The entropic map of a squared-Euclidean Sinkhorn plan, at any point.

  Pooladian and Niles-Weed, "Entropic estimation of optimal transport
  maps", 2021 (and Seguy et al., ICLR 2018)::

    T(x) = Σ_j w_j(x) z_j,   w(x) = softmax_j((g_j − ‖x − z_j‖²) / ε),

  with ``g`` the target potential of :func:`tljax.transport.entropic_plan`
  (the same ``ε``). At a fitted source point it is
  :func:`barycentric_mapping` of the plan's row. POT's
  ``ot.da.SinkhornTransport`` with ``out_of_sample_map='continuous'`` (its
  default) maps every point so.

  Args:
    new_source_features: ``(q, dim)`` points to map.
    target_features: the ``(m, dim)`` target points of the plan.
    target_potential: the plan's ``(m,)`` target potential ``g``.
    epsilon: the plan's ``ε > 0``.

  Returns:
    The ``(q, dim)`` mapped points.

  Raises:
    ValueError: on matrices that are not finite or of different ``dim``, a
      potential not of shape ``(m,)`` or not finite, or a non-positive
      ``epsilon``.
  """
  new_source, target = check_pair(
      new_source_features,
      target_features,
      "new_source_features",
      "target_features",
  )
  check_hyperparameter(epsilon, "epsilon", positive=True)
  potential = to_array(target_potential, "target_potential")
  if potential.shape != (target.shape[0],):
    raise ValueError(
        f"target_potential must have shape ({target.shape[0]},) (one value "
        f"per row of target_features), got {potential.shape}."
    )
  potential = check_matrix(potential[None, :], "target_potential", finite=True)[
      0
  ].astype(target.dtype)
  return _entropic_mapping(new_source, target, potential, epsilon)


# --- Internals ---------------------------------------------------------------


@jax.jit
def _barycentric_mapping(plan, target):
  mass = jnp.sum(plan, axis=1, keepdims=True)
  return jnp.where(
      mass > 0, (plan @ target) / jnp.where(mass > 0, mass, 1.0), 0.0
  )


@jax.jit
def _nearest_neighbor_mapping(new_source, source, transported):
  nearest = jnp.argmin(squared_distances(new_source, source), axis=1)
  return transported[nearest] + new_source - source[nearest]


@jax.jit
def _entropic_mapping(new_source, target, potential, epsilon):
  weights = jax.nn.softmax(
      (potential[None, :] - squared_distances(new_source, target)) / epsilon,
      axis=1,
  )
  return weights @ target
