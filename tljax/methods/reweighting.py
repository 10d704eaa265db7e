"""Instance transfer: train on the source, each example weighted by how target-like it is.

``importance_weighting`` (transductive: labeled source, unlabeled target)
minimises the importance-weighted empirical risk of Shimodaira (2000) and
Sugiyama et al. (2007),

  1/n Σ_i w(x_i) ℓ(f(x_i), y_i),   w(x) ≈ p_target(x) / p_source(x),

with the weights estimated once, before training, by an estimator of
:mod:`tljax.reweight` (the setting ``estimator``: ``kmm``, ``kliep``,
``ulsif``, ``rulsif``, ``classifier_density_ratio`` or
``nearest_neighbors_weighting``, with ``estimator_kwargs`` passed on; set in
``config.method_kwargs``)
on the flattened inputs of the source training split and of the target's
unlabeled split. The weights are rescaled to mean 1 (so the learning rate
means the same as for unweighted training), kept in the train state's
extras, and looked up per batch by the examples' indices.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from tljax.methods.base import Method
from tljax.methods.registry import register_method
from tljax.reweight import facade, weighted_cross_entropy


def _flat_inputs(source, chunk: int = 512) -> np.ndarray:
  # Arrays in memory as they are; any other source (image files) read in
  # chunks through get_batch, as the model sees its examples.
  if hasattr(source, "inputs"):
    inputs = np.asarray(source.inputs, np.float32)
  else:
    inputs = np.concatenate(
        [
            np.asarray(
                source.get_batch(
                    np.arange(start, min(start + chunk, len(source)))
                )["input"],
                np.float32,
            )
            for start in range(0, len(source), chunk)
        ]
    )
  return inputs.reshape(inputs.shape[0], -1)


def _check_estimator(name: str) -> None:
  allowed = [key for key in facade.ESTIMATORS if key != "uniform"]
  if name not in allowed:
    raise ValueError(
        f"config key 'method_kwargs.estimator': {name!r} is "
        f"unknown; allowed: {allowed}"
    )


def estimate_weights(
    domains, estimator: str = "kmm", estimator_kwargs=None
) -> np.ndarray:
  """Mean-1 importance weights of the source training split (see the module doc)."""
  name = estimator
  _check_estimator(name)
  target = domains["target"]
  target = target["unlabeled"] if "unlabeled" in target else target["train"]
  weights = facade.estimate_weights(
      name,
      _flat_inputs(domains["source"]["train"]),
      _flat_inputs(target),
      **dict(estimator_kwargs or {}),
  )
  if (
      weights.ndim != 1
      or not np.all(np.isfinite(weights))
      or np.any(weights < 0)
      or weights.sum() <= 0
  ):
    raise ValueError(
        f"estimator {name!r} returned unusable weights "
        f"(shape {weights.shape}, min {weights.min():g}, sum "
        f"{weights.sum():g})"
    )
  return weights / weights.mean()


@register_method(
    "importance_weighting",
    defaults=dict(estimator="kmm", estimator_kwargs={}),
    check=lambda settings: _check_estimator(settings["estimator"]),
)
def build_importance_weighting(
    config, model, *, estimator, estimator_kwargs
) -> Method:
  """Importance-weighted cross-entropy on the source (see the module doc)."""
  del config

  def init_extras(context):
    return {
        "weights": jnp.asarray(
            estimate_weights(context.domains, estimator, estimator_kwargs),
            jnp.float32,
        )
    }

  def loss_fn(params, model_state, batch, key, extras):
    source = batch["source"]
    outputs, model_state = model.apply(
        params, model_state, source["input"], train=True, key=key
    )
    logits = outputs.logits.astype(jnp.float32)
    weights = extras["weights"][source["index"]]
    loss = weighted_cross_entropy(logits, source["label"], weights)
    accuracy = jnp.mean(jnp.argmax(logits, -1) == source["label"])
    return loss, (
        model_state,
        {"source_accuracy": accuracy, "batch_weight_mean": jnp.mean(weights)},
    )

  return Method(
      name="importance_weighting",
      loss_fn=loss_fn,
      domains=("source",),
      labeled=("source",),
      setting="transductive",
      init_extras=init_extras,
      example_indices=("source",),
  )
