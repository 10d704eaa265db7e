#!/usr/bin/env python
"""Injects faults into tiny moons runs and counts how many were caught.

  python scripts/fault_injection.py                  # ~6 minutes on 2 cores
  python scripts/fault_injection.py --flips 10 --kills 3 --output docs/faults.md

Each fault is one of: a flipped bit in a checkpoint file (with all files
present, and with each metadata file deleted), a truncated or deleted
checkpoint file, SIGKILL of a training process at a random moment, a
second writer started on a running work dir, a rerun with a changed config,
a read-only and a full disk (these two need root and ``mount``), a flipped
bit in a prepared TFDS ArrayRecord file, and a garbled ``dataset_info.json``.
An outcome is:

* ``caught``: refused with a one-line error (the command exits 1 or 2 with at
  most two lines on stderr; a library call raises tljax's own error type);
* ``harmless``: everything went on and the result is bit-identical to the
  fault-free one (a flipped bit in a file that is never read, a kill that the
  rerun resumed from, a refused rerun that left every file unchanged);
* ``silent``: a wrong result without an error. The count that must be zero.

The table (and ``--output``) gives each kind's counts.
"""

from __future__ import annotations

import argparse
import collections
import glob
import hashlib
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

import jax
import numpy as np

from tljax import data, errors
from tljax.train import metrics as metrics_lib
from tljax.checkpoint import Checkpointer

METADATA = (
    "integrity",
    "_CHECKPOINT_METADATA",
    "state/_METADATA",
    "state/_sharding",
    "state/manifest.ocdbt",
    "state/array_metadatas",
    "state/ocdbt.process_0/manifest.ocdbt",
)
BASE = [
    "--config",
    "configs/moons.py",
    "--noreport",
    "--set",
    "seeds=(0,)",
    "--set",
    "baselines=()",
    "--set",
    "batch_size=32",
    "--set",
    "log_every=1",
    "--set",
    "checkpoint_every=4",
    "--set",
    "progress_bar=false",
]


def tljax(workdir, *extra, steps=8):
  """Runs ``tljax train`` in a subprocess; (exit status, stderr lines)."""
  completed = subprocess.run(
      [
          sys.executable,
          "-m",
          "tljax",
          "train",
          *BASE,
          "--workdir",
          str(workdir),
          "--set",
          f"steps={steps}",
          *extra,
      ],
      capture_output=True,
      text=True,
      check=False,
  )
  lines = [line for line in completed.stderr.splitlines() if line.strip()]
  return completed.returncode, lines


def one_line(status, lines) -> bool:
  return (
      status in (1, 2)
      and 1 <= len(lines) <= 2
      and lines[0].startswith("tljax train: error: ")
  )


def tree_digest(directory):
  digests = {}
  for root, _, names in os.walk(directory):
    for name in names:
      path = os.path.join(root, name)
      with open(path, "rb") as stream:
        digests[os.path.relpath(path, directory)] = hashlib.sha256(
            stream.read()
        ).hexdigest()
  return digests


def flip_bit(path, rng):
  size = os.path.getsize(path)
  if not size:
    return
  with open(path, "r+b") as stream:
    offset = rng.randrange(size)
    stream.seek(offset)
    byte = stream.read(1)[0]
    stream.seek(offset)
    stream.write(bytes([byte ^ (1 << rng.randrange(8))]))


def same_leaves(a, b) -> bool:
  flat_a, flat_b = jax.tree.leaves(a), jax.tree.leaves(b)
  return len(flat_a) == len(flat_b) and all(
      np.asarray(x).tobytes() == np.asarray(y).tobytes()
      for x, y in zip(flat_a, flat_b)
  )


def final_state(run_dir):
  with Checkpointer(
      os.path.join(run_dir, "checkpoints"), read_only=True
  ) as checkpointer:
    return checkpointer.restore_raw()


def restore_outcome(checkpoints, step, saved) -> str:
  try:
    with Checkpointer(checkpoints, read_only=True) as checkpointer:
      restored = checkpointer.restore_raw(step)
  except (errors.CheckpointError, errors.CheckpointNotFoundError) as error:
    return "caught" if "\n" not in str(error) else "silent"
  return "harmless" if same_leaves(restored, saved) else "silent"


