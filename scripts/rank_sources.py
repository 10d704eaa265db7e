#!/usr/bin/env python
"""Ranks candidate source models for a target task by transferability scores.

Given a labeled target task (k labeled examples per class of ``--target``'s
training split, drawn per seed exactly as
:func:`tljax.train.loop.select_target_labels` draws them for training) and
several source runs (tljax run directories, ``WORKDIR/<method>/seed_<n>``,
each with a checkpoint and ``run_config.json``):

1. rebuild each run's model from its ``run_config.json`` and checkpoint, and
   compute on the labeled target examples its features (``--features``:
   ``bottleneck`` or ``backbone``, inference mode) and its source head's
   class probabilities;
2. compute the transferability scores of :mod:`tljax.select` (LogME, LEEP,
   NCE, H-score, shrinkage H-score, GBC, TransRate; higher = better) for
   every seed's draw of labeled examples, and rank the sources by each
   score's mean over the seeds; the same scores of the *untrained* network
   (the source architecture at the initialisation ``target_only`` starts
   from) are reported as a reference: a source scoring below it is predicted
   to transfer negatively;
3. with ``--verify``, transfer from every source with each of ``--methods``
   (``finetune`` by default: every parameter, new head) for every seed, with
   fixed hyper-parameters (no choice is made on any data), plus a
   ``target_only`` reference with the same labels, seeds and
   hyper-parameters, and report for each score the weighted Kendall τ between
   score and measured target test accuracy (``scipy.stats.weightedtau``, the
   sources ranked by the measured accuracy) and each source's
   negative-transfer gap ε(transfer) − ε(target only) with a 95 % interval
   over the paired seeds (:func:`tljax.select.negative_transfer_gap`).

  python scripts/rank_sources.py --sources workdirs/zoo/mnist/source_only/seed_0,\\
      workdirs/zoo/rot90/source_only/seed_0 --labels_per_class 10
  python scripts/rank_sources.py --sources ... --verify --seeds 0,1,2 \\
      --workdir workdirs/rank_sources

Results: ``WORKDIR/rank_sources.md`` and ``WORKDIR/rank_sources.json`` (and
``--output``). The functions are importable (``scripts/transferability.py``
uses them); flags are defined only when run as a script.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any, Callable

import jax
import ml_collections
import numpy as np
from absl import app, flags, logging
from scipy import stats

from tljax import data as data_lib
from tljax import methods as methods_lib
from tljax import models as models_lib
from tljax import select
from tljax.config import base_config, check_config
from tljax.params import flatten, read_checkpoint, unflatten
from tljax.train import metrics as metrics_lib
from tljax.train.experiment import run_experiment
from tljax.train.loop import RUN_CONFIG_FILE, select_target_labels

RESULTS_JSON = "rank_sources.json"
RESULTS_MARKDOWN = "rank_sources.md"
FEATURE_LAYERS = ("bottleneck", "backbone")
REFERENCE_NAME = "untrained"


# --- Scores -------------------------------------------------------------------


def _score_nce(features, probabilities, labels, num_classes):
  del features
  return select.nce(np.argmax(probabilities, axis=1), labels,
                    num_source_classes=probabilities.shape[1],
                    num_target_classes=num_classes)


GBC_PCA_DIM = 64


def pca(features: Any, dim: int) -> np.ndarray:
  """The features projected on their first ``min(dim, N, D)`` principal axes."""
  features = np.asarray(features, np.float64)
  centred = features - features.mean(axis=0)
  _, _, axes = np.linalg.svd(centred, full_matrices=False)
  dim = min(int(dim), *features.shape)
  return (centred @ axes[:dim].T).astype(np.float32)


def _score_gbc(features, probabilities, labels, num_classes):
  # As Pándy et al.'s code: PCA to 64 dimensions first; on the raw features
  # (hundreds of dimensions, a few examples per class) every class pair's
  # Bhattacharyya overlap underflows to 0 and GBC cannot tell models apart.
  del probabilities
  return select.gbc(pca(features, GBC_PCA_DIM), labels, num_classes=num_classes)


# name → (features, source probabilities, labels, num_classes) → score.
# Every score is higher-is-better.
SCORES: dict[str, Callable[..., Any]] = {
  "logme": lambda f, p, y, c: select.logme(f, y, num_classes=c),
  "leep": lambda f, p, y, c: select.leep(p, y, num_target_classes=c),
  "nce": _score_nce,
  "h_score": lambda f, p, y, c: select.h_score(f, y, num_classes=c),
  "shrinkage_h_score": lambda f, p, y, c: select.shrinkage_h_score(
    f, y, num_classes=c),
  "gbc": _score_gbc,
  "transrate": lambda f, p, y, c: select.transrate(f, y, num_classes=c),
}
SCORE_NAMES = tuple(SCORES)
SCORE_TITLES = {"logme": "LogME", "leep": "LEEP", "nce": "NCE",
                "h_score": "H-score", "shrinkage_h_score": "shrinkage H-score",
                "gbc": "GBC", "transrate": "TransRate"}


def check_score_names(names: Sequence[str]) -> tuple[str, ...]:
  """The score names, validated; ``ValueError`` naming unknown ones."""
  if isinstance(names, str):
    names = (names,)
  names = tuple(names)
  unknown = [name for name in names if name not in SCORES]
  if unknown or not names:
    raise ValueError(f"unknown score names {unknown}; known scores: "
                     f"{list(SCORE_NAMES)}" if unknown else
                     f"no score names given; known scores: {list(SCORE_NAMES)}")
  if len(set(names)) != len(names):
    raise ValueError(f"score names are repeated: {list(names)}")
  return names


def compute_scores(features: Any, probabilities: Any, labels: Any, *,
                   num_classes: int,
                   scores: Sequence[str] = SCORE_NAMES) -> dict[str, float]:
  """Every requested score of one model on one labeled target set.

  Args:
    features: ``(N, D)`` features of the labeled target examples.
    probabilities: ``(N, Z)`` source-head class probabilities on them (LEEP;
      NCE uses their argmax as the source label).
    labels: ``(N,)`` target labels in ``[0, num_classes)``.
    num_classes: the number of target classes.
    scores: names from :data:`SCORE_NAMES`.

  Returns:
    ``{score name: value}`` as Python floats (higher is better). Every score
    is the :mod:`tljax.select` function on these arrays, GBC on the
    features' first 64 principal components (:func:`pca`), as its authors
    compute it.
  """
  scores = check_score_names(scores)
  features = np.asarray(features, np.float32)
  probabilities = np.asarray(probabilities, np.float32)
  labels = np.asarray(labels, np.int32)
  return {name: float(SCORES[name](features, probabilities, labels, num_classes))
          for name in scores}


# --- Source runs and the target -----------------------------------------------


@dataclasses.dataclass(frozen=True)
class SourceRun:
  """A trained source model, rebuilt from its run directory.

  Attributes:
    name: a short label for tables.
    run_dir: the run's directory (absolute).
    config: the run's experiment config (from ``run_config.json``).
    method: the method the run trained.
    model: the architecture, built for the target's input shape.
    params: its parameters (only the model's: ``backbone``, ``bottleneck``,
      ``head``).
    model_state: its BatchNorm statistics.
  """
  name: str
  run_dir: str
  config: ml_collections.ConfigDict
  method: str
  model: models_lib.Model
  params: dict
  model_state: dict


def default_name(run_dir: str) -> str:
  """``.../zoo/rot90/source_only/seed_0`` → ``rot90``; else the dir's name."""
  parts = os.path.normpath(os.path.abspath(run_dir)).split(os.sep)
  if len(parts) >= 3 and re.fullmatch(r"seed_\d+", parts[-1]):
    return parts[-3]
  return parts[-1]


