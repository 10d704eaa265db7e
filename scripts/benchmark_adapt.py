#!/usr/bin/env python
"""tljax.reweight next to the `adapt` package (de Mathelin et al. 2021) on the same data.

`adapt` (https://pypi.org/project/adapt/) is where KMM, KLIEP, uLSIF and
RuLSIF are usually taken from in Python. It is an optional benchmark
dependency, never a runtime one (it pulls TensorFlow); run this script in an
environment with both installed::

  python -m venv /tmp/adaptenv && /tmp/adaptenv/bin/pip install adapt -e .
  /tmp/adaptenv/bin/python scripts/benchmark_adapt.py --output docs/benchmark_adapt.md

Data: the KMM regression toy's inputs (source ``N(0, 0.5²)``, target
``U(−1.5, 1.5)``, 1-D) at several sizes ``n = n_s = n_t``, where the true
density ratio is known. For each estimator and size, one run of each
library on the same arrays, with the same kernel parameters where both take
them:

* **KMM**: both solve the same QP (same γ, ``B = 1000``, the same ε); the
  table gives the objective ``½βᵀKβ − κᵀβ`` of each solution (computed here
  in float64 from the returned weights, lower is better), its ratio
  (tljax − adapt, relative to |adapt|), and the wall times.
* **KLIEP, uLSIF, RuLSIF** (α = 0.1): each library with its own defaults
  (their model selection differs), compared by the Spearman correlation of
  the weights with the true ratio ``p_t/p_s`` (for RuLSIF with the relative
  ratio ``p_t/(α p_t + (1 − α) p_s)``), by the held-out squared error of the
  fitted ratio function, ``½ E[(ŵ(x) − w(x))²]`` over 20,000 fresh points
  from the denominator density (``p_s``; for RuLSIF the α-mixture) — the
  criterion uLSIF's and RuLSIF's leave-one-out selection estimates — and by
  wall time.
* **TrAdaBoost** (classification): two moons as source (500 points),
  moons rotated by 50° and by 90° as target, 20 labeled target examples,
  a depth-2 decision tree (scikit-learn) as the base learner of both, 20
  rounds; target test accuracy over 5 seeds and the wall time, next to one
  tree on source + target and one on the 20 target examples alone.
  ``adapt``'s TrAdaBoost is not Dai et al.'s update: it measures errors
  on the learner's ``predict_proba``, takes ``β_t = ε_t / (2 − ε_t)`` and
  votes with the probabilities; tljax follows the paper (hard errors,
  ``β_t = ε_t / (1 − ε_t)`` with ``ε_t`` clipped below ½, the vote of the
  second half of the rounds).

Times include JAX compilation for tljax (a first call at each shape) —
reported as measured, not warmed up — and are a single run each.
"""

import argparse
import os
import sys
import time
import warnings

import numpy as np
from scipy import stats

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
warnings.filterwarnings("ignore")


def toy(n, seed=0):
  rng = np.random.default_rng(seed)
  source = rng.normal(0.0, 0.5, size=(n, 1))
  target = rng.uniform(-1.5, 1.5, size=(n, 1))
  density_source = stats.norm(0, 0.5).pdf(source[:, 0])
  density_target = np.where(np.abs(source[:, 0]) <= 1.5, 1 / 3.0, 0.0)
  return source, target, density_source, density_target


def kmm_objective(weights, source, target, gamma):
  def kernel(a, b):
    return np.exp(-gamma * ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))

  n_s, n_t = len(source), len(target)
  k = kernel(source, source)
  kappa = (n_s / n_t) * kernel(source, target).sum(1)
  weights = np.asarray(weights, np.float64)
  return 0.5 * weights @ k @ weights - kappa @ weights


def timed(function):
  start = time.perf_counter()
  result = function()
  return result, time.perf_counter() - start


