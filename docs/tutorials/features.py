#!/usr/bin/env python
"""Feature transfer: an alignment loss, a recipe built on it, and what it does to the features.

The script behind docs/tutorials/features.md. Part 1 measures a domain shift
with the alignment losses of tljax.align; part 2 writes a domain-adaptation
recipe (source cross-entropy + λ·MK-MMD² of the bottleneck features, i.e.
DAN), registers it and trains it on the two-moons problem with the target
rotated by 30° (no target label), next to the source-only model; part 3
measures the shift between the trained models' source and target features.

  python docs/tutorials/features.py            # 3 seeds, with JAN and target-only
  python docs/tutorials/features.py --quick    # 1 seed: the recipe and source-only
"""

import argparse
import os
import tempfile

import jax
import jax.numpy as jnp
import optax
from ml_collections import ConfigDict

from tljax import align
from tljax.config import base_config
from tljax.methods import Method, register_method
from tljax.report import run_features
from tljax.train.experiment import format_table, run_experiment


def measure_shift():
  """Part 1: MK-MMD² and CORAL grow with the shift between two samples."""
  source_key, target_key = jax.random.split(jax.random.key(0))
  source = jax.random.normal(source_key, (256, 8))
  for shift in (0.0, 0.5, 1.0):
    target = jax.random.normal(target_key, (256, 8)) * (1 + shift) + shift
    print(f"shift {shift:.1f}: MMD² {float(align.mmd(source, target)):.4f}  "
          f"CORAL {float(align.coral(source, target)):.4f}")


@register_method("mmd_alignment")
def build_mmd_alignment(config, model) -> Method:
  """Source cross-entropy + λ·MK-MMD² between the batches' bottleneck features."""
  trade_off = 1.0

  def loss_fn(params, model_state, batch, key, extras):
    del extras
    source, target = batch["source"], batch["target"]  # target: inputs only
    num_source = source["input"].shape[0]
    inputs = jnp.concatenate([source["input"], target["input"]])
    outputs, model_state = model.apply(params, model_state, inputs,
                                       train=True, key=key)
    task = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(
        outputs.logits[:num_source], source["label"]))
    features = outputs.features
    discrepancy = align.mmd(features[:num_source], features[num_source:])
    return task + trade_off * discrepancy, (model_state,
                                            {"task": task, "mmd": discrepancy})

  # Labels of the source only: the loop strips the target's before the loss.
  return Method(name="mmd_alignment", loss_fn=loss_fn,
                domains=("source", "target"), labeled=("source",),
                setting="transductive")


def moons_config(*, seeds: int, steps: int) -> ConfigDict:
  """Two moons → the same moons rotated by 30°, a small MLP with a bottleneck."""
  config = base_config()
  config.source.name = config.target.name = "two_moons"
  config.target.kwargs.rotation_degrees = 30.0
  config.target.kwargs.seed = 1  # an independent draw, not the source rotated
  config.model = ConfigDict({"name": "mlp", "hidden_dims": (64, 64),
                             "bottleneck_dim": 32})
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 1e-3
  config.optimizer.weight_decay = 0.0
  config.optimizer.schedule = "constant"
  config.seeds = tuple(range(seeds))
  config.steps = steps
  config.batch_size = 64
  config.log_every = config.checkpoint_every = steps
  config.progress_bar = False
  return config


def adapt(workdir: str, *, quick: bool) -> None:
  """Parts 2 and 3: train the recipe, then compare the features."""
  config = moons_config(seeds=1 if quick else 3, steps=300 if quick else 1000)
  config.method = "mmd_alignment"
  config.baselines = ("source_only",) if quick else (
      "source_only", "jan", "target_only")
  results = run_experiment(config, workdir)
  print(format_table(results["table"]))
  print()
  for method in ("source_only", "mmd_alignment"):
    for seed in config.seeds:
      # Bottleneck features of both domains' test examples.
      points = run_features(os.path.join(workdir, method, f"seed_{seed}"))
      source = points["features"][points["domain"] == "source"]
      target = points["features"][points["domain"] == "target"]
      print(f"{method} seed {seed}: feature MMD² "
            f"{float(align.mmd(source, target)):.4f}  CORAL "
            f"{float(align.coral(source, target)):.5f}")


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--quick", action="store_true",
                      help="one seed, the recipe and source-only (seconds)")
  parser.add_argument("--workdir", default=None,
                      help="where the runs go (default: a new temporary dir)")
  args = parser.parse_args()
  measure_shift()
  print()
  adapt(args.workdir or tempfile.mkdtemp(prefix="tljax_features_"),
        quick=args.quick)


if __name__ == "__main__":
  main()
