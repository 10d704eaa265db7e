#!/usr/bin/env python
"""Do transferability scores pick the right source? A model zoo on the digits.

1. Train a zoo of ``source_only`` LeNets (1 seed, ``--zoo_steps`` steps, the
   digits recipe) on variants of the MNIST-5k source domain
   (:mod:`tljax.data.transforms`): as is, rotated by 45° and 90°, inverted,
   heavily noised (σ = 0.5, clipped), with its classes renamed by a fixed
   permutation, and with random labels (labels shuffled among the examples).
2. Score every zoo model on the UCI digits with k labeled examples per class
   (LogME, LEEP, NCE, H-score, shrinkage H-score, GBC, TransRate on the
   bottleneck features and the source head; mean over the seeds' label
   draws), next to the untrained network as a no-transfer reference.
3. Verify: transfer from every zoo model with each of ``--methods`` (default
   ``finetune`` and ``linear_probe``) for every seed, with fixed
   hyper-parameters, plus ``target_only``; report each score's weighted
   Kendall τ against the measured target test accuracy and each source's
   negative-transfer gap ε(transfer) − ε(target only) over the paired seeds.

Everything (zoo, protocol, hyper-parameters) is fixed before any target test
accuracy is seen; learning rates are the ones scripts/few_shot.py chose on its
target *validation* set (finetune and target_only 0.01, linear_probe 0.03).
The test split only produces the reported accuracies. Steps 2 and 3 are
:func:`tljax.train.rank_sources.rank_sources` (``tljax rank-sources``).

  python scripts/transferability.py --workdir workdirs/transferability \\
      --output docs/transferability.md
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time

import numpy as np
from absl import app, flags, logging

from tljax.configs import digits  # the experiment's base config
from tljax.train import rank_sources  # scores, verification, tables
from tljax.train.experiment import check_experiment_config, run_dir, run_experiment

# name → (transform of the MNIST-5k source, what it is).
ZOO = {
    "mnist": ({}, "MNIST-5k as is"),
    "rot45": ({"rotation_degrees": 45.0}, "rotated 45°"),
    "rot90": ({"rotation_degrees": 90.0}, "rotated 90°"),
    "inverted": ({"invert": True}, "inverted, 1 − x"),
    "noisy": (
        {"noise_std": 0.5, "noise_seed": 0},
        "Gaussian noise σ = 0.5, clipped to [0, 1]",
    ),
    "permuted": (
        {"permute_labels_seed": 0},
        "classes renamed by a fixed permutation (seed 0)",
    ),
    "random_labels": (
        {"shuffle_labels_seed": 0},
        "random labels: labels shuffled among the examples",
    ),
}

_WORKDIR = flags.DEFINE_string(
    "workdir",
    os.path.join("workdirs", "transferability"),
    "Zoo runs, verification runs and results.",
)
_OUTPUT = flags.DEFINE_string(
    "output",
    os.path.join("docs", "transferability.md"),
    "Where the markdown report goes.",
)
_SOURCES = flags.DEFINE_list("sources", list(ZOO), "Zoo members to train.")
_ZOO_STEPS = flags.DEFINE_integer("zoo_steps", 1000, "Steps of every zoo run.")
_LABELS = flags.DEFINE_integer(
    "labels_per_class", 10, "Labeled target examples per class."
)
_SEEDS = flags.DEFINE_integer(
    "seeds", 3, "Label draws and transfer seeds 0..seeds-1."
)
_METHODS = flags.DEFINE_list(
    "methods", ["finetune", "linear_probe"], "Transfer methods to verify with."
)
_LEARNING_RATES = flags.DEFINE_list(
    "learning_rates",
    ["0.01", "linear_probe=0.03"],
    "Verification learning rates (default, then method=rate).",
)
_STEPS = flags.DEFINE_integer("steps", 300, "Steps of every verification run.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Target batch size.")
_FEATURES = flags.DEFINE_enum(
    "features",
    "bottleneck",
    list(rank_sources.FEATURE_LAYERS),
    "Features the feature-based scores read.",
)
_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS data dir.")


def zoo_config(name: str):
  config = digits.get_config("method=source_only,seeds=1")
  config.baselines = ()
  config.data_dir = _DATA_DIR.value
  config.progress_bar = False
  config.eval_every = 0
  config.steps = _ZOO_STEPS.value
  config.checkpoint_every = _ZOO_STEPS.value
  if ZOO[name][0]:
    config.source.kwargs.transform = dict(ZOO[name][0])
  check_experiment_config(config)
  return config


def train_zoo(workdir: str) -> dict:
  """Trains (or resumes) every zoo member; returns name → its run summary."""
  summaries = {}
  for name in _SOURCES.value:
    results = run_experiment(
        zoo_config(name), os.path.join(workdir, "zoo", name)
    )
    summaries[name] = results["runs"][0]
    print(
        f"zoo {name}: source test acc "
        f"{100 * summaries[name]['source_test']['accuracy']:.1f}%",
        flush=True,
    )
  return summaries


def command_line() -> str:
  return ".venv/bin/python scripts/transferability.py " + " ".join(sys.argv[1:])


def zoo_table(summaries: dict) -> str:
  lines = [
      "| source | variant of MNIST-5k | transform | source test acc (%) | "
      "target test acc, no adaptation (%) |",
      "| --- | --- | --- | --- | --- |",
  ]
  for name, summary in summaries.items():
    transform = json.dumps(ZOO[name][0]) if ZOO[name][0] else "—"
    lines.append(
        f"| {name} | {ZOO[name][1]} | `{transform}` | "
        f"{100 * summary['source_test']['accuracy']:.1f} | "
        f"{100 * summary['target_test']['accuracy']:.1f} |"
    )
  return "\n".join(lines)


def tau_table(results: dict, methods, scores) -> list[str]:
  """Weighted τ of every score (rows) for every verification method (columns)."""
  lines = [
      "| score | " + " | ".join(f"weighted τ, `{m}`" for m in methods) + " |",
      "| --- |" + " --- |" * len(methods),
  ]
  for score in scores:
    lines.append(
        f"| {rank_sources.SCORE_TITLES[score]} | "
        + " | ".join(
            f"{results['correlations'][m][score]['weighted_tau']:+.2f}"
            for m in methods
        )
        + " |"
    )
  return lines


def anti_correlated(results: dict, method: str, scores) -> list[str]:
  """For each score with τ < 0: the source it ranks first, and that source's features."""
  rows = results["sources"]
  by_rank = sorted(rows, key=lambda row: -row["effective_rank"])
  lines = []
  for score in scores:
    if not results["correlations"][method][score]["weighted_tau"] < 0:
      continue
    first = rank_sources.ranking(rows, score)[0]
    row = next(row for row in rows if row["name"] == first)
    position = [r["name"] for r in by_rank].index(first) + 1
    lines.append(
        f"* {rank_sources.SCORE_TITLES[score]} (weighted τ "
        f"{results['correlations'][method][score]['weighted_tau']:+.2f} with "
        f"`{method}`) ranks `{first}` first; its features on the target "
        f"examples have the {_ordinal(position)} effective rank of the "
        f"{len(rows)} sources ({row['effective_rank']:.1f}; range "
        f"{by_rank[-1]['effective_rank']:.1f}–{by_rank[0]['effective_rank']:.1f})."
    )
  return lines


