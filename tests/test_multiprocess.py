"""Several processes on one machine through jax.distributed equal one process.

The same ``tljax train`` command runs as 2 processes of 2 fake CPU devices,
launched by ``scripts/launch_local.py`` (a coordinator on a free 127.0.0.1
port, gloo collectives), and is killed (SIGKILL of process 1) mid-run:
process 0 must stop with a clear error within the heartbeat timeout and no
half-written checkpoint may be visible. The rerun, as 4 processes of 1
device, must resume from the last complete checkpoint and end equal to one
process on one device: the final parameters to float tolerance, process 0's
metrics line by line (one test, so the suite trains the 4-process case
once). Every
process records the files it writes (an audit hook, below): only process 0
writes anything outside the collectively written checkpoints.
"""

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from tljax.cli.config_file import load_config
from tljax.params import flatten, read_checkpoint
from tljax.train.experiment import run_experiment
from tljax.train.metrics import read_metrics
from tljax.train.parallel import (
    DistributedError,
    distributed_arguments,
    peer_failure,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCHER = os.path.join(REPO, "scripts", "launch_local.py")
CONFIG = (
    os.path.join(REPO, "configs", "moons.py") + ":method=source_only,seeds=1"
)
STEPS, CHECKPOINT_EVERY = 60, 20
# SGD, as in tests/test_parallel.py: the all-reduce sums in another order
# than one device does, and Adam would magnify that rounding noise.
OVERRIDES = (
    f"steps={STEPS}",
    "batch_size=32",
    "baselines=()",
    "log_every=10",
    f"checkpoint_every={CHECKPOINT_EVERY}",
    "optimizer.name=sgd",
    "optimizer.learning_rate=0.05",
    "progress_bar=false",
)
RUN = os.path.join("source_only", "seed_0")
# The heartbeat timeout of the killed run (seconds).
TIMEOUT = 8

# Test-only instruments, loaded by every process through PYTHONPATH; none
# changes a computed value. TLJAX_TEST_WRITES=<prefix>: the paths under
# TLJAX_TEST_ROOT that process i opens for writing, renames or removes go
# to <prefix>.<i>. TLJAX_TEST_STEP_DELAY=<s>: each training batch waits s
# seconds, so that the kill lands mid-run.
SITECUSTOMIZE = textwrap.dedent("""
    import os, sys, time
    _prefix = os.environ.get("TLJAX_TEST_WRITES")
    if _prefix:
      _root = os.environ["TLJAX_TEST_ROOT"]
      _log = os.open(f"{_prefix}.{os.environ.get('JAX_PROCESS_ID', '0')}",
                     os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
      _writing = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC

      def _hook(event, args):
        if event == "open":
          path, mode, flags = args
          if not (mode and set(mode) & set("wax+")
                  or mode is None and isinstance(flags, int)
                  and flags & _writing):
            return
        elif event in ("os.rename", "os.remove"):
          path = args[0] if event == "os.remove" else args[1]
        else:
          return
        if isinstance(path, (str, bytes, os.PathLike)):
          path = os.path.abspath(os.fsdecode(path))
          if path.startswith(_root):
            os.write(_log, (event + " " + path + "\\n").encode())

      sys.addaudithook(_hook)
    if os.environ.get("TLJAX_TEST_STEP_DELAY"):
      from tljax.train import loop as _loop
      _batches, _delay = _loop.training_batches, float(
          os.environ["TLJAX_TEST_STEP_DELAY"])

      def _slow_batches(*args, **kwargs):
        for batch in _batches(*args, **kwargs):
          time.sleep(_delay)
          yield batch

      _loop.training_batches = _slow_batches
""")


def _params(run_dir):
  params, _ = read_checkpoint(run_dir)
  return {name: np.asarray(value) for name, value in flatten(params).items()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """One process, one device: the run every multi-process one must equal."""
  workdir = str(tmp_path_factory.mktemp("single"))
  run_experiment(load_config(CONFIG, OVERRIDES), workdir)
  run_dir = os.path.join(workdir, RUN)
  return _params(run_dir), read_metrics(run_dir)


def _launch(tmp_path, workdir, processes, devices, *, delay=None, timeout=None):
  """``launch_local.py`` running ``tljax train`` in ``processes`` processes (not waited for)."""
  instruments = tmp_path / "instruments"
  instruments.mkdir(exist_ok=True)
  (instruments / "sitecustomize.py").write_text(SITECUSTOMIZE)
  writes = tmp_path / f"writes.{time.monotonic_ns()}"
  env = {
      **os.environ,
      "PYTHONPATH": os.pathsep.join(
          [str(instruments), REPO, os.environ.get("PYTHONPATH", "")]
      ),
      "TLJAX_TEST_WRITES": str(writes),
      "TLJAX_TEST_ROOT": str(workdir),
  }
  if delay:
    env["TLJAX_TEST_STEP_DELAY"] = str(delay)
  command = [
      sys.executable,
      LAUNCHER,
      "-n",
      str(processes),
      "--devices_per_process",
      str(devices),
      *(["--timeout", str(timeout)] if timeout else []),
      "--",
      sys.executable,
      "-m",
      "tljax",
      "train",
      "--config",
      CONFIG,
      *[part for item in OVERRIDES for part in ("--set", item)],
      "--set",
      "parallel.data_parallel=true",
      "--noreport",
      "--workdir",
      str(workdir),
  ]
  launcher = subprocess.Popen(
      command,
      env=env,
      cwd=str(tmp_path),
      stdin=subprocess.DEVNULL,
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
  )
  return launcher, writes


def _writes_by_process(writes, processes):
  """``{process: [(event, path), ...]}`` from the audit logs."""
  logged = {}
  for index in range(processes):
    path = f"{writes}.{index}"
    lines = open(path).read().splitlines() if os.path.exists(path) else []
    logged[index] = [tuple(line.split(" ", 1)) for line in lines]
  return logged


def _check_only_process_0_writes(workdir, writes, processes):
  logged = _writes_by_process(writes, processes)
  assert any(path.endswith("metrics.jsonl") for _, path in logged[0])
  for index in range(1, processes):
    own_lock = f".tljax.lock.{index}"
    others = [
        (event, path)
        for event, path in logged[index]
        if os.sep + "checkpoints" + os.sep not in path
        and not path.endswith(own_lock)
    ]
    assert not others, f"process {index} wrote {others[:5]}"


def _check_same_run(run_dir, reference):
  params, metrics = reference
  got = _params(run_dir)
  assert set(got) == set(params)
  for name, value in params.items():
    np.testing.assert_allclose(
        got[name], value, rtol=1e-4, atol=1e-5, err_msg=name
    )
  logged = read_metrics(run_dir)
  assert [r["step"] for r in logged] == [r["step"] for r in metrics]
  for record, expected in zip(logged, metrics):
    for key in ("loss", "grad_norm", "source_accuracy", "update_norm"):
      np.testing.assert_allclose(
          record[key], expected[key], rtol=1e-4, atol=1e-6, err_msg=key
      )


def _complete_steps(checkpoint_dir):
  if not os.path.isdir(checkpoint_dir):
    return []
  return sorted(
      int(name) for name in os.listdir(checkpoint_dir) if name.isdigit()
  )


def test_killed_two_process_run_errors_out_then_resumes_as_four_to_one_process_params(
    tmp_path, reference
):
  workdir = tmp_path / "two"
  checkpoints = os.path.join(workdir, RUN, "checkpoints")
  launcher, _ = _launch(tmp_path, workdir, 2, 2, delay=0.1, timeout=TIMEOUT)
  pids = {}
  while len(pids) < 2:
    line = launcher.stdout.readline()
    match = re.match(r"launch_local: process (\d) pid (\d+)", line)
    assert line, "the launcher ended before starting both processes"
    if match:
      pids[int(match.group(1))] = int(match.group(2))
  deadline = time.monotonic() + 240
  while not _complete_steps(checkpoints) and time.monotonic() < deadline:
    assert launcher.poll() is None, launcher.stdout.read()
    time.sleep(0.05)
  killed_after = _complete_steps(checkpoints)
  os.kill(pids[1], signal.SIGKILL)
  killed_at = time.monotonic()
  assert killed_after and killed_after[-1] < STEPS, killed_after
  output, _ = launcher.communicate(timeout=TIMEOUT + 90)
  waited = time.monotonic() - killed_at
  assert launcher.returncode != 0, output
  # Process 0 stopped by itself, soon after the heartbeat timeout, saying
  # why: its collective failed, or the coordinator lost process 1.
  assert waited < TIMEOUT + 60, waited
  process_0 = "\n".join(
      line for line in output.splitlines() if line.startswith("[0]")
  )
  assert (
      "another process of this run has probably stopped" in process_0
      or "another task died" in process_0
  ), process_0[-3000:]
  assert not os.path.exists(os.path.join(workdir, RUN, "summary.json"))
  # Only complete steps are visible: each one restores and verifies.
  steps = _complete_steps(checkpoints)
  assert steps and steps[-1] < STEPS
  for name in os.listdir(checkpoints):
    assert name.isdigit() or "tmp" in name, name

  # The rerun resumes as 4 processes of 1 device: another topology reads
  # the 2 x 2 run's checkpoint and ends equal to one process.
  launcher, writes = _launch(tmp_path, workdir, 4, 1)
  output, _ = launcher.communicate(timeout=300)
  assert launcher.returncode == 0, output[-3000:]
  assert output.count("results in") == 4
  run_dir = os.path.join(workdir, RUN)
  summary = json.load(open(os.path.join(run_dir, "summary.json")))
  assert summary["resumed_from_step"] == steps[-1]
  assert _complete_steps(checkpoints)[-1] == STEPS
  _check_same_run(run_dir, reference)
  _check_only_process_0_writes(str(workdir), writes, 4)
  provenance = json.load(open(os.path.join(run_dir, "provenance.json")))
  assert [s["process_count"] for s in provenance["sessions"]] == [2, 4]


def test_peer_failure_names_the_resume_step():
  error = peer_failure(
      RuntimeError(
          "INTERNAL: Error dispatching computation: Gloo all-reduce failed: "
          "Connection closed by peer\nmore"
      ),
      40,
  )
  assert isinstance(error, DistributedError) and isinstance(error, OSError)
  assert "Gloo all-reduce failed: Connection closed by peer" in str(error)
  assert "step 40" in str(error) and "Error dispatching" not in str(error)
  assert "from the start" in str(peer_failure(RuntimeError(""), None))


@pytest.mark.parametrize(
    "env, match",
    [
        ({"JAX_NUM_PROCESSES": "two"}, "JAX_NUM_PROCESSES"),
        ({"JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "2"}, "JAX_PROCESS_ID"),
        ({"TLJAX_DISTRIBUTED_TIMEOUT": "0"}, "TLJAX_DISTRIBUTED_TIMEOUT"),
    ],
)
def test_bad_environment_names_the_variable(monkeypatch, env, match):
  for name, value in env.items():
    monkeypatch.setenv(name, value)
  with pytest.raises(ValueError, match=match):
    distributed_arguments()


def test_local_coordinator_listens_on_its_address_only(monkeypatch):
  for name in ("JAX_COORDINATOR_BIND_ADDRESS", "TLJAX_DISTRIBUTED_TIMEOUT"):
    monkeypatch.delenv(name, raising=False)
  monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "127.0.0.1:4321")
  monkeypatch.setenv("JAX_NUM_PROCESSES", "2")
  monkeypatch.setenv("JAX_PROCESS_ID", "1")
  assert distributed_arguments() == {
      "num_processes": 2,
      "process_id": 1,
      "coordinator_bind_address": "127.0.0.1:4321",
  }
  monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "host0:4321")
  assert "coordinator_bind_address" not in distributed_arguments()
