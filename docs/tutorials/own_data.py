#!/usr/bin/env python
"""Your own data: arrays in memory, and arrays or images on disk.

The script behind docs/tutorials/own_data.md. Two "cameras" see the same
three classes of 16-dimensional measurements, the second one rotated by 60
degrees in each pair of coordinates, scaled and shifted. Part 1 registers them as named data sources from Python and trains
DANN against the source-only and target-only baselines; part 2 saves the
same arrays as ``.npz`` files, the form ``tljax train`` reads with
``--set source.name=npz:<file>``.

  python docs/tutorials/own_data.py --workdir /tmp/own_data
  python docs/tutorials/own_data.py --workdir /tmp/own_data --quick
"""

import argparse
import os

import numpy as np

from tljax import data
from tljax.config import base_config
from tljax.train.experiment import format_table, run_experiment


def camera(seed, degrees, scale, shift, n=600) -> dict:
  """``{split: (inputs, labels)}``: three Gaussian classes seen by one camera."""
  rng = np.random.default_rng(seed)
  centres = np.random.default_rng(0).normal(0.0, 1.5, (3, 16))  # shared
  labels = rng.integers(0, 3, n)
  inputs = centres[labels] + rng.normal(0.0, 1.5, (n, 16))
  angle = np.deg2rad(degrees)
  rotation = np.array([[np.cos(angle), -np.sin(angle)],
                       [np.sin(angle), np.cos(angle)]])
  inputs = inputs.reshape(n, 8, 2) @ rotation.T  # each pair of coordinates
  inputs = scale * inputs.reshape(n, 16) + shift
  cut = n * 4 // 5
  return {"train": (inputs[:cut], labels[:cut]),
          "test": (inputs[cut:], labels[cut:])}


CAMERAS = {"camera_a": camera(1, 0, 1.0, 0.0),
           "camera_b": camera(2, 60, 1.2, 0.5)}


# Part 1. Arrays in memory: a data source is a function of the split.
def register_cameras():
  for name, splits in CAMERAS.items():
    def build(_, split, *, data_dir, use_tfds, splits=splits):
      del data_dir, use_tfds  # arrays in memory: no files to prepare
      inputs, labels = splits[split]
      return data.ArraySource(inputs, labels, num_classes=3)
    data.register_source(name)(build)


def train_from_python(workdir: str, steps: int, seeds: int):
  config = base_config()
  config.source.name, config.target.name = "camera_a", "camera_b"
  config.model.name = "mlp"
  config.model.hidden_dims = (64,)
  config.model.bottleneck_dim = 32
  config.method, config.baselines = "dann", ("source_only", "target_only")
  config.seeds = tuple(range(seeds))
  config.steps, config.batch_size, config.progress_bar = steps, 32, False
  config.optimizer.learning_rate = 0.01
  return run_experiment(config, workdir)


# Part 2. Arrays on disk: one .npz per domain, for tljax train.
def save_npz(directory: str) -> list[str]:
  paths = []
  for name, splits in CAMERAS.items():
    path = os.path.join(directory, f"{name}.npz")
    np.savez(path, x_train=splits["train"][0], y_train=splits["train"][1],
             x_test=splits["test"][0], y_test=splits["test"][1])
    paths.append(path)
  return paths


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--quick", action="store_true", help="1 seed, 300 steps")
  args = parser.parse_args()
  register_cameras()
  results = train_from_python(
      os.path.join(args.workdir, "from_python"),
      steps=300 if args.quick else 1000,
      seeds=1 if args.quick else 3,
  )
  print(format_table(results["table"]))
  for path in save_npz(args.workdir):
    print("saved", path, "with", ", ".join(sorted(np.load(path).files)))


if __name__ == "__main__":
  main()
