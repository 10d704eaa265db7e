"""Section ``reweight``: KMM, KLIEP and uLSIF next to ``adapt`` (timed in a worker process).

Part of ``scripts/benchmark.py`` (its docstring describes every section).
"""

from __future__ import annotations

import math
import os
import sys
import warnings

import numpy as np

from benchmarks.common import Section, Table, fmt, loglog_slope, median_seconds, ratio, short_error

# --- Section: instance reweighting vs adapt ---------------------------------

REWEIGHT_ESTIMATORS = ("KMM", "KLIEP", "uLSIF")
# The entry point that runs adapt_worker() in a process of its own.
BENCHMARK_SCRIPT = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmark.py"
)


def reweight_repeats(n: int) -> int:
  """Timed calls per estimator and size, on both sides: the median of 5 up
  to n = 500 (calls of milliseconds, where one call is mostly noise), one
  above."""
  return 5 if n <= 500 else 1


def reweight_problem(n: int, dim: int) -> dict:
  """The data and the shared kernel candidates for size ``n`` (deterministic)."""
  rng = np.random.default_rng(n)
  source = rng.standard_normal((n, dim))
  target = 0.5 + 0.8 * rng.standard_normal((n, dim))
  pooled = np.concatenate([source, target])
  subset = pooled[
      rng.choice(len(pooled), min(len(pooled), 1000), replace=False)
  ]
  squared = ((subset[:, None, :] - subset[None, :, :]) ** 2).sum(-1)
  median_squared = float(np.median(squared[np.triu_indices(len(subset), 1)]))
  return {
      "source": source,
      "target": target,
      "gamma": 1.0 / (2.0 * median_squared),
      "sigmas": np.logspace(-1, 1, 9) * math.sqrt(median_squared),
      "lambdas": 10.0 ** np.arange(-3.0, 1.01, 0.5),
      "eps": (math.sqrt(n) - 1) / math.sqrt(n),
  }


def adapt_worker(sizes, dim) -> None:
  """Times adapt's fits in a process of their own; prints one JSON line.

  adapt imports TensorFlow, which must not share a process with PyTorch and
  JAX (the three together crashed), so :func:`section_reweight` runs this
  through ``--adapt_worker``.
  """
  import json  # noqa: PLC0415

  warnings.filterwarnings("ignore")
  try:
    from adapt import instance_based as adapt  # noqa: PLC0415 (optional)
  except Exception as error:  # noqa: BLE001 (ImportError, TensorFlow failing)
    print("ADAPT_TIMES " + json.dumps({"error": short_error(error)}))
    return
  times = {}
  for n in (30, *sizes):  # 30: a warm-up fit of each (lazy imports), untimed
    p = reweight_problem(n, dim)
    widths = list(1.0 / (2.0 * p["sigmas"] ** 2))
    fits = {
        "KMM": lambda: adapt.KMM(
            kernel="rbf",
            gamma=p["gamma"],
            B=1000,
            eps=p["eps"],
            max_size=n,
            verbose=0,
            random_state=0,
        ),
        "KLIEP": lambda: adapt.KLIEP(
            kernel="rbf",
            gamma=widths,
            max_centers=100,
            cv=5,
            verbose=0,
            random_state=0,
        ),
        "uLSIF": lambda: adapt.ULSIF(
            kernel="rbf",
            gamma=widths,
            lambdas=list(p["lambdas"]),
            max_centers=100,
            verbose=0,
            random_state=0,
        ),
    }
    for name in REWEIGHT_ESTIMATORS:
      model = fits[name]()
      times[f"{name}/{n}"] = median_seconds(
          lambda model=model: model.fit_weights(p["source"], p["target"]),
          reweight_repeats(n),
      )
  times = {
      key: value
      for key, value in times.items()
      if not key.endswith("/30") or 30 in sizes
  }
  print("ADAPT_TIMES " + json.dumps(times))


def run_adapt_worker(
    n: int, dim: int, python: str | None = None
) -> tuple[dict, str | None]:
  """``({estimator: seconds}, None)`` from a worker process, or ``({}, reason)``.

  ``python``: the interpreter of the worker (``--adapt_python``, an
  environment with adapt and its TensorFlow), this one's by default.
  """
  import json  # noqa: PLC0415
  import subprocess  # noqa: PLC0415

  completed = subprocess.run(
      [
          python or sys.executable,
          BENCHMARK_SCRIPT,
          "--adapt_worker",
          "--reweight_sizes",
          str(n),
          "--reweight_dim",
          str(dim),
      ],
      capture_output=True,
      text=True,
      check=False,
  )
  for line in completed.stdout.splitlines():
    if line.startswith("ADAPT_TIMES "):
      result = json.loads(line[len("ADAPT_TIMES ") :])
      if "error" in result:
        return {}, result["error"]
      return {key.split("/")[0]: value for key, value in result.items()}, None
  tail = " ".join(completed.stderr.split()[-20:])
  return {}, f"adapt worker exited with {completed.returncode}: {tail}"


