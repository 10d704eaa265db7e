#!/usr/bin/env python
"""Unsupervised transfer: cluster UCI digits with features learned without labels.

No labels on either domain. Each recipe (``dae``, ``simclr``;
:mod:`tljax.methods.unsupervised`, configs/unsupervised.py) learns a LeNet
representation from unlabeled inputs; k-means (10 clusters, best of 10
k-means++ starts, :func:`tljax.unsupervised.kmeans`) then clusters the UCI
digits' test split (450 images that no representation trained on) in that
feature space, and the clusters are scored against the UCI classes with NMI,
ARI and Hungarian accuracy (:mod:`tljax.unsupervised.metrics`). Rows:

* raw pixels: k-means on the 64 target pixels (no representation);
* random LeNet: the features of the untrained network (same seed);
* ``<recipe>``, learned on the target: trained on the unlabeled UCI training
  inputs (the target-only reference: no transfer);
* ``<recipe>``, learned on the source: trained on the unlabeled MNIST-5k
  training inputs and applied to UCI as is (the transfer).

Every number is mean ± std over seeds (a seed fixes the network's
initialisation, the training batches and the k-means starts). The target
labels are used only to score the final clusters; every hyper-parameter is
fixed in advance (configs/unsupervised.py, the recipes' defaults). The source
rows also report the paired difference in accuracy to the same recipe learned
on the target: below zero, the source representation clusters the target
worse than one learned on the target itself (negative transfer).

  python scripts/unsupervised.py --workdir workdirs/unsupervised \\
      --output docs/unsupervised_results.md
  python scripts/unsupervised.py --methods dae --seeds 1 --steps 50   # quick

Runs go to ``WORKDIR/<source|target>/<recipe>/seed_<seed>`` and resume when
the command is repeated; the table also goes to ``WORKDIR/results.md`` and
a JSON summary to ``WORKDIR/results.json`` and next to ``--output``.
"""

import json
import os
import sys
import time

import jax
import numpy as np
from absl import app, flags, logging

from tljax import unsupervised
from tljax.params import read_checkpoint
from tljax.train.experiment import check_experiment_config, run_dir
from tljax.train.loop import build_model, load_domains, train_and_evaluate

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(_REPO, "configs"))
import unsupervised as unsupervised_config  # noqa: E402

METHODS = ("dae", "simclr")
DOMAIN_NAMES = {
    "target": "target (UCI, unlabeled)",
    "source": "source (MNIST-5k, unlabeled)",
}
NUM_CLUSTERS = 10
KMEANS_SALT = 0xC105

_WORKDIR = flags.DEFINE_string(
    "workdir",
    os.path.join("workdirs", "unsupervised"),
    "Where all runs and the results go.",
)
_OUTPUT = flags.DEFINE_string(
    "output",
    os.path.join("docs", "unsupervised_results.md"),
    "The markdown report; the JSON summary goes "
    "next to it (same name, .json).",
)
_METHODS = flags.DEFINE_list("methods", list(METHODS), "Recipes to compare.")
_SEEDS = flags.DEFINE_integer("seeds", 3, "Seeds 0..seeds-1.")
_STEPS = flags.DEFINE_integer(
    "steps",
    None,
    "Override the training steps (default: the " "config's 1,000).",
)
_BATCH_SIZE = flags.DEFINE_integer(
    "batch_size",
    None,
    "Override the batch size (default: the " "config's 128).",
)
_KMEANS_INIT = flags.DEFINE_integer("kmeans_init", 10, "k-means++ starts.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS data dir.")


def representation_config(method: str, domain: str):
  """The config of ``method`` learning on ``domain``'s unlabeled inputs."""
  config = unsupervised_config.get_config(
      f"method={method},representation={domain},seeds={_SEEDS.value}"
  )
  config.data_dir = _DATA_DIR.value
  config.progress_bar = False
  if _STEPS.value:
    config.steps = _STEPS.value
  if _BATCH_SIZE.value:
    config.batch_size = _BATCH_SIZE.value
  config.checkpoint_every = config.steps
  check_experiment_config(config)
  return config


