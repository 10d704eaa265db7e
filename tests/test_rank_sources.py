"""End-to-end tests of tljax.train.rank_sources (``tljax rank-sources``) at tiny size."""

import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from scipy import stats

from conftest import small_config
from test_cli import run_main
from tljax import cli, select
from tljax.params import read_checkpoint
from tljax.select import source_ranking
from tljax.train import rank_sources
from tljax.train.experiment import run_dir, run_experiment

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SEEDS = (0, 1)
CACHE_OPTIONS = (
    "jax_compilation_cache_dir",
    "jax_persistent_cache_min_compile_time_secs",
    "jax_persistent_cache_min_entry_size_bytes",
)


def tiny_source_config(data_dir, transform=None):
  config = small_config(
      data_dir,
      model__name="lenet",
      model__bottleneck_dim=16,
      batch_size=16,
      steps=8,
      checkpoint_every=8,
      log_every=4,
  )
  if transform:
    config.source.kwargs.transform = transform
  return config


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, data_dir):
  """Two tiny source runs and their scores."""
  root = tmp_path_factory.mktemp("rank_sources")
  run_dirs = []
  for name, transform in (
      ("plain", None),
      ("rot90", {"rotation_degrees": 90.0}),
  ):
    workdir = str(root / "zoo" / name)
    run_experiment(tiny_source_config(data_dir, transform), workdir)
    run_dirs.append(run_dir(workdir, "source_only", 0))
  target = rank_sources.TargetSpec(labels_per_class=3, data_dir=data_dir)
  target_data = rank_sources.load_target(target, SEEDS)
  runs = rank_sources.load_source_runs(
      run_dirs, input_shape=target_data["input_shape"]
  )
  rows = rank_sources.score_sources(runs, target_data)
  return {
      "root": root,
      "run_dirs": run_dirs,
      "target": target,
      "target_data": target_data,
      "runs": runs,
      "rows": rows,
  }


# Measured target test accuracies the fake experiment runner reports.
FAKE_ACCURACY = {
    "target_only": [0.80, 0.70],
    "plain": [0.90, 0.60],
    "rot90": [0.75, 0.72],
}


@pytest.fixture(scope="module")
def verified(tiny):
  """rank_sources with --verify semantics, training replaced by a fake runner.

  The fake records each config and work dir and reports FAKE_ACCURACY, so the
  wiring (configs, work dirs, accuracies, τ, gaps) is tested in seconds; the
  training itself is run_experiment's, tested in tests/test_experiment.py.
  """
  calls = []

  def fake_run_experiment(config, workdir):
    calls.append((config, workdir))
    key = (
        "target_only"
        if config.method == "target_only"
        else os.path.basename(workdir)
    )
    return {
        "runs": [
            {
                "method": config.method,
                "seed": seed,
                "target_test": {"accuracy": FAKE_ACCURACY[key][i]},
            }
            for i, seed in enumerate(config.seeds)
        ]
    }

  original = rank_sources.run_experiment
  rank_sources.run_experiment = fake_run_experiment
  try:
    settings = rank_sources.TrainSettings(
        steps=7,
        batch_size=16,
        learning_rates={"default": 0.01, "linear_probe": 0.03},
    )
    results, markdown = rank_sources.rank_sources(
        tiny["run_dirs"],
        tiny["target"],
        seeds=SEEDS,
        verify_methods=("finetune", "linear_probe"),
        settings=settings,
        workdir=str(tiny["root"] / "verify"),
    )
  finally:
    rank_sources.run_experiment = original
  return {"results": results, "markdown": markdown, "calls": calls}


def direct_outputs(model, run_dir_, inputs):
  """The model's outputs without rank_sources: checkpoint → apply."""
  params, model_state = read_checkpoint(run_dir_)
  params = {key: params[key] for key in ("backbone", "bottleneck", "head")}
  outputs, _ = model.apply(params, model_state, inputs, train=False)
  return outputs


