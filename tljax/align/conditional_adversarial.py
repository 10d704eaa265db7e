r"""Conditional domain-adversarial training (CDAN, CDAN+E).

Long, Cao, Wang and Jordan, "Conditional adversarial domain adaptation",
NeurIPS 2018: the domain discriminator sees the features ``f`` *conditioned
on* the classifier's predictions ``g`` through a multilinear map ``T(f, g)``,
so that it can align the class-conditional (multimodal) structure rather
than the marginal feature distribution alone::

  min_D max_F  E_S −log D(T(f^S, g^S)) + E_T −log(1 − D(T(f^T, g^T))),

played as one minimisation with a gradient reversal layer between ``T`` and
``D`` (:func:`tljax.align.gradient_reversal`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from tljax.align._arrays import (
    check_bool,
    check_domain_logits,
    check_finite_result,
    check_hyperparameter,
    check_matrix,
    check_same_columns,
)
from tljax.align.entropy import entropy_weights
from tljax.align.gradient_reversal import gradient_reversal
from tljax.checks import check_int, check_key

__all__ = [
    "conditional_adversarial_loss",
    "multilinear_map",
    "random_multilinear_matrices",
    "randomized_multilinear_map",
]


def multilinear_map(features: jax.Array, predictions: jax.Array) -> jax.Array:
  r"""CDAN's multilinear map: the flattened outer product ``g ⊗ f``.

  ``T⊗(f, g) = vec(g fᵀ)`` per example, of dimension ``num_classes · dim``,
  class-major: ``out[i, c · dim + j] = g_ic f_ij`` (the layout of the
  Transfer-Learning-Library's ``MultiLinearMap``).

  Args:
    features: ``(n, dim)`` features ``f``.
    predictions: ``(n, num_classes)`` classifier predictions ``g``
      (softmax probabilities in CDAN).

  Returns:
    ``(n, num_classes * dim)`` conditioned features.

  Raises:
    ValueError: on non-matrix or non-finite inputs, different batch sizes,
      or (when concrete) products too large for the float type.
  """
  return check_finite_result(
      _multilinear_map(*_check_map_inputs(features, predictions)),
      "multilinear_map is not finite: features times predictions overflows the "
      "float type.",
  )


def random_multilinear_matrices(
    key: jax.Array,
    features_dim: int,
    num_classes: int,
    *,
    output_dim: int = 1024,
) -> tuple[jax.Array, jax.Array]:
  r"""Draw the fixed random matrices ``(R_f, R_g)`` of the randomized multilinear map.

  Standard normal entries, as the CDAN code (``RandomLayer``,
  ``torch.randn``), stored input-major: ``R_f`` is ``(features_dim,
  output_dim)`` and ``R_g`` is ``(num_classes, output_dim)``, so the map is
  ``(f R_f) ⊙ (g R_g) / √output_dim`` on row vectors. Draw them once per run
  (from a fixed key) and keep them fixed during training; 1024 is CDAN's
  output dimension.

  Args:
    key: a ``jax.random`` key.
    features_dim: the feature dimension, >= 1.
    num_classes: the number of classes, >= 1.
    output_dim: the dimension of the randomized map, >= 1.

  Returns:
    ``(R_f, R_g)``, float32.

  Raises:
    ValueError: if ``key`` is not a ``jax.random`` key or a dimension is not
      a positive int.
  """
  key = check_key(key)
  features_dim = check_int(features_dim, "features_dim", minimum=1)
  num_classes = check_int(num_classes, "num_classes", minimum=1)
  output_dim = check_int(output_dim, "output_dim", minimum=1)
  features_key, predictions_key = jax.random.split(key)
  return (
      jax.random.normal(features_key, (features_dim, output_dim)),
      jax.random.normal(predictions_key, (num_classes, output_dim)),
  )


def randomized_multilinear_map(
    features: jax.Array,
    predictions: jax.Array,
    random_matrices: tuple[jax.Array, jax.Array],
) -> jax.Array:
  r"""CDAN's randomized multilinear map ``(R_f f) ⊙ (R_g g) / √d``.

  Long et al., NeurIPS 2018: with fixed random matrices whose entries have
  zero mean and unit variance, ``⟨T⊙(f, g), T⊙(f', g')⟩`` is an unbiased
  estimate of ``⟨T⊗(f, g), T⊗(f', g')⟩``, at dimension ``d`` instead of
  ``dim · num_classes``. The paper uses it when ``dim · num_classes`` is
  above 4096.

  Args:
    features: ``(n, dim)`` features ``f``.
    predictions: ``(n, num_classes)`` predictions ``g``.
    random_matrices: ``(R_f, R_g)`` of shapes ``(dim, d)`` and
      ``(num_classes, d)``, e.g. from :func:`random_multilinear_matrices`.

  Returns:
    ``(n, d)`` conditioned features.

  Raises:
    ValueError: on non-matrix or non-finite inputs, different batch sizes,
      random matrices whose shapes do not fit, or (when concrete) a result
      too large for the float type.
  """
  features, predictions = _check_map_inputs(features, predictions)
  return check_finite_result(
      _randomized_multilinear_map(
          features,
          predictions,
          _check_random_matrices(
              random_matrices, features.shape[1], predictions.shape[1]
          ),
      ),
      "randomized_multilinear_map is not finite: features, predictions and "
      "random_matrices overflow the float type.",
  )


def conditional_adversarial_loss(
    discriminator: Callable[[jax.Array], jax.Array],
    source_features: jax.Array,
    source_logits: jax.Array,
    target_features: jax.Array,
    target_logits: jax.Array,
    *,
    coeff: float | jax.Array = 1.0,
    entropy_conditioning: bool = False,
    random_matrices: tuple[jax.Array, jax.Array] | None = None,
) -> jax.Array:
  r"""The CDAN (or, with entropy conditioning, CDAN+E) adversarial loss.

  Long et al., NeurIPS 2018, following the Transfer-Learning-Library's
  ``ConditionalDomainAdversarialLoss``. With ``g = softmax(logits)`` (its
  gradient stopped, as in both the authors' and that code), ``h = T(f, g)``
  the multilinear map (:func:`multilinear_map`), or the randomized one when
  ``random_matrices`` is given, and ``d = discriminator(R_λ(h))`` behind a
  gradient reversal of strength ``coeff``::

    L = 1/N Σ_i w_i · BCE(d_i, y_i),   y = 1 on source, 0 on target,

  over the ``N = n_S + n_T`` examples of both domains. ``w_i = 1`` for CDAN;
  for CDAN+E, ``w`` is :func:`tljax.align.entropy_weights` of ``g`` over
  the pooled batch (``1 + exp(−H(g_i))`` normalised to mean 1, constant).

  Add it to the classification loss (trade-off 1 in the paper): the one
  minimisation trains the discriminator and, through the reversal, the
  features. ``coeff`` is typically :func:`tljax.align.dann_coefficient`
  of the progress.

  Deviation from the authors' code (thuml/CDAN): it normalises the CDAN+E
  weights within each domain (each domain's weights sum to 1, i.e. source
  and target count equally) and lets a reversed gradient flow into the
  classifier through the entropy; here, as in the Transfer-Learning-Library,
  the weights are normalised over the pooled batch and constant. Without
  entropy conditioning (and equal batch sizes, which that code assumes) the
  two agree.

  Args:
    discriminator: maps ``(N, map_dim)`` conditioned features to ``(N,)`` or
      ``(N, 1)`` domain logits, e.g. ``lambda h: model.apply(params, h)``.
    source_features: ``(n_S, dim)`` source features ``f^S``.
    source_logits: ``(n_S, num_classes)`` classifier logits on the source.
    target_features: ``(n_T, dim)`` target features ``f^T``.
    target_logits: ``(n_T, num_classes)`` classifier logits on the target.
    coeff: the gradient reversal strength ``λ >= 0``.
    entropy_conditioning: weight examples by prediction certainty (CDAN+E).
    random_matrices: ``(R_f, R_g)`` to use the randomized multilinear map,
      ``None`` for the full one.

  Returns:
    The scalar loss.

  Raises:
    ValueError: on a ``discriminator`` that is not callable, non-finite
      inputs or inputs of the wrong shapes (mismatched batch sizes, feature
      dimensions or class counts between the domains), a negative ``coeff``,
      a non-bool ``entropy_conditioning``, a discriminator output that is not
      one (finite, when concrete) logit per example, or (when concrete) a
      loss too large for the float type.
  """
  if not callable(discriminator):
    raise ValueError(
        f"discriminator must be callable (conditioned features to domain "
        f"logits), got {type(discriminator).__name__}."
    )
  check_hyperparameter(coeff, "coeff")
  entropy_conditioning = check_bool(
      entropy_conditioning, "entropy_conditioning"
  )
  source_features = check_matrix(
      source_features, "source_features", finite=True
  )
  target_features = check_matrix(
      target_features, "target_features", finite=True
  )
  check_same_columns(
      source_features, target_features, "source_features", "target_features"
  )
  source_logits = check_matrix(
      source_logits, "source_logits", columns="num_classes", finite=True
  )
  target_logits = check_matrix(
      target_logits, "target_logits", columns="num_classes", finite=True
  )
  check_same_columns(
      source_logits,
      target_logits,
      "source_logits",
      "target_logits",
      what="number of classes",
  )
  for argument, logits, features, features_argument in (
      ("source_logits", source_logits, source_features, "source_features"),
      ("target_logits", target_logits, target_features, "target_features"),
  ):
    if logits.shape[0] != features.shape[0]:
      raise ValueError(
          f"{argument} must have one row per row of {features_argument} "
          f"({features.shape[0]}), got {logits.shape[0]}."
      )
  if random_matrices is not None:
    random_matrices = _check_random_matrices(
        random_matrices, source_features.shape[1], source_logits.shape[1]
    )
  conditioned, predictions = _condition(
      source_features,
      source_logits,
      target_features,
      target_logits,
      random_matrices,
  )
  domain_logits = discriminator(gradient_reversal(conditioned, coeff))
  total = conditioned.shape[0]
  if jnp.shape(domain_logits) not in ((total,), (total, 1)):
    raise ValueError(
        f"discriminator must return one logit per example, shape ({total},) or "
        f"({total}, 1), got {jnp.shape(domain_logits)}."
    )
  return check_finite_result(
      _conditional_domain_loss(
          check_domain_logits(domain_logits, "discriminator output"),
          predictions,
          source_features.shape[0],
          entropy_conditioning,
      ),
      "conditional_adversarial_loss is not finite: the discriminator's logits "
      "are too large for the float type.",
  )


@jax.jit
def _multilinear_map(features, predictions):
  outer = predictions[:, :, None] * features[:, None, :]
  return outer.reshape(features.shape[0], -1)


@jax.jit
def _randomized_multilinear_map(features, predictions, random_matrices):
  features_matrix, predictions_matrix = random_matrices
  return (
      (features @ features_matrix)
      * (predictions @ predictions_matrix)
      / math.sqrt(features_matrix.shape[1])
  )


@jax.jit
def _condition(
    source_features,
    source_logits,
    target_features,
    target_logits,
    random_matrices,
):
  """The conditioned features ``T(f, g)`` and the constant predictions ``g``."""
  features = jnp.concatenate([source_features, target_features])
  predictions = jax.lax.stop_gradient(
      jax.nn.softmax(jnp.concatenate([source_logits, target_logits]), axis=1)
  )
  if random_matrices is None:
    return _multilinear_map(features, predictions), predictions
  return (
      _randomized_multilinear_map(features, predictions, random_matrices),
      predictions,
  )


@functools.partial(
    jax.jit, static_argnames=("num_source", "entropy_conditioning")
)
def _conditional_domain_loss(
    domain_logits, predictions, num_source, entropy_conditioning
):
  losses = jnp.concatenate(
      [
          jax.nn.softplus(-domain_logits[:num_source]),
          jax.nn.softplus(domain_logits[num_source:]),
      ]
  )
  if entropy_conditioning:
    losses = losses * entropy_weights(predictions)
  return jnp.mean(losses)


def _check_map_inputs(features, predictions):
  features = check_matrix(features, "features", finite=True)
  predictions = check_matrix(
      predictions, "predictions", columns="num_classes", finite=True
  )
  if predictions.shape[0] != features.shape[0]:
    raise ValueError(
        f"predictions must have one row per row of features "
        f"({features.shape[0]}), got {predictions.shape[0]}."
    )
  return features, predictions


def _check_random_matrices(random_matrices, features_dim, num_classes):
  if (
      not isinstance(random_matrices, (tuple, list))
      or len(random_matrices) != 2
  ):
    raise ValueError(
        "random_matrices must be a pair (R_f, R_g), e.g. from "
        f"random_multilinear_matrices, got {type(random_matrices).__name__}."
    )
  features_matrix = check_matrix(
      random_matrices[0],
      "random_matrices[0]",
      rows="dim",
      columns="output_dim",
      finite=True,
  )
  predictions_matrix = check_matrix(
      random_matrices[1],
      "random_matrices[1]",
      rows="num_classes",
      columns="output_dim",
      finite=True,
  )
  if features_matrix.shape[0] != features_dim:
    raise ValueError(
        f"random_matrices[0] must have one row per feature ({features_dim}), "
        f"got shape {features_matrix.shape}."
    )
  if predictions_matrix.shape[0] != num_classes:
    raise ValueError(
        f"random_matrices[1] must have one row per class ({num_classes}), got "
        f"shape {predictions_matrix.shape}."
    )
  check_same_columns(
      features_matrix,
      predictions_matrix,
      "random_matrices[0]",
      "random_matrices[1]",
      what="output dimension",
  )
  return features_matrix, predictions_matrix