def section_reweight(args, ctx) -> Section:
  import jax

  from tljax import reweight

  dim = args.reweight_dim
  section = Section("Instance reweighting: KMM, KLIEP, uLSIF next to `adapt`")
  precision = (
      "kept in float64 by tljax: JAX_ENABLE_X64"
      if jax.config.jax_enable_x64
      else "cast to float32 by tljax"
  )
  section.intro = [
      f"n source examples from N(0, I_{dim}) and n target examples from "
      f"N(0.5, 0.8² I_{dim}), float64 inputs ({precision}). "
      "Same kernel candidates for both: KMM with γ = 1/(2 · median pooled "
      "squared distance), B = 1000, ε = (√n − 1)/√n, the whole QP at once "
      "(`max_size = n` in adapt); KLIEP and uLSIF with the nine widths σ = "
      "10^[−1, 1] × the median pooled distance (γ = 1/(2σ²) in adapt), 100 "
      "centres, uLSIF with λ ∈ 10^{−3, −2.5, …, 1}; KLIEP 5-fold likelihood "
      "cross-validation in both. tljax: the first call (compilation "
      "included) and warm calls; adapt: warm calls (after an untimed "
      "fit at n = 30); warm: the median of 5 calls up to n = 500, one call "
      "above, in a separate process run right after tljax's at the "
      "same n (TensorFlow, which adapt "
      "imports, cannot share a process with PyTorch and JAX here). Ratio: "
      "adapt's time ÷ tljax's warm time (above 1: tljax faster)."
  ]
  table = Table(
      [
          "estimator",
          "n",
          "tljax first call (s)",
          "tljax warm (s)",
          "adapt (s)",
          "adapt ÷ tljax warm",
      ]
  )
  collected = {}
  adapt_problem = (
      None
      if ctx.adapt
      else ("not installed" if not args.no_adapt else "skipped (--no_adapt)")
  )
  for n in args.reweight_sizes:
    p = reweight_problem(n, dim)
    source, target = p["source"], p["target"]
    ours = {
        "KMM": lambda: reweight.kmm(
            source, target, gamma=p["gamma"], B=1000.0, eps=p["eps"]
        ).weights,
        "KLIEP": lambda: reweight.kliep(
            source, target, sigmas=p["sigmas"]
        ).weights,
        "uLSIF": lambda: reweight.ulsif(
            source, target, sigmas=p["sigmas"], lambdas=p["lambdas"]
        ).weights,
    }
    timings = {}
    for name in REWEIGHT_ESTIMATORS:
      function = ours[name]
      first = median_seconds(lambda: jax.block_until_ready(function()), 1)
      warm = median_seconds(
          lambda: jax.block_until_ready(function()), reweight_repeats(n)
      )
      timings[name] = (first, warm)
    theirs = {}
    if adapt_problem is None:
      theirs, adapt_problem = run_adapt_worker(n, dim, args.adapt_python)
    for name in REWEIGHT_ESTIMATORS:
      first, warm = timings[name]
      other = theirs.get(name)
      collected.setdefault(name, []).append((n, warm, other))
      table.add(
          name,
          n,
          fmt(first),
          fmt(warm),
          fmt(other),
          ratio(other, warm)
          if other is not None
          else f"n/a (adapt {adapt_problem})",
      )
      print(
          f"reweight {name} n={n}: tljax {first:.2f}/{warm:.2f} s, "
          f"adapt {other}",
          flush=True,
      )
  section.tables.append(table)
  slopes = Table(
      ["estimator", "log-log slope of time vs n, tljax (warm)", "slope, adapt"]
  )
  for name, points in collected.items():
    sizes = [n for n, _, _ in points]
    slopes.add(
        name,
        fmt(loglog_slope(sizes, [t for _, t, _ in points]), 2),
        fmt(loglog_slope(sizes, [t for _, _, t in points]), 2),
    )
  section.tables.append(slopes)
  section.notes = [
      "The slope is the exponent p of time ∝ n^p fitted over the sizes "
      "above; fixed overheads (dispatch, cross-validation bookkeeping) pull "
      "it below the asymptotic exponent at small n.",
  ]
  if adapt_problem is not None:
    section.notes.append(
        f"adapt: {adapt_problem} (it is optional: `pip "
        "install adapt`), so its columns read n/a."
    )
  return section