def direct_scores(model, run_dir_, labeled):
  """The scores computed without rank_sources: checkpoint → apply → select."""
  outputs = direct_outputs(model, run_dir_, labeled.inputs)
  features = np.asarray(outputs.features)
  probabilities = np.asarray(jax.nn.softmax(outputs.logits))
  labels = labeled.labels
  return {
      "logme": select.logme(features, labels),
      "leep": select.leep(probabilities, labels),
      "nce": select.nce(
          probabilities.argmax(axis=1), labels, num_source_classes=10
      ),
      "h_score": select.h_score(features, labels),
      "shrinkage_h_score": select.shrinkage_h_score(features, labels),
      "gbc": select.gbc(source_ranking.pca(features, 64), labels),
      "transrate": select.transrate(features, labels),
  }


def test_scores_are_finite_and_equal_the_select_functions(tiny):
  assert [row["name"] for row in tiny["rows"]] == ["plain", "rot90"]
  for row, run, run_dir_ in zip(tiny["rows"], tiny["runs"], tiny["run_dirs"]):
    assert set(row["scores"]) == set(source_ranking.SCORE_NAMES)
    assert all(np.isfinite(value) for value in row["scores"].values())
    per_seed = [
        direct_scores(run.model, run_dir_, tiny["target_data"]["train"][seed])
        for seed in SEEDS
    ]
    # float32 features computed in another batching (the script's) move
    # LogME's fixed point by ~1e-4 relative.
    for score in source_ranking.SCORE_NAMES:
      values = [float(scores[score]) for scores in per_seed]
      np.testing.assert_allclose(
          row["per_seed"][score], values, rtol=5e-4, atol=1e-6, err_msg=score
      )
      np.testing.assert_allclose(
          row["scores"][score],
          np.mean(values),
          rtol=5e-4,
          atol=1e-6,
          err_msg=score,
      )


def test_labeled_examples_are_the_training_runs_draw(tiny):
  from tljax.data import get_source, labeled_subsets

  train = get_source("uci_digits", "train", data_dir=tiny["target"].data_dir)
  for seed in SEEDS:
    expected, _ = labeled_subsets(
        train.to_array_source(),
        labels_per_class=3,
        validation_per_class=0,
        seed=seed,
    )
    labeled = tiny["target_data"]["train"][seed]
    np.testing.assert_array_equal(labeled.inputs, expected.inputs)
    assert (
        len(labeled) == 30 and np.bincount(labeled.labels).tolist() == [3] * 10
    )


def test_backbone_features_are_the_backbone_output(tiny):
  run, labeled = tiny["runs"][0], tiny["target_data"]["train"][0]
  features, probabilities = rank_sources.extract(
      run.model, run.params, run.model_state, labeled.inputs, layer="backbone"
  )
  assert features.shape == (30, 500) and probabilities.shape == (30, 10)
  np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
  direct = direct_outputs(run.model, tiny["run_dirs"][0], labeled.inputs)
  np.testing.assert_allclose(
      features, direct.backbone_features, rtol=1e-5, atol=1e-6
  )
  with pytest.raises(ValueError, match="layer must be one of"):
    rank_sources.extract(
        run.model, run.params, run.model_state, labeled.inputs, layer="logits"
    )


def test_ranking_is_by_decreasing_score(tiny):
  rows = tiny["rows"]
  for score in source_ranking.SCORE_NAMES:
    order = source_ranking.ranking(rows, score)
    values = {row["name"]: row["scores"][score] for row in rows}
    assert sorted(order) == ["plain", "rot90"]
    assert values[order[0]] >= values[order[1]]
  fake = [
      {"name": name, "scores": {"logme": value}}
      for name, value in (("a", 0.1), ("b", 0.3), ("c", -1.0), ("d", 0.2))
  ]
  assert source_ranking.ranking(fake, "logme") == ["b", "d", "a", "c"]


