"""Issue 9: runs survive interruption bit-exactly, guard against divergence,
refuse bad checkpoints, record what reproduces them."""

import glob
import os
import pickle
import random
import shutil
import signal
import subprocess
import sys
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from reliability_driver import driver_config
from tljax.train import loop
from tljax.train import metrics as metrics_lib
from tljax.train import provenance
from tljax.checkpoint import CheckpointError, Checkpointer
from tljax.train.state import create_train_state
from tljax.train.step import guard_nonfinite, make_train_step

DRIVER = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "reliability_driver.py"
)
# Per-step and per-record fields that measure time, not training.
TIMING = ("examples_per_second",)


def final_params(workdir):
  with Checkpointer(
      os.path.join(workdir, "checkpoints"), read_only=True
  ) as checkpointer:
    raw = checkpointer.restore_raw()
  return {**raw["trainable"], **raw["model_state"]}, raw


def training_records(workdir):
  return [
      {key: value for key, value in record.items() if key not in TIMING}
      for record in metrics_lib.read_metrics(workdir)
  ]


def assert_bit_identical(a, b):
  flat_a = jax.tree_util.tree_flatten_with_path(a)[0]
  flat_b = jax.tree.leaves(b)
  assert len(flat_a) == len(flat_b)
  for (path, left), right in zip(flat_a, flat_b):
    left, right = np.asarray(left), np.asarray(right)
    assert left.dtype == right.dtype and left.shape == right.shape, path
    assert left.tobytes() == right.tobytes(), (
        f"{jax.tree_util.keystr(path)} differs: max |Δ| "
        f"{np.max(np.abs(left.astype(np.float64) - right))}"
    )


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, data_dir):
  """The uninterrupted run, trained in this process."""
  workdir = str(tmp_path_factory.mktemp("uninterrupted"))
  config = driver_config(data_dir)
  summary = loop.train_and_evaluate(config, workdir, method_name=config.method)
  return workdir, summary


def start(workdir, data_dir, *extra):
  process = subprocess.Popen(
      [sys.executable, DRIVER, workdir, data_dir, *extra],
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
  )
  assert process.stdout.readline().strip() == "READY", process.stderr.read()
  return process


def logged_steps(workdir):
  path = os.path.join(workdir, metrics_lib.METRICS_FILE)
  if not os.path.exists(path):
    return 0
  with open(path, encoding="utf-8") as stream:
    return sum(1 for _ in stream)


def wait_for(condition, process, timeout=120.0):
  deadline = time.monotonic() + timeout
  while not condition():
    if process.poll() is not None:
      return False
    assert time.monotonic() < deadline, "the run made no progress"
    time.sleep(0.005)
  return True


def latest_checkpoint(workdir):
  if not os.path.isdir(os.path.join(workdir, "checkpoints")):
    return None, []
  with Checkpointer(
      os.path.join(workdir, "checkpoints"), read_only=True
  ) as checkpointer:
    return checkpointer.latest_step(), checkpointer.all_steps()


# More random kills: TLJAX_RANDOM_KILLS=20 python -m pytest tests/test_reliability.py
RANDOM_KILLS = int(os.environ.get("TLJAX_RANDOM_KILLS", "1"))


