"""Domain adaptation recipes (transductive): labeled source, unlabeled target.

Each recipe is the source cross-entropy plus an alignment term of
:mod:`tljax.align` on the bottleneck features of both domains, computed in one
forward pass over the concatenated source and target batch (so BatchNorm sees
both domains, as in the Transfer-Learning-Library). Target labels never reach
these losses: the loop strips them.

* ``dan`` (Long et al., ICML 2015): + λ · MK-MMD²(f_s, f_t).
* ``deep_coral`` (Sun & Saenko, ECCV-W 2016): + λ · CORAL(f_s, f_t).
* ``dann`` (Ganin et al., JMLR 2016): + λ · the domain classifier's loss behind
  a gradient reversal whose strength warms up as 2/(1 + exp(−10 p)) − 1 with
  the training progress p.
* ``cdan`` / ``cdan_e`` (Long et al., NeurIPS 2018): the discriminator reads
  the multilinear map of features and predictions (randomized above 4,096
  dimensions), with entropy conditioning for ``cdan_e``.

The domain discriminator is a small MLP (``config.adaptation.hidden_dim``
units, two hidden ReLU layers, as the Transfer-Learning-Library's
``DomainDiscriminator`` but without its BatchNorm layers) whose parameters are
added next to the model's as ``discriminator/...`` and trained by the same
step: the reversal makes one minimisation train the discriminator and fool it.
Weights: ``config.adaptation.trade_off`` (λ, default 1).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from tljax import align
from tljax.methods.base import Method, cross_entropy_loss
from tljax.methods.registry import register_method

DISCRIMINATOR = "discriminator"
RANDOMIZED_ABOVE = 4096  # CDAN uses the randomized map for larger outer products


def init_discriminator(key, input_dim: int, hidden_dim: int) -> dict:
  """Glorot-uniform MLP ``input_dim → hidden → hidden → 1`` as a parameter dict."""
  sizes = [input_dim, hidden_dim, hidden_dim, 1]
  keys = jax.random.split(key, len(sizes) - 1)
  initializer = jax.nn.initializers.glorot_uniform()
  return {f"dense{index + 1}": {
      "kernel": initializer(keys[index], (sizes[index], sizes[index + 1]),
                            jnp.float32),
      "bias": jnp.zeros((sizes[index + 1],), jnp.float32)}
          for index in range(len(sizes) - 1)}


def apply_discriminator(params: dict, inputs: jax.Array) -> jax.Array:
  """Domain logits ``(N,)`` (source = 1) of the MLP on ``(N, dim)`` inputs."""
  hidden = inputs.astype(jnp.float32)
  for index in range(1, len(params) + 1):
    layer = params[f"dense{index}"]
    hidden = hidden @ layer["kernel"] + layer["bias"]
    if index < len(params):
      hidden = jax.nn.relu(hidden)
  return hidden[:, 0]


def _split_params(params):
  model_params = {name: value for name, value in params.items()
                  if name != DISCRIMINATOR}
  return model_params, params.get(DISCRIMINATOR)


def _joint_forward(model, params, model_state, batch, key):
  """One forward pass over source then target; the source cross-entropy."""
  source, target = batch["source"], batch["target"]
  num_source = source["input"].shape[0]
  inputs = jnp.concatenate([source["input"], target["input"]])
  outputs, model_state = model.apply(params, model_state, inputs, train=True,
                                     key=key)
  logits = outputs.logits.astype(jnp.float32)
  source_logits = logits[:num_source]
  loss = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(
      source_logits, source["label"]))
  accuracy = jnp.mean(jnp.argmax(source_logits, -1) == source["label"])
  features = outputs.features.astype(jnp.float32)
  return (loss, model_state, features[:num_source], features[num_source:],
          source_logits, logits[num_source:], {"source_accuracy": accuracy})


def _progress(batch, config):
  return jnp.minimum(batch["step"].astype(jnp.float32) / config.steps, 1.0)


def _discrepancy_method(name: str, discrepancy, config, model) -> Method:
  trade_off = float(config.adaptation.trade_off)

  def loss_fn(params, model_state, batch, key, extras):
    del extras
    (loss, model_state, source_features, target_features, _, _,
     metrics) = _joint_forward(model, params, model_state, batch, key)
    term = discrepancy(source_features, target_features)
    return loss + trade_off * term, (model_state, {**metrics, name: term})

  return Method(name=name, loss_fn=loss_fn, domains=("source", "target"),
                labeled=("source",), setting="transductive")


@register_method("dan")
def build_dan(config, model) -> Method:
  return _discrepancy_method("dan", align.mmd, config, model)


@register_method("deep_coral")
def build_deep_coral(config, model) -> Method:
  return _discrepancy_method("deep_coral", align.coral, config, model)


def _feature_dim(context) -> tuple[int, int]:
  """(bottleneck feature dim, number of classes) of the model."""
  probe, _ = context.model.apply(
      context.params, context.model_state,
      jnp.asarray(context.domains["source"]["train"].inputs[:2]), train=False)
  return probe.features.shape[-1], probe.logits.shape[-1]


@register_method("dann")
def build_dann(config, model) -> Method:
  settings = config.adaptation

  def init_params(context):
    feature_dim, _ = _feature_dim(context)
    key = jax.random.fold_in(jax.random.key(context.seed), 0xD155)
    return {DISCRIMINATOR: init_discriminator(key, feature_dim,
                                              settings.hidden_dim)}

  def loss_fn(params, model_state, batch, key, extras):
    del extras
    model_params, discriminator = _split_params(params)
    (loss, model_state, source_features, target_features, _, _,
     metrics) = _joint_forward(model, model_params, model_state, batch, key)
    coeff = align.dann_coefficient(_progress(batch, config))
    reversed_source = align.gradient_reversal(source_features, coeff)
    reversed_target = align.gradient_reversal(target_features, coeff)
    domain_loss = align.domain_adversarial_loss(
        apply_discriminator(discriminator, reversed_source),
        apply_discriminator(discriminator, reversed_target))
    return loss + settings.trade_off * domain_loss, (
        model_state, {**metrics, "domain_loss": domain_loss,
                      "reversal_coefficient": coeff})

  return Method(name="dann", loss_fn=loss_fn, domains=("source", "target"),
                labeled=("source",), setting="transductive",
                init_params=init_params)


def _build_cdan(name: str, entropy_conditioning: bool, config, model) -> Method:
  settings = config.adaptation

  def map_dim(context):
    feature_dim, num_classes = _feature_dim(context)
    full = feature_dim * num_classes
    return full if full <= RANDOMIZED_ABOVE else settings.random_map_dim

  def init_params(context):
    key = jax.random.fold_in(jax.random.key(context.seed), 0xCDA0)
    return {DISCRIMINATOR: init_discriminator(key, map_dim(context),
                                              settings.hidden_dim)}

  def init_extras(context):
    feature_dim, num_classes = _feature_dim(context)
    if feature_dim * num_classes <= RANDOMIZED_ABOVE:
      return {}
    key = jax.random.fold_in(jax.random.key(context.seed), 0xCDA1)
    return {"random_matrices": align.random_multilinear_matrices(
        key, feature_dim, num_classes, output_dim=settings.random_map_dim)}

  def loss_fn(params, model_state, batch, key, extras):
    model_params, discriminator = _split_params(params)
    (loss, model_state, source_features, target_features, source_logits,
     target_logits, metrics) = _joint_forward(model, model_params, model_state,
                                              batch, key)
    coeff = align.dann_coefficient(_progress(batch, config))
    domain_loss = align.conditional_adversarial_loss(
        lambda inputs: apply_discriminator(discriminator, inputs),
        source_features, source_logits, target_features, target_logits,
        coeff=coeff, entropy_conditioning=entropy_conditioning,
        random_matrices=extras.get("random_matrices"))
    return loss + settings.trade_off * domain_loss, (
        model_state, {**metrics, "domain_loss": domain_loss,
                      "reversal_coefficient": coeff})

  return Method(name=name, loss_fn=loss_fn, domains=("source", "target"),
                labeled=("source",), setting="transductive",
                init_params=init_params, init_extras=init_extras)


@register_method("cdan")
def build_cdan(config, model) -> Method:
  return _build_cdan("cdan", False, config, model)


@register_method("cdan_e")
def build_cdan_e(config, model) -> Method:
  return _build_cdan("cdan_e", True, config, model)
