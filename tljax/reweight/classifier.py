r"""Density ratios from a probabilistic domain classifier."""

from __future__ import annotations

from typing import Any

import jax

from tljax.checks import check_int, check_positive
from tljax.reweight._common import check_domains, check_points
from tljax.select.validators import domain_density_ratios

__all__ = ["classifier_density_ratio"]


def classifier_density_ratio(
    source: Any,
    target: Any,
    *,
    evaluation: Any = None,
    l2_regularization: float = 1e-3,
    max_iterations: int = 200,
) -> jax.Array:
  r"""Importance weights ``(n_s / n_t) · p(t | x) / p(s | x)`` of a logistic domain classifier.

  By Bayes' rule a classifier that tells source (``d = s``) from target
  (``d = t``) examples, fitted on ``n_s`` and ``n_t`` of them, gives the
  density ratio (Qin, "Inferences for case-control and semiparametric
  two-sample density ratio models", Biometrika 1998; Bickel, Brückner and
  Scheffer, "Discriminative learning under covariate shift", JMLR 2009)::

    p_t(x) / p_s(x) = (n_s / n_t) · p(t | x) / p(s | x) = (n_s / n_t) · exp(z(x)),

  ``z(x)`` the classifier's logit. The classifier is
  :func:`tljax.select.domain_density_ratios`'s: L2-regularised logistic
  regression on features standardised with the pooled mean and standard
  deviation, fitted by L-BFGS (in JAX). It is linear in ``x``, hence exact
  when the log ratio is linear (e.g. Gaussians with a shared covariance);
  for other shifts pass a feature map of ``x`` (e.g. with squares, which
  makes it exact for any two Gaussians). The ratios are not clipped: nearly
  separable domains give huge weights, and a ratio that overflows the dtype
  (``e^88`` in float32) raises a ``ValueError`` naming
  ``l2_regularization`` rather than returning infinity. The data are
  divided by their largest magnitude before the classifier's own
  standardisation (which makes no difference but keeps data at ``1e30``
  or ``1e-30`` from overflowing or underflowing the standard deviations).

  Args:
    source: ``(n_s, d)`` source examples, ``n_s >= 2``.
    target: ``(n_t, d)`` target examples, ``n_t >= 2``.
    evaluation: ``(m, d)`` points at which to evaluate the ratio; ``None``
      for ``source`` (the importance weights).
    l2_regularization: ``λ > 0`` on the standardised weights.
    max_iterations: the L-BFGS iteration cap, >= 1.

  Returns:
    ``(n_s,)`` (or ``(m,)``) non-negative weights.

  Raises:
    ValueError: on fewer than 2 examples in a domain, different feature
      dimensions, non-finite values, ``λ <= 0``, a malformed argument or
      ratios that overflow the dtype; the message names it.
  """
  source, target = check_domains(
      source,
      target,
      min_rows=2,
      why="the classifier needs examples of each domain",
  )
  if evaluation is not None:
    evaluation = check_points(
        evaluation, "evaluation", source.shape[1], source.dtype
    )
  check_positive(l2_regularization, "l2_regularization")
  max_iterations = check_int(max_iterations, "max_iterations", minimum=1)
  # domain_density_ratios divides the data by its largest magnitude before
  # standardising it (so data at 1e30 or 1e-30 stays in range) and raises,
  # naming l2_regularization, when the ratios overflow.
  return domain_density_ratios(
      source,
      target,
      evaluation_features=evaluation,
      l2_regularization=l2_regularization,
      max_iterations=max_iterations,
  )
