"""tljax.train.rundir.Run reads back what a run wrote; a non-run is a clear error.

One tiny run (source-only on the rotated moons, 20 steps, checkpoints at 10
and 20) is trained once; every field of ``Run.open`` is compared with the
files themselves, read here with ``json`` and ``os``, and the rebuilt model
with the run's own test accuracy.
"""

import importlib.util
import json
import os
import shutil

import jax
import numpy as np
import pytest

from tljax import checkpoint as checkpoint_lib
from tljax import rundir_format
from tljax.errors import CheckpointNotFoundError, RunDirNotFoundError
from tljax.params import read_checkpoint
from tljax.train import metrics as metrics_lib
from tljax.train import workdir as workdir_lib
from tljax.train.loop import train_and_evaluate
from tljax.train.rundir import Run

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def moons_config():
  path = os.path.join(REPO, "configs", "moons.py")
  spec = importlib.util.spec_from_file_location("rundir_test_moons", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config("method=source_only,seeds=1")
  config.baselines = ()
  config.steps = 20
  config.batch_size = 32
  config.log_every = 5
  config.eval_every = 10
  config.checkpoint_every = 10
  config.keep_checkpoints = 5
  config.progress_bar = False
  return config


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("rundir") / "source_only" / "seed_0")
  os.makedirs(path)
  train_and_evaluate(moons_config(), path, method_name="source_only", seed=0)
  return path


def read_json(path):
  with open(path, encoding="utf-8") as stream:
    return json.load(stream)


def test_the_layout_is_the_one_the_writers_use():
  assert rundir_format.RUN_CONFIG_FILE == workdir_lib.RUN_CONFIG_FILE
  assert rundir_format.METRICS_FILE == metrics_lib.METRICS_FILE
  assert rundir_format.SUMMARY_FILE == metrics_lib.SUMMARY_FILE
  assert rundir_format.CHECKPOINT_SUBDIR == checkpoint_lib.CHECKPOINT_SUBDIR


def test_record_fields_match_run_config_json(run_dir):
  record = read_json(os.path.join(run_dir, "run_config.json"))
  run = Run.open(run_dir)
  assert run.path == os.path.abspath(run_dir)
  assert dict(run.record) == record
  assert run.config.to_dict() == record["config"]
  assert run.config.steps == 20
  assert run.recipe == record["method"] == "source_only"
  assert run.seed == record["seed"] == 0
  assert run.init_from == record["init_from"]
  # A relative path opens the same run.
  relative = os.path.relpath(run_dir)
  assert Run.open(relative) == run


def test_checkpoints_summary_and_metrics_match_the_files(run_dir):
  run = Run.open(run_dir)
  checkpoints = os.path.join(run_dir, "checkpoints")
  assert run.checkpoint_dir == checkpoints
  assert (
      run.checkpoint_steps()
      == [10, 20]
      == sorted(int(name) for name in os.listdir(checkpoints) if name.isdigit())
  )
  assert run.has_checkpoint
  with run.checkpointer() as checkpointer:
    assert checkpointer.read_only
    assert checkpointer.all_steps() == [10, 20]
    raw = checkpointer.restore_raw(10)
  for step in (10, 20):
    params, model_state = run.restore(step)
    expected_params, expected_state = read_checkpoint(run_dir, step=step)
    jax.tree.map(np.testing.assert_array_equal, params, expected_params)
    jax.tree.map(np.testing.assert_array_equal, model_state, expected_state)
  jax.tree.map(
      np.testing.assert_array_equal, run.restore(10)[0], raw["trainable"]
  )
  latest = run.restore()[0]
  assert any(
      not np.array_equal(a, b)
      for a, b in zip(
          jax.tree.leaves(latest), jax.tree.leaves(run.restore(10)[0])
      )
  )

  assert run.finished
  assert run.summary() == read_json(os.path.join(run_dir, "summary.json"))
  with open(os.path.join(run_dir, "metrics.jsonl"), encoding="utf-8") as stream:
    lines = [json.loads(line) for line in stream if line.strip()]
  assert run.has_metrics and run.metrics() == lines
  assert [record["step"] for record in lines if "loss" in record][-1] == 20


def test_the_rebuilt_model_reproduces_the_runs_test_accuracy(run_dir):
  run = Run.open(run_dir)
  domains = run.domains()
  model = run.model(domains)
  params, model_state = run.restore_model(model)
  shapes, _ = jax.eval_shape(model.init, jax.random.key(0))
  assert set(params) == set(shapes)
  jax.tree.map(
      lambda leaf, shape: np.testing.assert_equal(np.shape(leaf), shape.shape),
      params,
      shapes,
  )
  test = domains["source"]["test"]
  batch = test.get_batch(np.arange(len(test)))
  outputs, _ = model.apply(
      params, model_state, np.asarray(batch["input"]), train=False
  )
  accuracy = float(np.mean(np.argmax(outputs.logits, -1) == batch["label"]))
  assert accuracy == pytest.approx(
      run.summary()["source_test"]["accuracy"], abs=1e-6
  )
  # The same architecture for other inputs and classes (a source run reused).
  other = run.model_for(input_shape=(5,), num_classes=3)
  other_params, other_state = other.init(jax.random.key(0))
  other_outputs, _ = other.apply(
      other_params, other_state, np.zeros((4, 5), np.float32), train=False
  )
  assert other_outputs.logits.shape == (4, 3)
  assert type(other) is type(model)


def test_an_in_progress_run(run_dir, tmp_path):
  running = tmp_path / "running"
  shutil.copytree(run_dir, running)
  os.remove(running / "summary.json")
  shutil.rmtree(running / "checkpoints")
  with open(running / "metrics.jsonl", "a", encoding="utf-8") as stream:
    stream.write('{"step": 25, "lo')  # a record still being written
  run = Run.open(running)
  assert not run.finished and not run.has_checkpoint
  assert run.checkpoint_steps() == []
  assert run.metrics() == Run.open(run_dir).metrics()
  with pytest.raises(
      ValueError,
      match=r"path .*running.* has no "
      r"summary\.json: the run has not finished",
  ):
    run.summary()
  with pytest.raises(CheckpointNotFoundError, match="no checkpoint"):
    run.restore()
  with pytest.raises(CheckpointNotFoundError, match="no checkpoint"):
    run.checkpointer()
  with open(running / "metrics.jsonl", "a", encoding="utf-8") as stream:
    stream.write("\n")
  with pytest.raises(ValueError, match="metrics.jsonl' line .* is not JSON"):
    run.metrics()


def test_a_directory_that_is_not_a_run_is_an_error_naming_it(tmp_path):
  missing = tmp_path / "missing"
  with pytest.raises(
      RunDirNotFoundError, match=r"run_dir '.*missing' does not exist"
  ):
    Run.open(missing, argument="run_dir")
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(
      RunDirNotFoundError,
      match=(r"path '.*empty' has no run_config\.json: it is not a tljax run"),
  ):
    Run.open(empty)
  # Both a FileNotFoundError and a ValueError, as a missing checkpoint is.
  with pytest.raises(FileNotFoundError):
    Run.open(empty)
  with pytest.raises(ValueError):
    Run.open(empty)
  (empty / "run_config.json").write_text("{not json")
  with pytest.raises(
      ValueError, match=r"'.*empty': run_config\.json is not " "valid JSON"
  ):
    Run.open(empty)
  (empty / "run_config.json").write_text(json.dumps({"method": "dann"}))
  with pytest.raises(ValueError, match="not a tljax run config"):
    Run.open(empty)
  with pytest.raises(ValueError, match="path must be a directory path"):
    Run.open(3)
