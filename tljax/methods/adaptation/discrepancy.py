"""Adaptation recipes that add a fixed term of the batch: no extra player.

The source cross-entropy plus ``λ`` times a discrepancy between the
domains' bottleneck features (``dan``: MK-MMD; ``deep_coral``: CORAL;
``sinkhorn``: the debiased Sinkhorn divergence; ``jan``: JMMD of the
features and the predictions) or a regulariser of the
features or predictions (``afn``: stepwise adaptive feature norm of both
domains; ``mcc``: minimum class confusion of the target predictions); see
:mod:`tljax.methods.adaptation`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from tljax import align

try:  # ott-jax: a dependency of tljax, but absent from some bare machines
  from tljax import transport
except ImportError as _error:  # (a GPU box with jax alone): the rest works
  transport = None
  _TRANSPORT_ERROR = str(_error)
from tljax.methods.adaptation._base import check_trade_off, joint_forward
from tljax.methods.base import Method
from tljax.methods.registry import register_method

JAN_PREDICTION_SIGMA = 0.92  # JAN's fixed kernel on the softmax predictions


def discrepancy_method(name: str, terms, model, trade_off: float) -> Method:
  """The source cross-entropy plus ``trade_off`` times a term of the batch.

  ``terms(source_features, target_features, source_logits, target_logits)``
  gives ``(term, metrics)``: the term and what to log with it.
  """

  def loss_fn(params, model_state, batch, key, extras, *, hparams):
    del extras
    (
        loss,
        model_state,
        source_features,
        target_features,
        source_logits,
        target_logits,
        metrics,
    ) = joint_forward(model, params, model_state, batch, key)
    term, term_metrics = terms(
        source_features, target_features, source_logits, target_logits
    )
    return loss + hparams["trade_off"] * term, (
        model_state,
        {**metrics, **term_metrics},
    )

  return Method(
      name=name,
      loss_fn=loss_fn,
      domains=("source", "target"),
      labeled=("source",),
      setting="transductive",
      hparams={"trade_off": trade_off},
  )


def feature_discrepancy_method(
    name: str, discrepancy, model, trade_off: float
) -> Method:
  """:func:`discrepancy_method` of ``discrepancy(source_features,
  target_features)``, logged under ``name``."""

  def terms(source_features, target_features, source_logits, target_logits):
    del source_logits, target_logits
    term = discrepancy(source_features, target_features)
    return term, {name: term}

  return discrepancy_method(name, terms, model, trade_off)


@register_method("dan", defaults=dict(trade_off=1.0), check=check_trade_off)
def build_dan(config, model, *, trade_off) -> Method:
  del config
  return feature_discrepancy_method("dan", align.mmd, model, trade_off)


def check_coral(settings):
  check_trade_off(settings)
  if settings["coral_convention"] not in align.CORAL_CONVENTIONS:
    raise ValueError(
        f"config key 'method_kwargs.coral_convention' must be "
        f"one of {list(align.CORAL_CONVENTIONS)}, got "
        f"{settings['coral_convention']!r}"
    )


@register_method(
    "deep_coral",
    defaults=dict(trade_off=1.0, coral_convention="paper"),
    check=check_coral,
)
def build_deep_coral(config, model, *, trade_off, coral_convention) -> Method:
  # "paper" (Sun & Saenko) or "tllib" (TLlib's code: 4x the covariance term
  # plus a mean term); see align.coral.
  del config
  return feature_discrepancy_method(
      "deep_coral",
      functools.partial(align.coral, convention=coral_convention),
      model,
      trade_off,
  )


def check_sinkhorn(settings):
  check_trade_off(settings)
  epsilon = settings["epsilon"]
  if not epsilon >= 0:
    raise ValueError(
        "config key 'method_kwargs.epsilon' must be >= 0 (0: the default "
        f"scale, 0.05 x the mean squared distance), got {epsilon}"
    )
  if not isinstance(settings["normalize"], bool):
    raise ValueError(
        "config key 'method_kwargs.normalize' must be True or False, got "
        f"{settings['normalize']!r}"
    )


@register_method(
    "sinkhorn",
    defaults=dict(trade_off=1.0, epsilon=0.0, normalize=True),
    check=check_sinkhorn,
)
def build_sinkhorn(config, model, *, trade_off, epsilon, normalize) -> Method:
  """Sinkhorn-divergence alignment of the bottleneck features.

  ``CE(source) + λ · S_ε(source features, target features)``, the debiased
  entropic OT divergence (Genevay et al., AISTATS 2018; Feydy et al.,
  AISTATS 2019; :func:`tljax.transport.sinkhorn_divergence`) in the place
  of DAN's MMD: Feydy et al. show it interpolates between OT (ε → 0) and an
  MMD (ε → ∞). ``epsilon`` 0: the function's default, 0.05 × the batch's
  mean squared source-target distance (gradient stopped).

  ``normalize`` (default True; a deviation from the papers, whose inputs
  have a fixed scale): the divergence over the batch's gradient-stopped
  mean squared source-target distance, so that λ = 1 means the same for
  any feature width or magnitude. Unnormalized, the divergence between
  256-d LeNet features starts near 100 against a cross-entropy of 2.3;
  the features then shrink to remove it and the classifier never learns
  the source (MNIST→UCI: 23 % target accuracy at λ = 1, 2026-12-08).
  """
  del config
  if transport is None:
    raise ImportError(
        f"method 'sinkhorn' needs ott-jax ({_TRANSPORT_ERROR}); pip install "
        "ott-jax"
    )
  return feature_discrepancy_method(
      "sinkhorn",
      functools.partial(
          transport.sinkhorn_divergence,
          epsilon=epsilon or None,
          normalize=normalize,
      ),
      model,
      trade_off,
  )


@register_method("jan", defaults=dict(trade_off=1.0), check=check_trade_off)
def build_jan(config, model, *, trade_off) -> Method:
  """JAN: joint MMD of the features and the softmax predictions."""
  del config

  def terms(source_features, target_features, source_logits, target_logits):
    term = align.jmmd(
        [source_features, jax.nn.softmax(source_logits)],
        [target_features, jax.nn.softmax(target_logits)],
        kernel_bandwidths=[None, [JAN_PREDICTION_SIGMA**2]],
    )
    return term, {"jmmd": term}

  return discrepancy_method("jan", terms, model, trade_off)


@register_method(
    "afn", defaults=dict(trade_off=0.05, delta_r=1.0), check=check_trade_off
)
def build_afn(config, model, *, trade_off, delta_r) -> Method:
  """Stepwise AFN on the bottleneck features of both domains (``Δr`` = ``delta_r``)."""
  del config

  def terms(source_features, target_features, source_logits, target_logits):
    del source_logits, target_logits
    term = align.stepwise_adaptive_feature_norm(
        source_features, delta_r=delta_r
    ) + align.stepwise_adaptive_feature_norm(target_features, delta_r=delta_r)
    norm = jnp.mean(
        jnp.linalg.norm(
            jnp.concatenate([source_features, target_features]), axis=-1
        )
    )
    return term, {"feature_norm_loss": term, "feature_norm": norm}

  return discrepancy_method("afn", terms, model, trade_off)


@register_method(
    "mcc", defaults=dict(trade_off=1.0, temperature=2.5), check=check_trade_off
)
def build_mcc(config, model, *, trade_off, temperature) -> Method:
  """Minimum class confusion of the target predictions (temperature ``temperature``)."""
  del config

  def terms(source_features, target_features, source_logits, target_logits):
    del source_features, target_features, source_logits
    term = align.minimum_class_confusion(target_logits, temperature=temperature)
    return term, {"mcc": term}

  return discrepancy_method("mcc", terms, model, trade_off)