def _ordinal(position: int) -> str:
  """1 → "largest", 2 → "2nd largest", ..."""
  return {1: "largest", 2: "2nd largest", 3: "3rd largest"}.get(
      position, f"{position}th largest"
  )


def findings(results: dict, methods, scores) -> list[str]:
  """Plain statements read off the results: negative transfer, and its prediction."""
  lines = []
  names = [row["name"] for row in results["sources"]]
  predicted = results["predicted_negative"]
  for method in methods:
    gaps = results["gaps"][method]
    negative = [
        name for name in names if gaps[name]["verdict"] == "negative transfer"
    ]
    inconclusive = [
        name for name in names if gaps[name]["verdict"] == "inconclusive"
    ]
    taus = results["correlations"][method]
    finite = [
        s for s in scores if np.isfinite(taus[s]["weighted_tau"])
    ] or scores
    best = max(finite, key=lambda s: taus[s]["weighted_tau"])
    worst = min(finite, key=lambda s: taus[s]["weighted_tau"])
    lines.append(
        f"* **`{method}`**: weighted τ ranges from "
        f"{taus[worst]['weighted_tau']:+.2f} ({rank_sources.SCORE_TITLES[worst]}) "
        f"to {taus[best]['weighted_tau']:+.2f} ({rank_sources.SCORE_TITLES[best]}) "
        f"over {len(names)} sources."
    )
    if not negative:
      lines.append(
          f"  No source transfers negatively with `{method}`: no gap interval "
          f"lies above zero (inconclusive: {', '.join(inconclusive) or 'none'})."
      )
      continue
    for name in negative:
      gap = gaps[name]
      last = [
          rank_sources.SCORE_TITLES[s]
          for s in scores
          if rank_sources.ranking(results["sources"], s)[-1] == name
      ]
      below = [
          rank_sources.SCORE_TITLES[s] for s in scores if name in predicted[s]
      ]
      ranks = ", ".join(
          f"{rank_sources.SCORE_TITLES[s]} {rank_sources.ranking(results['sources'], s).index(name) + 1}"
          for s in scores
      )
      lines.append(
          f"  **Negative transfer: `{name}`**, ε − ε(target only) = "
          f"{100 * gap['gap']:+.1f} points, 95% CI [{100 * gap['low']:+.1f}, "
          f"{100 * gap['high']:+.1f}] over {gap['seeds']} paired seeds. Its rank "
          f"among the {len(names)} sources (1 = best): {ranks}. Ranked last by "
          f"{len(last)}/{len(scores)} scores ({', '.join(last) or 'none'}); "
          f"scored below the untrained network by {len(below)}/{len(scores)} "
          f"({', '.join(below) or 'none'})."
      )
    false_alarms = {
        rank_sources.SCORE_TITLES[s]: [
            n for n in predicted[s] if n not in negative
        ]
        for s in scores
    }
    flagged = {
        score: names_ for score, names_ in false_alarms.items() if names_
    }
    if flagged:
      lines.append(
          "  Sources scored below the untrained network without "
          "negative transfer here: "
          + "; ".join(
              f"{score}: {', '.join(names_)}"
              for score, names_ in flagged.items()
          )
          + "."
      )
  return lines