def test_weighted_tau_matches_scipy():
  rng = np.random.default_rng(0)
  scores, accuracies = rng.normal(size=7), rng.uniform(size=7)
  expected = stats.weightedtau(accuracies, scores, rank=None).statistic
  assert source_ranking.weighted_tau(scores, accuracies) == pytest.approx(
      expected
  )
  # rank=None ranks the elements by decreasing accuracy.
  rank = np.argsort(np.argsort(-accuracies))
  assert source_ranking.weighted_tau(scores, accuracies) == pytest.approx(
      stats.weightedtau(accuracies, scores, rank=rank).statistic
  )
  assert source_ranking.weighted_tau(accuracies, accuracies) == pytest.approx(
      1.0
  )
  with pytest.raises(ValueError, match="length >= 2"):
    source_ranking.weighted_tau([1.0], [0.5])


def test_verification_reports_tau_and_gaps_consistently(tiny, verified):
  results = verified["results"]
  verification = results["verification"]
  assert verification["seeds"] == list(SEEDS)
  assert verification["target_only"] == FAKE_ACCURACY["target_only"]
  names = [row["name"] for row in results["sources"]]
  assert names == ["plain", "rot90"]
  for method in ("finetune", "linear_probe"):
    accuracy = verification["accuracy"][method]
    assert accuracy == {name: FAKE_ACCURACY[name] for name in names}
    measured = [np.mean(accuracy[name]) for name in names]
    for score in source_ranking.SCORE_NAMES:
      values = [row["scores"][score] for row in results["sources"]]
      expected = stats.weightedtau(measured, values, rank=None).statistic
      got = results["correlations"][method][score]["weighted_tau"]
      assert got == pytest.approx(expected)
    for name in names:
      expected = select.negative_transfer_gap(
          [1 - a for a in FAKE_ACCURACY[name]],
          [1 - a for a in FAKE_ACCURACY["target_only"]],
      )
      gap = results["gaps"][method][name]
      assert (gap["gap"], gap["low"], gap["high"]) == pytest.approx(
          (expected.gap, expected.low, expected.high)
      )
      assert gap["verdict"] == expected.verdict
  assert results["reference"]["name"] == "untrained"
  assert set(results["predicted_negative"]) == set(source_ranking.SCORE_NAMES)
  assert (tiny["root"] / "verify" / rank_sources.RESULTS_JSON).exists()
  assert "| rot90 |" in verified["markdown"]
  assert "weighted τ" in verified["markdown"]


def test_verification_configs_start_from_the_sources(tiny, verified):
  calls = {
      os.path.relpath(workdir, tiny["root"] / "verify"): config
      for config, workdir in verified["calls"]
  }
  assert sorted(calls) == [
      "finetune/plain",
      "finetune/rot90",
      "linear_probe/plain",
      "linear_probe/rot90",
      "target_only",
  ]
  for path, config in calls.items():
    assert config.seeds == SEEDS and config.baselines == ()
    assert config.target.name == "uci_digits"
    assert config.target.labels_per_class == 3
    assert config.steps == 7 and config.batch_size == 16
    assert config.model.bottleneck_dim == 16
  assert calls["target_only"].method == "target_only"
  assert calls["target_only"].init_from.workdir is None
  rot90 = calls["finetune/rot90"]
  assert rot90.method == "finetune"
  assert rot90.init_from.workdir.format(seed=1) == tiny["run_dirs"][1]
  assert rot90.source.kwargs.transform.to_dict() == {"rotation_degrees": 90.0}
  assert rot90.optimizer.learning_rate == 0.01
  assert calls["linear_probe/plain"].optimizer.learning_rate == 0.03