def cluster_scores(features, labels, seed: int) -> dict:
  """k-means on ``features``, scored against ``labels``."""
  key = jax.random.fold_in(jax.random.key(seed), KMEANS_SALT)
  result = unsupervised.kmeans(
      np.asarray(features, np.float32),
      NUM_CLUSTERS,
      key=key,
      num_init=_KMEANS_INIT.value,
  )
  clusters = np.asarray(result.assignments)
  return {
      "nmi": unsupervised.normalized_mutual_info(labels, clusters),
      "ari": unsupervised.adjusted_rand_index(labels, clusters),
      "accuracy": unsupervised.clustering_accuracy(labels, clusters),
  }


def summarize(name: str, trained_on: str, per_seed: list[dict]) -> dict:
  row = {"features": name, "learned_on": trained_on, "seeds": len(per_seed)}
  for metric in ("nmi", "ari", "accuracy"):
    values = np.array([scores[metric] for scores in per_seed])
    row[metric] = {
        "mean": float(values.mean()),
        "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
        "runs": values.tolist(),
    }
  return row


def transfer_gap(source_row: dict, target_row: dict) -> dict:
  """Paired accuracy difference (source − target-learned) over seeds."""
  differences = np.array(source_row["accuracy"]["runs"]) - np.array(
      target_row["accuracy"]["runs"]
  )
  return {
      "mean": float(differences.mean()),
      "std": (float(differences.std(ddof=1)) if len(differences) > 1 else 0.0),
      "runs": differences.tolist(),
  }


def format_table(rows: list[dict]) -> str:
  lines = [
      "| features | learned on | NMI | ARI | accuracy (%) | "
      "Δ accuracy vs learned on target (points) | seeds |",
      "| --- | --- | --- | --- | --- | --- | --- |",
  ]
  for row in rows:
    nmi, ari, accuracy = row["nmi"], row["ari"], row["accuracy"]
    gap = row.get("gap_vs_target")
    gap_cell = (
        f"{100 * gap['mean']:+.1f} ± {100 * gap['std']:.1f}" if gap else ""
    )
    lines.append(
        f"| {row['features']} | {row['learned_on']} | "
        f"{nmi['mean']:.3f} ± {nmi['std']:.3f} | "
        f"{ari['mean']:.3f} ± {ari['std']:.3f} | "
        f"{100 * accuracy['mean']:.1f} ± {100 * accuracy['std']:.1f} | "
        f"{gap_cell} | {row['seeds']} |"
    )
  return "\n".join(lines)