def test_killed_and_signalled_run_resumes_bit_exactly(
    tmp_path, data_dir, reference_run
):
  """SIGKILL at random steps, SIGKILL during a save, then SIGTERM; the same
  command finishes the run bit-identical to the uninterrupted one. (SIGINT
  takes the same path: see the in-process test below.)"""
  reference_dir, reference_summary = reference_run
  workdir = str(tmp_path)
  rng = random.Random(9)
  for _ in range(RANDOM_KILLS):
    process = start(workdir, data_dir, "--step-delay", "0.03")
    resumed_at = latest_checkpoint(workdir)[0] or 0
    target = min(resumed_at + rng.randint(1, 10), 36)
    assert wait_for(lambda: logged_steps(workdir) >= target, process)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL

  # SIGKILL in the middle of a save: every file is in the temporary
  # directory, the rename that completes it has not happened.
  last_complete, _ = latest_checkpoint(workdir)
  hang_at = (last_complete or 0) + 4
  process = start(workdir, data_dir, "--hang-saving-step", str(hang_at))
  assert wait_for(
      lambda: os.path.exists(os.path.join(workdir, "saving")), process
  ), process.stderr.read()
  process.send_signal(signal.SIGKILL)
  process.wait(timeout=60)
  assert process.returncode == -signal.SIGKILL
  with open(os.path.join(workdir, "saving"), encoding="utf-8") as stream:
    partial = stream.read()
  assert os.path.isdir(partial)
  latest, steps = latest_checkpoint(workdir)
  # Never read as complete (the random kill may have come before the first
  # checkpoint, leaving none at all).
  assert hang_at not in steps and (latest or 0) < hang_at

  # SIGTERM: the run saves the step it is in, then ends the way the signal
  # would have ended it.
  process = start(workdir, data_dir, "--step-delay", "0.03")
  already = logged_steps(workdir)
  assert wait_for(lambda: logged_steps(workdir) >= already + 2, process)
  process.send_signal(signal.SIGTERM)
  _, err = process.communicate(timeout=120)
  assert process.returncode == -signal.SIGTERM, err
  assert not os.path.exists(partial)  # a writer removed the leftover
  # The last logged step was saved before the process ended.
  assert latest_checkpoint(workdir)[0] == logged_steps(workdir)

  # The same command once more finishes the run.
  process = start(workdir, data_dir)
  _, err = process.communicate(timeout=300)
  assert process.returncode == 0, err
  summary = metrics_lib.read_summary(workdir)
  assert summary["resumed_from_step"] > 0
  # Every array of the final state: parameters, BatchNorm statistics,
  # optimizer state, step and guard counters.
  assert_bit_identical(final_params(workdir)[1], final_params(reference_dir)[1])
  assert training_records(workdir) == training_records(reference_dir)
  assert (
      summary["target_test"]["accuracy"]
      == reference_summary["target_test"]["accuracy"]
  )
  sessions = provenance.read_provenance(workdir)["sessions"]
  # One per process that got as far as training (a kill may land earlier).
  assert 3 <= len(sessions) <= RANDOM_KILLS + 3
  assert sessions[-1]["start_step"] == summary["resumed_from_step"]


