"""Evaluation of a classifier over a whole split: accuracy and cross-entropy."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from tljax.data import eval_batches


@functools.partial(jax.jit, static_argnames=("model",))
def _eval_batch(model, params, model_state, batch):
  outputs, _ = model.apply(params, model_state, batch["input"], train=False)
  logits = outputs.logits.astype(jnp.float32)
  mask = batch["mask"].astype(jnp.float32)
  losses = optax.softmax_cross_entropy_with_integer_labels(
      logits, batch["label"]
  )
  correct = (jnp.argmax(logits, axis=-1) == batch["label"]).astype(jnp.float32)
  return {
      "correct": jnp.sum(correct * mask),
      "loss": jnp.sum(losses * mask),
      "count": jnp.sum(mask),
  }


def evaluate(
    model, params, model_state, source, *, batch_size: int = 256
) -> dict:
  """Accuracy and mean cross-entropy of ``model`` on every example of ``source``.

  The model runs in inference mode (BatchNorm uses its running statistics).
  The last batch is padded and masked, so the evaluator compiles once.

  Returns:
    ``{"accuracy", "loss", "num_examples"}`` as Python numbers.
  """
  if len(source) == 0:
    raise ValueError("source is empty: nothing to evaluate")
  if source.num_classes is None:
    raise ValueError(
        f"source {source.name!r} has no classes; evaluate() "
        "measures classification accuracy"
    )
  totals = {"correct": 0.0, "loss": 0.0, "count": 0.0}
  batch_size = min(batch_size, len(source))
  for batch in eval_batches(source, batch_size=batch_size):
    sums = _eval_batch(model, params, model_state, batch)
    for key, value in jax.device_get(sums).items():
      totals[key] += float(np.asarray(value))
  count = totals["count"]
  return {
      "accuracy": totals["correct"] / count,
      "loss": totals["loss"] / count,
      "num_examples": int(count),
  }
