r"""Batch Spectral Shrinkage (BSS): shrink a feature batch's smallest singular values.

Chen et al., NeurIPS 2019: see :func:`batch_spectral_shrinkage`. Its
alignment cousin, Batch Spectral Penalization, is
:func:`tljax.align.batch_spectral_penalization`.
"""

from __future__ import annotations


import jax
import jax.numpy as jnp

from tljax.checks import check_int, check_non_negative
from tljax.params.regularizers._checks import (
    as_float,
    check_array,
    check_finite_result,
)

__all__ = ["batch_spectral_shrinkage"]


def batch_spectral_shrinkage(
    features: jax.Array, *, k: int = 1, eta: float = 0.001
) -> jax.Array:
  r"""Batch Spectral Shrinkage (BSS): shrink the smallest singular values.

  Chen, Wang, Fu, Long and Wang, "Catastrophic forgetting meets negative
  transfer: batch spectral shrinkage for safe transfer learning",
  NeurIPS 2019::

    L_bss(F) = η Σ_{i=1}^{k} σ²_{−i}

  where ``σ_{−i}`` is the ``i``-th smallest singular value of the
  ``(batch, dim)`` feature matrix ``F`` of a mini-batch. Small singular
  values carry the spectral components that transfer worst; shrinking them
  limits negative transfer. Defaults ``k=1``, ``η=0.001`` as in the authors'
  code (thuml/Batch-Spectral-Shrinkage, ``BSS.py``: ``0.001*BSS`` with one
  singular value; also the Transfer-Learning-Library's defaults), which
  applies it to the pooled backbone features of each batch (in tljax,
  ``ModelOutput.backbone_features``).

  The singular values come from ``jnp.linalg.svd(..., compute_uv=False)``,
  whose derivative ``dσ_i = u_iᵀ dF v_i`` is well defined even when singular
  values repeat (the singular-vector derivatives, which are not, are not
  needed), and which keeps the small singular values accurate, which the
  eigenvalues of ``FᵀF`` would not in float32. ``F`` has
  ``min(batch, dim)`` singular values.

  Args:
    features: ``(batch, dim)`` features.
    k: how many of the smallest singular values to penalise,
      ``1 <= k <= min(batch, dim)``.
    eta: the trade-off weight, >= 0.

  Returns:
    The scalar penalty (float32 or wider).

  Raises:
    ValueError: if ``features`` is not a non-empty real matrix or, when
      concrete, not finite, ``k`` is out of range, ``eta`` negative, or the
      concrete penalty overflows.
  """
  features = check_array(features, "features")
  shape = tuple(features.shape)
  if len(shape) != 2 or 0 in shape:
    raise ValueError(
        f"features must have shape (batch, dim) with both sizes positive, got "
        f"shape {shape}."
    )
  k = check_int(k, "k", minimum=1)
  if k > min(shape):
    raise ValueError(
        f"k must be at most min(batch, dim) = {min(shape)} (the number of "
        f"singular values of features with shape {shape}), got {k}."
    )
  check_non_negative(eta, "eta")
  singular_values = jnp.linalg.svd(as_float(features), compute_uv=False)
  return check_finite_result(
      eta * jnp.sum(jnp.square(singular_values[-k:])),  # sorted descending
      "batch_spectral_shrinkage overflows: the squared singular values of "
      "these features are not finite in float32 (features of order 1e19 or "
      "more); rescale them or reduce eta.",
  )