def test_sigint_saves_the_current_step_when_no_checkpoint_is_due(
    tmp_path, data_dir, monkeypatch
):
  """In this process: without the handler no checkpoint would exist."""
  config = driver_config(data_dir, steps=400, checkpoint_every=1000)
  batches = loop.training_batches

  def slow_batches(*args, **kwargs):
    for batch in batches(*args, **kwargs):
      time.sleep(0.01)
      yield batch

  monkeypatch.setattr(loop, "training_batches", slow_batches)
  workdir = str(tmp_path)

  def interrupt_after_five_steps():
    while logged_steps(workdir) < 5:
      time.sleep(0.005)
    os.kill(os.getpid(), signal.SIGINT)

  # Python's own handler, whatever pytest was started with (a background
  # job of a non-interactive shell starts with SIGINT ignored).
  found = signal.signal(signal.SIGINT, signal.default_int_handler)
  try:
    threading.Thread(target=interrupt_after_five_steps, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
      loop.train_and_evaluate(config, workdir, method_name=config.method)
    # The handler the loop found is back.
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
  finally:
    signal.signal(signal.SIGINT, found)
  latest, steps = latest_checkpoint(workdir)
  assert steps == [latest] and 5 <= latest == logged_steps(workdir) < 400


def test_an_ignored_sigint_stays_ignored(tmp_path, data_dir, monkeypatch):
  """Under nohup (or a background job) Ctrl-C is not the user's to send: the
  run goes on to the end and SIGINT is still ignored afterwards."""
  config = driver_config(data_dir, steps=30, checkpoint_every=1000)
  batches = loop.training_batches
  sent = []

  def batches_with_a_sigint(*args, **kwargs):
    for batch in batches(*args, **kwargs):
      if int(batch["step"]) == 5:
        os.kill(os.getpid(), signal.SIGINT)
        sent.append(True)
      yield batch

  monkeypatch.setattr(loop, "training_batches", batches_with_a_sigint)
  found = signal.signal(signal.SIGINT, signal.SIG_IGN)
  try:
    summary = loop.train_and_evaluate(
        config, str(tmp_path), method_name=config.method
    )
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
  finally:
    signal.signal(signal.SIGINT, found)
  assert sent and summary["steps"] == 30
  assert latest_checkpoint(str(tmp_path))[1] == [30]


# --- The divergence guard ----------------------------------------------------


def quadratic_loss(params, model_state, batch, key, extras):
  del key, extras
  residual = batch["x"] @ params["w"] - batch["y"]
  return jnp.mean(residual**2), (model_state, {})


def quadratic_batches(nan_at=None):
  rng = np.random.default_rng(0)
  batches = []
  for index in range(5):
    x = rng.normal(size=(8, 3)).astype(np.float32)
    if index == nan_at:
      x[3, 1] = np.nan
    batches.append(
        {
            "x": jnp.asarray(x),
            "y": jnp.asarray(rng.normal(size=(8,)).astype(np.float32)),
        }
    )
  return batches


def run_steps(policy, batches):
  optimizer = optax.sgd(0.1, momentum=0.9)
  state = create_train_state({"w": jnp.ones((3,))}, {}, optimizer)
  step = jax.jit(
      guard_nonfinite(
          make_train_step(quadratic_loss, optimizer, jit=False), policy
      )
  )
  for batch in batches:
    state, metrics = step(state, batch, jax.random.key(0))
  return state, metrics


def test_skip_policy_drops_the_nan_batch_and_counts_it():
  state, metrics = run_steps("skip", quadratic_batches(nan_at=2))
  clean = quadratic_batches()
  # Without the NaN batch, the same updates in the same order.
  expected, _ = run_steps("off", clean[:2] + clean[3:])
  assert_bit_identical(state.trainable, expected.trainable)
  assert_bit_identical(state.opt_state, expected.opt_state)
  assert int(state.step) == 5 and int(state.skipped_steps) == 1
  assert int(state.first_nonfinite_step) == 2
  assert int(metrics["skipped_steps"]) == 1


def test_stop_policy_freezes_the_state_at_the_last_finite_step():
  state, _ = run_steps("stop", quadratic_batches(nan_at=2))
  expected, _ = run_steps("off", quadratic_batches()[:2])
  # Steps 3 and 4 were finite but come after the divergence: not applied.
  assert_bit_identical(state.trainable, expected.trainable)
  assert int(state.first_nonfinite_step) == 2 and int(state.step) == 5


def test_guard_is_bit_identical_when_everything_is_finite():
  guarded, _ = run_steps("stop", quadratic_batches())
  plain, _ = run_steps("off", quadratic_batches())
  assert_bit_identical(guarded.trainable, plain.trainable)
  assert int(guarded.first_nonfinite_step) == -1


def test_policy_off_lets_nan_through_and_unknown_policy_is_refused():
  state, _ = run_steps("off", quadratic_batches(nan_at=2))
  assert np.isnan(np.asarray(state.trainable["w"])).all()
  with pytest.raises(ValueError, match="policy"):
    guard_nonfinite(lambda *a: a, "ignore")


def nan_batches_at(monkeypatch, nan_step):
  batches = loop.training_batches

  def poisoned(*args, **kwargs):
    for batch in batches(*args, **kwargs):
      if int(batch["step"]) == nan_step:
        batch["source"] = dict(batch["source"])
        image = np.array(batch["source"]["input"], np.float32)
        image[0, 0] = np.nan
        batch["source"]["input"] = image
      yield batch

  monkeypatch.setattr(loop, "training_batches", poisoned)


def tiny(data_dir, **overrides):
  return driver_config(data_dir, **{"steps": 12, **overrides})


def test_nan_batch_under_stop_raises_naming_the_step(
    tmp_path, data_dir, monkeypatch
):
  nan_batches_at(monkeypatch, 5)  # the update to step 6
  config = tiny(data_dir, log_every=2)
  with pytest.raises(
      loop.DivergenceError,
      match=r"step 6 were not finite.*last finite metrics "
      r"\(step 4\): .*loss=",
  ):
    loop.train_and_evaluate(config, str(tmp_path), method_name="dann")
  latest, steps = latest_checkpoint(str(tmp_path))
  assert steps == [4]  # nothing saved after the divergence
  raw = final_params(str(tmp_path))[1]
  assert all(
      np.isfinite(leaf).all()
      for leaf in jax.tree.leaves(raw)
      if np.issubdtype(np.asarray(leaf).dtype, np.floating)
  )


def test_nan_batch_under_skip_finishes_and_reports_it(
    tmp_path, data_dir, monkeypatch
):
  nan_batches_at(monkeypatch, 5)
  config = tiny(data_dir, divergence_policy="skip")
  # 1 of 12 steps is more than the default max_skipped_fraction of 5%.
  with pytest.warns(loop.SkippedStepsWarning, match=r"skipped 1 of its 12"):
    summary = loop.train_and_evaluate(config, str(tmp_path), method_name="dann")
  assert summary["skipped_steps"] == 1 and summary["steps"] == 12
  assert summary["skipped_too_many"]
  records = {
      record["step"]: record
      for record in metrics_lib.read_metrics(str(tmp_path))
  }
  assert records[5]["skipped_steps"] == 0 and records[6]["skipped_steps"] == 1
  assert records[6]["loss"] == "nan"  # logged as it was
  params = final_params(str(tmp_path))[0]
  assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(params))


