#!/usr/bin/env python
"""What (and whether) to transfer: transferability scores and the negative-transfer gap.

The script behind docs/tutorials/what_to_transfer.md. Part 1 trains three
candidate source models on variants of MNIST-5k (as is, rotated by 90°,
random labels). Part 2 scores each of them, and an untrained network, for
the UCI digits with 10 labeled examples per class, without training on the
target: LogME, LEEP, NCE and H-score of tljax.select, averaged over several
draws of the labeled examples. Part 3 measures what the scores predict —
the target test accuracy of a linear probe on each model's features — and
compares it with a target-only model trained on the same labels (logistic
regression on the pixels): the negative-transfer gap with its 95 % interval
over the paired draws.

  python docs/tutorials/what_to_transfer.py            # 1,000 source steps, 10 draws
  python docs/tutorials/what_to_transfer.py --quick    # 300 source steps, 5 draws
"""

import argparse
import os
import tempfile

import jax
import numpy as np
from ml_collections import ConfigDict
from scipy import stats
from sklearn.linear_model import LogisticRegression

from tljax import data, models, params, select
from tljax.config import base_config
from tljax.train.experiment import run_experiment

CANDIDATES = {  # name: the transform of the source domain (None: as is)
    "mnist": None,
    "mnist_rotated_90": {"rotation_degrees": 90.0},
    "mnist_random_labels": {"shuffle_labels_seed": 0},
}
MODEL = {"name": "mlp", "hidden_dims": (128,), "bottleneck_dim": 64}
LABELS_PER_CLASS = 10


def train_candidates(workdir: str, steps: int) -> dict:
  """Part 1: one source_only run per candidate; returns their run dirs."""
  run_dirs = {}
  for name, transform in CANDIDATES.items():
    config = base_config()  # MNIST-5k → UCI digits
    config.source.kwargs.transform = transform
    config.model = ConfigDict(MODEL)
    config.method, config.baselines = "source_only", ()
    config.steps = steps
    config.log_every = config.checkpoint_every = steps
    config.progress_bar = False
    run_experiment(config, os.path.join(workdir, name))
    run_dirs[name] = os.path.join(workdir, name, "source_only", "seed_0")
  return run_dirs


def inference(model):
  """``outputs(variables, inputs)``: features and source-head probabilities."""

  @jax.jit
  def outputs(variables, inputs):
    outputs, _ = model.apply(*variables, inputs, train=False)
    return outputs.features, jax.nn.softmax(outputs.logits)

  return lambda variables, inputs: tuple(
      np.asarray(array, np.float64) for array in outputs(variables, inputs))


def score_and_measure(run_dirs: dict, draws: int) -> None:
  """Parts 2 and 3: scores on the labeled examples, then the measured transfer."""
  model = models.create_model(num_classes=10, input_shape=(8, 8, 1), **MODEL)
  outputs_on = inference(model)
  candidates = {name: params.read_checkpoint(run_dir)
                for name, run_dir in run_dirs.items()}
  candidates["untrained"] = model.init(jax.random.key(0))
  train = data.get_source("uci_digits", "train").to_array_source()
  test = data.get_source("uci_digits", "test").to_array_source()
  test_inputs, test_labels = np.asarray(test.inputs), np.asarray(test.labels)
  test_features = {name: outputs_on(variables, test_inputs)[0]
                   for name, variables in candidates.items()}
  rows = {name: {"logme": [], "leep": [], "nce": [], "h_score": [],
                 "errors": []} for name in candidates}
  target_only_errors = []
  for draw in range(draws):
    labeled, _ = data.labeled_subsets(train, labels_per_class=LABELS_PER_CLASS,
                                      validation_per_class=0, seed=draw)
    inputs, labels = np.asarray(labeled.inputs), np.asarray(labeled.labels)
    # Target only: a linear model on the pixels, from the same labels.
    pixels = LogisticRegression(max_iter=2000).fit(
        inputs.reshape(len(inputs), -1), labels)
    target_only_errors.append(1 - pixels.score(
        test_inputs.reshape(len(test_inputs), -1), test_labels))
    for name, variables in candidates.items():
      features, probabilities = outputs_on(variables, inputs)
      row = rows[name]
      row["logme"].append(float(select.logme(features, labels)))
      row["leep"].append(float(select.leep(probabilities, labels)))
      row["nce"].append(float(select.nce(probabilities.argmax(1), labels,
                                         num_source_classes=10)))
      row["h_score"].append(float(select.h_score(features, labels)))
      # What the scores predict: a linear probe on the model's features.
      probe = LogisticRegression(max_iter=2000).fit(features, labels)
      row["errors"].append(1 - probe.score(test_features[name], test_labels))

  print(f"target only (logistic regression on pixels, {LABELS_PER_CLASS} "
        f"labels per class): {100 * (1 - np.mean(target_only_errors)):.1f} % "
        f"over {draws} draws")
  print("| source | LogME | LEEP | NCE | H-score | linear probe acc (%) | "
        "gap (points) | 95% CI | verdict |")
  print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
  for name, row in rows.items():
    gap = select.negative_transfer_gap(row["errors"], target_only_errors)
    print(f"| {name} | {np.mean(row['logme']):.3f} | {np.mean(row['leep']):.3f}"
          f" | {np.mean(row['nce']):.3f} | {np.mean(row['h_score']):.3f} | "
          f"{100 * (1 - np.mean(row['errors'])):.1f} | {100 * gap.gap:+.1f} | "
          f"[{100 * gap.low:+.1f}, {100 * gap.high:+.1f}] | {gap.verdict} |")
  accuracies = [1 - np.mean(row["errors"]) for row in rows.values()]
  print()
  for score in ("logme", "leep", "nce", "h_score"):
    tau = stats.kendalltau([np.mean(row[score]) for row in rows.values()],
                           accuracies).statistic
    print(f"Kendall τ between {score} and the linear-probe accuracy: {tau:+.2f}")


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--quick", action="store_true",
                      help="300 source steps and 5 draws (seconds)")
  parser.add_argument("--workdir", default=None,
                      help="where the runs go (default: a new temporary dir)")
  args = parser.parse_args()
  workdir = args.workdir or tempfile.mkdtemp(prefix="tljax_what_to_transfer_")
  run_dirs = train_candidates(workdir, steps=300 if args.quick else 1000)
  score_and_measure(run_dirs, draws=5 if args.quick else 10)


if __name__ == "__main__":
  main()
