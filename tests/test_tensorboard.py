"""TensorBoard event files next to metrics.jsonl, written without TensorFlow."""

import glob
import importlib.util
import math
import os
import struct

import numpy as np
import pytest

from tljax.train import metrics as metrics_lib
from tljax.train.experiment import run_experiment

event_pb2 = pytest.importorskip("tensorboardX.proto.event_pb2")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def masked_crc32c(data: bytes) -> int:
  """TFRecord's masked CRC-32C (Castagnoli), bit by bit: an independent reference."""
  crc = 0xFFFFFFFF
  for byte in data:
    crc ^= byte
    for _ in range(8):
      crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
  crc ^= 0xFFFFFFFF
  return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def read_event_file(path):
  """The events of one TFRecord event file, its checksums verified."""
  with open(path, "rb") as stream:
    data = stream.read()
  events, offset = [], 0
  while offset < len(data):
    header = data[offset : offset + 8]
    (length,) = struct.unpack("<Q", header)
    (header_crc,) = struct.unpack("<I", data[offset + 8 : offset + 12])
    assert header_crc == masked_crc32c(header)
    payload = data[offset + 12 : offset + 12 + length]
    (payload_crc,) = struct.unpack(
        "<I", data[offset + 12 + length : offset + 16 + length]
    )
    assert payload_crc == masked_crc32c(payload)
    event = event_pb2.Event()
    event.ParseFromString(payload)
    events.append(event)
    offset += 16 + length
  return events


def event_files(directory):
  paths = sorted(glob.glob(os.path.join(directory, "events.out.tfevents.*")))
  assert paths, f"no event file in {directory}"
  return paths


def read_events(directory):
  """Every event of every event file in ``directory``, in TensorBoard's order."""
  return [
      event
      for path in event_files(directory)
      for event in read_event_file(path)
  ]


def scalars(events):
  """``{(tag, step): value}`` of the scalar summaries."""
  return {
      (value.tag, event.step): value.simple_value
      for event in events
      if event.HasField("summary")
      for value in event.summary.value
  }


def moons_config(tensorboard):
  spec = importlib.util.spec_from_file_location(
      "tensorboard_test_moons", os.path.join(REPO, "configs", "moons.py")
  )
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config("method=source_only,seeds=1")
  config.baselines = ()
  config.steps = 20
  config.batch_size = 32
  config.log_every = 5
  config.eval_every = 10
  config.checkpoint_every = 20
  config.progress_bar = False
  config.tensorboard = tensorboard
  return config


def test_run_writes_event_files_matching_metrics_jsonl(tmp_path):
  workdir = str(tmp_path / "on")
  run_experiment(moons_config(tensorboard=True), workdir)
  run = os.path.join(workdir, "source_only", "seed_0")
  written = scalars(read_events(os.path.join(run, "tensorboard")))
  expected = {}
  for record in metrics_lib.read_metrics(run):
    for key, value in record.items():
      if key != "step":
        expected[(key, record["step"])] = value
  # Training metrics every 5 steps, test accuracies every 10.
  assert {step for _, step in expected} == {5, 10, 15, 20}
  assert ("loss", 5) in expected and ("target_test/accuracy", 10) in expected
  assert set(written) == set(expected)
  for key, value in expected.items():
    # Event files hold float32 values.
    assert written[key] == pytest.approx(
        float(np.float32(value)), rel=1e-6, abs=1e-30
    ), key


def test_run_without_tensorboard_writes_no_event_files(tmp_path):
  config = moons_config(tensorboard=False)
  config.steps = 5
  config.eval_every = 0
  config.checkpoint_every = 5
  workdir = str(tmp_path / "off")
  run_experiment(config, workdir)
  run = os.path.join(workdir, "source_only", "seed_0")
  assert metrics_lib.read_metrics(run)
  assert not os.path.exists(os.path.join(run, "tensorboard"))


def test_writer_keeps_scalars_only_and_nests_tags(tmp_path):
  with metrics_lib.MetricWriter(tmp_path, tensorboard=True) as writer:
    writer.write(
        3,
        {
            "loss": np.float32(0.25),
            "eval": {"accuracy": 0.5},
            "correct": np.int32(7),
            "finite": True,
            "histogram": [1.0, 2.0],
            "name": "dann",
            "diverged": float("nan"),
        },
    )
  written = scalars(read_events(tmp_path / "tensorboard"))
  assert set(written) == {
      ("loss", 3),
      ("eval/accuracy", 3),
      ("correct", 3),
      ("finite", 3),
      ("diverged", 3),
  }
  assert written[("loss", 3)] == 0.25 and written[("correct", 3)] == 7.0
  assert written[("finite", 3)] == 1.0 and math.isnan(written[("diverged", 3)])
  # metrics.jsonl keeps everything, as before.
  (record,) = metrics_lib.read_metrics(tmp_path)
  assert record["histogram"] == [1.0, 2.0] and record["name"] == "dann"


def test_resumed_writer_purges_the_steps_it_logs_again(tmp_path):
  with metrics_lib.MetricWriter(tmp_path, tensorboard=True) as writer:
    for step in (10, 20, 30):
      writer.write(step, {"loss": step / 100})
  # Interrupted after the checkpoint at 15: the resumed run logs 20 and 30 again.
  with metrics_lib.MetricWriter(tmp_path, tensorboard=True) as writer:
    for step in (20, 30):
      writer.write(step, {"loss": step / 1000})
  first, resumed = event_files(tmp_path / "tensorboard")
  assert scalars(read_event_file(first)) == {
      ("loss", 10): pytest.approx(0.1),
      ("loss", 20): pytest.approx(0.2),
      ("loss", 30): pytest.approx(0.3),
  }
  resumed_events = read_event_file(resumed)
  starts = [
      event.step
      for event in resumed_events
      if event.HasField("session_log")
      and event.session_log.status == event_pb2.SessionLog.START
  ]
  # TensorBoard hides the first file's events at steps >= the START's step.
  assert starts == [20]
  assert scalars(resumed_events) == {
      ("loss", 20): pytest.approx(0.02),
      ("loss", 30): pytest.approx(0.03),
  }


def test_no_tensorboard_creates_nothing(tmp_path):
  writer = metrics_lib.MetricWriter(tmp_path)
  writer.write(1, {"loss": 1.0})
  writer.close()
  assert sorted(os.listdir(tmp_path)) == [metrics_lib.METRICS_FILE]
