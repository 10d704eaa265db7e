"""The proxy A-distance between two feature distributions."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import optax

from tljax.checks import check_int, check_key, check_positive
from tljax.select._checks import as_parameter, check_features, max_abs_scale
from tljax.solvers import minimize_lbfgs

__all__ = ["proxy_a_distance"]


def proxy_a_distance(
    source_features: Any,
    target_features: Any,
    *,
    key: jax.Array,
    l2_regularization: float = 1e-3,
    max_iterations: int = 200,
) -> jax.Array:
  r"""The proxy A-distance ``2 (1 − 2 ε)`` of a linear domain classifier.

  Ben-David, Blitzer, Crammer and Pereira, "Analysis of representations for
  domain adaptation", NeurIPS 2007: the A-distance between two distributions
  is approximated by training a linear classifier to tell source from target
  examples and measuring its error ``ε`` on held-out examples::

    d̂_A = 2 (1 − 2 ε).

  It is about 0 when the two feature distributions cannot be told apart
  (``ε ≈ 1/2``; it can be slightly negative by chance) and 2 when they are
  linearly separable (``ε = 0``).

  Here: each domain is split at random (by ``key``) into halves, the first
  ``⌊n/2⌋`` examples for training and the rest for testing; the features are
  standardised with the pooled training halves' mean and standard deviation; the
  classifier is logistic regression, ``argmin_{w,b} Σ_i ω_i BCE(w·x_i + b,
  d_i) + λ/2 ‖w‖²`` (bias not penalised), fitted by L-BFGS. Deviation:
  each domain gets half the total weight ``ω`` in training, and ``ε`` is the
  balanced error (the mean of the two domains' error rates), so that unequal
  sample sizes do not make identical distributions look distinguishable; with
  equal sizes it is the plain error. Before standardising, the features are
  divided by their largest magnitude (no change to the result), so that
  features of magnitude 1e30 or 1e-30 do not overflow or underflow the
  standard deviation.

  Args:
    source_features: ``(N_s, D)`` features of source examples, ``N_s >= 2``.
    target_features: ``(N_t, D)`` features of target examples, ``N_t >= 2``.
    key: a ``jax.random`` key for the train/test split.
    l2_regularization: ``λ`` > 0, on standardised features; it keeps the
      weights finite when the domains are separable.
    max_iterations: L-BFGS iteration cap, >= 1.

  Returns:
    The scalar proxy A-distance in ``[−2, 2]`` (float32, or float64 for
    float64 features).

  Raises:
    ValueError: on a malformed argument; the message names it.
  """
  check_positive(l2_regularization, "l2_regularization")
  max_iterations = check_int(max_iterations, "max_iterations", minimum=1)
  source_features = check_features(source_features, "source_features")
  target_features = check_features(target_features, "target_features")
  if source_features.shape[1] != target_features.shape[1]:
    raise ValueError(
        f"source_features and target_features must have the same feature "
        f"dimension, got {source_features.shape[1]} and {target_features.shape[1]}."
    )
  key = check_key(key)
  dtype = jnp.promote_types(source_features.dtype, target_features.dtype)
  return _proxy_a_distance(
      source_features.astype(dtype),
      target_features.astype(dtype),
      key,
      as_parameter(l2_regularization, dtype, "l2_regularization"),
      max_iterations=max_iterations,
  )


def _split(features, key):
  """A random half of the rows for training and the rest for testing."""
  shuffled = jax.random.permutation(key, features, axis=0)
  half = features.shape[0] // 2
  return shuffled[:half], shuffled[half:]


@functools.partial(jax.jit, static_argnames=("max_iterations",))
def _proxy_a_distance(
    source_features, target_features, key, l2_regularization, *, max_iterations
):
  # Standardisation makes the result independent of the feature scale;
  # dividing by max |x| first keeps its squares in range (1e30, 1e-30).
  scale = max_abs_scale(jnp.concatenate([source_features, target_features]))
  source_features, target_features = (
      source_features / scale,
      target_features / scale,
  )
  source_key, target_key = jax.random.split(key)
  source_train, source_test = _split(source_features, source_key)
  target_train, target_test = _split(target_features, target_key)
  inputs = jnp.concatenate([source_train, target_train])
  domains = jnp.concatenate(
      [
          jnp.zeros(source_train.shape[0], inputs.dtype),
          jnp.ones(target_train.shape[0], inputs.dtype),
      ]
  )
  weights = jnp.concatenate(
      [
          jnp.full(
              source_train.shape[0], 0.5 / source_train.shape[0], inputs.dtype
          ),
          jnp.full(
              target_train.shape[0], 0.5 / target_train.shape[0], inputs.dtype
          ),
      ]
  )
  mean = jnp.mean(inputs, axis=0)
  scale = jnp.std(inputs, axis=0)
  scale = jnp.where(scale > 0, scale, 1.0)

  def standardise(features):
    return (features - mean) / scale

  inputs = standardise(inputs)

  def objective(parameters):
    weight, bias = parameters
    logits = inputs @ weight + bias
    loss = jnp.sum(
        weights * optax.sigmoid_binary_cross_entropy(logits, domains)
    )
    return loss + 0.5 * l2_regularization * jnp.sum(jnp.square(weight))

  initial = (
      jnp.zeros(inputs.shape[1], inputs.dtype),
      jnp.zeros((), inputs.dtype),
  )
  weight, bias = minimize_lbfgs(
      objective, initial, max_iterations=max_iterations
  )
  source_error = jnp.mean(standardise(source_test) @ weight + bias > 0)
  target_error = jnp.mean(standardise(target_test) @ weight + bias <= 0)
  error = 0.5 * (source_error + target_error)
  return (2 * (1 - 2 * error)).astype(inputs.dtype)
