"""Fine-tuning with a regularizer that keeps what the source model knew.

Each recipe is the target cross-entropy of ``finetune`` plus one term of
:mod:`tljax.params.regularizers` (see there for the formulas, papers and
defaults); the weights are each recipe's settings (declared where it is
registered, set in ``config.method_kwargs``). All start from the same seed's
``source_only`` run (or ``config.init_from``), with a new head.

* ``l2_sp`` (Li et al., ICML 2018): weights pulled towards their pretrained
  values, new ones towards zero; it replaces the optimizer's weight decay.
* ``bss`` (Chen et al., NeurIPS 2019): batch spectral shrinkage of the backbone
  features.
* ``delta`` (Li et al., ICLR 2019): the feature maps stay near the pretrained
  model's, channel by channel, weighted by the supervised attention computed
  once before training; plus L2 on the new parameters (it replaces the
  optimizer's weight decay).
* ``co_tuning`` (You et al., NeurIPS 2020): the source head is kept as extra
  trainable parameters (``source_head``) and trained on the source labels that
  the category relationship p(y_s | y_t) translates each target label into.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from tljax.methods.base import (
    Method,
    cross_entropy_loss,
    label_smoothing,
    pretrain_run,
)
from tljax.methods.registry import register_method
from tljax.params import flatten, regularizers
from tljax.params.tree import unflatten

SOURCE_HEAD = "source_head"


def _transferred_subtree(context) -> dict:
  flat = flatten(context.params)
  return unflatten({name: flat[name] for name in sorted(context.transferred)})


def _require_source(context, method: str) -> None:
  if context.source_params is None:
    raise ValueError(
        f"method {method!r} regularizes towards a source model; "
        "it needs a source run (config.init_from.workdir or its "
        "pretrain run) or a converted checkpoint (config.init_from.pretrained)"
    )


def _target_loss(model, config):
  smoothing = label_smoothing(config)

  def loss(params, model_state, batch, key):
    return cross_entropy_loss(
        model,
        params,
        model_state,
        batch["target"],
        key,
        label_smoothing=smoothing,
    )

  return loss


def _check_non_negative(*keys):

  def check(settings):
    for key in keys:
      if not settings[key] >= 0:
        raise ValueError(
            f"config key 'method_kwargs.{key}' must be >= 0, "
            f"got {settings[key]}"
        )

  return check


@register_method(
    "l2_sp",
    defaults=dict(alpha=0.1, beta=0.01),
    check=_check_non_negative("alpha", "beta"),
)
def build_l2_sp(config, model, *, alpha, beta) -> Method:
  target_loss = _target_loss(model, config)

  def init_extras(context):
    _require_source(context, "l2_sp")
    return {"start": _transferred_subtree(context)}

  def loss_fn(params, model_state, batch, key, extras):
    loss, model_state, _, metrics = target_loss(params, model_state, batch, key)
    penalty = regularizers.l2_sp(
        params, extras["start"], alpha=alpha, beta=beta
    )
    return loss + penalty, (model_state, {**metrics, "l2_sp": penalty})

  return Method(
      name="l2_sp",
      loss_fn=loss_fn,
      domains=("target",),
      labeled=("target",),
      setting="inductive",
      needs=(pretrain_run(config),),
      init_extras=init_extras,
      replaces_weight_decay=True,
  )


@register_method(
    "bss", defaults=dict(eta=0.001, k=1), check=_check_non_negative("eta", "k")
)
def build_bss(config, model, *, eta, k) -> Method:
  target_loss = _target_loss(model, config)

  def loss_fn(params, model_state, batch, key, extras):
    del extras
    loss, model_state, outputs, metrics = target_loss(
        params, model_state, batch, key
    )
    penalty = regularizers.batch_spectral_shrinkage(
        outputs.backbone_features, k=k, eta=eta
    )
    return loss + penalty, (model_state, {**metrics, "bss": penalty})

  return Method(
      name="bss",
      loss_fn=loss_fn,
      domains=("target",),
      labeled=("target",),
      setting="inductive",
      needs=(pretrain_run(config),),
  )


def _fit_probe_head(
    features, labels, num_classes, *, steps=300, learning_rate=0.05, l2=1e-4
):
  """A softmax head on fixed features by full-batch Adam (DELTA's first step)."""
  features = jnp.asarray(features, jnp.float32)
  head = {
      "kernel": jnp.zeros((features.shape[-1], num_classes)),
      "bias": jnp.zeros((num_classes,)),
  }
  optimizer = optax.adam(learning_rate)

  def objective(head):
    logits = features @ head["kernel"] + head["bias"]
    return jnp.mean(
        optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    ) + 0.5 * l2 * jnp.sum(head["kernel"] ** 2)

  def step(_, carry):
    head, opt_state = carry
    grads = jax.grad(objective)(head)
    updates, opt_state = optimizer.update(grads, opt_state, head)
    return optax.apply_updates(head, updates), opt_state

  head, _ = jax.lax.fori_loop(0, steps, step, (head, optimizer.init(head)))
  return head


def delta_attention(context, layer: str, *, max_examples: int = 512):
  """DELTA's channel attention for the feature map produced by ``layer``.

  Following the reference: the pretrained model with a new head fitted on the
  target training data (backbone frozen); each channel of ``layer``'s output
  is removed by zeroing its filter (the last axis of the layer's kernel and
  bias) and the increase of the target loss gives its weight. This needs the
  feature map's channels to be ``layer``'s output channels, passed on
  unchanged apart from channel-wise operations (LeNet's ``backbone/conv2``:
  ReLU and max pooling).
  """
  model, params, model_state = (
      context.model,
      context.params,
      context.model_state,
  )
  labeled = context.domains["target"]["train"]
  count = min(len(labeled), max_examples)
  first = labeled.get_batch(np.arange(count))
  inputs, labels = jnp.asarray(first["input"]), jnp.asarray(first["label"])
  flat = flatten(params)
  kernel_name, bias_name = f"{layer}/kernel", f"{layer}/bias"
  if kernel_name not in flat:
    raise ValueError(
        f"config key 'method_kwargs.layer': {layer!r} has no "
        f"kernel; parameters look like {list(flat)[:6]}"
    )
  num_channels = flat[kernel_name].shape[-1]
  outputs, _ = model.apply(params, model_state, inputs, train=False)
  head = _fit_probe_head(outputs.features, labels, labeled.num_classes)

  def loss_fn(mask):
    masked = dict(flat)
    masked[kernel_name] = flat[kernel_name] * mask
    if bias_name in flat:
      masked[bias_name] = flat[bias_name] * mask
    outputs, _ = model.apply(
        unflatten(masked), model_state, inputs, train=False
    )
    logits = outputs.features @ head["kernel"] + head["bias"]
    return jnp.mean(
        optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    )

  return regularizers.delta_channel_attention(jax.jit(loss_fn), num_channels)


@register_method(
    "delta",
    defaults=dict(
        alpha=0.01, beta=0.01, layer="backbone/conv2", attention=True
    ),
    check=_check_non_negative("alpha", "beta"),
)
def build_delta(config, model, *, alpha, beta, layer, attention) -> Method:
  """DELTA; ``layer`` is the one whose output channels the attention removes,
  ``attention=False`` weighs every channel alike."""
  target_loss = _target_loss(model, config)

  def init_extras(context):
    _require_source(context, "delta")
    probe, _ = model.apply(
        context.params,
        context.model_state,
        jnp.zeros((1, *model.input_shape), jnp.float32),
        train=False,
    )
    if probe.feature_maps is None:
      raise ValueError(
          f"method 'delta' regularizes feature maps; model "
          f"{model.name!r} has none (use a convolutional model)"
      )
    weights = delta_attention(context, layer) if attention else None
    return {
        "start_params": context.params,
        "start_model_state": context.model_state,
        "transferred": _transferred_subtree(context),
        "channel_weights": weights,
    }

  def loss_fn(params, model_state, batch, key, extras):
    loss, model_state, outputs, metrics = target_loss(
        params, model_state, batch, key
    )
    # The pretrained network in inference mode, as in the reference.
    start, _ = model.apply(
        extras["start_params"],
        extras["start_model_state"],
        batch["target"]["input"],
        train=False,
    )
    feature_term = regularizers.delta(
        outputs.feature_maps,
        jax.lax.stop_gradient(start.feature_maps),
        channel_weights=extras["channel_weights"],
        alpha=alpha,
    )
    new_term = regularizers.l2_sp(
        params, extras["transferred"], alpha=0.0, beta=beta
    )
    return loss + feature_term + new_term, (
        model_state,
        {**metrics, "delta": feature_term, "l2_new": new_term},
    )

  return Method(
      name="delta",
      loss_fn=loss_fn,
      domains=("target",),
      labeled=("target",),
      setting="inductive",
      needs=(pretrain_run(config),),
      init_extras=init_extras,
      replaces_weight_decay=True,
  )


def _source_probabilities(context, source) -> np.ndarray:
  """The source head's class probabilities on every example of ``source``.

  The source model with its own head: the target model for a source run's
  checkpoint, the upstream architecture for a converted one; inference mode,
  in batches of ``config.eval_batch_size`` (any source: arrays or images).
  """
  model = context.source_model or context.model

  @jax.jit
  def probabilities(inputs):
    outputs, _ = model.apply(
        context.source_params, context.source_model_state, inputs, train=False
    )
    return jax.nn.softmax(outputs.logits.astype(jnp.float32))

  size = int(context.config.get("eval_batch_size") or 512)
  chunks = [
      np.asarray(
          probabilities(
              jnp.asarray(
                  source.get_batch(
                      np.arange(start, min(start + size, len(source)))
                  )["input"]
              )
          )
      )
      for start in range(0, len(source), size)
  ]
  return np.concatenate(chunks)


@register_method(
    "co_tuning",
    defaults=dict(trade_off=2.3),
    check=_check_non_negative("trade_off"),
)
def build_co_tuning(config, model, *, trade_off) -> Method:
  target_loss = _target_loss(model, config)

  # Where the source head sits: on the bottleneck features when the source
  # model has a bottleneck (a tljax source run), else on the backbone
  # features (a converted checkpoint; the target may add a bottleneck).
  head_input = {}

  def init_params(context):
    _require_source(context, "co_tuning")
    if "head" not in context.source_params:
      raise ValueError(
          "method 'co_tuning' learns the relationship between the source "
          "head's classes and the target's; the source checkpoint has no "
          "head (a headless converted checkpoint, such as a CLIP tower)"
      )
    head_input["name"] = (
        "features"
        if "bottleneck" in context.source_params
        else "backbone_features"
    )
    return {SOURCE_HEAD: context.source_params["head"]}

  def init_extras(context):
    target = context.domains["target"]
    train = target["train"]
    train_probabilities = _source_probabilities(context, train)
    if (
        "validation" in target
    ):  # the paper's reverse approach needs held-out data
      validation = target["validation"]
      relationship = regularizers.cotuning_reverse_relationship(
          train_probabilities,
          train.labels,
          _source_probabilities(context, validation),
          validation.labels,
          num_target_classes=train.num_classes,
      )
    else:
      relationship = regularizers.cotuning_relationship(
          train_probabilities,
          train.labels,
          num_target_classes=train.num_classes,
      )
    return {"relationship": jnp.asarray(relationship)}

  def loss_fn(params, model_state, batch, key, extras):
    model_params = {
        name: value for name, value in params.items() if name != SOURCE_HEAD
    }
    loss, model_state, outputs, metrics = target_loss(
        model_params, model_state, batch, key
    )
    source_head = params[SOURCE_HEAD]
    features = getattr(outputs, head_input.get("name", "features"))
    source_logits = (
        features.astype(jnp.float32) @ source_head["kernel"]
        + source_head["bias"]
    )
    term = regularizers.cotuning_loss(
        source_logits,
        batch["target"]["label"],
        extras["relationship"],
        trade_off=trade_off,
    )
    return loss + term, (model_state, {**metrics, "co_tuning": term})

  return Method(
      name="co_tuning",
      loss_fn=loss_fn,
      domains=("target",),
      labeled=("target",),
      setting="inductive",
      needs=(pretrain_run(config),),
      init_params=init_params,
      init_extras=init_extras,
  )
