"""Section ``compile``: the DANN step's compile time and memory next to ``torch.compile``.

Part of ``scripts/benchmark.py`` (its docstring describes every section).
"""

from __future__ import annotations

import time


from benchmarks.common import Section, Table, fmt, ratio, resident_bytes
from benchmarks.dann import tljax_dann

# --- Section: compile time and memory ---------------------------------------


def section_compile(args, ctx) -> Section:
  import jax.numpy as jnp

  section = Section("Compile time and memory of the tljax DANN step")
  section.intro = [
      "A freshly built step (new method closures, so no cache hit) for each "
      "digit configuration: `step.lower(state, batch, key)` (trace and lower "
      "to StableHLO) and `.compile()` (XLA), then XLA's memory analysis of "
      "the compiled step; the process's resident-memory growth over "
      "building, compiling and running one step where the analysis is "
      "missing. `torch.compile` first call: the first step of the compiled "
      "PyTorch DANN in the `dann` section (compilation plus one step), next "
      "to tljax's first jitted call there."
  ]
  table = Table(
      [
          "input",
          "batch",
          "lower (s)",
          "compile (s)",
          "XLA memory: arguments / outputs / temporaries (MiB)",
          "RSS growth (MiB)",
          "tljax first call (s)",
          "torch.compile first call (s)",
          "torch.compile ÷ tljax",
      ]
  )
  first_calls = ctx.results.get("dann_first_call", {})
  for size in args.image_sizes:
    for batch in args.batch_sizes:
      before = resident_bytes()
      run, lower = tljax_dann(
          model_name="lenet",
          image_shape=(size, size, 1),
          batch_size=batch,
          dtype=jnp.float32,
          seed=1,
      )
      start = time.perf_counter()
      lowered = lower()
      lowered_at = time.perf_counter()
      compiled = lowered.compile()
      compiled_at = time.perf_counter()
      memory = "n/a"
      try:
        analysis = compiled.memory_analysis()
        if analysis is not None:
          memory = " / ".join(
              f"{value / 2 ** 20:.1f}"
              for value in (
                  analysis.argument_size_in_bytes,
                  analysis.output_size_in_bytes,
                  analysis.temp_size_in_bytes,
              )
          )
      except Exception:  # noqa: BLE001 (not every backend has it)
        pass
      run(1)
      after = resident_bytes()
      growth = (
          (after - before) / 2**20
          if before is not None and after is not None
          else None
      )
      first = first_calls.get((size, batch), {})
      ours = first.get("tljax (jit)")
      theirs = first.get("PyTorch torch.compile")
      table.add(
          f"{size}×{size}×1",
          f"{batch}+{batch}",
          fmt(lowered_at - start),
          fmt(compiled_at - lowered_at),
          memory,
          fmt(growth),
          fmt(ours),
          fmt(theirs),
          ratio(theirs, ours),
      )
      print(
          f"compile {size} {batch}: lower {lowered_at - start:.2f} s, "
          f"compile {compiled_at - lowered_at:.2f} s, memory {memory}",
          flush=True,
      )
  section.tables.append(table)
  section.notes = [
      "The state is donated, so XLA aliases most of the arguments to the "
      "outputs; peak device memory is about arguments + temporaries.",
      "First-call columns read n/a when the `dann` section did not run (or "
      "torch is missing).",
  ]
  return section
