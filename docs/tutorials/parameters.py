#!/usr/bin/env python
"""Parameter transfer: fine-tuning and LP-FT with frozen and trainable trees.

The script behind docs/tutorials/parameters.md. Part 1 splits a model's
parameters into a trainable and a frozen tree with ordered regex rules and
takes one jitted step; part 2 pretrains an MLP on MNIST-5k digits and
transfers it to the UCI digits with one labeled example per class, by linear
probing, LP-FT and fine-tuning, next to training on the target alone.

  python docs/tutorials/parameters.py            # 3 seeds (a few minutes)
  python docs/tutorials/parameters.py --quick    # 1 seed, fewer steps
"""

import argparse
import os
import tempfile

import jax
import numpy as np
import optax
from ml_collections import ConfigDict

from tljax import data, models, params
from tljax.config import base_config
from tljax.methods import build_method
from tljax.train import create_train_state, make_train_step
from tljax.train.experiment import format_gaps, format_table, run_experiment


def frozen_and_trainable():
  """Part 1: linear probing's rules split one parameter tree in two."""
  model = models.create_model("mlp", num_classes=10, input_shape=(8, 8, 1),
                              hidden_dims=(128,), bottleneck_dim=64)
  init_params, model_state = model.init(jax.random.key(0))

  # Ordered (regex, value) rules over a/b/c names; the first full match wins.
  # A value is a learning-rate multiplier; None freezes the parameter.
  rules = [("head/.*", 1.0), (".*", None)]
  trainable, frozen = params.split(init_params, rules)
  print("trainable:", ", ".join(params.flatten(trainable)))
  print("frozen:", ", ".join(params.flatten(frozen)))

  # The shared step differentiates the trainable tree only: the frozen one
  # gets no gradient and no optimizer state.
  optimizer = optax.sgd(0.1)
  state = create_train_state(init_params, model_state, optimizer, rules)
  method = build_method("target_only", base_config(), model)
  step = make_train_step(method.loss_fn, optimizer)
  target = data.get_source("uci_digits", "train").to_array_source()
  batch = next(data.batches(target, batch_size=32, seed=0))
  frozen_before = {name: np.asarray(leaf)
                   for name, leaf in params.flatten(frozen).items()}
  head_before = {name: np.asarray(leaf)
                 for name, leaf in params.flatten(trainable).items()}
  state, metrics = step(state, {"target": batch}, jax.random.key(1))
  frozen_after = params.flatten(state.frozen)
  head_after = params.flatten(state.trainable)
  print("after one step: frozen unchanged:",
        all(np.array_equal(frozen_after[name], leaf)
            for name, leaf in frozen_before.items()),
        "| head changed:",
        all(not np.array_equal(head_after[name], leaf)
            for name, leaf in head_before.items()),
        f"| loss {float(metrics['loss']):.3f}")


def digits_config(*, seeds: int, steps: int) -> ConfigDict:
  """MNIST-5k → UCI digits (base_config's domains) with a small MLP."""
  config = base_config()
  config.model = ConfigDict({"name": "mlp", "hidden_dims": (128,),
                             "bottleneck_dim": 64})
  config.optimizer.learning_rate = 0.01
  config.seeds = tuple(range(seeds))
  config.steps = steps
  config.log_every = config.checkpoint_every = steps
  config.progress_bar = False
  return config


def transfer(workdir: str, *, quick: bool) -> None:
  """Part 2: pretrain on the source, then transfer with one label per class."""
  seeds = 1 if quick else 3
  # The source model: trained once, shared by every transfer recipe.
  source = digits_config(seeds=seeds, steps=200 if quick else 1000)
  source.method, source.baselines = "source_only", ()
  source.batch_size = 64
  run_experiment(source, os.path.join(workdir, "source"))

  config = digits_config(seeds=seeds, steps=100 if quick else 300)
  config.init_from.workdir = os.path.join(workdir, "source", "source_only",
                                          "seed_{seed}")
  config.target.labels_per_class = 1  # k labeled target examples per class
  config.batch_size = 10  # all ten labeled examples in every batch
  # LP-FT (Kumar et al. 2022): a linear probe first, then fine-tune
  # everything from the probe, head included.
  config.method = "lp_ft"
  config.baselines = ("linear_probe", "target_only") if quick else (
      "linear_probe", "finetune", "target_only")
  results = run_experiment(config, os.path.join(workdir, "transfer"))
  print(format_table(results["table"]))
  print()
  if len(config.seeds) > 1:
    # ε(method) − ε(target_only) with a 95 % interval over the paired seeds.
    print(format_gaps(results["negative_transfer"]))
  else:
    print("(one seed: no interval for the negative-transfer gap; run without "
          "--quick for three)")


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--quick", action="store_true",
                      help="one seed and fewer steps (seconds)")
  parser.add_argument("--workdir", default=None,
                      help="where the runs go (default: a new temporary dir)")
  args = parser.parse_args()
  frozen_and_trainable()
  print()
  transfer(args.workdir or tempfile.mkdtemp(prefix="tljax_parameters_"),
           quick=args.quick)


if __name__ == "__main__":
  main()
