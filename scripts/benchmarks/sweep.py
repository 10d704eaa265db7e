"""Section ``sweep``: a vmapped sweep against sequential runs.

Part of ``scripts/benchmark.py`` (its docstring describes every section).
"""

from __future__ import annotations

import os
import time


from benchmarks.common import Section, Table, fmt, interleaved_rates, ratio, warm_up

# --- Section: a vmapped sweep against sequential runs -------------------------


def sweep_config(args, steps: int):
  from tljax.config import base_config

  config = base_config()
  config.method = "dann"
  config.baselines = ()
  config.seeds = tuple(range(args.sweep_members))
  config.model.name = "lenet"
  config.batch_size = args.sweep_batch
  config.steps = steps
  config.log_every = max(steps, 1)
  config.checkpoint_every = max(steps, 1)
  config.eval_every = 0
  config.progress_bar = False
  if args.sweep_data_dir:
    config.data_dir = args.sweep_data_dir
  return config


def section_sweep(args, ctx) -> Section:
  import tempfile

  import jax
  import jax.numpy as jnp

  from tljax.train import loop
  from tljax.train import sweep as sweep_lib

  del ctx
  members = args.sweep_members
  section = Section(
      f"A sweep of {members} seeds: one vmapped program against "
      f"{members} runs one after the other"
  )
  section.intro = [
      f"DANN on LeNet, UCI digits as the target (`configs`-style run, batch "
      f"{args.sweep_batch}+{args.sweep_batch}), {members} seeds. Step: the "
      f"jitted `jax.vmap` of the step over the {members} stacked states "
      f"(what `scripts/sweep.py` runs) against the same jitted single-run "
      f"step called once per member, each member with its own state, batch "
      f"and key; batches already in memory; rounds alternate as in the DANN "
      f"section. End to end: `run_sweep` against {members} calls of "
      "`train_and_evaluate` (data, initialisation, compilation, the steps, "
      "checkpoints and evaluation), each started fresh in a new work dir."
  ]
  config = sweep_config(args, steps=1)
  domains = loop.load_domains(config)
  runs = [
      loop.setup_run(config, "dann", seed, domains=domains)
      for seed in range(members)
  ]
  single = jax.jit(runs[0].step_fn, donate_argnums=0)
  vmapped = jax.jit(jax.vmap(runs[0].step_fn), donate_argnums=0)
  pool = 8  # distinct batches per member, cycled
  streams = [
      loop.training_batches(
          run.method,
          run.domains,
          batch_size=args.sweep_batch,
          seed=seed,
          start_step=0,
      )
      for seed, run in enumerate(runs)
  ]
  member_batches = [
      [jax.device_put(next(stream)) for _ in range(pool)] for stream in streams
  ]
  stacked_batches = [
      sweep_lib._stack(
          [
              member_batches[m][k]  # pylint: disable=protected-access
              for m in range(members)
          ]
      )
      for k in range(pool)
  ]
  keys = [
      [jax.random.fold_in(run.train_key, k) for k in range(pool)]
      for run in runs
  ]
  stacked_keys = [
      jnp.stack([keys[m][k] for m in range(members)]) for k in range(pool)
  ]
  holder = {
      "states": [run.state for run in runs],
      "stacked": sweep_lib._stack([run.state for run in runs]),
  }  # pylint: disable=protected-access

  def run_sequential(n: int) -> float:
    start = time.perf_counter()
    states = holder["states"]
    for k in range(n):
      for m in range(members):
        states[m], _ = single(
            states[m], member_batches[m][k % pool], keys[m][k % pool]
        )
    jax.block_until_ready(states)
    holder["states"] = states
    return time.perf_counter() - start

  def run_vmapped(n: int) -> float:
    start = time.perf_counter()
    stacked = holder["stacked"]
    for k in range(n):
      stacked, _ = vmapped(
          stacked, stacked_batches[k % pool], stacked_keys[k % pool]
      )
    jax.block_until_ready(stacked)
    holder["stacked"] = stacked
    return time.perf_counter() - start

  runners = {
      "vmapped (one program)": run_vmapped,
      f"sequential ({members} calls per step)": run_sequential,
  }
  first = {name: run(1) for name, run in runners.items()}
  steps = warm_up(runners, args)
  rates = interleaved_rates(runners, steps=steps, rounds=args.rounds)
  ours = rates["vmapped (one program)"]
  table = Table(
      [
          "implementation",
          "timed steps × rounds",
          f"sweep steps/s (all {members} members)",
          "member steps/s",
          "first call (s)",
          "vmapped ÷ this",
      ]
  )
  for name, rate in rates.items():
    table.add(
        name,
        f"{steps} × {args.rounds}",
        fmt(rate),
        fmt(rate * members),
        fmt(first[name]),
        "—" if name.startswith("vmapped") else ratio(ours, rate),
    )
  section.tables.append(table)
  print(
      "sweep step: "
      + ", ".join(f"{k} {v:,.1f} sweep steps/s" for k, v in rates.items()),
      flush=True,
  )

  if args.sweep_steps:
    config = sweep_config(args, steps=args.sweep_steps)
    with tempfile.TemporaryDirectory() as root:
      start = time.perf_counter()
      sweep_lib.run_sweep(config, os.path.join(root, "sweep"))
      vmapped_seconds = time.perf_counter() - start
      start = time.perf_counter()
      for seed in range(members):
        loop.train_and_evaluate(
            config,
            os.path.join(root, f"seed_{seed}"),
            method_name="dann",
            seed=seed,
        )
      sequential_seconds = time.perf_counter() - start
    end = Table(
        [
            "implementation",
            "steps per member",
            "wall time (s)",
            "vmapped ÷ this (speed)",
        ]
    )
    end.add(
        "`run_sweep` (vmapped)", args.sweep_steps, fmt(vmapped_seconds), "—"
    )
    end.add(
        f"{members} × `train_and_evaluate`",
        args.sweep_steps,
        fmt(sequential_seconds),
        ratio(sequential_seconds, vmapped_seconds),
    )
    section.tables.append(end)
    print(
        f"sweep end to end: vmapped {vmapped_seconds:.1f} s, sequential "
        f"{sequential_seconds:.1f} s",
        flush=True,
    )
  section.notes = [
      "Both compute the same thing: each vmapped member equals its own "
      "single run to float tolerance (tests/test_sweep.py).",
      "The end-to-end sequential runs reuse one compilation through JAX's "
      "in-process cache after the first, as a loop over seeds in one process "
      "would; the vmapped sweep compiles its own, bigger program once.",
  ]
  return section