def tradaboost_comparison(adapt_methods, rotation, seeds=range(5)):
  """TrAdaBoost of both libraries (and the base learner alone) on rotated moons."""
  from sklearn.tree import DecisionTreeClassifier

  from tljax import reweight
  from tljax.data.toy import two_moons

  results = {
      "20 target labels, one tree": ([], []),
      "source + 20 target labels, one tree": ([], []),
      "TrAdaBoost, tljax": ([], []),
      "TrAdaBoost, adapt": ([], []),
  }
  for seed in seeds:
    source = two_moons("train", num_examples=500, seed=seed)
    target = two_moons(
        "train", rotation_degrees=rotation, num_examples=500, seed=100 + seed
    )
    test = two_moons(
        "test", rotation_degrees=rotation, num_examples=1000, seed=100 + seed
    )
    pick = np.random.default_rng(seed).choice(
        len(target.labels), 20, replace=False
    )
    xs, ys = source.inputs, source.labels
    xt, yt = target.inputs[pick], target.labels[pick]

    def tree():
      return DecisionTreeClassifier(max_depth=2, random_state=seed)

    def target_only():
      return tree().fit(xt, yt)

    def single():
      return tree().fit(np.concatenate([xs, xt]), np.concatenate([ys, yt]))

    def ours():
      return reweight.tradaboost(xs, ys, xt, yt, num_rounds=20, learner=tree())

    def theirs():
      model = adapt_methods.TrAdaBoost(
          tree(), n_estimators=20, Xt=xt, yt=yt, verbose=0, random_state=seed
      )
      return model.fit(xs, ys)

    for name, fit in zip(results, (target_only, single, ours, theirs)):
      model, seconds = timed(fit)
      accuracy = float(
          np.mean(np.asarray(model.predict(test.inputs)).ravel() == test.labels)
      )
      results[name][0].append(accuracy)
      results[name][1].append(seconds)
      print("tradaboost", rotation, seed, name, accuracy, seconds, flush=True)
  return [
      (name, accuracies, seconds)
      for name, (accuracies, seconds) in results.items()
  ]


