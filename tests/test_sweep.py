"""A vmapped sweep: each member equals its own single run."""

import json
import re

import numpy as np
import pytest

from configs import moons
from tljax.methods import build_method
from tljax.models import create_model
from tljax.params import flatten, read_checkpoint
from tljax.train.loop import train_and_evaluate
from tljax.train.sweep import member_name, run_sweep, sweep_members


def sweep_config():
  config = moons.get_config("method=dann,seeds=2")
  # Few steps: a vmapped step rounds differently from a single one (other
  # fusions), and DANN's dynamics amplify that (a ReLU flipping at ~1e-8) to
  # ~1e-3 within a dozen steps; at 4 steps members agree to ~1e-6.
  config.steps, config.batch_size, config.progress_bar = 4, 32, False
  config.log_every, config.checkpoint_every = 2, 2
  # SGD (with momentum): Adam turns the rounding noise of numerically-zero
  # gradients (biases before BatchNorm) into O(lr) steps of either sign.
  config.optimizer.name = "sgd"
  config.optimizer.learning_rate = 0.05
  config.sweep.learning_rates = (0.05, 0.02)
  config.sweep.hparams.trade_off = (0.3,)
  return config


def built(config):
  model = create_model("mlp", num_classes=2, input_shape=(2,), hidden_dims=(8,))
  return build_method(config.method, config, model)


def member_params(workdir, index):
  params, _ = read_checkpoint(workdir)
  return {
      name: np.asarray(leaf)[index] for name, leaf in flatten(params).items()
  }


def test_each_member_equals_its_single_run(tmp_path, capsys):
  config = sweep_config()
  members = sweep_members(config, built(config))
  assert len(members) == 4  # 2 seeds × 2 learning rates × 1 λ
  config.progress_bar = True  # standard error is not a terminal here
  results = run_sweep(config, str(tmp_path / "sweep"))
  # Where the sweep is: a line per stage, the steps as a single run's.
  lines = [
      re.sub(r" \[\d+s\]$", "", line)
      for line in capsys.readouterr().err.splitlines()
      if line.startswith("sweep")
  ]
  names = [member_name(member) for member in members]
  assert lines[:4] == [
      f"sweep: setting up member {i + 1} of 4: {name}"
      for i, name in enumerate(names)
  ]
  assert lines[4] == "sweep of 4 members: compiling (step 0/4)"
  assert [line.split(",")[0] for line in lines[5:7]] == [
      "sweep of 4 members: step 2/4",
      "sweep of 4 members: step 4/4",
  ]
  assert lines[7:] == [
      f"sweep: evaluating member {i + 1} of 4: {name}"
      for i, name in enumerate(names)
  ]
  config.progress_bar = False
  assert len(results["members"]) == 4 and len(results["table"]) == 2
  for index in (3,):  # seed 1, lr 0.02, λ 0.3: none of them the config's
    member = members[index]
    single = sweep_config()
    single.optimizer.learning_rate = member["learning_rate"]
    single.method_kwargs.trade_off = member["hparams"]["trade_off"]
    run = tmp_path / member_name(member)
    summary = train_and_evaluate(single, str(run), seed=member["seed"])
    ours = member_params(str(tmp_path / "sweep"), index)
    theirs = {
        name: np.asarray(leaf)
        for name, leaf in flatten(read_checkpoint(str(run))[0]).items()
    }
    assert set(ours) == set(theirs)
    for name in theirs:
      np.testing.assert_allclose(
          ours[name],
          theirs[name],
          rtol=1e-5,
          atol=1e-5,
          err_msg=f"{member} {name}",
      )
    swept = results["members"][index]
    assert (
        abs(
            swept["target_test"]["accuracy"]
            - summary["target_test"]["accuracy"]
        )
        <= 0.002
    )
  # The table aggregates the members over seeds.
  row = results["table"][0]
  accuracies = [
      m["target_test"]["accuracy"]
      for m in results["members"]
      if m["learning_rate"] == row["learning_rate"]
      and m["hparams"] == row["hparams"]
  ]
  assert row["target_test_accuracy_mean"] == pytest.approx(np.mean(accuracies))
  saved = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
  assert saved["table"] == results["table"]


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("learning_rates", (0.0,), r"sweep\.learning_rates"),
        ("hparams.trade_off", (-1.0,), r"sweep\.hparams\.trade_off.*>= 0"),
        # Members are named by their values: repeats would share a summary.
        (
            "learning_rates",
            (1e-3, 0.05, 1e-3),
            r"sweep\.learning_rates.*repeated",
        ),
        (
            "hparams.trade_off",
            (0.3, 0.30000000001),
            r"sweep\.hparams\.trade_off.*repeated",
        ),
    ],
)
def test_bad_sweep_values_name_the_key(field, value, match):
  config = sweep_config()
  *parents, last = field.split(".")
  node = config.sweep
  for parent in parents:
    node = node[parent]
  node[last] = value
  with pytest.raises(ValueError, match=match):
    sweep_members(config, built(config))


def test_transfer_recipe_needs_the_source_run_to_start_from(tmp_path):
  # finetune starts from a source run; a sweep must not train it from
  # scratch in silence.
  config = sweep_config()
  config.method, config.sweep.hparams = "finetune", {}
  config.method_kwargs = {}  # dann's settings are not finetune's
  with pytest.raises(ValueError, match=r"init_from\.workdir.*finetune"):
    run_sweep(config, str(tmp_path / "sweep"))


def test_only_what_the_recipe_traces_can_be_swept():
  config = sweep_config()
  config.method, config.method_kwargs = "source_only", {}
  with pytest.raises(
      ValueError,
      match=r"sweep\.hparams\.trade_off.*"
      r"'source_only' traces no such.*can sweep: \[\]",
  ):
    sweep_members(config, built(config))