def read_run_config(run_dir: str) -> dict:
  """The ``run_config.json`` of a tljax run, with clear errors."""
  if not os.path.isdir(run_dir):
    raise FileNotFoundError(f"source run dir {run_dir!r} does not exist")
  path = os.path.join(run_dir, RUN_CONFIG_FILE)
  if not os.path.isfile(path):
    raise FileNotFoundError(
        f"source run dir {run_dir!r} has no {RUN_CONFIG_FILE}; pass a tljax "
        "run directory (WORKDIR/<method>/seed_<n>)")
  with open(path, encoding="utf-8") as stream:
    run_config = json.load(stream)
  if not isinstance(run_config, dict) or "config" not in run_config:
    raise ValueError(f"{path!r} is not a tljax run config (no 'config' key)")
  return run_config


def model_config(config) -> dict:
  """The ``config.model`` fields as a plain dict (comparable across runs)."""
  model = config["model"]
  return dict(model.to_dict() if hasattr(model, "to_dict") else model)


def load_source_run(run_dir: str, *, input_shape: Sequence[int],
                    name: str | None = None) -> SourceRun:
  """Rebuilds a source run's model and reads its latest checkpoint.

  Args:
    run_dir: a tljax run directory with ``run_config.json`` and a checkpoint.
    input_shape: one target example's shape; the model is built for it.
    name: a label (default :func:`default_name`).

  Raises:
    FileNotFoundError: no such directory, no ``run_config.json`` or no
      checkpoint.
    ValueError: the checkpoint does not fit the architecture or the inputs.
  """
  run_dir = os.path.abspath(run_dir)
  run_config = read_run_config(run_dir)
  config = ml_collections.ConfigDict(run_config["config"])
  params, model_state = read_checkpoint(run_dir)
  flat = flatten(params)
  if "head/bias" not in flat:
    raise ValueError(f"source run {run_dir!r} has no 'head/bias' parameter; "
                     "is it a tljax classifier?")
  options = {key: value for key, value in model_config(config).items()
             if key != "name"}
  model = models_lib.create_model(
      config.model.name, num_classes=int(np.shape(flat["head/bias"])[0]),
      input_shape=tuple(int(size) for size in input_shape), **options)
  # Parameters a method added next to the model's (a domain discriminator)
  # are not the model's.
  shapes, state_shapes = jax.eval_shape(model.init, jax.random.key(0))
  params = {key: value for key, value in params.items() if key in shapes}
  model_state = {key: value for key, value in model_state.items()
                 if key in state_shapes}
  for what, given, expected in (("parameter", params, shapes),
                                ("model state entry", model_state,
                                 state_shapes)):
    given_flat, expected_flat = flatten(given), flatten(expected)
    for path, leaf in expected_flat.items():
      if path not in given_flat:
        raise ValueError(f"source run {run_dir!r}: {what} {path!r} of model "
                         f"{config.model.name!r} is missing from the checkpoint")
      if tuple(np.shape(given_flat[path])) != tuple(leaf.shape):
        raise ValueError(
            f"source run {run_dir!r}: {what} {path!r} has shape "
            f"{tuple(np.shape(given_flat[path]))} in the checkpoint but "
            f"{tuple(leaf.shape)} in model {config.model.name!r} for target "
            f"inputs of shape {tuple(input_shape)}")
  return SourceRun(name=name or default_name(run_dir), run_dir=run_dir,
                   config=config, method=str(run_config.get("method")),
                   model=model, params=unflatten(flatten(params)),
                   model_state=unflatten(flatten(model_state)))


