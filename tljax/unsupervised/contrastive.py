"""SimCLR's contrastive objective: NT-Xent over two augmented views of a batch.

Chen, Kornblith, Norouzi and Hinton, "A Simple Framework for Contrastive
Learning of Visual Representations", ICML 2020. Each of N examples is
augmented twice; the 2N projections ``z`` are compared by cosine similarity
``s_ij = z_iᵀ z_j / (‖z_i‖ ‖z_j‖)``, and for every anchor ``i`` whose other
view is ``j(i)`` the normalized temperature-scaled cross-entropy is

  ``ℓ_i = −log [exp(s_{i j(i)} / τ) / Σ_{k ≠ i} exp(s_ik / τ)]``,

averaged over all 2N anchors (both orders of every pair): each view must pick
its partner among the 2(N − 1) other examples' views.

The default temperature τ = 0.5 is the one the authors use for their
small-image setting (CIFAR-10, batch 512: the pretraining command of
github.com/google-research/simclr; the paper's Appendix B.9 studies τ there);
their ImageNet default, τ = 0.1, goes with batches of 4,096.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from tljax.align._arrays import check_matrix, check_same_shape
from tljax.checks import check_positive

__all__ = ["DEFAULT_TEMPERATURE", "nt_xent_loss"]

DEFAULT_TEMPERATURE = 0.5


def nt_xent_loss(
    first_embeddings: Any,
    second_embeddings: Any,
    *,
    temperature: float = DEFAULT_TEMPERATURE,
) -> jax.Array:
  """NT-Xent of paired embeddings (row ``n`` of both is one example's two views).

  Args:
    first_embeddings: ``(N, dim)`` projections of the first views.
    second_embeddings: ``(N, dim)`` projections of the second views, row
      ``n`` the partner of row ``n`` of ``first_embeddings``.
    temperature: τ > 0 (may be traced, for a ``jax.vmap`` sweep).

  Returns:
    The scalar loss, the mean of ``ℓ_i`` over the 2N views (see the module
    docstring). Embeddings are L2-normalised here (a zero row stays zero).

  Raises:
    ValueError: naming the argument, for non-matrix or mismatched
      embeddings, fewer than 2 examples (no negatives), or τ <= 0.
  """
  first = check_matrix(
      first_embeddings,
      "first_embeddings",
      min_rows=2,
      why="NT-Xent needs at least one negative example",
  )
  second = check_matrix(
      second_embeddings,
      "second_embeddings",
      min_rows=2,
      why="NT-Xent needs at least one negative example",
  )
  check_same_shape(first, second, "first_embeddings", "second_embeddings")
  check_positive(temperature, "temperature")
  num_examples = first.shape[0]
  embeddings = jnp.concatenate([first, second])
  # Cosine similarities. Each row is first divided by its largest |value| (a
  # constant: exact, as the loss is invariant to each row's scale), so its
  # squared norm neither underflows nor overflows; a zero row stays zero
  # with a zero, not NaN, gradient.
  largest = jax.lax.stop_gradient(
      jnp.max(jnp.abs(embeddings), axis=1, keepdims=True)
  )
  nonzero = largest > 0
  embeddings = embeddings / jnp.where(nonzero, largest, 1.0)
  squared_norms = jnp.sum(jnp.square(embeddings), axis=1, keepdims=True)
  embeddings = jnp.where(
      nonzero,
      embeddings * jax.lax.rsqrt(jnp.where(nonzero, squared_norms, 1.0)),
      0.0,
  )
  logits = embeddings @ embeddings.T / temperature
  views = 2 * num_examples
  logits = jnp.where(jnp.eye(views, dtype=bool), -jnp.inf, logits)
  partners = (jnp.arange(views) + num_examples) % views
  positive = jnp.take_along_axis(logits, partners[:, None], axis=1)[:, 0]
  return jnp.mean(jax.nn.logsumexp(logits, axis=1) - positive)
