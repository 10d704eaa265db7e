"""LEEP: the log expected empirical prediction of a source classifier."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from tljax.select._checks import (
    check_labels,
    check_probabilities,
    dot,
    nan_if_out_of_range,
)

__all__ = ["leep"]


def leep(
    source_probabilities: Any,
    target_labels: Any,
    *,
    num_target_classes: int | None = None,
) -> jax.Array:
  r"""LEEP, the average log-likelihood of the expected empirical predictor.

  Nguyen, Hassner, Seeger and Archambeau, "LEEP: A new measure to evaluate
  transferability of learned representations", ICML 2020. With ``θ(x_i)`` the
  source model's class distribution on target example ``i`` (``N`` examples,
  ``Z`` source classes) and ``y_i`` its target label:

    P̂(y, z) = 1/N Σ_{i: y_i = y} θ(x_i)_z,        (empirical joint)
    P̂(y | z) = P̂(y, z) / Σ_y' P̂(y', z),
    LEEP = 1/N Σ_i log Σ_z P̂(y_i | z) θ(x_i)_z.

  It is at most 0; higher is better. A source class that receives no
  probability mass has no ``P̂(y | z)``, and it multiplies ``θ(x_i)_z = 0``
  everywhere, so it is skipped; the inner sum is then always positive.

  Args:
    source_probabilities: ``(N, Z)`` source-class probabilities (softmax of
      the source head), rows summing to 1.
    target_labels: ``(N,)`` integer target labels in ``[0, num_target_classes)``.
    num_target_classes: the number of target classes; ``None`` takes
      ``max(target_labels) + 1``. Needed under ``jax.jit``, where a label
      out of range makes the score NaN.

  Returns:
    The scalar LEEP score (float32, or float64 for float64 inputs).

  Raises:
    ValueError: on a malformed argument; the message names it.
  """
  source_probabilities = check_probabilities(
      source_probabilities, "source_probabilities"
  )
  target_labels, num_target_classes = check_labels(
      target_labels,
      "target_labels",
      length=source_probabilities.shape[0],
      length_of="source_probabilities",
      num_classes=num_target_classes,
      num_classes_argument="num_target_classes",
      min_present=1,
  )
  score = _leep(
      source_probabilities, target_labels, num_target_classes=num_target_classes
  )
  return nan_if_out_of_range(score, target_labels, num_target_classes)


@functools.partial(jax.jit, static_argnames=("num_target_classes",))
def _leep(source_probabilities, target_labels, *, num_target_classes):
  num_examples = source_probabilities.shape[0]
  target_one_hot = jax.nn.one_hot(
      target_labels, num_target_classes, dtype=source_probabilities.dtype
  )
  joint = dot(target_one_hot.T, source_probabilities) / num_examples  # (C, Z)
  source_marginal = jnp.sum(joint, axis=0)
  conditional = joint / jnp.where(source_marginal > 0, source_marginal, 1.0)
  expected_prediction = jnp.sum(
      dot(source_probabilities, conditional.T) * target_one_hot, axis=1
  )
  return jnp.mean(jnp.log(expected_prediction))
