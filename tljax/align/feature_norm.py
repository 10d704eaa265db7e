r"""Adaptive feature norm (AFN): larger feature norms transfer better.

Xu, Li, Yang and Lin, "Larger norm more transferable: an adaptive feature
norm approach for unsupervised domain adaptation", ICCV 2019. The paper
finds that target features of smaller norm than the source's carry less
information to the classifier, and enlarges the feature norms of both
domains, either to a fixed radius (hard AFN, :func:`adaptive_feature_norm`)
or step by step (stepwise AFN, :func:`stepwise_adaptive_feature_norm`). Both
act on the task-specific (bottleneck) features; a recipe adds them, for
the source and the target batch, to the classification loss with a weight
``λ``.

Norms are computed so that an all-zero feature row has norm 0 and gradient
0 (rather than NaN), and on each row divided by a power of two (exactly),
so that squares of entries of order 1e30 (or 1e-30) in float32 neither
overflow nor underflow.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from tljax.align._arrays import (
    check_finite_result,
    check_hyperparameter,
    check_matrix,
    power_of_two_scale,
)

__all__ = ["adaptive_feature_norm", "stepwise_adaptive_feature_norm"]


def stepwise_adaptive_feature_norm(
    features: jax.Array, *, delta_r: float = 1.0
) -> jax.Array:
  r"""Stepwise AFN (SAFN): pull each feature norm ``Δr`` beyond its current value.

  Xu et al., ICCV 2019 (SAFN)::

    L = 1/n Σ_i (‖h_i(θ)‖₂ − (‖h_i(θ₀)‖₂ + Δr))²

  where ``θ₀`` are the current parameters, i.e. the target radius is the
  current norm *with its gradient stopped* plus ``Δr``. The value is always
  ``Δr²``; the gradient, ``−2Δr/n · h_i/‖h_i‖``, grows every norm by a step
  each iteration. ``Δr = 1`` as in the Transfer-Learning-Library's
  ``AdaptiveFeatureNorm``. The residual ``‖h_i(θ)‖ − ‖h_i(θ₀)‖`` is formed
  on the scaled norms before ``Δr`` is subtracted, so the value is ``Δr²``
  even where ``‖h‖ + Δr`` would round to ``‖h‖``.

  Args:
    features: ``(n, dim)`` features ``h``.
    delta_r: the residual ``Δr >= 0``.

  Returns:
    The scalar loss.

  Raises:
    ValueError: if ``features`` is not a non-empty finite matrix, ``delta_r``
      is negative, or (when concrete) ``Δr²`` overflows the float type.
  """
  check_hyperparameter(delta_r, "delta_r")
  return check_finite_result(
      _stepwise_adaptive_feature_norm(
          check_matrix(features, "features", finite=True), delta_r
      ),
      "stepwise_adaptive_feature_norm is not finite: delta_r squared overflows "
      "the float type.",
  )


def adaptive_feature_norm(features: jax.Array, *, radius: float) -> jax.Array:
  r"""Hard AFN (HAFN): pull the mean feature norm to a fixed radius ``R``.

  Xu et al., ICCV 2019 (HAFN)::

    L = (1/n Σ_i ‖h_i‖₂ − R)²

  (the square of the difference between the batch's *mean* norm and ``R``,
  as the authors' ``get_L2norm_loss_self_driven_hard``), applied to each
  domain's batch separately, so both mean norms meet at ``R``.

  Args:
    features: ``(n, dim)`` features ``h``.
    radius: ``R >= 0``.

  Returns:
    The scalar loss.

  Raises:
    ValueError: if ``features`` is not a non-empty finite matrix, ``radius``
      is negative, or (when concrete) the loss overflows the float type.
  """
  check_hyperparameter(radius, "radius")
  return check_finite_result(
      _adaptive_feature_norm(
          check_matrix(features, "features", finite=True), radius
      ),
      "adaptive_feature_norm is not finite: the gap between the norms of "
      "features and radius is too large (its square overflows the float "
      "type).",
  )


@jax.jit
def _stepwise_adaptive_feature_norm(features, delta_r):
  scaled_norms, scales = _scaled_row_norms(features)
  growth = (scaled_norms - jax.lax.stop_gradient(scaled_norms)) * scales
  return jnp.mean(jnp.square(growth - delta_r))


@jax.jit
def _adaptive_feature_norm(features, radius):
  scaled_norms, scales = _scaled_row_norms(features)
  return jnp.square(jnp.mean(scaled_norms * scales) - radius)


def _scaled_row_norms(features: jax.Array) -> tuple[jax.Array, jax.Array]:
  """``(‖h_i / s_i‖, s_i)``: row norms ``‖h_i‖ = ‖h_i / s_i‖ s_i``, ``s_i`` constant."""
  scales = power_of_two_scale(features, axis=1)
  squared = jnp.sum(jnp.square(features / scales[:, None]), axis=1)
  positive = squared > 0
  norms = jnp.where(positive, jnp.sqrt(jnp.where(positive, squared, 1.0)), 0.0)
  return norms, scales
