"""MCD: two classifier heads against a generator, three updates per step.

Maximum Classifier Discrepancy (Saito et al., CVPR 2018), the one
adaptation recipe with stages (:class:`tljax.losses.Stage`): see
:func:`build_mcd` and :mod:`tljax.methods.adaptation`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from tljax import align
from tljax.losses import Stage
from tljax.methods.adaptation._base import (
    check_positive_int,
    joint_forward,
    split_params,
)
from tljax.methods.base import Method
from tljax.methods.registry import register_method

SECOND_HEAD = "head2"  # MCD's second classifier


def fresh_head(context, salt: int) -> dict:
  """The model's head initialised anew (same shapes and initializer)."""
  key = jax.random.fold_in(jax.random.key(context.seed), salt)
  params, _ = context.model.init(key)
  return params["head"]


def apply_head(head: dict, features: jax.Array) -> jax.Array:
  """A linear head ``{"kernel", "bias"}`` on ``(N, dim)`` features."""
  return features.astype(jnp.float32) @ head["kernel"].astype(
      jnp.float32
  ) + head["bias"].astype(jnp.float32)


def check_mcd(settings):
  check_positive_int(settings, "num_k")


@register_method("mcd", defaults=dict(num_k=4), check=check_mcd)
def build_mcd(config, model, *, num_k) -> Method:
  """Maximum Classifier Discrepancy (Saito et al., CVPR 2018), three steps per batch.

  The generator ``G`` is the backbone and bottleneck, ``F1`` the model's
  head and ``F2`` a second head of the same shape (``head2/...``,
  initialised independently). Each training step runs, in one compiled
  function, with one optimizer state for ``G`` and one for ``F1, F2`` (as
  the authors' two optimizers):

  A. ``G, F1, F2`` ← minimise CE(F1) + CE(F2) on the source batch;
  B. ``F1, F2`` ← minimise CE(F1) + CE(F2) − d(F1, F2) on target;
  C. ``G`` ← minimise d(F1, F2) on target, ``num_k`` times
     (4, the authors').

  with ``d`` :func:`tljax.align.classifier_discrepancy`. Every forward pass
  runs on the concatenated source and target batch. Evaluation uses ``F1``.
  Deviations: the classifiers are the model's linear head (the paper's
  digit networks use three-layer fully-connected classifiers after a
  convolutional generator; here ``G`` includes the bottleneck layer); and
  the learning-rate schedule of each group runs over its own number of
  updates (``G`` is updated ``1 + num_k`` times per step).
  """
  del config

  def init_params(context):
    return {SECOND_HEAD: fresh_head(context, 0x3CD)}

  def forward(params, model_state, batch, key):
    model_params, second = split_params(params, SECOND_HEAD)
    (
        loss_1,
        model_state,
        source_features,
        target_features,
        source_logits,
        target_logits,
        metrics,
    ) = joint_forward(model, model_params, model_state, batch, key)
    source_logits_2 = apply_head(second, source_features)
    loss_2 = jnp.mean(
        optax.softmax_cross_entropy_with_integer_labels(
            source_logits_2, batch["source"]["label"]
        )
    )
    discrepancy = align.classifier_discrepancy(
        jax.nn.softmax(target_logits),
        jax.nn.softmax(apply_head(second, target_features)),
    )
    return loss_1 + loss_2, discrepancy, model_state, metrics

  def step_a(params, model_state, batch, key, extras):
    del extras
    loss, _, model_state, metrics = forward(params, model_state, batch, key)
    return loss, (model_state, metrics)

  def step_b(params, model_state, batch, key, extras):
    del extras
    loss, discrepancy, model_state, metrics = forward(
        params, model_state, batch, key
    )
    return loss - discrepancy, (
        model_state,
        {**metrics, "discrepancy": discrepancy},
    )

  def step_c(params, model_state, batch, key, extras):
    del extras
    _, discrepancy, model_state, _ = forward(params, model_state, batch, key)
    return discrepancy, (model_state, {"discrepancy": discrepancy})

  stages = (
      Stage("a", step_a, ("generator", "classifiers")),
      Stage("b", step_b, ("classifiers",)),
      Stage("c", step_c, ("generator",), repeat=num_k),
  )
  return Method(
      name="mcd",
      loss_fn=step_a,
      domains=("source", "target"),
      labeled=("source",),
      setting="transductive",
      init_params=init_params,
      stages=stages,
      param_groups=(
          (f"(head|{SECOND_HEAD})/.*", "classifiers"),
          (".*", "generator"),
      ),
  )
