"""Scoring source runs on a labelled target task, without training.

The first half of ``tljax rank-sources`` (:mod:`tljax.train.rank_sources`,
which re-exports these names): the target task (:class:`TargetSpec`; each
seed's labelled examples drawn by :func:`load_target` as a training run with
that seed draws them), the source runs (:func:`load_source_runs`), each
model's features and class probabilities on the labelled examples
(:func:`extract`), the transferability scores of :mod:`tljax.select` on them
(:func:`score_sources`; :func:`score_untrained` for the untrained reference)
and their table (:func:`format_scores`).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Mapping, Sequence
from typing import Any, Callable

import jax
import ml_collections
import numpy as np

from tljax import data as data_lib
from tljax import models as models_lib
from tljax.config import base_config
from tljax.select.source_ranking import (
    SCORE_NAMES,
    SCORE_TITLES,
    check_score_names,
    compute_scores,
    effective_rank,
    ranking,
)
from tljax.train.domains import select_target_labels
from tljax.train.source_runs import (
    SourceRun,
    default_name,
    load_converted_source,
    load_source_run,
)

FEATURE_LAYERS = ("bottleneck", "backbone")
REFERENCE_NAME = "untrained"


# --- Source runs and the target -----------------------------------------------


def load_source_runs(
    run_dirs: Sequence[str],
    *,
    input_shape: Sequence[int],
    names: Sequence[str] | None = None,
) -> list[SourceRun]:
  """:func:`load_source_run` for each directory; names must be unique.

  An entry ``"<format>[:<arch>]=<path>"`` is a converted checkpoint instead
  (:func:`load_converted_source`).
  """
  if not run_dirs:
    raise ValueError("no source run dirs given")
  if names is not None and len(names) != len(run_dirs):
    raise ValueError(f"{len(names)} names for {len(run_dirs)} source run dirs")
  names = list(names) if names else [default_name(d) for d in run_dirs]
  repeated = sorted({name for name in names if names.count(name) > 1})
  if repeated:
    raise ValueError(
        f"source names {repeated} are not unique; give names "
        "explicitly (--names)"
    )
  if REFERENCE_NAME in names:
    raise ValueError(
        f"{REFERENCE_NAME!r} is reserved for the untrained "
        "reference; rename that source"
    )
  return [
      (
          load_converted_source(run_dir, input_shape=input_shape, name=name)
          if models_lib.convert.is_pretrained_spec(run_dir)
          else load_source_run(run_dir, input_shape=input_shape, name=name)
      )
      for run_dir, name in zip(run_dirs, names)
  ]


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


def target_name(target: str) -> str:
  """``target`` as a source name: an existing directory is an image folder."""
  if ":" not in target and os.path.isdir(target):
    return f"folder:{target}"
  return target


def image_target_kwargs(image_size: int | None) -> dict:
  """``TargetSpec.kwargs`` of an image target ``image_size`` pixels wide.

  TLlib's evaluation view: resized to ``256/224`` of it, center-cropped.
  ``None``: the source's defaults (``{}``).
  """
  if image_size is None:
    return {}
  if isinstance(image_size, bool) or not isinstance(image_size, int):
    raise ValueError(f"image_size must be an integer, got {image_size!r}")
  if image_size < 1:
    raise ValueError(f"image_size must be >= 1, got {image_size}")
  return {"image_size": image_size, "resize": image_size * 256 // 224}


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
  :func:`tljax.train.domains.select_target_labels`, as a training run with that
  seed draws it.
  """
  config = target_config(target)
  splits = {}
  for split in ("train", "test"):
    source = data_lib.get_source(
        target.name, split, data_dir=target.data_dir, **dict(target.kwargs)
    )
    if hasattr(source, "to_array_source"):
      source = source.to_array_source()
    splits[split] = source
  if splits["train"].num_classes is None:
    raise ValueError(
        f"target {target.name!r} has no classes to rank sources on"
    )
  domains = {"target": splits}
  labeled = {
      int(seed): select_target_labels(domains, config, int(seed))["target"][
          "train"
      ]
      for seed in seeds
  }
  return {
      "train": labeled,
      "test": splits["test"],
      "num_classes": splits["train"].num_classes,
      "input_shape": splits["train"].input_shape,
  }


# --- Features and scores --------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _apply_fn(model: models_lib.Model):
  return jax.jit(functools.partial(model.apply, train=False))


