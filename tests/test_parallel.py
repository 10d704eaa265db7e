"""Data-parallel training on 8 fake CPU devices gives the single-device parameters."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from configs import moons
from tljax.train.experiment import check_experiment_config
from tljax.train import parallel

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = textwrap.dedent("""
    import json, os, sys
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    import jax
    import numpy as np
    sys.path.insert(0, os.path.join(sys.argv[1], "configs"))
    import moons
    from tljax.params import flatten, read_checkpoint
    from tljax.train.loop import train_and_evaluate

    def config(data_parallel, batch_size=64):
      c = moons.get_config("method=dann,seeds=1")
      c.steps, c.batch_size, c.progress_bar = 5, batch_size, False
      # SGD: Adam would turn the rounding noise of the pre-BatchNorm biases'
      # (mathematically zero) gradients into O(lr) steps of either sign.
      c.optimizer.name, c.optimizer.learning_rate = "sgd", 0.05
      c.parallel.data_parallel = data_parallel
      if data_parallel:
        c.parallel.param_rules = ((r"dense2/kernel", (None, "data")),)
      return c

    workdir = sys.argv[2]
    runs = {}
    for data_parallel in (False, True):
      run = os.path.join(workdir, str(data_parallel))
      summary = train_and_evaluate(config(data_parallel), run, seed=0)
      params, _ = read_checkpoint(run)
      runs[data_parallel] = ({k: np.asarray(v).tolist()
                              for k, v in flatten(params).items()}, summary)
    sharded = read_checkpoint(os.path.join(workdir, "True"))[0]
    kernel = sharded["backbone"]["dense2"]["kernel"]
    try:
      train_and_evaluate(config(True, batch_size=60),
                         os.path.join(workdir, "bad"), seed=0)
      error = None
    except ValueError as e:
      error = str(e)
    json.dump({"single": runs[False][0], "parallel": runs[True][0],
               "devices": len(jax.devices()),
               "kernel_devices": len(kernel.sharding.device_set),
               "kernel_shard_shape": list(kernel.addressable_shards[0].data.shape),
               "accuracy": [runs[False][1]["target_test"]["accuracy"],
                            runs[True][1]["target_test"]["accuracy"]],
               "error": error}, open(os.path.join(workdir, "out.json"), "w"))
""")


def test_data_parallel_matches_single_device(tmp_path):
  import numpy as np

  script = tmp_path / "check.py"
  script.write_text(SCRIPT)
  env = {**os.environ, "PYTHONPATH": REPO}
  subprocess.run(
      [sys.executable, str(script), REPO, str(tmp_path)],
      check=True,
      env=env,
      capture_output=True,
      timeout=600,
  )
  out = json.loads((tmp_path / "out.json").read_text())
  assert out["devices"] == 8
  assert set(out["single"]) == set(out["parallel"])
  for name, single in out["single"].items():
    np.testing.assert_allclose(
        out["parallel"][name], single, rtol=1e-5, atol=1e-6, err_msg=name
    )
  # The rule sharded dense2's kernel (64 × 64) over the 8 devices by column.
  assert out["kernel_devices"] == 8
  assert out["kernel_shard_shape"] == [64, 8]
  assert abs(out["accuracy"][0] - out["accuracy"][1]) <= 0.005
  assert out["error"] is not None and "batch_size" in out["error"]


@pytest.mark.parametrize(
    "rules, match",
    [
        ((("dense", ("model",)),), r"param_rules\[0\]"),
        ((("(", (None,)),), r"param_rules\[0\].*regex"),
        (("dense",), r"param_rules\[0\]"),
    ],
)
def test_bad_param_rules_name_the_key(rules, match):
  config = moons.get_config()
  config.parallel.param_rules = rules
  with pytest.raises(ValueError, match=match):
    check_experiment_config(config)


def test_state_shardings_fall_back_to_replication():
  import jax
  import numpy as np

  mesh = parallel.make_mesh(jax.devices()[:1])
  state = {"a": {"kernel": np.zeros((3, 5))}, "b": np.zeros(())}
  shardings = parallel.state_shardings(
      state, mesh, ((r"kernel", (None, "data")),)
  )
  assert shardings["a"]["kernel"].spec == jax.sharding.PartitionSpec(
      None, "data"
  )
  assert shardings["b"].spec == jax.sharding.PartitionSpec()
  placed = parallel.shard_state(state, shardings)
  np.testing.assert_array_equal(np.asarray(placed["a"]["kernel"]), 0.0)