def test_nan_without_guard_never_reaches_a_checkpoint(
    tmp_path, data_dir, monkeypatch
):
  nan_batches_at(monkeypatch, 5)
  config = tiny(data_dir, divergence_policy="off")
  with pytest.raises(
      ValueError,
      match="refusing to save a checkpoint at " "step 8: non-finite values",
  ):
    loop.train_and_evaluate(config, str(tmp_path), method_name="dann")
  assert latest_checkpoint(str(tmp_path))[1] == [4]


# --- Checkpoints that cannot be trusted ----------------------------------------


def checkpoint_files(workdir, step):
  pattern = os.path.join(workdir, "checkpoints", str(step), "state", "**", "*")
  files = [
      path
      for path in glob.glob(pattern, recursive=True)
      if os.path.isfile(path) and "/d/" in path
  ]
  return sorted(files, key=os.path.getsize)


@pytest.fixture(scope="module")
def trained_once(tmp_path_factory, data_dir):
  workdir = str(tmp_path_factory.mktemp("finished"))
  config = tiny(data_dir, steps=8)
  loop.train_and_evaluate(config, workdir, method_name="dann")
  return workdir, config


@pytest.fixture()
def finished_run(trained_once, tmp_path):
  """A copy of one finished 8-step run (checkpoints at steps 4 and 8)."""
  source, config = trained_once
  workdir = str(tmp_path / "run")
  shutil.copytree(source, workdir)
  return workdir, config


def test_truncated_checkpoint_is_refused_with_a_clear_message(finished_run):
  workdir, config = finished_run
  largest = checkpoint_files(workdir, 8)[-1]
  with open(largest, "r+b") as stream:
    stream.truncate(os.path.getsize(largest) // 2)
  with pytest.raises(
      CheckpointError,
      match=r"checkpoints/8 cannot be read: "
      r"it is truncated or corrupted.*earlier step \(\[4\]\)",
  ):
    loop.train_and_evaluate(config, workdir, method_name="dann")


def test_altered_checkpoint_bytes_fail_the_digest(finished_run):
  workdir, config = finished_run
  for path in checkpoint_files(workdir, 8):
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0x01  # one flipped bit per data file
    with open(path, "wb") as stream:
      stream.write(data)
  with pytest.raises(CheckpointError, match="checkpoints/8"):
    loop.train_and_evaluate(config, workdir, method_name="dann")


def test_missing_checkpoint_files_are_refused(finished_run):
  workdir, config = finished_run
  for path in checkpoint_files(workdir, 8):
    os.remove(path)
  with pytest.raises(CheckpointError, match="checkpoints/8"):
    loop.train_and_evaluate(config, workdir, method_name="dann")


def test_nothing_is_unpickled_reading_data_and_checkpoints(
    finished_run, monkeypatch
):
  workdir, config = finished_run

  def refuse(*args, **kwargs):
    raise AssertionError("pickle used")

  monkeypatch.setattr(pickle, "load", refuse)
  monkeypatch.setattr(pickle, "loads", refuse)
  monkeypatch.setattr(pickle, "Unpickler", refuse)
  domains = loop.load_domains(config)
  assert len(domains["source"]["train"]) > 0
  params, raw = final_params(workdir)
  assert params and int(raw["step"]) == 8


# --- Determinism and provenance ------------------------------------------------


def test_same_config_and_seed_give_the_same_metrics_and_provenance(
    tmp_path, data_dir
):
  config = tiny(data_dir, steps=6)
  runs = [str(tmp_path / name) for name in ("a", "b")]
  summaries = [
      loop.train_and_evaluate(config, workdir, method_name="dann")
      for workdir in runs
  ]
  assert training_records(runs[0]) == training_records(runs[1])
  assert_bit_identical(final_params(runs[0])[0], final_params(runs[1])[0])
  assert summaries[0]["target_test"] == summaries[1]["target_test"]
  record = provenance.read_provenance(runs[0])
  assert record["seed"] == 0 and record["method"] == "dann"
  assert record["config"]["steps"] == 6
  session = record["sessions"][0]
  assert session["versions"]["jax"] == jax.__version__
  assert session["versions"]["numpy"] == np.__version__
  assert session["start_step"] == 0 and session["backend"] == "cpu"
  revision = provenance.git_revision()
  if revision is not None:
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"],
        capture_output=True,
        text=True,
        cwd=os.path.dirname(DRIVER),
        check=True,
    ).stdout.strip()
    assert session["git"]["commit"] == head