def report(summaries, results, markdown, *, seconds: float) -> str:
  scores = results["scores"]
  methods = list(results["verification"]["accuracy"])
  settings = results["settings"]
  lines = [
      "# Transferability scores on a digit model zoo",
      "",
      "Generated by `scripts/transferability.py` (protocol in its docstring); "
      "the scores and the verification are `scripts/rank_sources.py`'s "
      "functions.",
      "",
      "Reproduce (from the repository root, with the project's virtual "
      "environment):",
      "",
      "```",
      command_line(),
      "```",
      "",
      f"Wall time {seconds / 60:.1f} min on {os.cpu_count()} CPU cores "
      f"({platform.machine()}; load average over the last 5 minutes "
      f"{os.getloadavg()[1]:.1f} at the end), everything included (zoo, "
      "scores, verification).",
      "",
      "## Protocol",
      "",
      f"* **Zoo**: LeNet (bottleneck 256, BatchNorm), `source_only` on each "
      f"variant of MNIST-5k (4,000 train / 1,000 test, 8×8×1 in [0, 1]), "
      f"{_ZOO_STEPS.value} steps of batch 64, SGD lr 0.01 (momentum 0.9, "
      "Nesterov, weight decay 5e-4, cosine), seed 0 — the recipe of "
      "`configs/digits.py`. Each variant is `config.source.kwargs.transform`, "
      "applied to both source splits (`tljax/data/transforms.py`).",
      f"* **Target**: `uci_digits`, {_LABELS.value} labeled examples per "
      f"class drawn from the training split for each seed "
      f"0..{_SEEDS.value - 1} (`select_target_labels`); 450 test examples "
      "(1 example = 0.22 points).",
      f"* **Scores** on the {results['features']} features (256-d) and the "
      "source head's softmax of the labeled target examples, mean over the "
      "seeds' draws; NCE uses the source head's argmax as the source label; "
      "GBC runs on the first 64 principal components (as in its authors' "
      "code). The *untrained* row is the same network at the initialisation "
      "`target_only` starts from: a score below it predicts negative "
      "transfer. The table's last column, the features' effective rank "
      "(participation ratio (Σσ²)²/Σσ⁴ of the centred features' spectrum), "
      "is a diagnostic, not a score.",
      f"* **Verification**: for every source, method and seed, "
      f"{settings['steps']} steps of batch "
      f"{min(settings['batch_size'], 10 * _LABELS.value)} on the labeled "
      "examples, fixed learning rates "
      + ", ".join(
          f"{'others' if method == 'default' else method} {rate:g}"
          for method, rate in settings["learning_rates"].items()
      )
      + " (chosen by scripts/few_shot.py on a target *validation* set), "
      "starting from the zoo model with a new head; `target_only` trains the "
      "same network from scratch on the same labels, with the same seeds. "
      "Weighted τ: `scipy.stats.weightedtau(accuracy, score, rank=None)`, "
      "the sources ranked by their mean measured target test accuracy "
      "(hyperbolic weights, so the order among the best sources counts "
      "most). Gap: ε(transfer) − ε(target_only) per seed, mean and 95% "
      "Student-t interval over the paired seeds "
      "(`tljax.select.negative_transfer_gap`); an interval above 0 is "
      "negative transfer.",
      "",
      "## Findings",
      "",
      "Each score's weighted τ against the measured target test accuracy "
      f"({len(results['sources'])} sources; 1 = the score orders the sources "
      "as the measurements do):",
      "",
      *tau_table(results, methods, scores),
      "",
      *findings(results, methods, scores),
      "",
      "Scores that order the sources against the measurements:",
      "",
      *(
          anti_correlated(results, methods[0], scores)
          or [f"* none with `{methods[0]}`."]
      ),
      "",
      "## The zoo",
      "",
      zoo_table(summaries),
      "",
      "The last column is the zoo model applied to the target as is (its "
      "source head, no target label): meaningless for the permuted and "
      "random-label sources, whose class names differ from the digits'.",
      "",
      "## Scores, rankings and verification",
      "",
      "Each score's value (its rank among the sources, 1 = best), then per "
      "method the measured target test accuracy (mean ± std over seeds), "
      "the negative-transfer gap, and each score's τ against the measured "
      "accuracy.",
      "",
      markdown.rstrip("\n"),
      "",
      "## Notes",
      "",
      "* With fewer labeled examples than feature dimensions (here "
      f"{10 * _LABELS.value} < 256) the H-score's pseudo-inverse makes it "
      "reach its maximum C − 1 = 9 for every model whose features are in "
      "general position, so it cannot rank them; its shrinkage form "
      "(Ledoit-Wolf covariance) is the remedy proposed for exactly this.",
      "* TransRate's first term is the coding rate of all the features, "
      "which grows with how many directions they spread over (their "
      "effective rank, last column of the score table); features that spread "
      "widely without separating the classes can therefore score high. "
      "TransRate also depends on the feature scale through its fixed ε.",
      "* `linear_probe` trains only a new head on the frozen zoo features; "
      "its negative-transfer gap compares that with training the whole "
      "network from scratch on the same labels (`target_only`), which is "
      "the comparison of Wang et al.'s definition but not of equal capacity.",
      "* A fixed permutation of the source classes changes only the names of "
      "the classes the network learns, not what separates them; it should "
      "transfer like the unpermuted source (it is trained separately, so "
      "the two differ by training noise). Random labels, by contrast, "
      "leave nothing to learn but memorisation.",
      f"* {len(results['sources'])} sources give few pairs: a single swap "
      "moves τ by a lot, and so do differences smaller than the seed spread "
      "of the measured accuracies.",
      "",
      "Per-seed scores and accuracies, settings and rankings: "
      f"`{os.path.join(_WORKDIR.value, 'rank', rank_sources.RESULTS_JSON)}` "
      "(git-ignored work dir).",
  ]
  return "\n".join(lines) + "\n"


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  unknown = sorted(set(_SOURCES.value) - set(ZOO))
  if unknown:
    raise app.UsageError(f"--sources {unknown} are unknown; zoo: {list(ZOO)}")
  start = time.perf_counter()
  workdir = os.path.abspath(_WORKDIR.value)
  rank_sources.enable_compilation_cache(os.path.join(workdir, "jax_cache"))
  summaries = train_zoo(workdir)
  target = rank_sources.TargetSpec(
      name="uci_digits",
      labels_per_class=_LABELS.value,
      data_dir=_DATA_DIR.value,
  )
  settings = rank_sources.TrainSettings(
      steps=_STEPS.value,
      batch_size=_BATCH_SIZE.value,
      learning_rates=rank_sources.parse_learning_rates(_LEARNING_RATES.value),
  )
  results, markdown = rank_sources.rank_sources(
      [
          run_dir(os.path.join(workdir, "zoo", name), "source_only", 0)
          for name in _SOURCES.value
      ],
      target,
      seeds=range(_SEEDS.value),
      names=list(_SOURCES.value),
      layer=_FEATURES.value,
      verify_methods=_METHODS.value,
      settings=settings,
      workdir=os.path.join(workdir, "rank"),
  )
  seconds = time.perf_counter() - start
  text = report(summaries, results, markdown, seconds=seconds)
  os.makedirs(os.path.dirname(os.path.abspath(_OUTPUT.value)), exist_ok=True)
  with open(_OUTPUT.value, "w", encoding="utf-8") as f:
    f.write(text)
  print(text)
  print(f"{seconds / 60:.1f} min; report in {_OUTPUT.value}")


if __name__ == "__main__":
  sys.exit(app.run(main))