def load_source_runs(run_dirs: Sequence[str], *, input_shape: Sequence[int],
                     names: Sequence[str] | None = None) -> list[SourceRun]:
  """:func:`load_source_run` for each directory; names must be unique."""
  if not run_dirs:
    raise ValueError("no source run dirs given")
  if names is not None and len(names) != len(run_dirs):
    raise ValueError(f"{len(names)} names for {len(run_dirs)} source run dirs")
  names = list(names) if names else [default_name(d) for d in run_dirs]
  repeated = sorted({name for name in names if names.count(name) > 1})
  if repeated:
    raise ValueError(f"source names {repeated} are not unique; give names "
                     "explicitly (--names)")
  if REFERENCE_NAME in names:
    raise ValueError(f"{REFERENCE_NAME!r} is reserved for the untrained "
                     "reference; rename that source")
  return [load_source_run(run_dir, input_shape=input_shape, name=name)
          for run_dir, name in zip(run_dirs, names)]


@dataclasses.dataclass(frozen=True)
class TargetSpec:
  """The labeled target task: which domain, how many labels, which draws.

  The same fields go into every verification run's ``config.target``, so the
  scores see exactly the labeled examples that training sees.
  """
  name: str = "uci_digits"
  labels_per_class: int | None = 10
  validation_per_class: int = 0
  kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  data_dir: str | None = None


def target_config(target: TargetSpec) -> ml_collections.ConfigDict:
  """A base config whose ``target`` and ``data_dir`` follow ``target``."""
  config = base_config()
  config.data_dir = target.data_dir
  config.target.name = target.name
  config.target.labels_per_class = target.labels_per_class
  config.target.validation_per_class = target.validation_per_class
  config.target.kwargs = ml_collections.ConfigDict(dict(target.kwargs))
  return config