def test_bad_inputs_give_clear_errors(tiny, tmp_path):
  target = tiny["target"]
  with pytest.raises(FileNotFoundError, match="does not exist"):
    rank_sources.rank_sources([str(tmp_path / "missing")], target)
  (tmp_path / "empty").mkdir()
  with pytest.raises(FileNotFoundError, match="no run_config.json"):
    rank_sources.rank_sources([str(tmp_path / "empty")], target)
  with pytest.raises(ValueError, match=r"unknown score names \['foo'\]"):
    rank_sources.rank_sources(tiny["run_dirs"], target, scores=("logme", "foo"))
  with pytest.raises(ValueError, match=r"unknown score names \['foo'\]"):
    source_ranking.compute_scores(
        np.zeros((4, 2)),
        np.full((4, 2), 0.5),
        [0, 1, 0, 1],
        num_classes=2,
        scores=["foo"],
    )
  with pytest.raises(ValueError, match="not unique"):
    rank_sources.rank_sources(tiny["run_dirs"], target, names=["a", "a"])
  with pytest.raises(ValueError, match="unknown"):
    rank_sources.rank_sources(
        tiny["run_dirs"],
        target,
        verify_methods=("no_such_method",),
        workdir=str(tmp_path / "v"),
    )
  with pytest.raises(ValueError, match="does not transfer"):
    rank_sources.rank_sources(
        tiny["run_dirs"],
        target,
        verify_methods=("target_only",),
        workdir=str(tmp_path / "v"),
    )
  with pytest.raises(ValueError, match="method=number"):
    rank_sources.parse_learning_rates(["finetune=fast"])


def test_the_script_reports_a_missing_run_dir(tmp_path):
  # scripts/rank_sources.py is `tljax rank-sources`: one line, exit status 2.
  completed = subprocess.run(
      [
          sys.executable,
          os.path.join(REPO, "scripts", "rank_sources.py"),
          f"--sources={tmp_path / 'missing'}",
          f"--workdir={tmp_path / 'w'}",
      ],
      capture_output=True,
      text=True,
      cwd=REPO,
      timeout=120,
      check=False,
  )
  assert completed.returncode == 2
  assert "tljax rank-sources: error: source run dir" in completed.stderr
  assert "does not exist" in completed.stderr
  assert "Traceback" not in completed.stderr


def test_the_command_writes_the_tables_of_the_library(tiny, tmp_path, capsys):
  """``tljax rank-sources`` in this process: the library's markdown and JSON."""
  workdir, output = tmp_path / "ranked", tmp_path / "ranked.md"
  # The command points JAX's compilation cache into its work dir.
  cache = {name: getattr(jax.config, name) for name in CACHE_OPTIONS}
  try:
    status, out, err = run_main(
        [
            "rank-sources",
            "--sources",
            ",".join(tiny["run_dirs"]),
            "--labels_per_class",
            "3",
            "--seeds",
            "0,1",
            "--scores",
            "logme,leep",
            "--data_dir",
            tiny["target"].data_dir,
            "--workdir",
            str(workdir),
            "--output",
            str(output),
        ],
        capsys,
    )
  finally:
    for name, value in cache.items():
      jax.config.update(name, value)
  assert status == 0, err
  _, markdown = rank_sources.rank_sources(
      tiny["run_dirs"], tiny["target"], seeds=SEEDS, scores=("logme", "leep")
  )
  assert output.read_text(encoding="utf-8") == markdown
  assert markdown in out and f"results in {workdir}" in out
  assert (workdir / rank_sources.RESULTS_JSON).exists()


def test_the_command_s_layers_and_scores_are_the_library_s(capsys):
  # tljax.cli writes them out so that its help needs no JAX.
  assert cli.FEATURE_LAYERS == rank_sources.FEATURE_LAYERS
  status, out, _ = run_main(["rank-sources", "--help"], capsys)
  assert status == 0
  listed = " ".join(out.split()).split("scores to compute: ")[1]
  listed = listed.split(" (default: all)")[0].split(", ")
  assert tuple(listed) == source_ranking.SCORE_NAMES
