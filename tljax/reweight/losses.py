r"""Importance-weighted losses: empirical risks re-weighted towards the target.

Under covariate shift (the conditional ``p(y | x)`` shared, the input
densities ``p_s`` and ``p_t`` different), weighting each source example's
loss by ``w(x) = p_t(x) / p_s(x)`` makes the source average an unbiased
estimate of the target risk: ``E_s[w(x) ℓ(x, y)] = E_t[ℓ(x, y)]``.
Shimodaira, "Improving predictive inference under covariate shift by
weighting the log-likelihood function", J. Statist. Plann. Inference 2000
(weighted maximum likelihood), and Sugiyama, Krauledat and Müller,
"Covariate shift adaptation by importance weighted cross validation", JMLR
2007 (importance-weighted ERM) minimise::

  (1/n) Σ_i w_i ℓ(x_i, y_i).

Both losses here are that average over the ``n`` examples — divided by
``n``, not by ``Σ w_i``: it is the unbiased risk estimate, and with weights
of mean 1 (KLIEP, NNeW, KMM about) the two agree; dividing by ``Σ w_i``
instead only rescales the loss by ``1 / mean(w)``. They are pure, jit- and
grad-safe functions; shapes are checked always, values (weights finite and
non-negative, labels in range) when the arrays are concrete.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from tljax.align._arrays import (
    as_float,
    check_example_weights,
    check_finite,
    check_matrix,
    check_same_shape,
)
from tljax.checks import check_finite_result
from tljax.select._checks import check_labels, check_real_dtype

__all__ = ["weighted_cross_entropy", "weighted_squared_error"]


def weighted_cross_entropy(logits: Any, labels: Any, weights: Any) -> jax.Array:
  r"""The importance-weighted cross-entropy ``(1/n) Σ_i w_i (−log softmax(z_i)_{y_i})``.

  Args:
    logits: ``(n, num_classes)`` logits ``z_i``.
    labels: ``(n,)`` integer labels in ``[0, num_classes)``.
    weights: ``(n,)`` non-negative importance weights ``w_i``.

  Returns:
    The scalar loss (float32, or wider for wider logits).

  Raises:
    ValueError: on malformed shapes, non-finite logits, labels out of range
      or negative or non-finite weights (values checked when concrete), or
      (naming ``weights``) a concrete loss that overflows the dtype; the
      message names the argument.
  """
  logits = check_matrix(logits, "logits", columns="num_classes")
  check_finite(logits, "logits")
  num_examples, num_classes = logits.shape
  labels, _ = check_labels(
      labels,
      "labels",
      length=num_examples,
      length_of="logits",
      num_classes=num_classes,
      num_classes_argument="logits.shape[1]",
      min_present=1,
  )
  weights = check_example_weights(
      weights, "weights", length=num_examples, length_of="logits"
  ).astype(logits.dtype)
  log_probabilities = jax.nn.log_softmax(logits, axis=1)
  losses = -jnp.take_along_axis(log_probabilities, labels[:, None], axis=1)[
      :, 0
  ]
  return _check_finite_loss(jnp.mean(weights * losses), "weights")


def weighted_squared_error(
    predictions: Any, targets: Any, weights: Any
) -> jax.Array:
  r"""The importance-weighted squared error ``(1/n) Σ_i w_i ‖ŷ_i − y_i‖²``.

  For ``(n,)`` predictions the squared norm is the squared difference; for
  ``(n, k)`` it sums over the ``k`` outputs (no ½ factor).

  Args:
    predictions: ``(n,)`` or ``(n, k)`` predictions ``ŷ``.
    targets: regression targets ``y`` of the same shape.
    weights: ``(n,)`` non-negative importance weights ``w_i``.

  Returns:
    The scalar loss (float32 or wider).

  Raises:
    ValueError: on malformed or mismatched shapes, non-finite values or
      negative weights (values checked when concrete), or (naming
      ``predictions``) a concrete loss that overflows the dtype; the message
      names the argument.
  """
  predictions = _check_regression(predictions, "predictions")
  targets = _check_regression(targets, "targets")
  check_same_shape(predictions, targets, "predictions", "targets")
  num_examples = predictions.shape[0]
  weights = check_example_weights(
      weights, "weights", length=num_examples, length_of="predictions"
  )
  dtype = jnp.promote_types(
      jnp.promote_types(predictions.dtype, targets.dtype), weights.dtype
  )
  differences = predictions.astype(dtype) - targets.astype(dtype)
  squared = jnp.square(differences).reshape(num_examples, -1).sum(axis=1)
  return _check_finite_loss(
      jnp.mean(weights.astype(dtype) * squared), "predictions"
  )


def _check_finite_loss(loss: jax.Array, argument: str) -> jax.Array:
  """A concrete loss that overflowed its dtype raises (a traced one passes)."""
  return check_finite_result(
      loss,
      f"{argument}: the loss overflows {loss.dtype} (the inputs are finite "
      "but their weighted squared or log-probability terms are too large); "
      "rescale the weights or the values.",
  )


def _check_regression(values: Any, argument: str) -> jax.Array:
  try:
    array = jnp.asarray(values)
  except TypeError as error:
    raise ValueError(
        f"{argument} must be an array of numbers: {error}"
    ) from None
  if array.ndim not in (1, 2) or 0 in array.shape:
    raise ValueError(
        f"{argument} must have shape (n,) or (n, k) with positive sizes, got "
        f"shape {array.shape}."
    )
  check_real_dtype(array, argument)
  array = as_float(array)
  check_finite(array, argument)
  return array
