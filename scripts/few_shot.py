#!/usr/bin/env python
"""Inductive transfer with few target labels: MNIST-5k -> UCI digits, k labels per class.

1. Pretrain ``source_only`` on the labeled source domain (one run per seed).
2. For every k (labeled target examples per class), method and learning rate,
   transfer from the same seed's source run (``target_only`` trains from
   scratch), drawing the k labeled examples and a disjoint target validation
   set from the target training split with the run's seed.
3. For every (k, method), choose the learning rate with the best mean
   *validation* accuracy over seeds, and report the *test* accuracy of that
   choice (mean ± std over seeds). The test split never influences a choice.

  python scripts/few_shot.py --workdir workdirs/few_shot
  python scripts/few_shot.py --shots 1,10 --seeds 2 --methods finetune,l2_sp

Results: ``WORKDIR/results.md`` / ``results.json`` (and ``--output``).
"""

import copy
import json
import os
import sys

import numpy as np
from absl import app, flags, logging

from tljax.methods import available_methods
from tljax.train.experiment import check_experiment_config, run_experiment

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(_REPO, "configs"))
import digits  # noqa: E402  (the experiment's base config)

DEFAULT_METHODS = (
    "target_only",
    "linear_probe",
    "finetune",
    "lp_ft",
    "surgical",
    "l2_sp",
    "bss",
    "delta",
    "co_tuning",
)

_WORKDIR = flags.DEFINE_string(
    "workdir",
    os.path.join("workdirs", "few_shot"),
    "Where all runs and the results go.",
)
_SHOTS = flags.DEFINE_list(
    "shots",
    ["1", "5", "10", "all"],
    "Labeled target examples per class ('all': every "
    "training example not in the validation set).",
)
_METHODS = flags.DEFINE_list(
    "methods", list(DEFAULT_METHODS), "Methods to compare."
)
_LEARNING_RATES = flags.DEFINE_list(
    "learning_rates",
    ["0.03", "0.01"],
    "Learning-rate grid, chosen on validation.",
)
_SEEDS = flags.DEFINE_integer("seeds", 3, "Seeds 0..seeds-1.")
_SOURCE_STEPS = flags.DEFINE_integer(
    "source_steps", 1500, "Steps of the source pretraining."
)
_STEPS = flags.DEFINE_integer("steps", 300, "Steps of every target run.")
_BATCH_SIZE = flags.DEFINE_integer(
    "batch_size", 32, "Target batch size (at most 10 k)."
)
_VALIDATION = flags.DEFINE_integer(
    "validation_per_class", 5, "Target validation examples per class."
)
_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS data dir.")
_OUTPUT = flags.DEFINE_string(
    "output", None, "Also write the markdown table to this file."
)


def base_config():
  config = digits.get_config(f"seeds={_SEEDS.value}")
  config.baselines = ()
  config.data_dir = _DATA_DIR.value
  config.progress_bar = False
  config.eval_every = 0
  config.log_every = 100
  return config


def transfer_config(shots: str, method: str, learning_rate: float):
  config = base_config()
  config.method = method
  config.steps = _STEPS.value
  config.checkpoint_every = _STEPS.value
  config.optimizer.learning_rate = learning_rate
  labels_per_class = None if shots == "all" else int(shots)
  config.target.labels_per_class = labels_per_class
  config.target.validation_per_class = _VALIDATION.value
  config.batch_size = (
      _BATCH_SIZE.value
      if labels_per_class is None
      else min(_BATCH_SIZE.value, 10 * labels_per_class)
  )
  config.init_from.workdir = os.path.join(
      os.path.abspath(_WORKDIR.value), "source", "source_only", "seed_{seed}"
  )
  return config


def mean_std(values):
  values = np.asarray(values, np.float64)
  return (
      float(values.mean()),
      float(values.std(ddof=1)) if len(values) > 1 else 0.0,
  )


def format_results(rows) -> str:
  lines = [
      "| k per class | method | chosen lr | validation acc (%) | "
      "target test acc (%) | vs target-only (points) |",
      "| --- | --- | --- | --- | --- | --- |",
  ]
  reference = {
      row["shots"]: row["test_mean"]
      for row in rows
      if row["method"] == "target_only"
  }
  for row in rows:
    gap = ""
    if row["shots"] in reference and row["method"] != "target_only":
      gap = f"{100 * (row['test_mean'] - reference[row['shots']]):+.1f}"
    lines.append(
        f"| {row['shots']} | {row['method']} | {row['learning_rate']:g} | "
        f"{100 * row['validation_mean']:.1f} | "
        f"{100 * row['test_mean']:.1f} ± {100 * row['test_std']:.1f} | {gap} |"
    )
  return "\n".join(lines)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  unknown = sorted(set(_METHODS.value) - set(available_methods()))
  if unknown:
    raise app.UsageError(
        f"--methods {unknown} are unknown; registered: "
        f"{available_methods()}"
    )
  learning_rates = [float(value) for value in _LEARNING_RATES.value]
  workdir = os.path.abspath(_WORKDIR.value)

  source = base_config()
  source.method = "source_only"
  source.steps = _SOURCE_STEPS.value
  check_experiment_config(source)
  run_experiment(source, os.path.join(workdir, "source"))

  rows = []
  for shots in _SHOTS.value:
    for method in _METHODS.value:
      candidates = []
      for learning_rate in learning_rates:
        config = transfer_config(shots, method, learning_rate)
        check_experiment_config(config)
        results = run_experiment(
            config,
            os.path.join(
                workdir, f"k_{shots}", method, f"lr_{learning_rate:g}"
            ),
        )
        runs = [run for run in results["runs"] if run["method"] == method]
        validation = mean_std(
            [run["target_validation"]["accuracy"] for run in runs]
        )[0]
        test_mean, test_std = mean_std(
            [run["target_test"]["accuracy"] for run in runs]
        )
        candidates.append(
            {
                "shots": shots,
                "method": method,
                "learning_rate": learning_rate,
                "validation_mean": validation,
                "test_mean": test_mean,
                "test_std": test_std,
                "seeds": len(runs),
            }
        )
      # Model selection on the validation split only; ties go to the first lr.
      best = max(candidates, key=lambda row: row["validation_mean"])
      rows.append({**best, "candidates": copy.deepcopy(candidates)})
      print(format_results(rows[-1:]).splitlines()[-1], flush=True)

  table = format_results(rows)
  with open(os.path.join(workdir, "results.json"), "w", encoding="utf-8") as f:
    json.dump(rows, f, indent=2)
  with open(os.path.join(workdir, "results.md"), "w", encoding="utf-8") as f:
    f.write(table + "\n")
  if _OUTPUT.value:
    with open(_OUTPUT.value, "w", encoding="utf-8") as f:
      f.write(table + "\n")
  print()
  print(table)


if __name__ == "__main__":
  sys.exit(app.run(main))
