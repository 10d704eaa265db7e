#!/usr/bin/env python
"""One DeepJDOT training step on LeNet digits: tljax next to skada's PyTorch DeepJDOT.

Both sides train the same network on the same batch shapes, timed in the
same process, runners alternating within each round (so a busy machine
slows both alike); the figure is the ratio of their median steps/s.

* tljax: the registered ``deepjdot`` recipe (:mod:`tljax.methods.adaptation.deepjdot`)
  on ``configs/digits.py``'s network and optimizer — LeNet (28×28×1), a
  256-unit bottleneck (BatchNorm), SGD with Nesterov momentum, weight decay
  5e-4 and a cosine schedule — built as :mod:`tljax.train.loop` builds it
  (``make_train_step``, jitted, state donated; the step counter in the
  batch). The exact plan is SciPy's assignment, called back from the step.
* skada: ``skada.deep.DeepJDOTLoss`` (what ``skada.deep.DeepJDOT`` puts in
  its criterion; ``ot.emd2`` on the batch cost, the plan held constant) on
  the same LeNet → bottleneck → head written in PyTorch, one forward pass
  over the concatenated source and target batch, the source cross-entropy
  plus the term, ``torch.optim.SGD`` (Nesterov) with the same schedule.
  The step is written out rather than run through skorch's ``fit`` so that
  neither side pays for data loading.

Both use the paper's α = 0.001 and λ_t = 0.0001 and random inputs in
memory. skada and torch are benchmark-only dependencies (``pip install -e
".[bench]"``; skada's deep module also needs skorch); without them the
PyTorch row reads "n/a". Example::

  python scripts/benchmark_deepjdot.py                  # batch 64+64
  python scripts/benchmark_deepjdot.py --steps 5 --rounds 1 --warmup 2
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import train_state_and_step
from tljax import methods, models
from tljax.config import base_config

IMAGE_SHAPE = (28, 28, 1)
NUM_CLASSES = 10
BOTTLENECK_DIM = 256
LEARNING_RATE = 0.01
WEIGHT_DECAY = 5e-4
TOTAL_STEPS = 1500  # configs/digits.py's, for the cosine schedule


def tljax_runner(batch_size: int, seed: int):
  """``run(n) -> seconds`` of the tljax ``deepjdot`` step (see the module doc)."""
  config = base_config()  # the fields of configs/digits.py that matter here
  config.method = "deepjdot"
  config.model.name = "lenet"
  config.model.bottleneck_dim = BOTTLENECK_DIM
  config.optimizer.name = "sgd"
  config.optimizer.learning_rate = LEARNING_RATE
  config.optimizer.momentum = 0.9
  config.optimizer.nesterov = True
  config.optimizer.weight_decay = WEIGHT_DECAY
  config.optimizer.schedule = "cosine"
  config.steps = TOTAL_STEPS
  config.batch_size = batch_size
  model = models.create_model(
      "lenet",
      num_classes=NUM_CLASSES,
      input_shape=IMAGE_SHAPE,
      bottleneck_dim=BOTTLENECK_DIM,
  )
  method = methods.build_method("deepjdot", config, model)
  init_key, train_key = jax.random.split(jax.random.key(seed))
  params, model_state = jax.jit(model.init)(init_key)
  state, step = train_state_and_step(config, method, params, model_state)
  rng = np.random.default_rng(seed)
  source = jnp.asarray(rng.random((batch_size, *IMAGE_SHAPE), np.float32))
  target = jnp.asarray(rng.random((batch_size, *IMAGE_SHAPE), np.float32))
  labels = jnp.asarray(rng.integers(0, NUM_CLASSES, batch_size, np.int32))
  holder = {"state": state, "counter": 0}

  def run(num_steps: int) -> float:
    start = time.perf_counter()
    state, metrics = holder["state"], None
    for _ in range(num_steps):
      batch = {
          "step": np.int32(holder["counter"] % TOTAL_STEPS),
          "source": {"input": source, "label": labels},
          "target": {"input": target},
      }
      state, metrics = step(state, batch, train_key)
      holder["counter"] += 1
    jax.block_until_ready((state, metrics))
    holder["state"] = state
    return time.perf_counter() - start

  return run


def skada_runner(
    batch_size: int, seed: int, alpha: float, target_weight: float
):
  """``run(n) -> seconds`` of skada's DeepJDOT loss in a PyTorch step."""
  import torch
  from skada.deep import DeepJDOTLoss
  from torch import nn

  class LeNet(nn.Module):
    """tljax's LeNet in NCHW: 'SAME' 5×5 convs (20, 50), 2×2 pools, fc 500,
    then the bottleneck (Linear, BatchNorm, ReLU) and the head."""

    def __init__(self):
      super().__init__()
      height, width, channels = IMAGE_SHAPE
      self.conv1 = nn.Conv2d(channels, 20, 5, padding=2)
      self.conv2 = nn.Conv2d(20, 50, 5, padding=2)
      self.fc = nn.Linear((height // 4) * (width // 4) * 50, 500)
      self.bottleneck = nn.Sequential(
          nn.Linear(500, BOTTLENECK_DIM),
          nn.BatchNorm1d(BOTTLENECK_DIM),
          nn.ReLU(),
      )
      self.head = nn.Linear(BOTTLENECK_DIM, NUM_CLASSES)

    def forward(self, x):
      x = nn.functional.max_pool2d(nn.functional.relu(self.conv1(x)), 2)
      x = nn.functional.max_pool2d(nn.functional.relu(self.conv2(x)), 2)
      features = self.bottleneck(nn.functional.relu(self.fc(x.flatten(1))))
      return self.head(features), features

  torch.manual_seed(seed)
  network = LeNet()
  network.train()
  criterion = DeepJDOTLoss(reg_dist=alpha, reg_cl=target_weight)
  optimizer = torch.optim.SGD(
      network.parameters(),
      lr=LEARNING_RATE,
      momentum=0.9,
      weight_decay=WEIGHT_DECAY,
      nesterov=True,
  )
  scheduler = torch.optim.lr_scheduler.LambdaLR(
      optimizer,
      lambda k: 0.5
      * (1 + math.cos(math.pi * min(k, TOTAL_STEPS) / TOTAL_STEPS)),
  )
  rng = np.random.default_rng(seed)
  height, width, channels = IMAGE_SHAPE
  inputs = torch.from_numpy(
      rng.random((2 * batch_size, channels, height, width), np.float32)
  )
  labels = torch.from_numpy(rng.integers(0, NUM_CLASSES, batch_size)).long()

  def one_step():
    logits, features = network(inputs)
    loss = nn.functional.cross_entropy(logits[:batch_size], labels)
    loss = loss + criterion(
        labels,
        logits[batch_size:],
        features[:batch_size],
        features[batch_size:],
    )
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    scheduler.step()

  def run(num_steps: int) -> float:
    start = time.perf_counter()
    for _ in range(num_steps):
      one_step()
    return time.perf_counter() - start

  return run


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(
      description=__doc__.split("\n")[0],
      formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  parser.add_argument("--batch_size", type=int, default=64)
  parser.add_argument(
      "--steps", type=int, default=20, help="timed steps per round"
  )
  parser.add_argument("--rounds", type=int, default=5)
  parser.add_argument(
      "--warmup", type=int, default=5, help="untimed steps each"
  )
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument(
      "--torch_threads",
      type=int,
      default=0,
      help="PyTorch intra-op threads (0: its default)",
  )
  args = parser.parse_args(argv)

  defaults = methods.method_defaults("deepjdot")
  runners = {"tljax": tljax_runner(args.batch_size, args.seed)}
  note = ""
  try:
    import torch

    if args.torch_threads:
      torch.set_num_threads(args.torch_threads)
    runners["skada (PyTorch)"] = skada_runner(
        args.batch_size,
        args.seed,
        defaults["alpha"],
        defaults["target_weight"],
    )
  except ImportError as error:
    note = f"skada (PyTorch): n/a ({type(error).__name__}: {error})"
  compile_start = time.perf_counter()
  for run in runners.values():
    run(max(args.warmup, 1))
  warmup_seconds = time.perf_counter() - compile_start
  samples = {name: [] for name in runners}
  for _ in range(args.rounds):
    for name, run in runners.items():
      samples[name].append(args.steps / run(args.steps))
  rates = {name: statistics.median(values) for name, values in samples.items()}

  print(
      f"DeepJDOT step, LeNet digits, batch {args.batch_size}+{args.batch_size}, "
      f"{args.rounds} rounds of {args.steps} steps (median), warm-up "
      f"{warmup_seconds:.1f} s; α = {defaults['alpha']}, λ_t = "
      f"{defaults['target_weight']}\n"
  )
  print("| implementation | steps/s | images/s |")
  print("| --- | --- | --- |")
  for name, rate in rates.items():
    print(f"| {name} | {rate:.3g} | {2 * args.batch_size * rate:,.0f} |")
  if "skada (PyTorch)" in rates:
    print(
        f"\ntljax ÷ skada (PyTorch): "
        f"{rates['tljax'] / rates['skada (PyTorch)']:.2f}×"
    )
  if note:
    print(f"\n{note}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