def error_text(value: float) -> str:
  """A held-out error: three decimals, or three digits in powers of ten when huge."""
  return f"{value:.3f}" if abs(value) < 1e4 else f"{value:.3g}"


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--sizes", default="200,500,1000")
  parser.add_argument("--output", default=None)
  args = parser.parse_args()
  from adapt import instance_based as adapt_methods  # noqa: the optional dependency
  from importlib import metadata
  import jax
  from tljax import reweight

  sizes = [int(value) for value in args.sizes.split(",")]
  kmm_rows, ratio_rows = [], []
  for n in sizes:
    source, target, p_s, p_t = toy(n)
    pooled = np.concatenate([source, target])
    distances = ((pooled[:, None, :] - pooled[None, :, :]) ** 2).sum(-1)
    gamma = 1.0 / (2.0 * np.median(distances[np.triu_indices(len(pooled), 1)]))
    eps = (np.sqrt(n) - 1) / np.sqrt(n)
    ours, ours_time = timed(
        lambda: np.asarray(
            reweight.kmm(source, target, gamma=gamma, B=1000.0, eps=eps).weights
        )
    )
    theirs_model = adapt_methods.KMM(
        kernel="rbf",
        gamma=gamma,
        B=1000,
        eps=eps,
        max_size=max(sizes),
        verbose=0,
        random_state=0,
    )
    theirs, theirs_time = timed(
        lambda: np.asarray(theirs_model.fit_weights(source, target)).ravel()
    )
    ours_objective = kmm_objective(ours, source, target, gamma)
    theirs_objective = kmm_objective(theirs, source, target, gamma)
    kmm_rows.append(
        (
            n,
            ours_objective,
            theirs_objective,
            (ours_objective - theirs_objective) / abs(theirs_objective),
            ours_time,
            theirs_time,
        )
    )
    print("kmm", kmm_rows[-1], flush=True)

    true_ratio = p_t / p_s
    relative_ratio = p_t / (0.1 * p_t + 0.9 * p_s)
    fresh_source, _, fresh_p_s, fresh_p_t = toy(20000, seed=1000 + n)
    mixture_pick = np.random.default_rng(2000 + n).random(20000) < 0.1
    fresh_target = np.random.default_rng(3000 + n).uniform(
        -1.5, 1.5, (20000, 1)
    )
    fresh_mixture = np.where(mixture_pick[:, None], fresh_target, fresh_source)
    mixture_p_s = stats.norm(0, 0.5).pdf(fresh_mixture[:, 0])
    mixture_p_t = np.where(np.abs(fresh_mixture[:, 0]) <= 1.5, 1 / 3.0, 0.0)
    held_out = {
        "KLIEP": (fresh_source, fresh_p_t / fresh_p_s),
        "uLSIF": (fresh_source, fresh_p_t / fresh_p_s),
        "RuLSIF": (
            fresh_mixture,
            mixture_p_t / (0.1 * mixture_p_t + 0.9 * mixture_p_s),
        ),
    }
    candidates = {
        "KLIEP": (
            lambda: reweight.kliep(source, target),
            lambda: adapt_methods.KLIEP(
                kernel="rbf", gamma=[0.1, 1.0, 10.0], verbose=0, random_state=0
            ),
            true_ratio,
        ),
        "uLSIF": (
            lambda: reweight.ulsif(source, target),
            lambda: adapt_methods.ULSIF(
                kernel="rbf",
                gamma=[0.1, 1.0, 10.0],
                lambdas=[0.001, 0.01, 0.1, 1.0],
                verbose=0,
                random_state=0,
            ),
            true_ratio,
        ),
        "RuLSIF": (
            lambda: reweight.rulsif(source, target, alpha=0.1),
            lambda: adapt_methods.RULSIF(
                kernel="rbf",
                alpha=0.1,
                gamma=[0.1, 1.0, 10.0],
                lambdas=[0.001, 0.01, 0.1, 1.0],
                verbose=0,
                random_state=0,
            ),
            relative_ratio,
        ),
    }
    for name, (ours_fn, theirs_model, truth) in candidates.items():
      ours, ours_time = timed(ours_fn)
      ours_weights = np.asarray(ours.weights).ravel()
      theirs = theirs_model()

      def fit_theirs():
        return np.asarray(theirs.fit_weights(source, target)).ravel()

      theirs_weights, theirs_time = timed(fit_theirs)
      points, ratio = held_out[name]
      ours_error = 0.5 * np.mean(
          (np.asarray(ours.ratio(points.astype(np.float32))) - ratio) ** 2
      )
      theirs_error = 0.5 * np.mean(
          (np.asarray(theirs.predict_weights(points)).ravel() - ratio) ** 2
      )
      ratio_rows.append(
          (
              name,
              n,
              stats.spearmanr(ours_weights, truth)[0],
              stats.spearmanr(theirs_weights, truth)[0],
              ours_error,
              theirs_error,
              ours_time,
              theirs_time,
          )
      )
      print(name, ratio_rows[-1], flush=True)

  boost_rows = {
      rotation: tradaboost_comparison(adapt_methods, rotation)
      for rotation in (50.0, 90.0)
  }

  lines = [
      "# tljax.reweight next to `adapt`",
      "",
      f"Generated by `scripts/benchmark_adapt.py --sizes {args.sizes}` "
      f"(adapt {metadata.version('adapt')}, jax {jax.__version__}, 2 CPU "
      "cores, "
      "single runs, tljax times include compilation). Data and protocol in "
      "the script's docstring.",
      "",
      "## KMM: the same QP (same γ, B, ε)",
      "",
      "| n | objective, tljax | objective, adapt | (tljax − adapt) / |adapt| | "
      "time tljax (s) | time adapt (s) | time ratio adapt / tljax |",
      "| --- | --- | --- | --- | --- | --- | --- |",
  ]
  for n, ours, theirs, relative, ours_time, theirs_time in kmm_rows:
    lines.append(
        f"| {n} | {ours:.6g} | {theirs:.6g} | {relative:+.2e} | "
        f"{ours_time:.2f} | {theirs_time:.2f} | "
        f"{theirs_time / ours_time:.2f} |"
    )
  lines += [
      "",
      "## KLIEP, uLSIF, RuLSIF: each with its own model selection",
      "",
      "| estimator | n | Spearman with the true ratio, tljax | "
      "Spearman, adapt | held-out ½E(ŵ − w)², tljax | "
      "held-out ½E(ŵ − w)², adapt | time tljax (s) | time adapt (s) | "
      "time ratio adapt / tljax |",
      "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
  ]
  for (
      name,
      n,
      ours,
      theirs,
      ours_error,
      theirs_error,
      ours_time,
      theirs_time,
  ) in ratio_rows:
    lines.append(
        f"| {name} | {n} | {ours:.3f} | {theirs:.3f} | "
        f"{error_text(ours_error)} | {error_text(theirs_error)} | "
        f"{ours_time:.2f} | {theirs_time:.2f} | "
        f"{theirs_time / ours_time:.2f} |"
    )
  lines += [
      "",
      "## TrAdaBoost: two moons → rotated moons, 20 target "
      "labels, depth-2 trees, 20 rounds",
      "",
      "| implementation | target accuracy (%), 50° | time (s), 50° | "
      "target accuracy (%), 90° | time (s), 90° |",
      "| --- | --- | --- | --- | --- |",
  ]
  for index, (name, _, _) in enumerate(boost_rows[50.0]):
    cells = []
    for rotation in (50.0, 90.0):
      _, accuracies, seconds = boost_rows[rotation][index]
      cells += [
          f"{100 * np.mean(accuracies):.1f} ± "
          f"{100 * np.std(accuracies):.1f}",
          f"{np.mean(seconds):.3f}",
      ]
    lines.append(f"| {name} | " + " | ".join(cells) + " |")
  lines.append(
      "\nAccuracy: mean ± std over 5 seeds on 1,000 test points; "
      "time: mean per fit."
  )
  report = "\n".join(lines) + "\n"
  print(report)
  if args.output:
    with open(args.output, "w", encoding="utf-8") as f:
      f.write(report)


if __name__ == "__main__":
  sys.exit(main())
