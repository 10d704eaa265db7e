"""The inductive-transfer recipes end to end on the digits, from a shared source run."""

import os

import jax
import numpy as np
import pytest

from conftest import small_config
from tljax.params import flatten, read_checkpoint
from tljax.train import read_metrics
from tljax.train.experiment import run_experiment


@pytest.fixture(scope="module")
def source_run(tmp_path_factory, data_dir):
  workdir = str(tmp_path_factory.mktemp("source"))
  config = lenet_config(data_dir, steps=40)
  run_experiment(config, workdir)
  return data_dir, os.path.join(workdir, "source_only", "seed_{seed}")


def lenet_config(data_dir, **overrides):
  defaults = dict(
      model__name="lenet",
      model__bottleneck_dim=32,
      steps=10,
      batch_size=20,
      optimizer__learning_rate=0.05,
      log_every=5,
      checkpoint_every=10,
  )
  return small_config(data_dir, **{**defaults, **overrides})


def transfer(source_run, method, tmp_path, **overrides):
  data_dir, source_dir = source_run
  config = lenet_config(data_dir, method=method, **overrides)
  config.target.labels_per_class = 2
  config.target.validation_per_class = 2
  config.init_from.workdir = source_dir
  results = run_experiment(config, str(tmp_path))
  run_dir = os.path.join(tmp_path, method, "seed_0")
  return results["runs"][-1], run_dir


@pytest.fixture(scope="module")
def transferred(source_run, tmp_path_factory):
  """``transferred(method)``: one run of ``method`` per module, shared by its tests."""
  runs = {}

  def get(method):
    if method not in runs:
      runs[method] = transfer(
          source_run, method, tmp_path_factory.mktemp(method)
      )
    return runs[method]

  return get


@pytest.mark.parametrize(
    "method, penalty",
    [
        ("l2_sp", "l2_sp"),
        ("bss", "bss"),
        ("delta", "delta"),
        ("co_tuning", "co_tuning"),
    ],
)
def test_regularized_recipes_train_and_log_their_penalty(
    transferred, method, penalty
):
  summary, run_dir = transferred(method)
  assert summary["steps"] == 10
  assert summary["target_validation"]["num_examples"] == 20
  logged = [record for record in read_metrics(run_dir) if "loss" in record]
  assert all(
      np.isfinite(record[penalty]) and record[penalty] >= 0 for record in logged
  )
  assert any(record[penalty] > 0 for record in logged)


def test_l2_sp_start_point_is_the_source_run_without_the_new_head(
    source_run, transferred
):
  _, run_dir = transferred("l2_sp")
  from tljax.train import Checkpointer

  with Checkpointer(os.path.join(run_dir, "checkpoints")) as checkpointer:
    raw = checkpointer.restore_raw()
  source_params, _ = read_checkpoint(source_run[1].format(seed=0))
  start = flatten(raw["extras"]["start"])
  source_flat = flatten(source_params)
  # Every source parameter but the new head's, and nothing else.
  assert start and set(start) == {
      name for name in source_flat if not name.startswith("head/")
  }
  for name, value in start.items():
    np.testing.assert_array_equal(value, source_flat[name])


def test_co_tuning_keeps_and_trains_the_source_head(source_run, transferred):
  _, run_dir = transferred("co_tuning")
  params, _ = read_checkpoint(run_dir)
  source_params, _ = read_checkpoint(source_run[1].format(seed=0))
  assert set(params["source_head"]) == {"kernel", "bias"}
  assert not np.array_equal(
      params["source_head"]["kernel"], source_params["head"]["kernel"]
  )
  from tljax.train import Checkpointer

  with Checkpointer(os.path.join(run_dir, "checkpoints")) as checkpointer:
    relationship = np.asarray(
        checkpointer.restore_raw()["extras"]["relationship"]
    )
  assert relationship.shape == (10, 10)
  np.testing.assert_allclose(relationship.sum(axis=1), 1.0, rtol=1e-5)


def test_delta_attention_is_a_distribution_over_conv2_channels(transferred):
  _, run_dir = transferred("delta")
  from tljax.train import Checkpointer

  with Checkpointer(os.path.join(run_dir, "checkpoints")) as checkpointer:
    weights = np.asarray(
        checkpointer.restore_raw()["extras"]["channel_weights"]
    )
  assert weights.shape == (50,)
  np.testing.assert_allclose(weights.sum(), 1.0, rtol=1e-5)
  assert weights.std() > 0  # channels matter unequally


def test_regularizers_need_a_source_model(source_run, tmp_path):
  data_dir, _ = source_run
  from tljax.methods import build_method, TransferContext
  from tljax.models import create_model

  model = create_model("lenet", num_classes=10, input_shape=(8, 8, 1))
  method = build_method("l2_sp", lenet_config(data_dir), model)
  params, model_state = model.init(jax.random.key(0))
  context = TransferContext(
      params=params,
      model_state=model_state,
      transferred=frozenset(),
      source_params=None,
      source_model_state=None,
      model=model,
      domains={},
      config=lenet_config(data_dir),
      seed=0,
  )
  with pytest.raises(ValueError, match="needs a source run"):
    method.init_extras(context)


def test_real_checkpoint_restores_into_a_new_head_bit_exactly(source_run):
  from tljax.models import create_model
  from tljax.params import load_pretrained

  source_dir = source_run[1].format(seed=0)
  source_params, source_state = read_checkpoint(source_dir)
  # A target task with 4 classes: same backbone and bottleneck, new head.
  model = create_model(
      "lenet", num_classes=4, input_shape=(8, 8, 1), bottleneck_dim=32
  )
  init_params, init_state = model.init(jax.random.key(7))
  params, model_state = load_pretrained(
      init_params,
      source_dir,
      dont_load=("head/.*",),
      init_model_state=init_state,
  )
  restored, source_flat = flatten(params), flatten(source_params)
  for name, value in restored.items():
    if name.startswith("head/"):
      np.testing.assert_array_equal(value, flatten(init_params)[name])
    else:
      np.testing.assert_array_equal(value, source_flat[name])
  for name, value in flatten(model_state).items():  # BatchNorm statistics
    np.testing.assert_array_equal(value, flatten(source_state)[name])
  assert restored["head/kernel"].shape == (32, 4)
  with pytest.raises(
      ValueError,
      match=r"'head/(bias|kernel)' has shape \(.*" r"in the checkpoint",
  ):
    load_pretrained(init_params, source_dir, dont_load=())


def test_restoring_another_architecture_names_the_first_mismatch(source_run):
  from tljax.models import create_model
  from tljax.params import load_pretrained

  model = create_model("mlp", num_classes=10, input_shape=(8, 8, 1))
  init_params, _ = model.init(jax.random.key(0))
  with pytest.raises(ValueError, match="'backbone/dense1/bias' is missing"):
    load_pretrained(init_params, source_run[1].format(seed=0))