def checkpoint_faults(run_dir, scratch, flips, rng, counts):
  source = os.path.join(run_dir, "checkpoints")
  step = max(int(name) for name in os.listdir(source) if name.isdigit())
  with Checkpointer(source, read_only=True) as checkpointer:
    saved = checkpointer.restore_raw(step)

  def trial(kind, damage):
    copy = os.path.join(scratch, "checkpoints")
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(source, copy)
    damage(os.path.join(copy, str(step)))
    counts[kind][restore_outcome(copy, step, saved)] += 1

  def files(step_dir):
    return sorted(
        path
        for path in glob.glob(os.path.join(step_dir, "**", "*"), recursive=True)
        if os.path.isfile(path)
    )

  for missing in (None,) + METADATA:
    kind = (
        "checkpoint bit flip, all files present"
        if missing is None
        else f"checkpoint bit flip without {missing}"
    )

    def damage(step_dir, missing=missing):
      if missing is not None:
        path = os.path.join(step_dir, missing)
        shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
      flip_bit(rng.choice(files(step_dir)), rng)

    for _ in range(flips):
      trial(kind, damage)
  probe = os.path.join(source, str(step))
  for relative in [os.path.relpath(path, probe) for path in files(probe)]:
    trial(
        "checkpoint file truncated to half",
        lambda step_dir, r=relative: os.truncate(
            os.path.join(step_dir, r),
            os.path.getsize(os.path.join(step_dir, r)) // 2,
        ),
    )
    trial(
        "checkpoint file deleted",
        lambda step_dir, r=relative: os.remove(os.path.join(step_dir, r)),
    )


def logged_steps(run_dir):
  path = os.path.join(run_dir, metrics_lib.METRICS_FILE)
  if not os.path.exists(path):
    return 0
  with open(path, encoding="utf-8") as stream:
    return sum(1 for _ in stream)


def start(workdir, steps):
  return subprocess.Popen(
      [
          sys.executable,
          "-m",
          "tljax",
          "train",
          *BASE,
          "--workdir",
          str(workdir),
          "--set",
          f"steps={steps}",
      ],
      stdout=subprocess.DEVNULL,
      stderr=subprocess.PIPE,
      text=True,
  )


def kill_faults(reference_dir, scratch, kills, rng, counts, steps):
  workdir = os.path.join(scratch, "killed")
  run_dir = os.path.join(workdir, "dann", "seed_0")
  for _ in range(kills):
    process = start(workdir, steps)
    target = logged_steps(run_dir) + rng.randint(1, 12)
    deadline = time.monotonic() + 300
    while (
        logged_steps(run_dir) < target
        and process.poll() is None
        and time.monotonic() < deadline
    ):
      time.sleep(rng.uniform(0.0, 0.02))
    process.kill()
    process.wait()
  status, lines = tljax(workdir, steps=steps)
  reference = final_state(os.path.join(reference_dir, "dann", "seed_0"))
  identical = status == 0 and same_leaves(final_state(run_dir), reference)
  counts["SIGKILL at a random moment, then the same command"][
      "harmless" if identical else "silent"
  ] += kills
  if status:
    print("\n".join(lines), file=sys.stderr)


def writer_faults(scratch, trials, rng, counts, steps):
  for trial in range(trials):
    workdir = os.path.join(scratch, f"writers{trial}")
    run_dir = os.path.join(workdir, "dann", "seed_0")
    first = start(workdir, steps)
    while logged_steps(run_dir) < rng.randint(1, 20) and first.poll() is None:
      time.sleep(0.01)
    status, lines = tljax(workdir, steps=steps)
    first.wait()
    records = [record["step"] for record in metrics_lib.read_metrics(run_dir)]
    clean = first.returncode == 0 and records == list(range(1, steps + 1))
    refused = one_line(status, lines) and "is in use by" in lines[0]
    counts["second writer on a running work dir"][
        "caught" if refused and clean else "silent"
    ] += 1


def rerun_faults(finished, counts):
  changes = [
      "optimizer.learning_rate=0.5",
      "target.kwargs.rotation_degrees=50",
      "model.hidden_dims=(32, 32)",
      "method_kwargs.hidden_dim=32",
      "steps=12",
      "seeds=(0, 1)",
      "source.kwargs.noise=0.2",
  ]
  for change in changes:
    before = tree_digest(finished)
    status, lines = tljax(finished, "--set", change)
    unchanged = tree_digest(finished) == before
    counts["rerun of a finished work dir with a changed config"][
        "caught" if one_line(status, lines) and unchanged else "silent"
    ] += 1


def mount_tmpfs(directory, options) -> bool:
  if os.geteuid() != 0 or not shutil.which("mount"):
    return False
  return (
      subprocess.run(
          ["mount", "-t", "tmpfs", "-o", options, "tmpfs", directory],
          capture_output=True,
          check=False,
      ).returncode
      == 0
  )


def disk_faults(reference_dir, scratch, counts, steps):
  read_only = os.path.join(scratch, "read_only")
  os.makedirs(read_only)
  if mount_tmpfs(read_only, "ro,size=1m"):
    status, lines = tljax(os.path.join(read_only, "w"), steps=steps)
    subprocess.run(["umount", "-l", read_only], check=False)
    counts["read-only work dir"][
        "caught" if one_line(status, lines) else "silent"
    ] += 1
  reference = final_state(os.path.join(reference_dir, "dann", "seed_0"))
  for size in ("64k", "128k", "192k", "256k", "320k", "400k"):
    disk = os.path.join(scratch, f"disk{size}")
    os.makedirs(disk)
    if not mount_tmpfs(disk, f"size={size}"):
      return
    try:
      workdir = os.path.join(disk, "w")
      status, lines = tljax(workdir, steps=steps)
      caught = one_line(status, lines) and "No space left" in lines[0]
      subprocess.run(["mount", "-o", "remount,size=64m", disk], check=True)
      status, _ = tljax(workdir, steps=steps)
      resumed = status == 0 and same_leaves(
          final_state(os.path.join(workdir, "dann", "seed_0")), reference
      )
      counts["full disk, then the same command with space"][
          "caught" if caught and resumed else "silent"
      ] += 1
    finally:
      subprocess.run(["umount", "-l", disk], check=False)