def report_preamble(minutes: float, config) -> str:
  command = " ".join(["python scripts/unsupervised.py", *sys.argv[1:]])
  return (
      "# Unsupervised transfer: clustering UCI digits\n\n"
      "Generated by `scripts/unsupervised.py` (see its docstring):\n\n"
      f"```\n{command}\n```\n\n"
      "k-means (10 clusters, best of "
      f"{_KMEANS_INIT.value} k-means++ starts) on the UCI test split (450 "
      "digits no representation trained on), scored against the UCI "
      "classes; mean ± std over seeds "
      f"{list(range(_SEEDS.value))}. Each recipe trains a LeNet "
      f"({config.steps} steps of {config.batch_size} unlabeled images, "
      f"{config.optimizer.name} at {config.optimizer.learning_rate:g}) on "
      "the unlabeled training inputs of the domain in the second column; no "
      "label of either domain trains or chooses anything. Δ is the paired "
      "accuracy difference to the same recipe learned on the target: below "
      "zero, the transferred representation clusters the target worse than "
      f"one learned on the target itself. This invocation took {minutes:.0f} "
      "min on this machine (runs already in the work dir are reused, not "
      "retrained).\n\n"
  )


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  unknown = sorted(set(_METHODS.value) - set(METHODS))
  if unknown or not _METHODS.value:
    raise app.UsageError(
        f"--methods {unknown or _METHODS.value} are not "
        f"unsupervised recipes; known: {list(METHODS)}"
    )
  if _SEEDS.value < 1:
    raise app.UsageError(f"--seeds must be >= 1, got {_SEEDS.value}")
  start = time.perf_counter()
  workdir = os.path.abspath(_WORKDIR.value)
  seeds = list(range(_SEEDS.value))

  # --- Representations: every recipe on each domain's unlabeled inputs ------
  configs = {
      (method, domain): representation_config(method, domain)
      for domain in DOMAIN_NAMES
      for method in _METHODS.value
  }
  for domain in DOMAIN_NAMES:
    domains = load_domains(configs[(_METHODS.value[0], domain)])
    for method in _METHODS.value:
      for seed in seeds:
        summary = train_and_evaluate(
            configs[(method, domain)],
            run_dir(os.path.join(workdir, domain), method, seed),
            method_name=method,
            seed=seed,
            domains=domains,
        )
        print(
            f"{method} on {domain}, seed {seed}: {summary['steps']} steps, "
            f"{summary['wall_seconds']:.0f} s",
            flush=True,
        )

  # --- Clustering the target test split in each feature space ----------------
  config = configs[(_METHODS.value[0], "source")]
  domains = load_domains(config)
  test = domains["target"]["test"]
  inputs, labels = np.asarray(test.inputs), np.asarray(test.labels)
  model = build_model(config, domains)
  model_keys = set(jax.eval_shape(model.init, jax.random.key(0))[0])
  features_of = jax.jit(
      lambda params, model_state: model.apply(
          params, model_state, inputs, train=False
      )[0].features
  )

  init = jax.jit(model.init)
  scores = {"raw pixels": [], "random LeNet": []}
  for seed in seeds:
    scores["raw pixels"].append(
        cluster_scores(inputs.reshape(len(inputs), -1), labels, seed)
    )
    params, model_state = init(jax.random.key(seed))
    scores["random LeNet"].append(
        cluster_scores(features_of(params, model_state), labels, seed)
    )
    for domain in DOMAIN_NAMES:
      for method in _METHODS.value:
        params, model_state = read_checkpoint(
            run_dir(os.path.join(workdir, domain), method, seed)
        )
        params = {
            key: value for key, value in params.items() if key in model_keys
        }
        scores.setdefault((method, domain), []).append(
            cluster_scores(features_of(params, model_state), labels, seed)
        )

  rows = [
      summarize("raw pixels", "—", scores["raw pixels"]),
      summarize("random LeNet", "— (untrained)", scores["random LeNet"]),
  ]
  for domain in ("target", "source"):
    for method in _METHODS.value:
      row = summarize(method, DOMAIN_NAMES[domain], scores[(method, domain)])
      if domain == "source":
        reference = next(
            other
            for other in rows
            if other["features"] == method
            and other["learned_on"] == DOMAIN_NAMES["target"]
        )
        row["gap_vs_target"] = transfer_gap(row, reference)
      rows.append(row)

  # --- Report -----------------------------------------------------------------
  minutes = (time.perf_counter() - start) / 60
  table = format_table(rows)
  results = {
      "rows": rows,
      "seeds": seeds,
      "methods": list(_METHODS.value),
      "steps": config.steps,
      "batch_size": config.batch_size,
      "kmeans_init": _KMEANS_INIT.value,
      "clustered": {
          "dataset": config.target.name,
          "split": config.target.test_split,
          "num_examples": int(len(labels)),
      },
      "wall_seconds": minutes * 60,
  }
  for path in (
      os.path.join(workdir, "results.json"),
      os.path.splitext(_OUTPUT.value)[0] + ".json",
  ):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as stream:
      json.dump(results, stream, indent=2)
  with open(os.path.join(workdir, "results.md"), "w", encoding="utf-8") as f:
    f.write(table + "\n")
  with open(_OUTPUT.value, "w", encoding="utf-8") as f:
    f.write(report_preamble(minutes, config) + table + "\n")
  print()
  print(table)


if __name__ == "__main__":
  sys.exit(app.run(main))
