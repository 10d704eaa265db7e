#!/usr/bin/env python
"""Instance transfer: importance weights, weighted training and the scikit-learn-style facade.

The script behind docs/tutorials/instances.md, on a covariate shift with a
known answer (:func:`tljax.data.gaussian_shift`): ``y = −x + x³ + ε`` with
source inputs ``x ~ N(0, 0.5²)`` and target inputs ``x ~ U(−1.5, 1.5)``, and
a straight line as the (misspecified) model. Part 1 estimates the weights
``w(x) ≈ p_target(x) / p_source(x)`` from unlabeled inputs and compares them
with the true ratio; part 2 fits the line in JAX with an importance-weighted
loss; part 3 does the same through the facade for several estimators and
seeds.

  python docs/tutorials/instances.py            # 10 seeds in part 3
  python docs/tutorials/instances.py --quick    # 2 seeds in part 3
"""

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import optax
from scipy import stats

from tljax import data, reweight


def shifted_regression(seed: int):
  """Labeled source, unlabeled target, labeled target test (inputs ``(n, 1)``)."""
  source = data.gaussian_shift("train", domain="source", seed=seed)
  target = data.gaussian_shift("train", domain="target", seed=seed)
  test = data.gaussian_shift("test", domain="target", seed=seed)
  return (source.inputs, source.labels, target.inputs, test.inputs,
          test.labels)


def effective_sample_size(weights) -> float:
  """Kish's (Σw)² / Σw², as tljax.report.effective_sample_size (no matplotlib)."""
  weights = np.asarray(weights, np.float64)
  return float(weights.sum() ** 2 / np.sum(weights ** 2))


def true_ratio(x):
  """p_target / p_source: U(−1.5, 1.5) over N(0, 0.5²)."""
  source_density = stats.norm.pdf(x, scale=0.5)
  return np.where(np.abs(x) <= 1.5, 1 / 3, 0.0) / source_density


def estimate_weights():
  """Part 1: three estimators of p_t / p_s from unlabeled inputs of both domains."""
  source_inputs, _, target_inputs, _, _ = shifted_regression(seed=0)
  truth = true_ratio(source_inputs[:, 0])
  estimates = {
      "kmm": reweight.kmm(source_inputs, target_inputs).weights,
      "kliep": reweight.kliep(source_inputs, target_inputs).weights,
      "ulsif": reweight.ulsif(source_inputs, target_inputs).weights,
  }
  print(f"{len(source_inputs)} source examples; effective sample size of the "
        f"true weights {effective_sample_size(truth):.0f}")
  for name, weights in estimates.items():
    weights = np.asarray(weights)
    rank_correlation = stats.spearmanr(weights, truth).statistic
    print(f"{name}: mean weight {weights.mean():.2f}, effective sample size "
          f"{effective_sample_size(weights):.0f}, Spearman ρ with the true "
          f"ratio {rank_correlation:.2f}")
  return estimates["kmm"]


def fit_line(inputs, targets, weights, steps: int = 500):
  """Part 2: a line fitted by Adam on the importance-weighted squared error."""
  inputs, targets = jnp.asarray(inputs[:, 0]), jnp.asarray(targets)

  def loss_fn(line):
    predictions = line["slope"] * inputs + line["intercept"]
    return reweight.weighted_squared_error(predictions, targets, weights)

  optimizer = optax.adam(0.05)
  line = {"slope": jnp.zeros(()), "intercept": jnp.zeros(())}

  @jax.jit
  def update(line, state):
    gradients = jax.grad(loss_fn)(line)
    updates, state = optimizer.update(gradients, state)
    return optax.apply_updates(line, updates), state

  state = optimizer.init(line)
  for _ in range(steps):
    line, state = update(line, state)
  return line


def weighted_training(kmm_weights):
  source_inputs, source_targets, _, test_inputs, test_targets = \
      shifted_regression(seed=0)
  for name, weights in (("unweighted", np.ones(len(source_inputs))),
                        ("kmm-weighted", np.asarray(kmm_weights))):
    line = fit_line(source_inputs, source_targets, jnp.asarray(weights))
    predictions = line["slope"] * test_inputs[:, 0] + line["intercept"]
    print(f"{name} line: slope {float(line['slope']):+.3f}, target test MSE "
          f"{float(np.mean((predictions - test_targets) ** 2)):.3f}")


def facade(seeds: int):
  """Part 3: ImportanceWeightedRegressor(estimator).fit(Xs, ys, Xt), scikit-learn style."""
  errors = {name: [] for name in ("uniform", "kmm", "kliep", "ulsif")}
  for seed in range(seeds):
    source_inputs, source_targets, target_inputs, test_inputs, test_targets = \
        shifted_regression(seed)
    for name in errors:
      model = reweight.ImportanceWeightedRegressor(name).fit(
          source_inputs, source_targets, target_inputs)
      errors[name].append(model.score(test_inputs, test_targets))
  print(f"| estimator | target test MSE (mean ± std over {seeds} seeds) |")
  print("| --- | --- |")
  for name, values in errors.items():
    print(f"| {name} | {np.mean(values):.3f} ± {np.std(values, ddof=1):.3f} |")


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--quick", action="store_true",
                      help="2 seeds instead of 10 in part 3")
  args = parser.parse_args()
  kmm_weights = estimate_weights()
  print()
  weighted_training(kmm_weights)
  print()
  facade(seeds=2 if args.quick else 10)


if __name__ == "__main__":
  main()