def load_target(target: TargetSpec, seeds: Sequence[int]) -> dict:
  """The target's splits: ``{"train": {seed: labeled ArraySource}, "test"}``.

  Each seed's labeled subset is drawn by
  :func:`tljax.train.loop.select_target_labels`, as a training run with that
  seed draws it.
  """
  config = target_config(target)
  splits = {}
  for split in ("train", "test"):
    source = data_lib.get_source(target.name, split, data_dir=target.data_dir,
                                 **dict(target.kwargs))
    if hasattr(source, "to_array_source"):
      source = source.to_array_source()
    splits[split] = source
  if splits["train"].num_classes is None:
    raise ValueError(f"target {target.name!r} has no classes to rank sources on")
  domains = {"target": splits}
  labeled = {int(seed): select_target_labels(domains, config, int(seed))
             ["target"]["train"] for seed in seeds}
  return {"train": labeled, "test": splits["test"],
          "num_classes": splits["train"].num_classes,
          "input_shape": splits["train"].input_shape}


# --- Features and scores --------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _apply_fn(model: models_lib.Model):
  return jax.jit(functools.partial(model.apply, train=False))


def extract(model: models_lib.Model, params, model_state, inputs: Any, *,
            layer: str = "bottleneck",
            batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
  """Features (``layer``) and head probabilities of ``inputs``, inference mode.

  Returns:
    ``(features (N, D), probabilities (N, num_classes))`` as float32 NumPy.
  """
  if layer not in FEATURE_LAYERS:
    raise ValueError(f"layer must be one of {list(FEATURE_LAYERS)}, got "
                     f"{layer!r}")
  inputs = np.asarray(inputs, np.float32)
  features, probabilities = [], []
  apply = _apply_fn(model)
  for start in range(0, inputs.shape[0], batch_size):
    outputs, _ = apply(params, model_state, inputs[start:start + batch_size])
    chosen = (outputs.features if layer == "bottleneck"
              else outputs.backbone_features)
    features.append(np.asarray(chosen, np.float32))
    probabilities.append(np.asarray(jax.nn.softmax(outputs.logits), np.float32))
  return np.concatenate(features), np.concatenate(probabilities)


def effective_rank(features: Any) -> float:
  """The participation ratio (Σσ²)² / Σσ⁴ of the centred features' spectrum.

  A diagnostic, not a score: how many directions the features spread over
  (1 for features on a line, D for isotropic ones).
  """
  features = np.asarray(features, np.float64)
  variances = np.linalg.svd(features - features.mean(axis=0),
                            compute_uv=False) ** 2
  total = variances.sum()
  return float(total ** 2 / np.sum(variances ** 2)) if total > 0 else 0.0


def untrained_params(model: models_lib.Model, seed: int) -> tuple[dict, dict]:
  """The initialisation a training run with ``seed`` starts from (no transfer)."""
  init_key, _ = jax.random.split(jax.random.key(seed))
  return jax.jit(model.init)(init_key)


def score_model(model, params_for_seed: Callable[[int], tuple], name: str,
                target: Mapping, *, layer: str, scores: Sequence[str]) -> dict:
  """One model's scores on every seed's labeled target set, and their means."""
  per_seed = {score: [] for score in scores}
  ranks = []
  for seed, labeled in target["train"].items():
    params, model_state = params_for_seed(seed)
    features, probabilities = extract(model, params, model_state,
                                      labeled.inputs, layer=layer)
    values = compute_scores(features, probabilities, labeled.labels,
                            num_classes=target["num_classes"], scores=scores)
    for score, value in values.items():
      per_seed[score].append(value)
    ranks.append(effective_rank(features))
  means = {score: float(np.mean(values)) for score, values in per_seed.items()}
  if not all(np.isfinite(value) for value in means.values()):
    bad = sorted(score for score, value in means.items() if not np.isfinite(value))
    raise FloatingPointError(f"scores {bad} of {name!r} are not finite")
  return {"name": name, "scores": means, "per_seed": per_seed,
          "seeds": sorted(target["train"]),
          "effective_rank": float(np.mean(ranks))}


def score_sources(runs: Sequence[SourceRun], target: Mapping, *,
                  layer: str = "bottleneck",
                  scores: Sequence[str] = SCORE_NAMES) -> list[dict]:
  """The scores of every source run (mean over the target's seeds).

  Returns:
    One row per source: ``{"name", "run_dir", "scores": {score: mean},
    "per_seed": {score: [value per seed]}, "seeds", "effective_rank"}``
    (the features' :func:`effective_rank`, mean over the seeds).
  """
  scores = check_score_names(scores)
  rows = []
  for run in runs:
    row = score_model(run.model, lambda seed, run=run: (run.params,
                                                         run.model_state),
                      run.name, target, layer=layer, scores=scores)
    rows.append({**row, "run_dir": run.run_dir})
  return rows


def score_untrained(run: SourceRun, target: Mapping, *,
                    layer: str = "bottleneck",
                    scores: Sequence[str] = SCORE_NAMES) -> dict:
  """The scores of ``run``'s architecture at each seed's initialisation."""
  scores = check_score_names(scores)
  return {**score_model(run.model,
                        lambda seed: untrained_params(run.model, seed),
                        REFERENCE_NAME, target, layer=layer, scores=scores),
          "run_dir": None}


def ranking(rows: Sequence[Mapping], score: str) -> list[str]:
  """Source names by decreasing ``score`` (ties keep the input order)."""
  check_score_names([score])
  order = sorted(range(len(rows)), key=lambda i: -rows[i]["scores"][score])
  return [rows[i]["name"] for i in order]


def format_scores(rows: Sequence[Mapping], scores: Sequence[str],
                  reference: Mapping | None = None) -> str:
  """A markdown table: each source's mean score and its rank (1 = best).

  The last column is the features' :func:`effective_rank` (a diagnostic).
  """
  ranks = {score: {name: position + 1
                   for position, name in enumerate(ranking(rows, score))}
           for score in scores}
  lines = ["| source | " + " | ".join(SCORE_TITLES[s] for s in scores)
           + " | features' effective rank |",
           "| --- |" + " --- |" * (len(scores) + 1)]
  for row in rows:
    cells = [f"{row['scores'][s]:.4g} ({ranks[s][row['name']]})" for s in scores]
    lines.append(f"| {row['name']} | " + " | ".join(cells)
                 + f" | {row['effective_rank']:.1f} |")
  if reference is not None:
    cells = [f"{reference['scores'][s]:.4g}" for s in scores]
    lines.append(f"| *{reference['name']} (reference)* | " + " | ".join(cells)
                 + f" | {reference['effective_rank']:.1f} |")
  return "\n".join(lines)


# --- Verification: transfer and measure -----------------------------------------


@dataclasses.dataclass(frozen=True)
class TrainSettings:
  """Fixed hyper-parameters of every verification run (scripts/few_shot.py's)."""
  steps: int = 300
  batch_size: int = 32
  learning_rates: Mapping[str, float] = dataclasses.field(
      default_factory=lambda: {"default": 0.01})

  def learning_rate(self, method: str) -> float:
    rates = dict(self.learning_rates)
    if method in rates:
      return float(rates[method])
    if "default" not in rates:
      raise ValueError(f"no learning rate for method {method!r} and no "
                       f"default in {rates}")
    return float(rates["default"])


def parse_learning_rates(values: Sequence[str]) -> dict[str, float]:
  """``["0.01", "linear_probe=0.03"]`` → ``{"default": 0.01, "linear_probe": 0.03}``."""
  rates = {}
  for value in values:
    method, separator, rate = str(value).rpartition("=")
    try:
      rates[method if separator else "default"] = float(rate)
    except ValueError:
      raise ValueError(f"learning rate {value!r} must be a number or "
                       "method=number") from None
  for method, rate in rates.items():
    if not rate > 0:
      raise ValueError(f"learning rate of {method!r} must be > 0, got {rate}")
  return rates


def transfer_config(run: SourceRun | None, method: str, target: TargetSpec,
                    seeds: Sequence[int], settings: TrainSettings,
                    model: Mapping | None = None) -> ml_collections.ConfigDict:
  """The config of ``method`` on the target from ``run`` (None: no source).

  The model is the source run's (``model`` when ``run`` is None); the source
  domain is the run's (read for its test accuracy only); the target and its
  labeled draws follow ``target``; optimizer and schedule are the library's
  defaults (SGD, momentum 0.9, Nesterov, weight decay 5e-4, cosine) with
  ``settings``' learning rate, steps and batch size (at most 10 k).
  """
  config = target_config(target)
  config.method = method
  config.baselines = ()
  config.seeds = tuple(int(seed) for seed in seeds)
  config.model = ml_collections.ConfigDict(
      model_config(run.config) if run is not None else dict(model))
  if run is not None:
    config.source = ml_collections.ConfigDict(run.config.source.to_dict())
    # str.format in run_experiment fills {seed}; other braces are literal.
    config.init_from.workdir = run.run_dir.replace("{", "{{").replace("}", "}}")
  config.steps = settings.steps
  config.checkpoint_every = settings.steps
  config.batch_size = (settings.batch_size if target.labels_per_class is None
                       else min(settings.batch_size, 10 * target.labels_per_class))
  config.optimizer.learning_rate = settings.learning_rate(method)
  config.progress_bar = False
  config.eval_every = 0
  check_config(config)
  return config


def _accuracies(results: Mapping, method: str, seeds: Sequence[int]) -> list[float]:
  by_seed = {run["seed"]: run["target_test"]["accuracy"]
             for run in results["runs"] if run["method"] == method}
  return [float(by_seed[int(seed)]) for seed in seeds]


def check_methods(methods: Sequence[str], run: SourceRun) -> tuple[str, ...]:
  """Transfer methods to verify: registered, inductive, starting from a source."""
  methods = tuple(methods)
  if not methods:
    raise ValueError("no verification methods given")
  unknown = sorted(set(methods) - set(methods_lib.available_methods()))
  if unknown:
    raise ValueError(f"methods {unknown} are unknown; registered: "
                     f"{methods_lib.available_methods()}")
  for name in methods:
    method = methods_lib.build_method(name, run.config, run.model)
    if method.setting != "inductive" or not method.pretrain:
      raise ValueError(f"method {name!r} does not transfer from a source run "
                       "with target labels (it must be inductive and start "
                       "from a source run)")
  return methods


def verify(runs: Sequence[SourceRun], target: TargetSpec, *,
           seeds: Sequence[int], workdir: str,
           methods: Sequence[str] = ("finetune",),
           settings: TrainSettings = TrainSettings()) -> dict:
  """Transfers from every source with every method, and trains target-only.

  Runs go to ``workdir/<method>/<source name>/`` and
  ``workdir/target_only/`` (one :func:`run_experiment` each, over ``seeds``;
  existing runs resume).

  Returns:
    ``{"target_only": [accuracy per seed], "accuracy": {method: {source:
    [target test accuracy per seed]}}, "seeds"}``.
  """
  if not runs:
    raise ValueError("no source runs to verify")
  methods = check_methods(methods, runs[0])
  models = {json.dumps(model_config(run.config), sort_keys=True) for run in runs}
  if len(models) != 1:
    raise ValueError("--verify compares the sources against one target-only "
                     "reference, so every source run must have the same model "
                     f"config; got {sorted(models)}")
  seeds = [int(seed) for seed in seeds]
  reference = run_experiment(
      transfer_config(None, "target_only", target, seeds, settings,
                      model=model_config(runs[0].config)),
      os.path.join(workdir, "target_only"))
  accuracy = {}
  for method in methods:
    accuracy[method] = {}
    for run in runs:
      results = run_experiment(
          transfer_config(run, method, target, seeds, settings),
          os.path.join(workdir, method, run.name))
      accuracy[method][run.name] = _accuracies(results, method, seeds)
  return {"target_only": _accuracies(reference, "target_only", seeds),
          "accuracy": accuracy, "seeds": seeds}


def weighted_tau(scores: Sequence[float], accuracies: Sequence[float]) -> float:
  """Weighted Kendall τ of scores and accuracies, ranked by the accuracies.

  ``scipy.stats.weightedtau(accuracies, scores, rank=None)``: hyperbolic
  weights by the decreasing rank of the measured accuracy, so disagreements
  among the best sources weigh most.
  """
  scores = np.asarray(scores, np.float64)
  accuracies = np.asarray(accuracies, np.float64)
  if scores.shape != accuracies.shape or scores.ndim != 1 or scores.size < 2:
    raise ValueError(f"scores and accuracies must be 1-D of one length >= 2, "
                     f"got shapes {scores.shape} and {accuracies.shape}")
  return float(stats.weightedtau(accuracies, scores, rank=None).statistic)


def correlations(rows: Sequence[Mapping], accuracy: Mapping[str, Sequence[float]],
                 scores: Sequence[str]) -> dict[str, dict[str, float]]:
  """Per score: weighted τ and Kendall τ against the mean measured accuracy."""
  names = [row["name"] for row in rows]
  measured = [float(np.mean(accuracy[name])) for name in names]
  result = {}
  for score in scores:
    values = [row["scores"][score] for row in rows]
    result[score] = {"weighted_tau": weighted_tau(values, measured),
                     "kendall_tau": float(stats.kendalltau(values,
                                                           measured).statistic)}
  return result


def transfer_gaps(accuracy: Mapping[str, Sequence[float]],
                  target_only: Sequence[float]) -> dict[str, dict]:
  """Per source: ε(transfer) − ε(target only), paired over seeds, 95 % CI."""
  reference = [1 - value for value in target_only]
  gaps = {}
  for name, values in accuracy.items():
    gap = select.negative_transfer_gap([1 - value for value in values], reference)
    gaps[name] = {"gap": gap.gap, "low": gap.low, "high": gap.high,
                  "seeds": gap.num_seeds, "verdict": gap.verdict}
  return gaps


def predicted_negative(rows: Sequence[Mapping], reference: Mapping,
                       scores: Sequence[str]) -> dict[str, list[str]]:
  """Per score: the sources scoring below the untrained network."""
  return {score: [row["name"] for row in rows
                  if row["scores"][score] < reference["scores"][score]]
          for score in scores}


def mean_std(values: Sequence[float]) -> tuple[float, float]:
  values = np.asarray(values, np.float64)
  return (float(values.mean()),
          float(values.std(ddof=1)) if values.size > 1 else 0.0)


def format_verification(rows: Sequence[Mapping], verification: Mapping,
                        method: str, scores: Sequence[str]) -> str:
  """Markdown: measured accuracy and gap per source, then τ per score."""
  accuracy = verification["accuracy"][method]
  gaps = transfer_gaps(accuracy, verification["target_only"])
  reference = mean_std(verification["target_only"])
  lines = [f"| source | target test acc (%) | ε({method}) − ε(target_only) "
           "(points) | 95% CI | verdict |",
           "| --- | --- | --- | --- | --- |"]
  order = sorted(accuracy, key=lambda name: -np.mean(accuracy[name]))
  for name in order:
    mean, std = mean_std(accuracy[name])
    gap = gaps[name]
    lines.append(f"| {name} | {100 * mean:.1f} ± {100 * std:.1f} | "
                 f"{100 * gap['gap']:+.1f} | [{100 * gap['low']:+.1f}, "
                 f"{100 * gap['high']:+.1f}] | {gap['verdict']} |")
  lines.append(f"| *target_only (reference)* | {100 * reference[0]:.1f} ± "
               f"{100 * reference[1]:.1f} | | | |")
  taus = correlations(rows, accuracy, scores)
  lines += ["", "| score | weighted τ | Kendall τ | ranking (best first) |",
            "| --- | --- | --- | --- |"]
  for score in scores:
    lines.append(f"| {SCORE_TITLES[score]} | {taus[score]['weighted_tau']:+.2f} | "
                 f"{taus[score]['kendall_tau']:+.2f} | "
                 f"{', '.join(ranking(rows, score))} |")
  lines.append(f"| *measured ({method})* | | | {', '.join(order)} |")
  return "\n".join(lines)


def results_dict(rows, reference, verification, scores, *, target: TargetSpec,
                 layer: str, settings: TrainSettings | None) -> dict:
  """Everything, JSON-ready."""
  results = {"target": dataclasses.asdict(target), "features": layer,
             "scores": list(scores), "sources": list(rows),
             "reference": reference,
             "rankings": {score: ranking(rows, score) for score in scores}}
  if reference is not None:
    results["predicted_negative"] = predicted_negative(rows, reference, scores)
  if verification is not None:
    results["verification"] = dict(verification)
    results["settings"] = dataclasses.asdict(settings)
    results["correlations"] = {
        method: correlations(rows, accuracy, scores)
        for method, accuracy in verification["accuracy"].items()}
    results["gaps"] = {
        method: transfer_gaps(accuracy, verification["target_only"])
        for method, accuracy in verification["accuracy"].items()}
  return metrics_lib.to_python(results)


def rank_sources(run_dirs: Sequence[str], target: TargetSpec, *,
                 seeds: Sequence[int] = (0,), names: Sequence[str] | None = None,
                 layer: str = "bottleneck", scores: Sequence[str] = SCORE_NAMES,
                 verify_methods: Sequence[str] = (),
                 settings: TrainSettings = TrainSettings(),
                 workdir: str | None = None) -> tuple[dict, str]:
  """Scores (and, with ``verify_methods``, verifies) the sources.

  Returns:
    ``(results, markdown)``; with ``workdir`` both are also written there
    (``rank_sources.json``, ``rank_sources.md``).
  """
  scores = check_score_names(scores)
  if layer not in FEATURE_LAYERS:
    raise ValueError(f"layer must be one of {list(FEATURE_LAYERS)}, got {layer!r}")
  if verify_methods and workdir is None:
    raise ValueError("verification needs a workdir for its runs")
  seeds = [int(seed) for seed in seeds]
  target_data = load_target(target, seeds)
  runs = load_source_runs(run_dirs, input_shape=target_data["input_shape"],
                          names=names)
  if verify_methods:
    check_methods(verify_methods, runs[0])
  rows = score_sources(runs, target_data, layer=layer, scores=scores)
  reference = score_untrained(runs[0], target_data, layer=layer, scores=scores)
  labels = ("all" if target.labels_per_class is None
            else str(target.labels_per_class))
  sections = [f"Target `{target.name}`, {labels} labeled examples per class, "
              f"seeds {seeds} (scores: mean over the seeds' draws), "
              f"{layer} features.", "",
              format_scores(rows, scores, reference)]
  verification = None
  if verify_methods:
    verification = verify(runs, target, seeds=seeds, workdir=workdir,
                          methods=verify_methods, settings=settings)
    for method in verify_methods:
      sections += ["", f"Verification: `{method}`, {settings.steps} steps, "
                   f"learning rate {settings.learning_rate(method):g} "
                   f"(target_only: {settings.learning_rate('target_only'):g}), "
                   f"{len(seeds)} seeds.", "",
                   format_verification(rows, verification, method, scores)]
  results = results_dict(rows, reference, verification, scores, target=target,
                         layer=layer,
                         settings=settings if verification else None)
  markdown = "\n".join(sections) + "\n"
  if workdir is not None:
    os.makedirs(workdir, exist_ok=True)
    metrics_lib.write_json_atomically(os.path.join(workdir, RESULTS_JSON), results)
    with open(os.path.join(workdir, RESULTS_MARKDOWN), "w", encoding="utf-8") as f:
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


def define_flags() -> None:
  """The script's flags (not defined on import, so other scripts can import it)."""
  flags.DEFINE_list("sources", None, "Source run dirs (WORKDIR/<method>/seed_<n>).")
  flags.DEFINE_list("names", None, "Labels of the sources (default: from the dirs).")
  flags.DEFINE_string("target", "uci_digits", "Target domain name.")
  flags.DEFINE_integer("labels_per_class", 10,
                       "Labeled target examples per class (0: all).")
  flags.DEFINE_integer("validation_per_class", 0,
                       "Target validation examples per class, drawn first "
                       "(changes which examples are labeled).")
  flags.DEFINE_list("seeds", ["0"], "Seeds: label draws (and verification runs).")
  flags.DEFINE_enum("features", "bottleneck", list(FEATURE_LAYERS),
                    "Which features the feature-based scores read.")
  flags.DEFINE_list("scores", list(SCORE_NAMES), "Scores to compute.")
  flags.DEFINE_bool("verify", False, "Transfer from every source and measure.")
  flags.DEFINE_list("methods", ["finetune"], "Transfer methods for --verify.")
  flags.DEFINE_list("learning_rates", ["0.01"],
                    "Learning rate of every verification run, or "
                    "method=rate entries (target_only included).")
  flags.DEFINE_integer("steps", 300, "Steps of every verification run.")
  flags.DEFINE_integer("batch_size", 32, "Target batch size (at most 10 k).")
  flags.DEFINE_string("workdir", os.path.join("workdirs", "rank_sources"),
                      "Verification runs and results.")
  flags.DEFINE_string("data_dir", None, "TFDS data dir.")
  flags.DEFINE_string("output", None, "Also write the markdown here.")
  flags.mark_flag_as_required("sources")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  values = flags.FLAGS
  enable_compilation_cache(os.path.join(os.path.abspath(values.workdir),
                                        "jax_cache"))
  try:
    target = TargetSpec(name=values.target,
                        labels_per_class=values.labels_per_class or None,
                        validation_per_class=values.validation_per_class,
                        data_dir=values.data_dir)
    settings = TrainSettings(
        steps=values.steps, batch_size=values.batch_size,
        learning_rates=parse_learning_rates(values.learning_rates))
    _, markdown = rank_sources(
        values.sources, target, seeds=[int(seed) for seed in values.seeds],
        names=values.names, layer=values.features, scores=values.scores,
        verify_methods=values.methods if values.verify else (),
        settings=settings, workdir=values.workdir)
  except (FileNotFoundError, ValueError) as error:
    print(f"rank_sources.py: error: {error}", file=sys.stderr)
    return 2
  if values.output:
    with open(values.output, "w", encoding="utf-8") as f:
      f.write(markdown)
  print(markdown)
  print(f"results in {os.path.abspath(values.workdir)}")
  return 0


if __name__ == "__main__":
  define_flags()
  sys.exit(app.run(main))
