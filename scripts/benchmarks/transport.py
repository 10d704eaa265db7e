"""Section ``transport``: the entropic OT plan of tljax next to POT's NumPy Sinkhorn.

Part of ``scripts/benchmark.py`` (its docstring describes every section).
"""

from __future__ import annotations

import gc
import os
import time

import numpy as np

from benchmarks.common import Section, Table, fmt, ratio, short_error

# --- Section: entropic plan vs POT -------------------------------------------


def transport_data(n: int, dim: int, seed: int):
  """Source N(0, I) and target N(0.5, 0.8² I) points, float32, ``n`` each."""
  rng = np.random.default_rng(seed)
  source = rng.normal(size=(n, dim)).astype(np.float32)
  target = (rng.normal(size=(n, dim)) * 0.8 + 0.5).astype(np.float32)
  return source, target


def mean_squared_distance(source, target) -> float:
  """``mean_ij ‖x_i − y_j‖²`` without the ``n × m`` matrix (float64)."""
  source = source.astype(np.float64)
  target = target.astype(np.float64)
  source_mean, target_mean = source.mean(axis=0), target.mean(axis=0)
  return float(
      np.sum((source - source_mean) ** 2) / len(source)
      + np.sum((target - target_mean) ** 2) / len(target)
      + np.sum((source_mean - target_mean) ** 2)
  )


def pot_transport_cost(plan, source, target) -> float:
  """``⟨P, C⟩`` of a dense POT plan, in float64."""
  import ot  # noqa: PLC0415 (optional)

  return float(
      np.sum(
          plan.astype(np.float64)
          * ot.dist(source.astype(np.float64), target.astype(np.float64))
      )
  )


def compiled_memory_table(sizes, dim: int, batch_size: int) -> Table:
  """XLA's memory analysis of the compiled dense and online programs (no run)."""
  import jax  # noqa: PLC0415
  import jax.numpy as jnp  # noqa: PLC0415

  from tljax import transport  # noqa: PLC0415

  def program(mode_batch_size, solver):
    def solve(source, target):
      result = transport.entropic_plan(
          source,
          target,
          epsilon=1.0,
          batch_size=mode_batch_size,
          solver=solver,
      )
      if mode_batch_size is None:
        return result.plan, result.source_potential, result.target_potential
      return result.source_potential, result.target_potential

    return jax.jit(solve)

  table = Table(
      [
          "n",
          "mode",
          "XLA temporaries (MB)",
          "outputs (MB)",
          "one n × n float32 array (MB)",
      ]
  )
  for n in sizes:
    spec = jax.ShapeDtypeStruct((n, dim), jnp.float32)
    for name, mode_batch_size, solver in (
        ("dense", None, "log"),
        ("dense, solver='kernel'", None, "kernel"),
        (f"online (batch_size={batch_size})", batch_size, "log"),
    ):
      try:
        compiled = program(mode_batch_size, solver).lower(spec, spec).compile()
        memory = compiled.memory_analysis()
      except Exception as error:  # noqa: BLE001 (reported)
        table.add(f"{n:,}", name, short_error(error), "", "")
        continue
      if memory is None:
        table.add(f"{n:,}", name, "n/a", "n/a", fmt(n * n * 4 / 1e6))
        continue
      table.add(
          f"{n:,}",
          name,
          fmt(memory.temp_size_in_bytes / 1e6),
          fmt(memory.output_size_in_bytes / 1e6),
          fmt(n * n * 4 / 1e6),
      )
  return table


