"""Label-free validators: pick a checkpoint or hyper-parameter without target labels.

In unsupervised domain adaptation the target domain has no labels, so the
usual validation accuracy cannot choose among trained models (checkpoints,
hyper-parameter settings). These validators rate a trained model from what is
available instead — its predictions on unlabeled target examples, or its
losses on labeled source validation examples re-weighted towards the target —
and the best-rated model is kept. All are pure functions of arrays.

Scores, higher is better:

* :func:`prediction_entropy` — the negative mean entropy of the target
  predictions (Morerio et al., ICLR 2018).
* :func:`information_maximization` — the mutual information between target
  inputs and predicted labels, ``H(mean p) − mean H(p)`` (Gomes et al.,
  NeurIPS 2010; a validator in Musgrave et al., 2022).
* :func:`soft_neighborhood_density` — the entropy of each target example's
  soft-neighbour distribution (Saito et al., ICCV 2021).

Risks, lower is better (estimates of the target loss; negate them to get a
higher-is-better score like the others):

* :func:`importance_weighted_validation` — the importance-weighted source
  validation loss (Sugiyama et al., JMLR 2007).
* :func:`deep_embedded_validation` — the same with a control variate that
  lowers its variance (You et al., ICML 2019).
* :func:`domain_density_ratios` — the importance weights ``p_t(x) / p_s(x)``
  those two need, from a logistic-regression domain classifier.

Shapes are checked always; values (finiteness, non-negative weights) when the
arrays are concrete, i.e. outside ``jax.jit`` / ``jax.vmap``. Each failure
raises a ``ValueError`` that names the argument.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from tljax.checks import check_int, check_positive, is_traced
from tljax.select._checks import (
    as_float,
    as_jax_array,
    as_parameter,
    check_features,
    check_finite,
    check_finite_result,
    check_real_dtype,
    dot,
    max_abs_scale,
    to_array,
)
from tljax.solvers import minimize_lbfgs

__all__ = [
    "deep_embedded_validation",
    "domain_density_ratios",
    "importance_weighted_validation",
    "information_maximization",
    "prediction_entropy",
    "soft_neighborhood_density",
]


# --- Checks ----------------------------------------------------------------------


def _check_logits(logits: Any, argument: str) -> jax.Array:
  """A real ``(num_examples, num_classes)`` matrix, >= 2 rows, finite when concrete."""
  traced = is_traced(logits)
  original = to_array(logits, argument)
  logits = as_jax_array(original)
  if logits.ndim != 2 or logits.shape[0] < 2 or logits.shape[1] < 1:
    raise ValueError(
        f"{argument} must have shape (num_examples, num_classes) with at least 2 "
        f"rows and 1 column, got shape {logits.shape}."
    )
  check_real_dtype(logits, argument)
  logits = as_float(logits)
  if not traced:
    check_finite(logits, original, argument)
  return logits


def _check_vector(values: Any, argument: str) -> jax.Array:
  """A real ``(num_examples,)`` vector, >= 2 entries, finite when concrete."""
  traced = is_traced(values)
  original = to_array(values, argument)
  values = as_jax_array(original)
  if values.ndim != 1 or values.shape[0] < 2:
    raise ValueError(
        f"{argument} must have shape (num_examples,) with at least 2 examples, got "
        f"shape {values.shape}."
    )
  check_real_dtype(values, argument)
  values = as_float(values)
  if not traced:
    check_finite(values, original, argument)
  return values


def _check_losses_and_ratios(
    source_val_losses: Any, density_ratios: Any
) -> tuple[jax.Array, jax.Array]:
  """Per-example losses and importance weights of the same length, in one dtype."""
  ratios_traced = is_traced(density_ratios)
  losses = _check_vector(source_val_losses, "source_val_losses")
  ratios = _check_vector(density_ratios, "density_ratios")
  if losses.shape != ratios.shape:
    raise ValueError(
        f"source_val_losses and density_ratios must have the same length (one "
        f"weight per source validation example), got {losses.shape[0]} and "
        f"{ratios.shape[0]}."
    )
  if not ratios_traced:
    values = np.asarray(density_ratios, np.float64)
    if np.any(values < 0):
      raise ValueError(
          f"density_ratios must be >= 0 (importance weights), got minimum "
          f"{values.min():.6g}."
      )
    if not np.any(values > 0):
      raise ValueError("density_ratios must not be all zero.")
  dtype = jnp.promote_types(losses.dtype, ratios.dtype)
  return losses.astype(dtype), ratios.astype(dtype)


# --- Scores on target predictions (higher is better) ------------------------------


def prediction_entropy(target_logits: Any) -> jax.Array:
  r"""The negative mean Shannon entropy of the target predictions; higher is better.

  Morerio, Cavazza and Murino, "Minimal-entropy correlation alignment for
  unsupervised deep domain adaptation", ICLR 2018, choose the alignment weight
  by the entropy of the adapted model's predictions on the unlabeled target
  examples: the lower, the better. With ``p_i = softmax(target_logits_i)``
  over ``C`` classes and ``N`` examples this returns its negative,

    score = −1/N Σ_i H(p_i),    H(p) = −Σ_c p_c log p_c,

  so that, like the other validators' scores, higher is better. It lies in
  ``[−log C, 0]``: 0 for one-hot (fully confident) predictions, ``−log C``
  for uniform ones. Confidence alone can mislead: a model that predicts one
  class for every example scores the maximum; :func:`information_maximization`
  also rewards diverse predictions.

  Args:
    target_logits: ``(N, C)`` logits (unnormalised log-probabilities) of the
      model on target examples, ``N >= 2``. Log-probabilities work too; for
      probabilities pass their logarithm.

  Returns:
    The scalar score, in nats (float32, or float64 for float64 inputs).

  Raises:
    ValueError: on a malformed argument; the message names it.
  """
  target_logits = _check_logits(target_logits, "target_logits")
  return -jnp.mean(_entropies(target_logits))


def information_maximization(target_logits: Any) -> jax.Array:
  r"""The mutual information of target inputs and predicted labels; higher is better.

  Gomes, Krause and Perona, "Discriminative clustering by regularized
  information maximization", NeurIPS 2010, estimate the mutual information
  between an input ``x`` and the label ``y`` a classifier predicts for it
  from the predictions ``p_i = softmax(target_logits_i)`` on ``N`` examples::

    IM = H(p̄) − 1/N Σ_i H(p_i),    p̄ = 1/N Σ_i p_i,

  high when each prediction is confident (small ``H(p_i)``) and the predicted
  classes are diverse (large ``H(p̄)``). Musgrave, Belongie and Lim,
  "Benchmarking validation methods for unsupervised domain adaptation"
  (2022), use it as a validator on the target predictions. It lies in
  ``[0, log C]``: 0 when all predictions are the same distribution, ``log C``
  for confident one-hot predictions spread equally over the ``C`` classes.

  Args:
    target_logits: ``(N, C)`` logits of the model on target examples,
      ``N >= 2``. Log-probabilities work too.

  Returns:
    The scalar score, in nats (float32, or float64 for float64 inputs).

  Raises:
    ValueError: on a malformed argument; the message names it.
  """
  target_logits = _check_logits(target_logits, "target_logits")
  return _information_maximization(target_logits)


def _entropies(logits: jax.Array) -> jax.Array:
  """``H(softmax(logits_i))`` per row, from log-probabilities (exact at 0).

  ``0 · log 0 = 0`` also where a log-probability is ``-inf`` (logits that
  differ by more than the float range).
  """
  log_probabilities = jax.nn.log_softmax(logits, axis=1)
  probabilities = jnp.exp(log_probabilities)
  return -jnp.sum(
      jnp.where(probabilities > 0, probabilities * log_probabilities, 0.0),
      axis=1,
  )


@jax.jit
def _information_maximization(logits):
  mean_prediction = jnp.mean(jax.nn.softmax(logits, axis=1), axis=0)
  diversity = jnp.sum(jax.scipy.special.entr(mean_prediction))
  return diversity - jnp.mean(_entropies(logits))


def soft_neighborhood_density(
    target_features_or_probabilities: Any, *, temperature: float = 0.05
) -> jax.Array:
  r"""Soft neighbourhood density (SND) of the target examples; higher is better.

  Saito, Kim, Teterwak, Sclaroff, Darrell and Saenko, "Tune it the right
  way: Unsupervised validation of domain adaptation via soft neighborhood
  density", ICCV 2021. The rows ``f_i`` (``N`` target examples) are
  L2-normalised; each example's similarities to the *other* examples, divided
  by the temperature ``τ``, give it a soft-neighbour distribution, whose mean
  entropy is the score::

    s_ij = ⟨f_i/‖f_i‖, f_j/‖f_j‖⟩ / τ,
    P_ij = exp(s_ij) / Σ_{k≠i} exp(s_ik)  (j ≠ i),   P_ii = 0,
    SND = −1/N Σ_i Σ_{j≠i} P_ij log P_ij.

  A high entropy means each example has many close neighbours (dense
  clusters), which the paper finds to go with a high target accuracy. As in
  the paper (and its code), pass the softmax *probabilities* of the model on
  the target examples; other features work but are not what it evaluates.
  The score lies in ``[0, log(N − 1)]``, ``log(N − 1)`` when all rows point
  the same way; it depends on ``N``, so compare models on the same examples.

  Deviation from the authors' code: the self-similarity is excluded exactly
  (``P_ii = 0``), where the code sets it to the minimum cosine, ``−1/τ``, and
  the entropy is exact, where the code adds ``1e-5`` inside the logarithm. A
  zero row stays zero after normalisation (norms are floored at ``1e-12``);
  each row is first divided by its largest magnitude, so rows of any
  magnitude (1e30, 1e-30) normalise exactly, and the similarities are
  shifted by their row maximum before dividing by ``τ``, so that a tiny
  ``τ`` concentrates each distribution on the nearest neighbour instead of
  overflowing.
  The ``N × N`` similarity matrix is formed at once: memory grows as ``N²``.

  Args:
    target_features_or_probabilities: ``(N, D)`` real rows, ``N >= 2``: the
      model's softmax probabilities on target examples (as the paper), or
      other target features.
    temperature: ``τ`` > 0; the paper uses 0.05.

  Returns:
    The scalar SND, in nats (float32, or float64 for float64 inputs).

  Raises:
    ValueError: on a malformed argument; the message names it.
  """
  check_positive(temperature, "temperature")
  features = check_features(
      target_features_or_probabilities, "target_features_or_probabilities"
  )
  temperature = as_parameter(temperature, features.dtype, "temperature")
  return _soft_neighborhood_density(features, temperature)


@jax.jit
def _soft_neighborhood_density(features, temperature):
  # Each row scaled to max |f_i| = 1 first (the cosine does not change), so
  # that its squared norm neither overflows nor underflows.
  largest = jnp.max(jnp.abs(features), axis=1, keepdims=True)
  features = features / jnp.where(
      largest >= jnp.finfo(features.dtype).tiny, largest, 1.0
  )
  norms = jnp.linalg.norm(features, axis=1, keepdims=True)
  normalised = features / jnp.maximum(norms, 1e-12)
  similarities = dot(normalised, normalised.T)
  others = ~jnp.eye(features.shape[0], dtype=bool)
  similarities = jnp.where(others, similarities, -jnp.inf)
  # Shifted by the row maximum before dividing by τ: a tiny τ then sends the
  # non-maximal similarities to -inf instead of the maximal ones to +inf.
  shifted = similarities - jnp.max(similarities, axis=1, keepdims=True)
  log_neighbours = jax.nn.log_softmax(
      jnp.where(others, shifted / temperature, -jnp.inf), axis=1
  )
  neighbours = jnp.exp(log_neighbours)
  entropies = -jnp.sum(  # 0 · log 0 = 0
      jnp.where(neighbours > 0, neighbours * log_neighbours, 0.0), axis=1
  )
  return jnp.mean(entropies)


# --- Risks on re-weighted source validation losses (lower is better) --------------


def importance_weighted_validation(
    source_val_losses: Any, density_ratios: Any
) -> jax.Array:
  r"""The importance-weighted source validation loss, a target-risk estimate; lower is better.

  Sugiyama, Krauledat and Müller, "Covariate shift adaptation by importance
  weighted cross validation", JMLR 2007 (IWCV): under covariate shift the
  target risk is estimated without target labels from the losses ``l_i`` of
  ``N`` labeled source validation examples, each weighted by its density
  ratio ``w_i = p_t(x_i) / p_s(x_i)``::

    IWV = 1/N Σ_i w_i l_i.

  It is unbiased for the target risk with the true ratios. It is a *risk*:
  lower is better; use its negative as a higher-is-better score. Here the
  estimate is on one held-out validation set; IWCV proper averages it over
  the folds of a cross-validation.

  Args:
    source_val_losses: ``(N,)`` per-example losses of the model on source
      validation examples (e.g. cross-entropy or 0-1 error), ``N >= 2``.
    density_ratios: ``(N,)`` importance weights ``w_i >= 0`` of the same
      examples, not all zero, e.g. from :func:`domain_density_ratios`.

  Returns:
    The scalar estimated target risk (float32, or float64 for float64 inputs).
    Computed on losses and ratios scaled to a maximum of 1, so an
    intermediate sum overflows only if the result does.

  Raises:
    ValueError: on a malformed argument; the message names it. Also when
      the risk of concrete inputs overflows the float range.
  """
  losses, ratios = _check_losses_and_ratios(source_val_losses, density_ratios)
  return check_finite_result(
      _importance_weighted_validation(losses, ratios),
      _OVERFLOW.format("importance-weighted loss"),
  )


_OVERFLOW = (
    "The {} overflows: source_val_losses times density_ratios exceed the float "
    "range; rescale the losses or check the density ratios."
)


def _scaled(losses, ratios):
  """Losses and ratios scaled to max 1, and the two scales."""
  loss_scale, ratio_scale = max_abs_scale(losses), max_abs_scale(ratios)
  return losses / loss_scale, ratios / ratio_scale, loss_scale, ratio_scale


@jax.jit
def _importance_weighted_validation(losses, ratios):
  # On scaled values, so that the sum overflows only if the mean does.
  losses, ratios, loss_scale, ratio_scale = _scaled(losses, ratios)
  return jnp.mean(ratios * losses) * loss_scale * ratio_scale


def deep_embedded_validation(
    source_val_losses: Any, density_ratios: Any
) -> jax.Array:
  r"""Deep embedded validation (DEV) risk, a target-risk estimate; lower is better.

  You, Wang, Long and Wang, "Towards accurate model selection in deep
  unsupervised domain adaptation", ICML 2019 (Algorithm 1). The importance-
  weighted losses ``L_i = w_i l_i`` of ``N`` source validation examples
  (:func:`importance_weighted_validation`) are corrected with the weights
  ``w_i`` as a control variate, whose mean is 1 in expectation::

    η = −Cov(L, w) / Var(w),
    DEV = mean(L) + η mean(w) − η.

  This keeps the estimate (nearly) unbiased and lowers its variance when the
  weighted losses follow the weights. It is a *risk*: lower is better; use
  its negative as a higher-is-better score. The covariance and variance use
  the same ``N − 1`` normalisation (their ratio does not depend on it).

  When all weights are equal, ``Var(w) = 0`` and ``η`` is undefined; it is
  then set to 0, so DEV equals the importance-weighted loss.

  Args:
    source_val_losses: ``(N,)`` per-example losses of the model on source
      validation examples (e.g. cross-entropy or 0-1 error), ``N >= 2``.
    density_ratios: ``(N,)`` density ratios ``w_i = p_t(x_i) / p_s(x_i) >= 0``
      of the same examples, not all zero; in DEV, from a domain classifier
      on the model's features (:func:`domain_density_ratios`).

  Returns:
    The scalar DEV risk (float32, or float64 for float64 inputs). Computed on
    losses and ratios scaled to a maximum of 1 (``η`` scales with the
    losses), so no intermediate product overflows on its own.

  Raises:
    ValueError: on a malformed argument; the message names it. Also when
      the risk of concrete inputs overflows the float range.
  """
  losses, ratios = _check_losses_and_ratios(source_val_losses, density_ratios)
  return check_finite_result(
      _deep_embedded_validation(losses, ratios), _OVERFLOW.format("DEV risk")
  )


@jax.jit
def _deep_embedded_validation(losses, ratios):
  # With l = a l', w = b w': η = a η' (η' from l', w'), and DEV = a (b mean(L')
  # + η' (b mean(w') − 1)); on the scaled values no intermediate overflows.
  losses, ratios, loss_scale, ratio_scale = _scaled(losses, ratios)
  num_examples = losses.shape[0]
  weighted = ratios * losses
  weighted_mean = jnp.mean(weighted)
  ratio_mean = jnp.mean(ratios)
  centred_ratios = ratios - ratio_mean
  covariance = jnp.sum((weighted - weighted_mean) * centred_ratios) / (
      num_examples - 1
  )
  variance = jnp.sum(jnp.square(centred_ratios)) / (num_examples - 1)
  # Equal weights: Var(w) = 0 in exact arithmetic, but rounding in the mean
  # can leave a tiny variance; test the weights themselves.
  constant = jnp.all(ratios == ratios[0]) | (variance <= 0)
  eta = jnp.where(
      constant, 0.0, -covariance / jnp.where(constant, 1.0, variance)
  )
  # = mean(L) + η mean(w) − η, unscaled.
  return loss_scale * (
      ratio_scale * weighted_mean + eta * (ratio_scale * ratio_mean - 1)
  )


def domain_density_ratios(
    source_features: Any,
    target_features: Any,
    *,
    evaluation_features: Any = None,
    l2_regularization: float = 1e-3,
    max_iterations: int = 200,
) -> jax.Array:
  r"""Density ratios ``p_t(x) / p_s(x)`` from a logistic-regression domain classifier.

  The importance weights that :func:`importance_weighted_validation` and
  :func:`deep_embedded_validation` need. A classifier that tells source
  (``d = 0``) from target (``d = 1``) examples estimates the density ratio
  by Bayes' rule (Bickel, Brückner and Scheffer, "Discriminative learning
  under covariate shift", JMLR 2009; DEV, You et al., ICML 2019, Algorithm
  1)::

    w(x) = (n_s / n_t) · p(d = 1 | x) / p(d = 0 | x) = (n_s / n_t) · exp(z(x)),

  with ``n_s``, ``n_t`` the numbers of fitting examples and ``z(x)`` the
  classifier's logit. In DEV the classifier is fitted on the source
  *training* and target features of the model being validated and evaluated
  on the source *validation* features: pass those as ``source_features``,
  ``target_features`` and ``evaluation_features``.

  Here the classifier is logistic regression, ``argmin_{v,b} 1/(n_s + n_t)
  Σ_i BCE(v·x_i + b, d_i) + λ/2 ‖v‖²`` (bias not penalised), on features
  standardised with the fitting examples' pooled mean and standard
  deviation, fitted by L-BFGS. Deviation from DEV's code, which fits small
  MLPs and picks their weight decay on a held-out split: a linear classifier
  with a fixed ``λ``, which is exact when the log density ratio is linear in
  the features (e.g. Gaussians that differ in their means). The features are
  divided by the fitting features' largest magnitude before standardising
  (no change to the ratios), so any feature magnitude works. The ratios are
  not clipped: domains that are (nearly) separable give huge ratios; past the
  float range (about ``e^88`` in float32) a ValueError says so for concrete
  inputs (under ``jax.jit`` they come back as ``inf``), a sign that the
  estimate is unreliable.

  Args:
    source_features: ``(n_s, D)`` source features for fitting, ``n_s >= 2``.
    target_features: ``(n_t, D)`` target features for fitting, ``n_t >= 2``.
    evaluation_features: ``(M, D)`` features at which to evaluate the ratios,
      ``M >= 1``; ``None`` evaluates at ``source_features``.
    l2_regularization: ``λ`` > 0, on standardised features; it keeps the
      weights finite when the domains are separable.
    max_iterations: L-BFGS iteration cap, >= 1.

  Returns:
    ``(M,)`` (or ``(n_s,)``) non-negative density ratios (float32, or float64
    for float64 features).

  Raises:
    ValueError: on a malformed argument; the message names it. Also when
      concrete inputs give ratios past the float range.
  """
  check_positive(l2_regularization, "l2_regularization")
  max_iterations = check_int(max_iterations, "max_iterations", minimum=1)
  source_features = check_features(source_features, "source_features")
  target_features = check_features(target_features, "target_features")
  if evaluation_features is None:
    evaluation_features = source_features
  else:
    evaluation_features = check_features(
        evaluation_features, "evaluation_features", min_rows=1
    )
  dim = source_features.shape[1]
  for argument, features in (
      ("target_features", target_features),
      ("evaluation_features", evaluation_features),
  ):
    if features.shape[1] != dim:
      raise ValueError(
          f"{argument} must have the feature dimension of source_features, {dim}, "
          f"got {features.shape[1]}."
      )
  dtype = jnp.promote_types(
      jnp.promote_types(source_features.dtype, target_features.dtype),
      evaluation_features.dtype,
  )
  ratios = _domain_density_ratios(
      source_features.astype(dtype),
      target_features.astype(dtype),
      evaluation_features.astype(dtype),
      as_parameter(l2_regularization, dtype, "l2_regularization"),
      max_iterations=max_iterations,
  )
  return check_finite_result(
      ratios,
      "domain_density_ratios: the ratios overflow (exp of the domain logit exceeds "
      f"the {jnp.dtype(dtype).name} range): source_features and target_features are "
      "(nearly) separable, or evaluation_features lie far outside them; raise "
      "l2_regularization or use fewer features.",
  )


@functools.partial(jax.jit, static_argnames=("max_iterations",))
def _domain_density_ratios(
    source_features,
    target_features,
    evaluation_features,
    l2_regularization,
    *,
    max_iterations,
):
  num_source, num_target = source_features.shape[0], target_features.shape[0]
  inputs = jnp.concatenate([source_features, target_features])
  # Standardisation makes the ratios independent of the feature scale;
  # dividing by max |x| first keeps its squares in range (1e30, 1e-30).
  scale = max_abs_scale(inputs)
  inputs, evaluation_features = inputs / scale, evaluation_features / scale
  domains = jnp.concatenate(
      [jnp.zeros(num_source, inputs.dtype), jnp.ones(num_target, inputs.dtype)]
  )
  mean = jnp.mean(inputs, axis=0)
  scale = jnp.std(inputs, axis=0)
  scale = jnp.where(scale > 0, scale, 1.0)
  inputs = (inputs - mean) / scale

  def objective(parameters):
    weight, bias = parameters
    logits = dot(inputs, weight) + bias
    loss = jnp.mean(optax.sigmoid_binary_cross_entropy(logits, domains))
    return loss + 0.5 * l2_regularization * jnp.sum(jnp.square(weight))

  initial = (
      jnp.zeros(inputs.shape[1], inputs.dtype),
      jnp.zeros((), inputs.dtype),
  )
  weight, bias = minimize_lbfgs(
      objective, initial, max_iterations=max_iterations
  )
  logits = dot((evaluation_features - mean) / scale, weight) + bias
  return jnp.exp(logits + math.log(num_source / num_target)).astype(
      inputs.dtype
  )
