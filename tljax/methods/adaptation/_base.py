"""What the domain-adaptation recipes share: the joint forward pass, small MLPs.

:func:`joint_forward` runs the model once over the concatenated source and
target batch (so BatchNorm sees both domains) and returns the source
cross-entropy with both domains' features and logits; :func:`init_mlp` and
:func:`apply_mlp` are the small Glorot-uniform MLPs the recipes add next to
the model (discriminators, MDD's adversarial head); the ``check_*``
functions check ``config.method_kwargs`` values, naming the key.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def check_non_negative(settings, *keys):
  for key in keys:
    if not settings[key] >= 0:
      raise ValueError(
          f"config key 'method_kwargs.{key}' must be >= 0, got "
          f"{settings[key]}"
      )


def check_positive_int(settings, *keys):
  for key in keys:
    if not settings[key] >= 1:
      raise ValueError(
          f"config key 'method_kwargs.{key}' must be >= 1, got "
          f"{settings[key]}"
      )


def check_trade_off(settings):
  check_non_negative(settings, "trade_off")


def init_mlp(key, sizes) -> dict:
  """Glorot-uniform MLP with layer widths ``sizes`` as ``{"dense<i>": ...}``."""
  keys = jax.random.split(key, len(sizes) - 1)
  initializer = jax.nn.initializers.glorot_uniform()
  return {
      f"dense{index + 1}": {
          "kernel": initializer(
              keys[index], (sizes[index], sizes[index + 1]), jnp.float32
          ),
          "bias": jnp.zeros((sizes[index + 1],), jnp.float32),
      }
      for index in range(len(sizes) - 1)
  }


def apply_mlp(params: dict, inputs: jax.Array) -> jax.Array:
  """The MLP of :func:`init_mlp` (ReLU between layers) on ``(N, dim)`` inputs."""
  hidden = inputs.astype(jnp.float32)
  for index in range(1, len(params) + 1):
    layer = params[f"dense{index}"]
    hidden = hidden @ layer["kernel"] + layer["bias"]
    if index < len(params):
      hidden = jax.nn.relu(hidden)
  return hidden


def split_params(params, name: str):
  """``params`` without ``name``, and ``params[name]`` (``None`` if absent)."""
  model_params = {key: value for key, value in params.items() if key != name}
  return model_params, params.get(name)


def joint_forward(model, params, model_state, batch, key):
  """One forward pass over source then target; the source cross-entropy."""
  source, target = batch["source"], batch["target"]
  num_source = source["input"].shape[0]
  inputs = jnp.concatenate([source["input"], target["input"]])
  outputs, model_state = model.apply(
      params, model_state, inputs, train=True, key=key
  )
  logits = outputs.logits.astype(jnp.float32)
  source_logits = logits[:num_source]
  loss = jnp.mean(
      optax.softmax_cross_entropy_with_integer_labels(
          source_logits, source["label"]
      )
  )
  accuracy = jnp.mean(jnp.argmax(source_logits, -1) == source["label"])
  features = outputs.features.astype(jnp.float32)
  return (
      loss,
      model_state,
      features[:num_source],
      features[num_source:],
      source_logits,
      logits[num_source:],
      {"source_accuracy": accuracy},
  )


def model_dims(context) -> tuple[int, int]:
  """(bottleneck feature dim, number of classes) of the model, from its shapes."""
  model = context.model
  probe, _ = jax.eval_shape(
      lambda: model.apply(
          context.params,
          context.model_state,
          jnp.zeros((1, *model.input_shape), jnp.float32),
          train=False,
      )
  )
  return probe.features.shape[-1], probe.logits.shape[-1]
