"""NCE: the negative conditional entropy of target labels given source labels."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import jax.scipy.special

from tljax.select._checks import check_labels, nan_if_out_of_range, to_array

__all__ = ["nce"]


def nce(
    source_labels: Any,
    target_labels: Any,
    *,
    num_source_classes: int | None = None,
    num_target_classes: int | None = None,
) -> jax.Array:
  r"""NCE, the negative conditional entropy ``−H(Y | Z)``.

  Tran, Nguyen and Hassner, "Transferability and hardness of supervised
  classification tasks", ICCV 2019. From ``N`` examples labelled with a source
  label ``z_i`` (e.g. the source model's predicted class) and a target label
  ``y_i``, the empirical joint ``P̂(y, z) = #{i: y_i = y, z_i = z} / N`` gives

    NCE = −H(Y | Z) = Σ_{y, z} P̂(y, z) log (P̂(y, z) / P̂(z)),

  with ``0 log 0 = 0``. It is at most 0, and 0 exactly when the source label
  determines the target label; for independent labels it is ``−H(Y)``.

  Args:
    source_labels: ``(N,)`` integer source labels in ``[0, num_source_classes)``.
    target_labels: ``(N,)`` integer target labels in ``[0, num_target_classes)``.
    num_source_classes: the number of source classes; ``None`` takes
      ``max(source_labels) + 1``. Needed under ``jax.jit``, where a label
      out of range makes the score NaN.
    num_target_classes: likewise for the target labels.

  Returns:
    The scalar NCE score (float32; float64 with ``jax_enable_x64``), in nats.

  Raises:
    ValueError: on a malformed argument; the message names it.
  """
  source_labels = to_array(source_labels, "source_labels")
  target_labels = to_array(target_labels, "target_labels")
  shape = jnp.shape(source_labels)
  if len(shape) != 1 or shape[0] < 1:
    raise ValueError(
        f"source_labels must have shape (num_examples,) with num_examples >= 1, got "
        f"shape {shape}."
    )
  num_examples = shape[0]
  source_labels, num_source_classes = check_labels(
      source_labels,
      "source_labels",
      length=num_examples,
      length_of="source_labels",
      num_classes=num_source_classes,
      num_classes_argument="num_source_classes",
      min_present=1,
  )
  target_labels, num_target_classes = check_labels(
      target_labels,
      "target_labels",
      length=num_examples,
      length_of="source_labels",
      num_classes=num_target_classes,
      num_classes_argument="num_target_classes",
      min_present=1,
  )
  score = _nce(
      source_labels,
      target_labels,
      num_source_classes=num_source_classes,
      num_target_classes=num_target_classes,
  )
  score = nan_if_out_of_range(score, source_labels, num_source_classes)
  return nan_if_out_of_range(score, target_labels, num_target_classes)


@functools.partial(
    jax.jit, static_argnames=("num_source_classes", "num_target_classes")
)
def _nce(
    source_labels, target_labels, *, num_source_classes, num_target_classes
):
  source_one_hot = jax.nn.one_hot(source_labels, num_source_classes)
  target_one_hot = jax.nn.one_hot(target_labels, num_target_classes)
  joint = source_one_hot.T @ target_one_hot / source_labels.shape[0]  # (Z, C)
  source_marginal = jnp.sum(joint, axis=1, keepdims=True)
  conditional = joint / jnp.where(source_marginal > 0, source_marginal, 1.0)
  return jnp.sum(jax.scipy.special.xlogy(joint, conditional))
