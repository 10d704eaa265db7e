"""Adversarial adaptation recipes: an extra player behind a gradient reversal.

``dann`` (a domain discriminator on the features), ``cdan`` and ``cdan_e``
(on the multilinear map of features and predictions) and ``mdd`` (an
adversarial head and the margin disparity discrepancy) add a player next to
the model's parameters (``discriminator/...``, ``adversarial_head/...``)
that reads the features through a gradient reversal, so that one
minimisation by the shared step trains it and fools it; ``bsp_weight > 0``
adds batch spectral penalization. See :mod:`tljax.methods.adaptation`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from tljax import align
from tljax.methods.adaptation._base import (
    apply_mlp,
    check_non_negative,
    check_positive_int,
    init_mlp,
    joint_forward,
    model_dims,
    split_params,
)
from tljax.methods.base import Method
from tljax.methods.registry import register_method

DISCRIMINATOR = "discriminator"
RANDOMIZED_ABOVE = (
    4096  # CDAN uses the randomized map for larger outer products
)
ADVERSARIAL_HEAD = "adversarial_head"  # MDD's auxiliary classifier
ADVERSARIAL = dict(trade_off=1.0, hidden_dim=500, bsp_weight=0.0)


def check_adversarial(settings):
  check_non_negative(settings, "trade_off", "bsp_weight")
  check_positive_int(settings, "hidden_dim")


def spectral_penalty(weight: float, source_features, target_features):
  if not weight:
    return 0.0, {}
  penalty = align.batch_spectral_penalization(source_features, target_features)
  return weight * penalty, {"bsp": penalty}


def init_discriminator(key, input_dim: int, hidden_dim: int) -> dict:
  """Glorot-uniform MLP ``input_dim → hidden → hidden → 1`` as a parameter dict."""
  return init_mlp(key, [input_dim, hidden_dim, hidden_dim, 1])


def apply_discriminator(params: dict, inputs: jax.Array) -> jax.Array:
  """Domain logits ``(N,)`` (source = 1) of the MLP on ``(N, dim)`` inputs."""
  return apply_mlp(params, inputs)[:, 0]


def progress(batch, config):
  return jnp.minimum(batch["step"].astype(jnp.float32) / config.steps, 1.0)


@register_method("dann", defaults=ADVERSARIAL, check=check_adversarial)
def build_dann(config, model, *, trade_off, hidden_dim, bsp_weight) -> Method:

  def init_params(context):
    feature_dim, _ = model_dims(context)
    key = jax.random.fold_in(jax.random.key(context.seed), 0xD155)
    return {DISCRIMINATOR: init_discriminator(key, feature_dim, hidden_dim)}

  def loss_fn(params, model_state, batch, key, extras, *, hparams):
    del extras
    model_params, discriminator = split_params(params, DISCRIMINATOR)
    loss, model_state, source_features, target_features, _, _, metrics = (
        joint_forward(model, model_params, model_state, batch, key)
    )
    coeff = align.dann_coefficient(progress(batch, config))
    # One discriminator pass over both domains (as TLlib's
    # DomainAdversarialLoss): the same logits, in larger matrix products.
    num_source = source_features.shape[0]
    domain_logits = apply_discriminator(
        discriminator,
        align.gradient_reversal(
            jnp.concatenate([source_features, target_features]), coeff
        ),
    )
    domain_loss = align.domain_adversarial_loss(
        domain_logits[:num_source], domain_logits[num_source:]
    )
    penalty, penalty_metrics = spectral_penalty(
        bsp_weight, source_features, target_features
    )
    return loss + hparams["trade_off"] * domain_loss + penalty, (
        model_state,
        {
            **metrics,
            **penalty_metrics,
            "domain_loss": domain_loss,
            "reversal_coefficient": coeff,
        },
    )

  return Method(
      name="dann",
      loss_fn=loss_fn,
      domains=("source", "target"),
      labeled=("source",),
      setting="transductive",
      init_params=init_params,
      hparams={"trade_off": trade_off},
  )


def check_cdan(settings):
  check_adversarial(settings)
  check_positive_int(settings, "random_map_dim")


def _build_cdan(
    name: str,
    entropy_conditioning: bool,
    config,
    model,
    *,
    trade_off,
    hidden_dim,
    random_map_dim,
    bsp_weight,
) -> Method:

  def map_dim(context):
    feature_dim, num_classes = model_dims(context)
    full = feature_dim * num_classes
    return full if full <= RANDOMIZED_ABOVE else random_map_dim

  def init_params(context):
    key = jax.random.fold_in(jax.random.key(context.seed), 0xCDA0)
    return {
        DISCRIMINATOR: init_discriminator(key, map_dim(context), hidden_dim)
    }

  def init_extras(context):
    feature_dim, num_classes = model_dims(context)
    if feature_dim * num_classes <= RANDOMIZED_ABOVE:
      return {}
    key = jax.random.fold_in(jax.random.key(context.seed), 0xCDA1)
    return {
        "random_matrices": align.random_multilinear_matrices(
            key, feature_dim, num_classes, output_dim=random_map_dim
        )
    }

  def loss_fn(params, model_state, batch, key, extras, *, hparams):
    model_params, discriminator = split_params(params, DISCRIMINATOR)
    (
        loss,
        model_state,
        source_features,
        target_features,
        source_logits,
        target_logits,
        metrics,
    ) = joint_forward(model, model_params, model_state, batch, key)
    coeff = align.dann_coefficient(progress(batch, config))
    domain_loss = align.conditional_adversarial_loss(
        lambda inputs: apply_discriminator(discriminator, inputs),
        source_features,
        source_logits,
        target_features,
        target_logits,
        coeff=coeff,
        entropy_conditioning=entropy_conditioning,
        random_matrices=extras.get("random_matrices"),
    )
    penalty, penalty_metrics = spectral_penalty(
        bsp_weight, source_features, target_features
    )
    return loss + hparams["trade_off"] * domain_loss + penalty, (
        model_state,
        {
            **metrics,
            **penalty_metrics,
            "domain_loss": domain_loss,
            "reversal_coefficient": coeff,
        },
    )

  return Method(
      name=name,
      loss_fn=loss_fn,
      domains=("source", "target"),
      labeled=("source",),
      setting="transductive",
      init_params=init_params,
      init_extras=init_extras,
      hparams={"trade_off": trade_off},
  )


CDAN = dict(ADVERSARIAL, random_map_dim=1024)


@register_method("cdan", defaults=CDAN, check=check_cdan)
def build_cdan(config, model, **settings) -> Method:
  return _build_cdan("cdan", False, config, model, **settings)


@register_method("cdan_e", defaults=CDAN, check=check_cdan)
def build_cdan_e(config, model, **settings) -> Method:
  return _build_cdan("cdan_e", True, config, model, **settings)


def check_mdd(settings):
  check_adversarial(settings)
  if not settings["warmup_iters"] > 0:
    raise ValueError(
        f"config key 'method_kwargs.warmup_iters' must be > 0, "
        f"got {settings['warmup_iters']}"
    )


@register_method(
    "mdd",
    defaults=dict(
        ADVERSARIAL, margin=4.0, max_coefficient=0.1, warmup_iters=1000.0
    ),
    check=check_mdd,
)
def build_mdd(
    config,
    model,
    *,
    trade_off,
    hidden_dim,
    bsp_weight,
    margin,
    max_coefficient,
    warmup_iters,
) -> Method:
  """Margin Disparity Discrepancy with an adversarial head (Zhang et al. 2019).

  loss = CE(f(G(x_s)), y_s) − λ · D_γ, where D_γ
  (:func:`tljax.align.margin_disparity_discrepancy`, margin
  ``margin`` = 4) compares the main head ``f`` with an
  adversarial head ``f'`` (an MLP ``bottleneck → hidden_dim → classes``,
  ``adversarial_head/...``) that reads the features through a gradient
  reversal. The reversal coefficient warms up as the
  Transfer-Learning-Library's ``WarmStartGradientReverseLayer``:
  ``0.1 · (2 / (1 + exp(−i / 1000)) − 1)`` at step ``i``
  (``max_coefficient``, ``warmup_iters``).
  """
  del config
  high = max_coefficient

  def init_params(context):
    feature_dim, num_classes = model_dims(context)
    key = jax.random.fold_in(jax.random.key(context.seed), 0x3DD)
    return {
        ADVERSARIAL_HEAD: init_mlp(key, [feature_dim, hidden_dim, num_classes])
    }

  def loss_fn(params, model_state, batch, key, extras, *, hparams):
    del extras
    model_params, adversarial = split_params(params, ADVERSARIAL_HEAD)
    (
        loss,
        model_state,
        source_features,
        target_features,
        source_logits,
        target_logits,
        metrics,
    ) = joint_forward(model, model_params, model_state, batch, key)
    # TLlib's warm start: step / warmup_iters grows past 1 (unbounded).
    coeff = align.dann_coefficient(
        batch["step"].astype(jnp.float32) / warmup_iters,
        gamma=1.0,
        high=high,
        max_progress=None,
    )
    disparity = align.margin_disparity_discrepancy(
        source_logits,
        apply_mlp(adversarial, align.gradient_reversal(source_features, coeff)),
        target_logits,
        apply_mlp(adversarial, align.gradient_reversal(target_features, coeff)),
        margin=margin,
    )
    penalty, penalty_metrics = spectral_penalty(
        bsp_weight, source_features, target_features
    )
    return loss - hparams["trade_off"] * disparity + penalty, (
        model_state,
        {
            **metrics,
            **penalty_metrics,
            "disparity": disparity,
            "reversal_coefficient": coeff,
        },
    )

  return Method(
      name="mdd",
      loss_fn=loss_fn,
      domains=("source", "target"),
      labeled=("source",),
      setting="transductive",
      init_params=init_params,
      hparams={"trade_off": trade_off},
  )