def extract(
    model: models_lib.Model,
    params,
    model_state,
    inputs: Any,
    *,
    layer: str = "bottleneck",
    batch_size: int = 512,
) -> tuple[np.ndarray, np.ndarray]:
  """Features (``layer``) and head probabilities of ``inputs``, inference mode.

  Returns:
    ``(features (N, D), probabilities (N, num_classes))`` as float32 NumPy.
  """
  if layer not in FEATURE_LAYERS:
    raise ValueError(
        f"layer must be one of {list(FEATURE_LAYERS)}, got " f"{layer!r}"
    )
  inputs = np.asarray(inputs, np.float32)
  features, probabilities = [], []
  apply = _apply_fn(model)
  for start in range(0, inputs.shape[0], batch_size):
    outputs, _ = apply(params, model_state, inputs[start : start + batch_size])
    chosen = (
        outputs.features if layer == "bottleneck" else outputs.backbone_features
    )
    features.append(np.asarray(chosen, np.float32))
    probabilities.append(np.asarray(jax.nn.softmax(outputs.logits), np.float32))
  return np.concatenate(features), np.concatenate(probabilities)


def untrained_params(model: models_lib.Model, seed: int) -> tuple[dict, dict]:
  """The initialisation a training run with ``seed`` starts from (no transfer)."""
  init_key, _ = jax.random.split(jax.random.key(seed))
  return jax.jit(model.init)(init_key)


def score_model(
    model,
    params_for_seed: Callable[[int], tuple],
    name: str,
    target: Mapping,
    *,
    layer: str,
    scores: Sequence[str],
) -> dict:
  """One model's scores on every seed's labeled target set, and their means."""
  per_seed = {score: [] for score in scores}
  ranks = []
  for seed, labeled in target["train"].items():
    params, model_state = params_for_seed(seed)
    features, probabilities = extract(
        model, params, model_state, labeled.inputs, layer=layer
    )
    values = compute_scores(
        features,
        probabilities,
        labeled.labels,
        num_classes=target["num_classes"],
        scores=scores,
    )
    for score, value in values.items():
      per_seed[score].append(value)
    ranks.append(effective_rank(features))
  means = {score: float(np.mean(values)) for score, values in per_seed.items()}
  if not all(np.isfinite(value) for value in means.values()):
    bad = sorted(
        score for score, value in means.items() if not np.isfinite(value)
    )
    raise FloatingPointError(f"scores {bad} of {name!r} are not finite")
  return {
      "name": name,
      "scores": means,
      "per_seed": per_seed,
      "seeds": sorted(target["train"]),
      "effective_rank": float(np.mean(ranks)),
  }


def score_sources(
    runs: Sequence[SourceRun],
    target: Mapping,
    *,
    layer: str = "bottleneck",
    scores: Sequence[str] = SCORE_NAMES,
) -> list[dict]:
  """The scores of every source run (mean over the target's seeds).

  Returns:
    One row per source: ``{"name", "run_dir", "scores": {score: mean},
    "per_seed": {score: [value per seed]}, "seeds", "effective_rank"}``
    (the features' :func:`effective_rank`, mean over the seeds).
  """
  scores = check_score_names(scores)
  rows = []
  for run in runs:
    row = score_model(
        run.model,
        lambda seed, run=run: (run.params, run.model_state),
        run.name,
        target,
        layer=layer,
        scores=scores,
    )
    rows.append({**row, "run_dir": run.run_dir})
  return rows


def score_untrained(
    run: SourceRun,
    target: Mapping,
    *,
    layer: str = "bottleneck",
    scores: Sequence[str] = SCORE_NAMES,
) -> dict:
  """The scores of ``run``'s architecture at each seed's initialisation."""
  scores = check_score_names(scores)
  return {
      **score_model(
          run.model,
          lambda seed: untrained_params(run.model, seed),
          REFERENCE_NAME,
          target,
          layer=layer,
          scores=scores,
      ),
      "run_dir": None,
  }


def format_scores(
    rows: Sequence[Mapping],
    scores: Sequence[str],
    reference: Mapping | None = None,
) -> str:
  """A markdown table: each source's mean score and its rank (1 = best).

  The last column is the features' :func:`effective_rank` (a diagnostic).
  """
  ranks = {
      score: {
          name: position + 1
          for position, name in enumerate(ranking(rows, score))
      }
      for score in scores
  }
  lines = [
      "| source | "
      + " | ".join(SCORE_TITLES[s] for s in scores)
      + " | features' effective rank |",
      "| --- |" + " --- |" * (len(scores) + 1),
  ]
  for row in rows:
    cells = [
        f"{row['scores'][s]:.4g} ({ranks[s][row['name']]})" for s in scores
    ]
    lines.append(
        f"| {row['name']} | "
        + " | ".join(cells)
        + f" | {row['effective_rank']:.1f} |"
    )
  if reference is not None:
    cells = [f"{reference['scores'][s]:.4g}" for s in scores]
    lines.append(
        f"| *{reference['name']} (reference)* | "
        + " | ".join(cells)
        + f" | {reference['effective_rank']:.1f} |"
    )
  return "\n".join(lines)