def data_faults(scratch, flips, rng, counts):
  data_dir = os.path.join(scratch, "tfds")
  clean = data.get_source(
      "uci_digits", "train", data_dir=data_dir
  ).to_array_source()
  prepared = os.path.join(data_dir, "uci_digits")
  for _ in range(flips):
    copy = os.path.join(scratch, "tfds_copy")
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(prepared, os.path.join(copy, "uci_digits"))
    (path,) = glob.glob(
        os.path.join(copy, "uci_digits", "*", "uci_digits-train.array_record-*")
    )
    flip_bit(path, rng)
    try:
      read = data.get_source(
          "uci_digits", "train", data_dir=copy
      ).to_array_source()
    except errors.DataError as error:
      counts["TFDS ArrayRecord bit flip"][
          "caught" if path in str(error) else "silent"
      ] += 1
      continue
    same = np.array_equal(read.inputs, clean.inputs) and np.array_equal(
        read.labels, clean.labels
    )
    counts["TFDS ArrayRecord bit flip"]["harmless" if same else "silent"] += 1
  copy = os.path.join(scratch, "tfds_info")
  shutil.copytree(prepared, os.path.join(copy, "uci_digits"))
  (info,) = glob.glob(
      os.path.join(copy, "uci_digits", "*", "dataset_info.json")
  )
  with open(info, "w", encoding="utf-8") as stream:
    stream.write("{garbage")
  try:
    data.get_source("uci_digits", "train", data_dir=copy)
    counts["garbled dataset_info.json"]["silent"] += 1
  except errors.DataError as error:
    counts["garbled dataset_info.json"][
        "caught" if info in str(error) else "silent"
    ] += 1


def format_table(counts) -> str:
  lines = [
      "| fault | injected | caught (one-line error) | harmless "
      "(bit-identical result) | silent |",
      "| --- | --- | --- | --- | --- |",
  ]
  totals = collections.Counter()
  for kind, outcome in counts.items():
    injected = sum(outcome.values())
    totals.update(outcome)
    lines.append(
        f"| {kind} | {injected} | {outcome['caught']} | "
        f"{outcome['harmless']} | {outcome['silent']} |"
    )
  lines.append(
      f"| **all** | {sum(totals.values())} | {totals['caught']} | "
      f"{totals['harmless']} | {totals['silent']} |"
  )
  return "\n".join(lines)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument(
      "--flips",
      type=int,
      default=40,
      help="bit flips per checkpoint variant and in the " "TFDS file",
  )
  parser.add_argument("--kills", type=int, default=10)
  parser.add_argument("--writers", type=int, default=3)
  parser.add_argument("--seed", type=int, default=18)
  parser.add_argument(
      "--output", default=None, help="also write the table (markdown) here"
  )
  args = parser.parse_args()
  rng = random.Random(args.seed)
  counts = collections.defaultdict(collections.Counter)
  steps = 40
  started = time.perf_counter()
  with tempfile.TemporaryDirectory(prefix="tljax-faults-") as scratch:
    # One XLA compilation cache for the many tljax processes.
    os.environ.setdefault(
        "JAX_COMPILATION_CACHE_DIR", os.path.join(scratch, "xla_cache")
    )
    reference = os.path.join(scratch, "reference")
    status, lines = tljax(reference, steps=steps)
    if status:
      sys.exit("the fault-free run failed:\n" + "\n".join(lines))
    checkpoint_faults(
        os.path.join(reference, "dann", "seed_0"),
        scratch,
        args.flips,
        rng,
        counts,
    )
    kill_faults(reference, scratch, args.kills, rng, counts, steps)
    writer_faults(scratch, args.writers, rng, counts, steps)
    rerun_faults(reference, counts)
    disk_faults(reference, scratch, counts, steps)
    data_faults(scratch, args.flips, rng, counts)
  table = format_table(counts)
  print(table)
  print(f"\n{time.perf_counter() - started:.0f} s")
  if args.output:
    with open(args.output, "w", encoding="utf-8") as stream:
      stream.write(
          f"Written by `python scripts/fault_injection.py "
          f"--flips {args.flips} --kills {args.kills} --writers "
          f"{args.writers} --seed {args.seed}`.\n\n{table}\n"
      )
  silent = sum(outcome["silent"] for outcome in counts.values())
  return 1 if silent else 0


if __name__ == "__main__":
  sys.exit(main())
