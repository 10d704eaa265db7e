r"""The gradient reversal layer and its warm-up schedule (DANN).

Ganin, Ustinova, Ajakan, Germain, Larochelle, Laviolette, Marchand and
Lempitsky, "Domain-adversarial training of neural networks", JMLR 2016,
Section 5: the reversal layer ``R_λ`` sits between the feature extractor and
the domain classifier; forward it is the identity, backward it multiplies
the gradient by ``−λ``::

  R_λ(x) = x,   dR_λ/dx = −λ I.

One minimisation of ``task_loss + domain_loss`` then trains the domain
classifier to tell the domains apart and, through the reversed gradient,
the features to confuse it (the saddle point of the paper's objective).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from tljax.align._arrays import (
    check_finite,
    check_finite_result,
    check_hyperparameter,
)
from tljax.checks import is_traced

__all__ = ["dann_coefficient", "gradient_reversal"]


def gradient_reversal(x: Any, coeff: float | jax.Array = 1.0) -> Any:
  r"""Identity forward; the gradient times ``−coeff`` backward.

  Ganin et al., JMLR 2016 (Section 5, the gradient reversal layer): use as
  ``domain_logits = discriminator(gradient_reversal(features, coeff))`` and
  add the discriminator's loss (:func:`tljax.align.domain_adversarial_loss`)
  to the task loss; ``coeff`` is usually :func:`dann_coefficient` of the
  training progress.

  Implemented with ``jax.custom_vjp``, so reverse-mode differentiation
  (``jax.grad``, ``jax.vjp``) sees the reversal; forward-mode
  (``jax.jvp``, ``jax.jacfwd``) is not supported by custom VJPs. ``coeff``
  gets a zero gradient: it is a schedule, not a parameter.

  Args:
    x: an array or a pytree of arrays (of real or bool dtype; finite, when
      concrete and floating).
    coeff: the reversal strength ``λ >= 0``; may be a traced scalar (e.g.
      computed from the step inside ``jax.jit``).

  Returns:
    ``x`` unchanged.

  Raises:
    ValueError: if ``x`` holds a leaf that is not a real (or bool) array or,
      when concrete, is not finite; or if ``coeff`` is not a scalar, or is a
      negative or non-finite number.
  """
  check_hyperparameter(coeff, "coeff")
  leaves, _ = jax.tree.flatten(x)
  for index, leaf in enumerate(leaves):
    argument = "x" if len(leaves) == 1 and leaf is x else f"x (leaf {index})"
    try:
      if isinstance(leaf, (str, bytes)):
        raise TypeError(leaf)
      dtype = jnp.result_type(leaf)
    except (TypeError, ValueError):
      raise ValueError(
          f"{argument} must be an array (or pytree of arrays) of numbers, got "
          f"{type(leaf).__name__}."
      ) from None
    if not (
        jnp.issubdtype(dtype, jnp.floating)
        or jnp.issubdtype(dtype, jnp.integer)
        or dtype == jnp.bool_
    ):
      raise ValueError(f"{argument} must hold real numbers, got dtype {dtype}.")
    if jnp.issubdtype(dtype, jnp.floating):
      check_finite(leaf, argument)
  return _reverse(x, jnp.asarray(coeff, dtype=jnp.float32))


@jax.custom_vjp
def _reverse(x, coeff):
  return x


def _reverse_forward(x, coeff):
  return x, coeff


def _reverse_backward(coeff, gradient):
  def reverse(leaf):
    if leaf.dtype == jax.dtypes.float0:  # integer inputs have no gradient
      return leaf
    return (-coeff * leaf).astype(leaf.dtype)

  return jax.tree.map(reverse, gradient), jnp.zeros_like(coeff)


_reverse.defvjp(_reverse_forward, _reverse_backward)


def dann_coefficient(
    progress: float | jax.Array,
    *,
    gamma: float = 10.0,
    high: float = 1.0,
    low: float = 0.0,
    max_progress: float | None = 1.0,
) -> jax.Array:
  r"""DANN's schedule for the reversal coefficient, from ``low`` to ``high``.

  Ganin et al., JMLR 2016 (with ``low = 0``, ``high = 1``)::

    λ_p = low + (high − low) (2 / (1 + exp(−γ p)) − 1)

  where ``p ∈ [0, 1]`` is the training progress (step / total steps) and
  ``γ = 10``. It suppresses the noisy domain signal early in training.
  (The Transfer-Learning-Library's ``WarmStartGradientReverseLayer`` uses the
  same curve with ``γ = 1`` and ``p = step / 1000``, unbounded: pass
  ``max_progress=None`` for it.)

  Args:
    progress: ``p``, a number in ``[0, max_progress]`` or a traced scalar.
    gamma: the steepness ``γ >= 0``.
    high: the final coefficient, >= 0.
    low: the initial coefficient, >= 0.
    max_progress: the largest ``progress`` accepted (1: the fraction of
      training done); ``None`` accepts any ``progress >= 0``.

  Returns:
    ``λ_p`` as a float32 scalar array.

  Raises:
    ValueError: if ``progress`` is not a scalar or is a number outside
      ``[0, max_progress]``, or ``gamma``, ``high`` or ``low`` is not a scalar, or is
      negative or not finite.
  """
  check_hyperparameter(progress, "progress")
  if max_progress is not None:
    check_hyperparameter(max_progress, "max_progress")
    if not is_traced(progress) and float(progress) > max_progress:
      raise ValueError(
          f"progress must lie in [0, {max_progress:g}] (the fraction of training "
          f"done), got {float(progress)}."
      )
  check_hyperparameter(gamma, "gamma")
  check_hyperparameter(high, "high")
  check_hyperparameter(low, "low")
  return check_finite_result(
      _dann_coefficient(progress, gamma, high, low),
      "dann_coefficient is not finite: high - low overflows the float type.",
  )


@jax.jit
def _dann_coefficient(progress, gamma, high, low):
  progress = jnp.asarray(progress, dtype=jnp.float32)
  return low + (high - low) * (2.0 / (1.0 + jnp.exp(-gamma * progress)) - 1.0)
