#!/usr/bin/env python
"""Time and peak memory of the tljax.reweight estimators at scale.

Draws ``n`` source examples from ``N(0, I_d)`` and ``n`` target examples
from ``N(0.5, 0.8² I_d)`` (float32) and runs each estimator in its own
process, printing the wall time (compilation included) and the process's
peak resident memory. The exact KMM is run for ``--exact_iterations``
iterations only (each costs ``n²`` kernel evaluations) and its time per
kernel-matrix pass is reported; ``--exact_iterations 0`` runs the full
default solve (about 16 minutes at 50,000 on 2 shared cores).

  python scripts/benchmark_reweight.py                  # n = 50,000, d = 5
  python scripts/benchmark_reweight.py --n 5000 --methods kmm_nystroem,ulsif
  python scripts/benchmark_reweight.py --methods kmm_exact --exact_iterations 0
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time

import numpy as np

METHODS = (
    "kmm_nystroem",
    "kmm_exact",
    "kliep",
    "ulsif",
    "rulsif",
    "classifier",
    "nearest_neighbors",
)


def run_one(method: str, n: int, dim: int, exact_iterations: int) -> None:
  import jax

  from tljax import reweight

  rng = np.random.default_rng(0)
  source = rng.normal(size=(n, dim)).astype(np.float32)
  target = (0.5 + 0.8 * rng.normal(size=(n, dim))).astype(np.float32)
  start = time.perf_counter()
  extra = ""
  if method == "kmm_nystroem":
    result = reweight.kmm(source, target, kernel_approximation="nystroem")
    extra = f"iterations={int(result.num_iterations)} converged={bool(result.converged)}"
    weights = result.weights
  elif (
      method == "kmm_exact" and exact_iterations == 0
  ):  # the full default solve
    result = reweight.kmm(source, target)
    weights = result.weights
    extra = f"iterations={int(result.num_iterations)} converged={bool(result.converged)}"
  elif method == "kmm_exact":
    result = reweight.kmm(
        source,
        target,
        max_iterations=exact_iterations,
        power_iterations=exact_iterations,
    )
    weights = result.weights
    # κ, the power iteration, the iterations and the final objective: one
    # n × n kernel pass each.
    passes = 1 + 2 * exact_iterations + 1
    extra = f"kernel passes={passes}"
  elif method == "kliep":
    weights = reweight.kliep(source, target).weights
  elif method == "ulsif":
    weights = reweight.ulsif(source, target).weights
  elif method == "rulsif":
    weights = reweight.rulsif(source, target).weights
  elif method == "classifier":
    weights = reweight.classifier_density_ratio(source, target)
  else:
    weights = reweight.nearest_neighbors_weighting(source, target)
  jax.block_until_ready(weights)
  elapsed = time.perf_counter() - start
  peak = (
      resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
  )  # KiB -> GiB
  if method == "kmm_exact" and exact_iterations:
    extra += f" seconds/pass≈{elapsed / passes:.2f}"
  print(
      f"{method:18s} n={n} d={dim}: {elapsed:8.1f} s, peak RSS {peak:5.2f} GiB "
      f"{extra}",
      flush=True,
  )


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--n", type=int, default=50_000)
  parser.add_argument("--dim", type=int, default=5)
  parser.add_argument("--methods", default=",".join(METHODS))
  parser.add_argument("--exact_iterations", type=int, default=3)
  parser.add_argument("--one", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.one:
    run_one(args.one, args.n, args.dim, args.exact_iterations)
    return
  print(f"cpus={os.cpu_count()} python={sys.version.split()[0]}", flush=True)
  for method in args.methods.split(","):
    if method not in METHODS:
      raise SystemExit(f"unknown method {method!r}; choose from {METHODS}")
    subprocess.run(
        [
            sys.executable,
            __file__,
            "--one",
            method,
            "--n",
            str(args.n),
            "--dim",
            str(args.dim),
            "--exact_iterations",
            str(args.exact_iterations),
        ],
        check=True,
    )


if __name__ == "__main__":
  main()
