"""k-means in JAX: k-means++ seeding, Lloyd iterations, best of several starts.

Minimises the inertia ``Σ_n min_k ‖x_n − μ_k‖²`` (Lloyd 1982): alternately
assign every point to its nearest centroid and move every centroid to the
mean of its points, until the centroids move less than the tolerance. Each
start is seeded with greedy k-means++ (Arthur & Vassilvitskii, SODA 2007):
the first centroid is a uniformly drawn point, every next one the best (lowest
resulting inertia) of ``2 + ⌊ln k⌋`` candidates drawn with probability
proportional to the squared distance to the nearest centroid so far, as
scikit-learn's ``KMeans``. The starts run in parallel (``jax.vmap``) in one
compiled program, the Lloyd iterations in a ``lax.while_loop``; the start
with the lowest inertia is returned.

As scikit-learn, the tolerance is relative to the data's scale (``tol`` times
the mean per-dimension variance bounds the squared centroid shift of the
last iteration), a cluster that loses all its points is moved to the point
farthest from its centroid, and the returned assignments are those of the
returned centroids.
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from tljax.align._arrays import check_matrix, squared_distances
from tljax.checks import check_int, check_key, check_non_negative

__all__ = ["KMeansResult", "kmeans"]


class KMeansResult(NamedTuple):
  """What :func:`kmeans` returns (a pytree).

  Attributes:
    assignments: int32 ``(N,)``: each point's nearest centroid.
    centroids: ``(num_clusters, dim)``.
    inertia: the sum of squared distances of the points to their centroids.
    num_iters: the Lloyd iterations the returned start ran.
  """

  assignments: jax.Array
  centroids: jax.Array
  inertia: jax.Array
  num_iters: jax.Array


def _seed(key, features, num_clusters: int, num_local_trials: int):
  """Greedy k-means++: ``(num_clusters, dim)`` initial centroids."""
  num_points = features.shape[0]
  # All draws at once: one random call compiles faster than one per step.
  draws = jax.random.uniform(key, (num_clusters, num_local_trials))
  first = features[
      jnp.minimum((draws[0, 0] * num_points).astype(jnp.int32), num_points - 1)
  ]
  centroids = jnp.zeros((num_clusters, features.shape[1]), features.dtype)
  centroids = centroids.at[0].set(first)
  closest = squared_distances(first[None], features)[0]

  def add_centroid(index, carry):
    centroids, closest = carry
    # Candidates drawn with probability closest / Σ closest (inverse CDF);
    # uniformly when every point sits on a centroid already (fewer distinct
    # points than clusters).
    weights = jnp.where(jnp.sum(closest) > 0, closest, 1.0)
    cumulative = jnp.cumsum(weights)
    candidates = jnp.minimum(
        jnp.searchsorted(
            cumulative,
            draws[index] * cumulative[-1],
            side="right",
            method="compare_all",
        ),
        num_points - 1,
    )
    candidate_closest = jnp.minimum(
        closest[None], squared_distances(features[candidates], features)
    )
    best = jnp.argmin(jnp.sum(candidate_closest, axis=1))
    centroids = centroids.at[index].set(features[candidates[best]])
    return centroids, candidate_closest[best]

  centroids, _ = jax.lax.fori_loop(
      1, num_clusters, add_centroid, (centroids, closest)
  )
  return centroids


def _assign(features, centroids):
  distances = squared_distances(features, centroids)
  return jnp.argmin(distances, axis=1).astype(jnp.int32), distances


def _update(features, centroids, assignments, distances):
  """Means of the assigned points; empty clusters go to the farthest points."""
  num_clusters = centroids.shape[0]
  members = jax.nn.one_hot(assignments, num_clusters, dtype=features.dtype)
  counts = jnp.sum(members, axis=0)
  means = (members.T @ features) / jnp.maximum(counts, 1.0)[:, None]
  empty = counts == 0
  point_costs = jnp.take_along_axis(distances, assignments[:, None], axis=1)[
      :, 0
  ]
  _, farthest = jax.lax.top_k(point_costs, num_clusters)
  # The i-th empty cluster takes the i-th farthest point.
  rank = jnp.maximum(jnp.cumsum(empty) - 1, 0)
  return jnp.where(empty[:, None], features[farthest[rank]], means)


def _single_start(
    key, features, num_clusters, num_local_trials, max_iters, tolerance
):
  centroids = _seed(key, features, num_clusters, num_local_trials)

  def keep_going(carry):
    iteration, _, shift = carry
    return (iteration < max_iters) & (shift > tolerance)

  def lloyd_step(carry):
    iteration, centroids, _ = carry
    assignments, distances = _assign(features, centroids)
    updated = _update(features, centroids, assignments, distances)
    return iteration + 1, updated, jnp.sum(jnp.square(updated - centroids))

  num_iters, centroids, _ = jax.lax.while_loop(
      keep_going,
      lloyd_step,
      (jnp.int32(0), centroids, jnp.asarray(jnp.inf, features.dtype)),
  )
  assignments, _ = _assign(features, centroids)
  # Exact distances for the inertia (the expanded form loses precision).
  inertia = jnp.sum(jnp.square(features - centroids[assignments]))
  return KMeansResult(assignments, centroids, inertia, num_iters)


@functools.partial(
    jax.jit,
    static_argnames=(
        "num_clusters",
        "num_init",
        "max_iters",
        "num_local_trials",
    ),
)
def _kmeans(
    features, key, tol, *, num_clusters, num_init, max_iters, num_local_trials
):
  tolerance = tol * jnp.mean(jnp.var(features, axis=0))
  # Distances are ‖a‖² + ‖b‖² − 2 a·b: centred first (as scikit-learn does),
  # so that a large offset shared by all points does not cancel them away.
  mean = jnp.mean(features, axis=0)
  centred = features - mean
  starts = jax.vmap(
      lambda start_key: _single_start(
          start_key,
          centred,
          num_clusters,
          num_local_trials,
          max_iters,
          tolerance,
      )
  )(jax.random.split(key, num_init))
  best = jax.tree.map(lambda leaf: leaf[jnp.argmin(starts.inertia)], starts)
  return best._replace(centroids=best.centroids + mean)


def kmeans(
    features: Any,
    num_clusters: int,
    *,
    key: jax.Array,
    num_init: int = 10,
    max_iters: int = 300,
    tol: float = 1e-4,
    num_local_trials: int | None = None,
) -> KMeansResult:
  """Clusters the rows of ``features`` into ``num_clusters`` groups.

  Args:
    features: ``(N, dim)`` finite points (concrete: this function compiles
      its own program and is not meant to run inside ``jax.jit``).
    num_clusters: ``k``, in ``[1, N]``.
    key: a ``jax.random`` key; it fixes the seeding of every start.
    num_init: independent k-means++ starts; the one with the lowest inertia
      is returned (10, scikit-learn's classic default).
    max_iters: the most Lloyd iterations per start (300, scikit-learn's).
    tol: stop once the squared centroid shift of an iteration is at most
      ``tol`` times the mean per-dimension variance of ``features`` (1e-4,
      scikit-learn's); 0 iterates until no centroid moves.
    num_local_trials: candidates per greedy k-means++ step (default
      ``2 + ⌊ln k⌋``; 1 is plain k-means++).

  Returns:
    A :class:`KMeansResult`.

  Raises:
    ValueError: naming the argument, for features that are not a non-empty
      finite matrix, ``num_clusters`` outside ``[1, N]``, a bad key, or
      ``num_init``, ``max_iters``, ``num_local_trials`` < 1 or ``tol`` < 0.
  """
  features = check_matrix(features, "features", rows="num_points")
  if not bool(np.all(np.isfinite(np.asarray(features)))):
    raise ValueError("features must be finite (it holds NaN or infinity).")
  num_points = features.shape[0]
  num_clusters = check_int(num_clusters, "num_clusters", minimum=1)
  if num_clusters > num_points:
    raise ValueError(
        f"num_clusters must be at most the number of points "
        f"({num_points}), got {num_clusters}."
    )
  key = check_key(key)
  num_init = check_int(num_init, "num_init", minimum=1)
  max_iters = check_int(max_iters, "max_iters", minimum=1)
  tol = float(check_non_negative(tol, "tol"))
  if num_local_trials is None:
    num_local_trials = 2 + int(math.log(num_clusters))
  num_local_trials = check_int(num_local_trials, "num_local_trials", minimum=1)
  return _kmeans(
      features,
      key,
      jnp.asarray(tol, features.dtype),
      num_clusters=num_clusters,
      num_init=num_init,
      max_iters=max_iters,
      num_local_trials=num_local_trials,
  )
