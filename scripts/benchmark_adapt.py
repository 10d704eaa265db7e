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
  ratio) and by wall time.

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
    ours, ours_time = timed(lambda: np.asarray(reweight.kmm(
        source, target, gamma=gamma, B=1000.0, eps=eps).weights))
    theirs_model = adapt_methods.KMM(kernel="rbf", gamma=gamma, B=1000,
                                     eps=eps, max_size=max(sizes), verbose=0,
                                     random_state=0)
    theirs, theirs_time = timed(lambda: np.asarray(
        theirs_model.fit_weights(source, target)).ravel())
    ours_objective = kmm_objective(ours, source, target, gamma)
    theirs_objective = kmm_objective(theirs, source, target, gamma)
    kmm_rows.append((n, ours_objective, theirs_objective,
                     (ours_objective - theirs_objective) / abs(theirs_objective),
                     ours_time, theirs_time))
    print("kmm", kmm_rows[-1], flush=True)

    true_ratio = p_t / p_s
    relative_ratio = p_t / (0.1 * p_t + 0.9 * p_s)
    candidates = {
        "KLIEP": (lambda: reweight.kliep(source, target).weights,
                  lambda: adapt_methods.KLIEP(
                      kernel="rbf", gamma=[0.1, 1.0, 10.0], verbose=0,
                      random_state=0).fit_weights(source, target),
                  true_ratio),
        "uLSIF": (lambda: reweight.ulsif(source, target).weights,
                  lambda: adapt_methods.ULSIF(
                      kernel="rbf", gamma=[0.1, 1.0, 10.0],
                      lambdas=[0.001, 0.01, 0.1, 1.0], verbose=0,
                      random_state=0).fit_weights(source, target),
                  true_ratio),
        "RuLSIF": (lambda: reweight.rulsif(source, target, alpha=0.1).weights,
                   lambda: adapt_methods.RULSIF(
                       kernel="rbf", alpha=0.1, gamma=[0.1, 1.0, 10.0],
                       lambdas=[0.001, 0.01, 0.1, 1.0], verbose=0,
                       random_state=0).fit_weights(source, target),
                   relative_ratio),
    }
    for name, (ours_fn, theirs_fn, truth) in candidates.items():
      ours, ours_time = timed(lambda: np.asarray(ours_fn()).ravel())
      theirs, theirs_time = timed(lambda: np.asarray(theirs_fn()).ravel())
      ratio_rows.append((name, n, stats.spearmanr(ours, truth)[0],
                         stats.spearmanr(theirs, truth)[0], ours_time,
                         theirs_time))
      print(name, ratio_rows[-1], flush=True)

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
      "| --- | --- | --- | --- | --- | --- | --- |"]
  for n, ours, theirs, relative, ours_time, theirs_time in kmm_rows:
    lines.append(f"| {n} | {ours:.6g} | {theirs:.6g} | {relative:+.2e} | "
                 f"{ours_time:.2f} | {theirs_time:.2f} | "
                 f"{theirs_time / ours_time:.2f} |")
  lines += ["", "## KLIEP, uLSIF, RuLSIF: each with its own model selection",
            "", "| estimator | n | Spearman with the true ratio, tljax | "
            "Spearman, adapt | time tljax (s) | time adapt (s) | "
            "time ratio adapt / tljax |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
  for name, n, ours, theirs, ours_time, theirs_time in ratio_rows:
    lines.append(f"| {name} | {n} | {ours:.3f} | {theirs:.3f} | "
                 f"{ours_time:.2f} | {theirs_time:.2f} | "
                 f"{theirs_time / ours_time:.2f} |")
  report = "\n".join(lines) + "\n"
  print(report)
  if args.output:
    with open(args.output, "w", encoding="utf-8") as f:
      f.write(report)


if __name__ == "__main__":
  sys.exit(main())
