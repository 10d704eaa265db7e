"""Ranks candidate source models for a target task by transferability scores.

This is the library behind ``tljax rank-sources`` (and
``scripts/rank_sources.py``, which calls it). It sits on the floor of the
experiment runner (:mod:`tljax.train.experiment`), since ``--verify`` trains
transfers with it; the pure scoring, ranking and correlation functions it
uses are :mod:`tljax.select.source_ranking` (the floor of the scores),
rebuilding a run's model is :mod:`tljax.train.source_runs`, and steps 1 and 2
below (the target task, the features, the scores and their table) are
:mod:`tljax.train.source_scores`, whose names this module re-exports; step 3
and the results are here.

Given a labeled target task (k labeled examples per class of the target's
training split, drawn per seed exactly as
:func:`tljax.train.domains.select_target_labels` draws them for training) and
several source runs (tljax run directories, ``WORKDIR/<method>/seed_<n>``,
each with a checkpoint and ``run_config.json``) and/or converted pretrained
checkpoints of the ecosystem (``"timm:resnet50=/ckpt/model.safetensors"``,
:mod:`tljax.models.convert.spec`: a zoo, as in the LogME paper; their own
upstream heads give LEEP and NCE, and a converted source's verification
fine-tunes from the checkpoint on the target alone):

1. rebuild each run's model from its ``run_config.json`` and checkpoint, and
   compute on the labeled target examples its features (``layer``:
   ``bottleneck`` or ``backbone``, inference mode) and its source head's
   class probabilities;
2. compute the transferability scores of :mod:`tljax.select` (LogME, LEEP,
   NCE, H-score, shrinkage H-score, GBC, TransRate; higher = better) for
   every seed's draw of labeled examples, and rank the sources by each
   score's mean over the seeds; the same scores of the *untrained* network
   (the source architecture at the initialisation ``target_only`` starts
   from) are reported as a reference: a source scoring below it is predicted
   to transfer negatively;
3. with ``verify_methods``, transfer from every source with each method
   (``finetune``: every parameter, new head) for every seed, with fixed
   hyper-parameters (no choice is made on any data), plus a ``target_only``
   reference with the same labels, seeds and hyper-parameters, and report for
   each score the weighted Kendall τ between score and measured target test
   accuracy (``scipy.stats.weightedtau``, the sources ranked by the measured
   accuracy) and each source's negative-transfer gap ε(transfer) −
   ε(target only) with a 95 % interval over the paired seeds
   (:func:`tljax.select.negative_transfer_gap`).

  tljax rank-sources --sources workdirs/zoo/mnist/source_only/seed_0,\\
      workdirs/zoo/rot90/source_only/seed_0 --labels_per_class 10
  tljax rank-sources --sources ... --verify --seeds 0,1,2 \\
      --workdir workdirs/rank_sources

Results: ``WORKDIR/rank_sources.md`` and ``WORKDIR/rank_sources.json``
(:func:`rank_sources`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence

import jax
import ml_collections
import numpy as np

from tljax import methods as methods_lib
from tljax.select.source_ranking import (
    SCORE_NAMES,
    SCORE_TITLES,
    check_score_names,
    correlations,
    predicted_negative,
    ranking,
    transfer_gaps,
)
from tljax.train import metrics as metrics_lib
from tljax.train.experiment import check_experiment_config, run_experiment
from tljax.train.source_runs import SourceRun, model_config
from tljax.train.source_scores import (
    FEATURE_LAYERS,
    REFERENCE_NAME,
    TargetSpec,
    extract,
    format_scores,
    image_target_kwargs,
    load_source_runs,
    load_target,
    score_model,
    score_sources,
    score_untrained,
    target_config,
    target_name,
    untrained_params,
)

__all__ = [
    "FEATURE_LAYERS",
    "REFERENCE_NAME",
    "RESULTS_JSON",
    "RESULTS_MARKDOWN",
    "SCORE_NAMES",
    "SCORE_TITLES",
    "TargetSpec",
    "TrainSettings",
    "check_methods",
    "enable_compilation_cache",
    "extract",
    "format_scores",
    "format_verification",
    "image_target_kwargs",
    "load_source_runs",
    "load_target",
    "mean_std",
    "parse_learning_rates",
    "rank_sources",
    "ranking",
    "results_dict",
    "score_model",
    "score_sources",
    "score_untrained",
    "target_config",
    "target_name",
    "transfer_config",
    "untrained_params",
    "verification_gaps",
    "verify",
]

RESULTS_JSON = "rank_sources.json"
RESULTS_MARKDOWN = "rank_sources.md"


# --- Verification: transfer and measure -----------------------------------------


@dataclasses.dataclass(frozen=True)
class TrainSettings:
  """Fixed hyper-parameters of every verification run (scripts/few_shot.py's)."""

  steps: int = 300
  batch_size: int = 32
  learning_rates: Mapping[str, float] = dataclasses.field(
      default_factory=lambda: {"default": 0.01}
  )

  def learning_rate(self, method: str) -> float:
    rates = dict(self.learning_rates)
    if method in rates:
      return float(rates[method])
    if "default" not in rates:
      raise ValueError(
          f"no learning rate for method {method!r} and no "
          f"default in {rates}"
      )
    return float(rates["default"])


def parse_learning_rates(values: Sequence[str]) -> dict[str, float]:
  """``["0.01", "linear_probe=0.03"]`` → ``{"default": 0.01, "linear_probe": 0.03}``."""
  rates = {}
  for value in values:
    method, separator, rate = str(value).rpartition("=")
    try:
      rates[method if separator else "default"] = float(rate)
    except ValueError:
      raise ValueError(
          f"learning rate {value!r} must be a number or " "method=number"
      ) from None
  for method, rate in rates.items():
    if not rate > 0:
      raise ValueError(f"learning rate of {method!r} must be > 0, got {rate}")
  return rates


def transfer_config(
    run: SourceRun | None,
    method: str,
    target: TargetSpec,
    seeds: Sequence[int],
    settings: TrainSettings,
    model: Mapping | None = None,
    source_from_target: bool = False,
    source: Mapping | None = None,
    num_classes: int = 10,
) -> ml_collections.ConfigDict:
  """The config of ``method`` on the target from ``run`` (None: no source).

  The model is the source run's (``model`` when ``run`` is None); the source
  domain is the run's (read for its test accuracy only), or the target's for
  a converted checkpoint or with ``source_from_target``, or ``source`` (a
  source run's ``config.source``) when ``run`` is None; the target and its
  labeled draws follow ``target``; optimizer and schedule are the library's
  defaults (SGD, momentum 0.9, Nesterov, weight decay 5e-4, cosine) with
  ``settings``' learning rate, steps and batch size (at most the
  ``num_classes`` × k labelled examples).
  """
  config = target_config(target)
  config.method = method
  config.baselines = ()
  config.seeds = tuple(int(seed) for seed in seeds)
  config.model = ml_collections.ConfigDict(
      model_config(run.config) if run is not None else dict(model)
  )
  if source_from_target or (run is not None and run.pretrained):
    # A converted checkpoint has no source domain: the target stands in
    # (read for the model's classes and inputs; finetune never trains on it).
    config.source = ml_collections.ConfigDict(config.target.to_dict())
    config.source.labels_per_class = None
    config.source.validation_per_class = 0
  elif run is None and source is not None:
    config.source = ml_collections.ConfigDict(dict(source))
  if run is not None and run.pretrained:
    config.init_from.pretrained = run.pretrained
  elif run is not None:
    config.source = ml_collections.ConfigDict(run.config.source.to_dict())
    # str.format in run_experiment fills {seed}; other braces are literal.
    config.init_from.workdir = run.run_dir.replace("{", "{{").replace("}", "}}")
  config.steps = settings.steps
  config.checkpoint_every = settings.steps
  config.batch_size = (
      settings.batch_size
      if target.labels_per_class is None
      else min(settings.batch_size, num_classes * target.labels_per_class)
  )
  config.optimizer.learning_rate = settings.learning_rate(method)
  config.progress_bar = False
  config.eval_every = 0
  check_experiment_config(config)
  return config


def _accuracies(
    results: Mapping, method: str, seeds: Sequence[int]
) -> list[float]:
  by_seed = {
      run["seed"]: run["target_test"]["accuracy"]
      for run in results["runs"]
      if run["method"] == method
  }
  return [float(by_seed[int(seed)]) for seed in seeds]


def check_methods(methods: Sequence[str], run: SourceRun) -> tuple[str, ...]:
  """Transfer methods to verify: registered, inductive, starting from a source."""
  methods = tuple(methods)
  if not methods:
    raise ValueError("no verification methods given")
  unknown = sorted(set(methods) - set(methods_lib.available_methods()))
  if unknown:
    raise ValueError(
        f"methods {unknown} are unknown; registered: "
        f"{methods_lib.available_methods()}"
    )
  for name in methods:
    method = methods_lib.build_method(name, run.config, run.model)
    if method.setting != "inductive" or not method.pretrain:
      raise ValueError(
          f"method {name!r} does not transfer from a source run "
          "with target labels (it must be inductive and start "
          "from a source run)"
      )
  return methods


def verify(
    runs: Sequence[SourceRun],
    target: TargetSpec,
    *,
    seeds: Sequence[int],
    workdir: str,
    methods: Sequence[str] = ("finetune",),
    settings: TrainSettings = TrainSettings(),
    num_classes: int = 10,
) -> dict:
  """Transfers from every source with every method, and trains target-only.

  Runs go to ``workdir/<method>/<source name>/`` and
  ``workdir/target_only/`` (one :func:`run_experiment` each, over ``seeds``;
  existing runs resume). Sources of different architectures (a zoo of
  converted checkpoints) get one target-only reference each, under
  ``workdir/target_only/<i>_<first source's name>/``.

  Returns:
    ``{"target_only": [accuracy per seed] (the first source's reference),
    "target_only_by_source": {source: [accuracy per seed]}, "accuracy":
    {method: {source: [target test accuracy per seed]}}, "seeds"}``.
  """
  if not runs:
    raise ValueError("no source runs to verify")
  methods = check_methods(methods, runs[0])
  seeds = [int(seed) for seed in seeds]
  # One target-only reference per architecture (a zoo of converted
  # checkpoints may hold several), trained from scratch as its sources'
  # models are built.
  groups: dict[str, list[SourceRun]] = {}
  for run in runs:
    groups.setdefault(_model_key(run), []).append(run)
  references = {}
  for index, (key, members) in enumerate(groups.items()):
    directory = os.path.join(workdir, "target_only")
    if len(groups) > 1:
      directory = os.path.join(directory, f"{index}_{members[0].name}")
    reference = run_experiment(
        transfer_config(
            None,
            "target_only",
            target,
            seeds,
            settings,
            model=model_config(members[0].config),
            source_from_target=members[0].pretrained is not None,
            source=members[0].config.source.to_dict(),
            num_classes=num_classes,
        ),
        directory,
    )
    references[key] = _accuracies(reference, "target_only", seeds)
  accuracy = {}
  for method in methods:
    accuracy[method] = {}
    for run in runs:
      results = run_experiment(
          transfer_config(
              run, method, target, seeds, settings, num_classes=num_classes
          ),
          os.path.join(workdir, method, run.name),
      )
      accuracy[method][run.name] = _accuracies(results, method, seeds)
  return {
      "target_only": references[_model_key(runs[0])],
      "target_only_by_source": {
          run.name: references[_model_key(run)] for run in runs
      },
      "accuracy": accuracy,
      "seeds": seeds,
  }


def _model_key(run: SourceRun) -> str:
  return json.dumps(model_config(run.config), sort_keys=True)


def verification_gaps(verification: Mapping, method: str) -> dict[str, dict]:
  """ε(method) − ε(target_only) per source, against its architecture's reference."""
  by_source = verification.get("target_only_by_source") or {}
  return {
      name: transfer_gaps(
          {name: values},
          by_source.get(name, verification["target_only"]),
      )[name]
      for name, values in verification["accuracy"][method].items()
  }


# --- Tables and results ---------------------------------------------------------


def mean_std(values: Sequence[float]) -> tuple[float, float]:
  values = np.asarray(values, np.float64)
  return (
      float(values.mean()),
      float(values.std(ddof=1)) if values.size > 1 else 0.0,
  )


def format_verification(
    rows: Sequence[Mapping],
    verification: Mapping,
    method: str,
    scores: Sequence[str],
) -> str:
  """Markdown: measured accuracy and gap per source, then τ per score."""
  accuracy = verification["accuracy"][method]
  gaps = verification_gaps(verification, method)
  by_source = verification.get("target_only_by_source") or {
      name: verification["target_only"] for name in accuracy
  }
  references: dict[tuple, list[str]] = {}
  for name in accuracy:
    references.setdefault(tuple(by_source[name]), []).append(name)
  lines = [
      f"| source | target test acc (%) | ε({method}) − ε(target_only) "
      "(points) | 95% CI | verdict |",
      "| --- | --- | --- | --- | --- |",
  ]
  order = sorted(accuracy, key=lambda name: -np.mean(accuracy[name]))
  for name in order:
    mean, std = mean_std(accuracy[name])
    gap = gaps[name]
    lines.append(
        f"| {name} | {100 * mean:.1f} ± {100 * std:.1f} | "
        f"{100 * gap['gap']:+.1f} | [{100 * gap['low']:+.1f}, "
        f"{100 * gap['high']:+.1f}] | {gap['verdict']} |"
    )
  for values, names in references.items():
    mean, std = mean_std(values)
    of = f" of {', '.join(names)}" if len(references) > 1 else ""
    lines.append(
        f"| *target_only (reference{of})* | {100 * mean:.1f} ± "
        f"{100 * std:.1f} | | | |"
    )
  taus = correlations(rows, accuracy, scores)
  lines += [
      "",
      "| score | weighted τ | Kendall τ | ranking (best first) |",
      "| --- | --- | --- | --- |",
  ]
  for score in scores:
    lines.append(
        f"| {SCORE_TITLES[score]} | {taus[score]['weighted_tau']:+.2f} | "
        f"{taus[score]['kendall_tau']:+.2f} | "
        f"{', '.join(ranking(rows, score))} |"
    )
  lines.append(f"| *measured ({method})* | | | {', '.join(order)} |")
  return "\n".join(lines)


def results_dict(
    rows,
    reference,
    verification,
    scores,
    *,
    target: TargetSpec,
    layer: str,
    settings: TrainSettings | None,
) -> dict:
  """Everything, JSON-ready."""
  results = {
      "target": dataclasses.asdict(target),
      "features": layer,
      "scores": list(scores),
      "sources": list(rows),
      "reference": reference,
      "rankings": {score: ranking(rows, score) for score in scores},
  }
  if reference is not None:
    results["predicted_negative"] = predicted_negative(rows, reference, scores)
  if verification is not None:
    results["verification"] = dict(verification)
    results["settings"] = dataclasses.asdict(settings)
    results["correlations"] = {
        method: correlations(rows, accuracy, scores)
        for method, accuracy in verification["accuracy"].items()
    }
    results["gaps"] = {
        method: verification_gaps(verification, method)
        for method in verification["accuracy"]
    }
  return metrics_lib.to_python(results)


def rank_sources(
    run_dirs: Sequence[str],
    target: TargetSpec,
    *,
    seeds: Sequence[int] = (0,),
    names: Sequence[str] | None = None,
    layer: str = "bottleneck",
    scores: Sequence[str] = SCORE_NAMES,
    verify_methods: Sequence[str] = (),
    settings: TrainSettings = TrainSettings(),
    workdir: str | None = None,
) -> tuple[dict, str]:
  """Scores (and, with ``verify_methods``, verifies) the sources.

  Returns:
    ``(results, markdown)``; with ``workdir`` both are also written there
    (``rank_sources.json``, ``rank_sources.md``).
  """
  scores = check_score_names(scores)
  if layer not in FEATURE_LAYERS:
    raise ValueError(
        f"layer must be one of {list(FEATURE_LAYERS)}, got {layer!r}"
    )
  if verify_methods and workdir is None:
    raise ValueError("verification needs a workdir for its runs")
  seeds = [int(seed) for seed in seeds]
  target_data = load_target(target, seeds)
  runs = load_source_runs(
      run_dirs, input_shape=target_data["input_shape"], names=names
  )
  if verify_methods:
    check_methods(verify_methods, runs[0])
  rows = score_sources(runs, target_data, layer=layer, scores=scores)
  reference = score_untrained(runs[0], target_data, layer=layer, scores=scores)
  labels = (
      "all" if target.labels_per_class is None else str(target.labels_per_class)
  )
  sections = [
      f"Target `{target.name}`, {labels} labeled examples per class, "
      f"seeds {seeds} (scores: mean over the seeds' draws), "
      f"{layer} features.",
      "",
      format_scores(rows, scores, reference),
  ]
  verification = None
  if verify_methods:
    verification = verify(
        runs,
        target,
        seeds=seeds,
        workdir=workdir,
        methods=verify_methods,
        settings=settings,
        num_classes=target_data["num_classes"],
    )
    for method in verify_methods:
      sections += [
          "",
          f"Verification: `{method}`, {settings.steps} steps, "
          f"learning rate {settings.learning_rate(method):g} "
          f"(target_only: {settings.learning_rate('target_only'):g}), "
          f"{len(seeds)} seeds.",
          "",
          format_verification(rows, verification, method, scores),
      ]
  results = results_dict(
      rows,
      reference,
      verification,
      scores,
      target=target,
      layer=layer,
      settings=settings if verification else None,
  )
  markdown = "\n".join(sections) + "\n"
  if workdir is not None:
    os.makedirs(workdir, exist_ok=True)
    metrics_lib.write_json_atomically(
        os.path.join(workdir, RESULTS_JSON), results
    )
    with open(
        os.path.join(workdir, RESULTS_MARKDOWN), "w", encoding="utf-8"
    ) as f:
      f.write(markdown)
  return results, markdown


# --- Command line ----------------------------------------------------------------


def enable_compilation_cache(directory: str) -> None:
  """JAX's persistent compilation cache in ``directory``.

  Every verification run jits its own train step; the programs are the same
  for every source and seed, so with the cache only the first run of each
  method compiles (on a 2-core machine that saves ~10 s per run). The cache
  changes no result: a hit loads the same executable.
  """
  os.makedirs(directory, exist_ok=True)
  jax.config.update("jax_compilation_cache_dir", directory)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