def section_transport(args, ctx) -> Section:
  del ctx
  import jax  # noqa: PLC0415 (the script loads without JAX)

  from tljax import transport  # noqa: PLC0415

  try:
    import ot  # noqa: PLC0415 (optional)
  except ImportError:
    ot = None
  dim = args.transport_dim
  threshold = args.transport_threshold
  max_iterations = args.transport_max_iterations
  batch_size = args.transport_batch_size
  load_before = os.getloadavg()
  section = Section("Entropic OT plan next to POT's NumPy Sinkhorn")
  platform = jax.devices()[0].platform
  section.intro = [
      f"n source and n target points in {dim} dimensions (source N(0, I),",
      "target N(0.5, 0.8² I)), float32, uniform weights, "
      f"ε = {args.transport_relative_epsilon} × the mean squared distance, "
      f"squared Euclidean cost, stopping threshold {threshold:g} and at most "
      f"{max_iterations} iterations for every implementation.",
      "tljax: `transport.entropic_plan`, dense (ott-jax's log-domain "
      "Sinkhorn on the n × n cost, the plan returned), dense with "
      "`solver='kernel'` (scaling iterations on a fixed kernel with a "
      "log-domain warm start, absorption and Lehmann et al.'s "
      "over-relaxation: tljax/transport/kernel.py; the plan returned) and "
      "online "
      f"(`batch_size={batch_size}`: the cost recomputed {batch_size} rows "
      "at a time, no n × n array; potentials and costs returned, the plan "
      "not formed); its error is the L1 norm of Pᵀ1 − b. POT "
      f"{ot.__version__ if ot else '(not installed)'}: "
      "`ot.sinkhorn(a, b, ot.dist(xs, xt), reg, stopThr=threshold)` on the "
      "same points in float64 (POT's usual precision; in float32 its "
      "kernel exp(−C/ε) underflows at this ε), method 'sinkhorn' (scaling "
      "updates, matrix-vector products) and 'sinkhorn_log' (log domain, as "
      "tljax; up to n = "
      f"{args.transport_pot_log_max:,}); its error is the L2 norm of the "
      "same marginal difference (L1 ≥ L2, so tljax's stop is the "
      "stricter). Both check the error every 10 iterations. Times include "
      "the cost matrix. Up to n = 5,000, tljax's warm time is the median of "
      f"{args.transport_repeats} calls after a first call that compiles, "
      "POT's the median of as many calls; above, each implementation is "
      "called once and tljax's time is its first call, compilation (about "
      "1 s) included. Ratio: POT's time ÷ tljax's warm time (above 1: tljax "
      "faster). |Δ⟨P, C⟩|: the transport cost's difference from POT "
      "'sinkhorn' (float64 sums of POT's plan).",
      "The second table is XLA's memory analysis of the compiled programs "
      "(compiled, not run; float32, ε = 1): the temporaries each needs "
      "beside its inputs and outputs.",
      f"JAX ran on the {platform}"
      + (", no GPU measured." if platform == "cpu" else "."),
  ]
  table = Table(
      [
          "n",
          "implementation",
          "first call (s)",
          "warm (s)",
          "iterations",
          "POT ÷ this",
          "transport cost ⟨P, C⟩",
          "|Δ⟨P, C⟩| vs POT",
      ]
  )
  notes = []
  for n in args.transport_sizes:
    source, target = transport_data(n, dim, seed=n)
    epsilon = args.transport_relative_epsilon * mean_squared_distance(
        source, target
    )
    repeats = args.transport_repeats if n <= 5000 else 0
    rows = []  # (name, first, warm, iterations, cost)

    def tljax_row(name, mode_batch_size, solver="log"):
      def call():
        return jax.block_until_ready(
            transport.entropic_plan(
                source,
                target,
                epsilon=epsilon,
                threshold=threshold,
                max_iterations=max_iterations,
                batch_size=mode_batch_size,
                solver=solver,
            )
        )

      try:
        start = time.perf_counter()
        result = call()
        first = time.perf_counter() - start
        times = []
        for _ in range(repeats):
          del result
          gc.collect()
          start = time.perf_counter()
          result = call()
          times.append(time.perf_counter() - start)
        warm = float(np.median(times)) if times else first
        rows.append(
            (
                name,
                first,
                warm,
                int(result.iterations),
                float(result.transport_cost),
            )
        )
        print(
            f"transport n={n} {name}: {warm:.3f} s, "
            f"{int(result.iterations)} iterations, converged "
            f"{bool(result.converged)}",
            flush=True,
        )
      except Exception as error:  # noqa: BLE001 (out of memory, reported)
        notes.append(f"n = {n}, {name}: not run ({short_error(error)}).")
        print(f"transport n={n} {name}: failed {error}", flush=True)
      gc.collect()

    if n <= args.transport_dense_max:
      tljax_row("tljax dense", None)
      tljax_row("tljax dense, solver='kernel'", None, "kernel")
    if n >= args.transport_online_min:
      tljax_row(f"tljax online (batch_size={batch_size})", batch_size)

    pot_rows = []
    if ot is not None:
      weights = np.full(n, 1.0 / n)
      for method in args.transport_pot_methods:
        if n > args.transport_pot_log_max and method == "sinkhorn_log":
          notes.append(
              f"n = {n}, POT '{method}': not run (above "
              f"--transport_pot_log_max {args.transport_pot_log_max})."
          )
          continue
        times, plan, log = [], None, None
        source64, target64 = source.astype(np.float64), target.astype(
            np.float64
        )
        try:
          for _ in range(max(repeats, 1)):
            del plan
            gc.collect()
            start = time.perf_counter()
            plan, log = ot.sinkhorn(
                weights,
                weights,
                ot.dist(source64, target64),
                epsilon,
                method=method,
                stopThr=threshold,
                numItermax=max_iterations,
                log=True,
            )
            times.append(time.perf_counter() - start)
        except Exception as error:  # noqa: BLE001 (out of memory, reported)
          notes.append(
              f"n = {n}, POT '{method}': not run ({short_error(error)})."
          )
          plan = None
          continue
        cost = pot_transport_cost(plan, source, target)
        del plan
        gc.collect()
        pot_rows.append(
            (
                f"POT '{method}'",
                float(np.median(times)),
                int(log["niter"]) + 1,
                cost,
            )
        )
        print(
            f"transport n={n} POT {method}: {np.median(times):.3f} s, "
            f"{int(log['niter']) + 1} iterations",
            flush=True,
        )
    reference = {name: (seconds, cost) for name, seconds, _, cost in pot_rows}
    pot_sinkhorn = reference.get("POT 'sinkhorn'")
    pot_log = reference.get("POT 'sinkhorn_log'")
    for name, first, warm, iterations, cost in rows:
      table.add(
          f"{n:,}",
          name,
          fmt(first),
          fmt(warm),
          iterations,
          " / ".join(
              f"{ratio(pot[0], warm)} ({label})"
              for pot, label in ((pot_sinkhorn, "sinkhorn"), (pot_log, "log"))
              if pot is not None
          )
          or "n/a",
          f"{cost:.6g}",
          f"{abs(cost - pot_sinkhorn[1]):.1e}" if pot_sinkhorn else "n/a",
      )
    for name, seconds, iterations, cost in pot_rows:
      table.add(
          f"{n:,}",
          name,
          "—",
          fmt(seconds),
          iterations,
          "—",
          f"{cost:.6g}",
          f"{abs(cost - pot_sinkhorn[1]):.1e}" if pot_sinkhorn else "n/a",
      )
  load_after = os.getloadavg()
  section.tables.append(table)
  section.tables.append(
      compiled_memory_table(args.transport_memory_sizes, dim, batch_size)
  )
  section.notes = notes + [
      "Load average (1, 5, 15 min) before the section "
      + ", ".join(f"{value:.2f}" for value in load_before)
      + ", after "
      + ", ".join(f"{value:.2f}" for value in load_after)
      + f", on {os.cpu_count()} logical cores"
      + (
          ": the machine was shared with other jobs during the measurement."
          if max(load_before[0], load_after[0]) > (os.cpu_count() or 1)
          else "."
      ),
      "Memory: the dense plan at n = 20,000 holds the float32 cost and plan "
      "(1.6 GB each); the online mode holds "
      f"{batch_size} × n floats per block "
      f"({batch_size * 20000 * 4 / 1e6:.0f} MB at n = 20,000) "
      "and never an n × n array (tests/test_sinkhorn_online.py checks the "
      "compiled program at n = 4,096). POT 'sinkhorn' holds M, K = exp(−M/ε) "
      "and K / a (three n × n arrays).",
      "Why POT 'sinkhorn' beats the log-domain solvers on a CPU: it "
      "computes the kernel K = exp(−C/ε) once and then iterates "
      "matrix-vector products (a multiply-add per entry, twice per "
      "iteration, memory-bound), while log-domain updates, tljax's default "
      "and POT's 'sinkhorn_log', take an exponential of every entry in "
      "each of those passes (stable for any ε, but several times the work "
      "per entry). tljax's `solver='kernel'` does POT's matrix-vector "
      "products, in float32 (half the bytes per pass; its warm start and "
      "absorption keep the kernel from underflowing), and fewer of them "
      "(over-relaxation). tljax also stops on the L1 error, stricter than "
      "POT's L2.",
  ]
  return section
