"""Pictures and reports: valid PNGs, tables that match the runs' summaries, clear errors."""

import argparse
import importlib.util
import io
import json
import os
import re
import shutil

import numpy as np
import pytest
from matplotlib import image as mpl_image
from threadpoolctl import threadpool_limits

from tljax import report
from tljax.report import _figure, command_line
from tljax.report import features as features_lib
from tljax.train.experiment import run_experiment

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def load_module(*parts):
  path = os.path.join(REPO, *parts)
  spec = importlib.util.spec_from_file_location(
      "report_test_" + os.path.splitext(parts[-1])[0], path
  )
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def assert_valid_png(path, min_bytes=5_000):
  with open(path, "rb") as stream:
    assert stream.read(8) == PNG_SIGNATURE
  assert os.path.getsize(path) > min_bytes
  pixels = mpl_image.imread(path)
  assert pixels.ndim == 3 and pixels.shape[0] > 200 and pixels.shape[1] > 200
  assert pixels[..., :3].std() > 0.05  # something is drawn, not a blank canvas
  return pixels


def table(markdown, first_header):
  """``{first cell: {header: cell}}`` of the markdown table starting with ``first_header``."""
  lines = markdown.splitlines()
  start = next(
      index
      for index, line in enumerate(lines)
      if line.startswith(f"| {first_header} |")
  )
  headers = [cell.strip() for cell in lines[start].strip("|").split("|")]
  rows = {}
  for line in lines[start + 2 :]:
    if not line.startswith("|"):
      break
    cells = [cell.strip() for cell in line.strip("|").split("|")]
    rows[cells[0]] = dict(zip(headers[1:], cells[1:]))
  return rows


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
  """DANN and source-only on rotated moons, 30 steps, one seed, with reports."""
  config = load_module("configs", "moons.py").get_config("method=dann,seeds=1")
  config.baselines = ("source_only",)
  config.steps = 30
  config.batch_size = 64
  config.log_every = 5
  config.eval_every = 10
  config.checkpoint_every = 30
  config.progress_bar = False
  workdir = str(tmp_path_factory.mktemp("experiment"))
  run_experiment(config, workdir)
  report.report_experiment(workdir)
  return workdir


def read_json(path):
  with open(path, encoding="utf-8") as stream:
    return json.load(stream)


def test_report_experiment_writes_valid_pictures_of_every_run(experiment):
  widths = {}
  for method in ("dann", "source_only"):
    run_dir = os.path.join(experiment, method, "seed_0")
    assert_valid_png(os.path.join(run_dir, "training_curves.png"))
    widths[method] = assert_valid_png(
        os.path.join(run_dir, "features.png")
    ).shape[1]
    assert os.path.isfile(os.path.join(run_dir, "report.md"))
  # DANN's picture has the source-only model next to it (before / after
  # adaptation): two panels, about twice as wide as source-only's one.
  assert 1.6 < widths["dann"] / widths["source_only"] < 2.4


def test_report_says_each_picture_and_computes_each_runs_features_once(
    experiment, monkeypatch
):
  computed = []
  run_features = features_lib.run_features

  def counted(run_dir, **kwargs):
    computed.append(os.path.relpath(run_dir, experiment))
    return run_features(run_dir, **kwargs)

  monkeypatch.setattr(features_lib, "run_features", counted)
  # Drawn but not rendered: the fixture's pictures stay, the test stays fast.
  monkeypatch.setattr(_figure, "save", lambda figure, path: path)
  stream = io.StringIO()
  report.report_experiment(experiment, progress=True, stream=stream)
  stages = [
      re.sub(r" \[\d+s\]$", "", line) for line in stream.getvalue().splitlines()
  ]
  assert stages == [
      "report: run 1 of 2: dann/seed_0: training curves",
      "report: run 1 of 2: dann/seed_0: features (PCA)",
      "report: run 1 of 2: dann/seed_0: report.md",
      "report: run 2 of 2: source_only/seed_0: training curves",
      "report: run 2 of 2: source_only/seed_0: features (PCA)",
      "report: run 2 of 2: source_only/seed_0: report.md",
      "report: the experiment's report.md",
  ]
  # DANN's picture has the source-only panel: its features are reused for
  # source-only's own picture, not restored from the checkpoint again.
  assert sorted(computed) == ["dann/seed_0", "source_only/seed_0"]
  quiet = io.StringIO()
  report.report_experiment(experiment, stream=quiet)  # progress=False
  assert quiet.getvalue() == ""


def test_run_report_table_matches_the_summaries(experiment):
  run_dir = os.path.join(experiment, "dann", "seed_0")
  with open(os.path.join(run_dir, "report.md"), encoding="utf-8") as stream:
    markdown = stream.read()
  rows = table(markdown, "run")
  expected = {
      "dann (this run)": read_json(os.path.join(run_dir, "summary.json")),
      "source_only (same seed)": read_json(
          os.path.join(experiment, "source_only", "seed_0", "summary.json")
      ),
  }
  assert set(rows) == set(expected)
  for name, summary in expected.items():
    for split, header in (
        ("source_test", "source test acc (%)"),
        ("target_test", "target test acc (%)"),
    ):
      assert float(rows[name][header]) == pytest.approx(
          100 * summary[split]["accuracy"], abs=0.05
      )
  change = 100 * (
      expected["dann (this run)"]["target_test"]["accuracy"]
      - expected["source_only (same seed)"]["target_test"]["accuracy"]
  )
  assert f"{change:+.1f} points" in markdown
  for picture in ("training_curves.png", "features.png"):
    assert f"]({picture})" in markdown
  experiment_markdown = open(
      os.path.join(experiment, "report.md"), encoding="utf-8"
  ).read()
  assert "(dann/seed_0/report.md)" in experiment_markdown


def test_training_curves_cover_losses_accuracies_coefficient_and_rate(
    experiment,
):
  records = [
      json.loads(line)
      for line in open(
          os.path.join(experiment, "dann", "seed_0", "metrics.jsonl")
      )
  ]
  logged = {key for record in records for key in record}
  panels = {report.curves.panel_of(key) for key in logged} - {None}
  assert {"loss", "accuracy", "coefficient", "learning_rate"} <= panels
  assert report.curves.panel_of("reversal_coefficient") == "coefficient"
  assert report.curves.panel_of("target_test/accuracy") == "accuracy"
  assert report.curves.panel_of("domain_loss") == "loss"
  # Evaluations are drawn as dashed markers; a stage's metrics are not ones.
  evaluations = {key for key in logged if report.curves.is_evaluation(key)}
  assert evaluations and all(
      key.split("/")[0].endswith(("_validation", "_test"))
      for key in evaluations
  )
  assert not report.curves.is_evaluation("c/discrepancy")
  assert not report.curves.is_evaluation("loss")
  assert report.curves.panel_of("c/discrepancy") == "loss"


def test_tsne_feature_picture(experiment, tmp_path):
  path = str(tmp_path / "tsne.png")
  # One OpenMP thread: t-SNE's threads would fight JAX's on a small machine.
  with threadpool_limits(limits=1):
    report.plot_features(
        os.path.join(experiment, "dann", "seed_0"),
        path,
        method="tsne",
        max_points=40,
        compare=False,
    )
  assert_valid_png(path)


def test_pca_projection_keeps_the_top_two_variance_directions():
  rng = np.random.default_rng(0)
  features = rng.normal(size=(200, 5)) * np.array([5.0, 3.0, 0.1, 0.1, 0.1])
  points = report.project(features)
  centred = features - features.mean(axis=0)
  # The squared singular values of the centred features, via the covariance.
  variances = np.sort(np.linalg.eigvalsh(centred.T @ centred))[::-1]
  np.testing.assert_allclose(
      np.sum(points**2, axis=0), variances[:2], rtol=1e-8
  )


def test_weights_picture_and_effective_sample_size(tmp_path):
  rng = np.random.default_rng(0)
  weights = rng.gamma(2.0, 0.5, size=300)
  for features in (rng.normal(size=(300, 3)), rng.normal(size=300)):
    path = str(tmp_path / "weights.png")
    report.plot_weights(weights, path, features=features, title="kmm")
    assert_valid_png(path)
  assert report.effective_sample_size(np.ones(7)) == pytest.approx(7)
  assert report.effective_sample_size([0, 0, 3.0, 0]) == pytest.approx(1)
  assert report.effective_sample_size(weights) == pytest.approx(
      weights.sum() ** 2 / (weights**2).sum()
  )


def test_ranking_picture_and_its_kendall_tau(tmp_path):
  scores = np.array([0.3, 1.2, -0.5, 0.9, 0.1])
  accuracies = np.array([0.90, 0.97, 0.85, 0.93, 0.94])
  # Kendall's τ without ties: (concordant − discordant) pairs / all pairs.
  signs = [
      np.sign(scores[i] - scores[j]) * np.sign(accuracies[i] - accuracies[j])
      for i in range(5)
      for j in range(i + 1, 5)
  ]
  assert report.kendall_tau(scores, accuracies) == pytest.approx(np.mean(signs))
  path = str(tmp_path / "ranking.png")
  report.plot_ranking(
      {"logme": scores, "leep": -scores},
      accuracies,
      path,
      list("abcde"),
      reference_score={"logme": 0.0},
      reference_accuracy=0.92,
  )
  assert_valid_png(path)


def rank_sources_json(directory, verify=True):
  """A ``rank_sources.json`` shaped as ``scripts/rank_sources.py`` writes it."""
  names = ["mnist", "rot90", "random_labels"]
  results = {
      "target": {"name": "uci_digits"},
      "features": "bottleneck",
      "scores": ["logme", "leep"],
      "sources": [
          {"name": name, "scores": {"logme": 1.0 - i, "leep": -i}}
          for i, name in enumerate(names)
      ],
      "reference": {
          "name": "untrained",
          "scores": {"logme": -0.5, "leep": -1.5},
      },
  }
  if verify:
    results["verification"] = {
        "target_only": [0.9, 0.92],
        "seeds": [0, 1],
        "accuracy": {
            "finetune": {
                "mnist": [0.97, 0.96],
                "rot90": [0.94, 0.93],
                "random_labels": [0.88, 0.9],
            }
        },
    }
  os.makedirs(directory, exist_ok=True)
  with open(os.path.join(directory, "rank_sources.json"), "w") as stream:
    json.dump(results, stream)
  return str(directory)


def test_script_plots_rank_sources_output(tmp_path, capsys):
  script = load_module("scripts", "report.py")
  directory = rank_sources_json(tmp_path / "ranked")
  assert script.main([directory]) == 0
  assert_valid_png(os.path.join(directory, "rank_sources_finetune.png"))
  unverified = rank_sources_json(tmp_path / "unverified", verify=False)
  assert script.main([unverified]) == 2
  assert "--verify" in capsys.readouterr().err


def fake_experiment(workdir, accuracies):
  """Run dirs with only ``run_config.json`` and ``summary.json``: ``{method: [(source, target)]}``."""
  for method, values in accuracies.items():
    for seed, (source, target) in enumerate(values):
      run_dir = os.path.join(workdir, method, f"seed_{seed}")
      os.makedirs(run_dir)
      with open(os.path.join(run_dir, "run_config.json"), "w") as stream:
        json.dump({"config": {}, "method": method, "seed": seed}, stream)
      with open(os.path.join(run_dir, "summary.json"), "w") as stream:
        json.dump(
            {
                "method": method,
                "setting": "transductive",
                "seed": seed,
                "source_test": {"accuracy": source},
                "target_test": {"accuracy": target},
            },
            stream,
        )
  return str(workdir)


def test_comparison_report_mean_and_std_match_numpy(tmp_path, experiment):
  rng = np.random.default_rng(1)
  first = fake_experiment(
      tmp_path / "first",
      {
          "dann": rng.uniform(0.5, 1.0, (3, 2)).tolist(),
          "source_only": rng.uniform(0.5, 1.0, (3, 2)).tolist(),
      },
  )
  second = fake_experiment(
      tmp_path / "second", {"dann": rng.uniform(0.5, 1.0, (2, 2)).tolist()}
  )
  # An unfinished run (no summary yet) is left out.
  unfinished = os.path.join(second, "dann", "seed_7")
  os.makedirs(unfinished)
  with open(os.path.join(unfinished, "run_config.json"), "w") as stream:
    json.dump({"config": {}, "method": "dann", "seed": 7}, stream)
  path = str(tmp_path / "comparison.md")
  markdown = report.experiment_report([first, second, experiment], path)
  assert open(path, encoding="utf-8").read() == markdown
  labels = ["first", "second", os.path.basename(experiment)]
  for header, key in (
      ("Target test acc (%)", "target_test"),
      ("Source test acc (%)", "source_test"),
  ):
    section = markdown.split(f"## {header}")[1]
    rows = table(section, "method")
    for label, workdir in zip(labels, (first, second, experiment)):
      for method in ("dann", "source_only"):
        values = (
            [
                read_json(os.path.join(workdir, method, seed, "summary.json"))[
                    key
                ]["accuracy"]
                for seed in sorted(os.listdir(os.path.join(workdir, method)))
                if os.path.isfile(
                    os.path.join(workdir, method, seed, "summary.json")
                )
            ]
            if os.path.isdir(os.path.join(workdir, method))
            else []
        )
        cell = rows[method][label]
        if not values:
          assert cell == ""
          continue
        mean, std, count = re.fullmatch(
            r"(\S+) ± (\S+) \((\d+)\)", cell
        ).groups()
        values = np.array(values)
        assert float(mean) == pytest.approx(100 * values.mean(), abs=0.05)
        expected_std = values.std(ddof=1) if values.size > 1 else 0.0
        assert float(std) == pytest.approx(100 * expected_std, abs=0.05)
        assert int(count) == values.size


def test_script_reports_experiments_and_writes_the_comparison(
    tmp_path, experiment, capsys
):
  script = load_module("scripts", "report.py")
  copy = str(tmp_path / "copy")
  shutil.copytree(
      experiment, copy, ignore=shutil.ignore_patterns("*.png", "report.md")
  )
  fake = fake_experiment(tmp_path / "fake", {"dann": [(0.9, 0.8)]})
  output = str(tmp_path / "comparison.md")
  assert (
      script.main([copy, fake, "--features", "none", "--output", output]) == 0
  )
  printed = capsys.readouterr().out
  with open(output, encoding="utf-8") as stream:
    comparison = stream.read()
  assert comparison in printed
  rows = table(comparison, "method")
  assert rows["dann"]["fake"] == "80.0 ± 0.0 (1)"  # the target test table
  for method in ("dann", "source_only"):
    run_dir = os.path.join(copy, method, "seed_0")
    assert os.path.isfile(os.path.join(run_dir, "report.md"))
    assert_valid_png(os.path.join(run_dir, "training_curves.png"))
    assert not os.path.exists(os.path.join(run_dir, "features.png"))
  assert os.path.isfile(os.path.join(copy, "report.md"))
  assert script.main([str(tmp_path / "nothing")]) == 2
  assert "not a run directory" in capsys.readouterr().err


def test_bad_inputs_are_errors_naming_the_argument(tmp_path, experiment):
  run_dir = os.path.join(experiment, "dann", "seed_0")
  png = str(tmp_path / "picture.png")
  empty = tmp_path / "empty_run"
  empty.mkdir()
  (empty / "metrics.jsonl").write_text("")
  unfinished = tmp_path / "unfinished" / "dann" / "seed_0"
  unfinished.mkdir(parents=True)
  (unfinished / "run_config.json").write_text(
      json.dumps({"config": {}, "method": "dann", "seed": 0})
  )
  cases = [
      (
          lambda: report.plot_training_curves(tmp_path / "missing", png),
          "run_dir",
      ),
      (lambda: report.plot_training_curves(empty, png), "run_dir .* no scalar"),
      (
          lambda: report.plot_training_curves(unfinished, png),
          "run_dir .* no metrics",
      ),
      (
          lambda: report.plot_training_curves(run_dir, str(tmp_path / "a.jpg")),
          "path",
      ),
      (
          lambda: report.plot_training_curves(
              run_dir, str(tmp_path / "no" / "a.png")
          ),
          "path",
      ),
      (lambda: report.plot_features(run_dir, png, method="umap"), "method"),
      (lambda: report.plot_features(run_dir, png, max_points=1), "max_points"),
      (lambda: report.plot_features(empty, png), "run_dir"),
      (lambda: report.plot_features(unfinished, png), "run_dir .* checkpoint"),
      (lambda: report.plot_weights([1.0, -1.0], png), "weights"),
      (
          lambda: report.plot_weights(
              np.ones(5), png, features=np.ones((4, 2))
          ),
          "features",
      ),
      (
          lambda: report.plot_ranking([1, 2, 3], [0.1, 0.2], png, ["a", "b"]),
          "scores",
      ),
      (lambda: report.plot_ranking([1, 2], [0.1, 0.2], png, ["a"]), "labels"),
      (lambda: report.run_report(unfinished), "run_dir .* summary.json"),
      (lambda: report.run_report(run_dir, features="umap"), "features"),
      (
          lambda: report.experiment_report([], str(tmp_path / "c.md")),
          "workdirs",
      ),
      (
          lambda: report.experiment_report([empty], str(tmp_path / "c.md")),
          r"workdirs\[0\]",
      ),
      (
          lambda: report.experiment_report(
              [experiment, experiment], str(tmp_path / "c.md")
          ),
          "twice",
      ),
      (lambda: report.report_experiment(tmp_path / "missing"), "workdir"),
      (lambda: report.plot_rank_sources(tmp_path), "results"),
  ]
  for call, message in cases:
    with pytest.raises(ValueError, match=message):
      call()


def test_tsne_report_keeps_the_pca_picture(experiment, tmp_path, monkeypatch):
  copy = str(tmp_path / "copy")
  shutil.copytree(experiment, copy, ignore=shutil.ignore_patterns("*.png"))
  run_dir = os.path.join(copy, "dann", "seed_0")
  drawn = []

  def plot_features(run_dir, path, *, method, **unused):
    # The projection itself is test_tsne_feature_picture's; here, which
    # file each one goes to.
    drawn.append((method, os.path.basename(path)))
    with open(path, "w", encoding="utf-8") as stream:
      stream.write(method)
    return path

  monkeypatch.setattr(report.reports, "plot_features", plot_features)
  monkeypatch.setattr(report.reports, "plot_training_curves", lambda *a: a[1])
  report.run_report(run_dir, features="pca")
  report.run_report(run_dir, features="tsne")
  assert drawn == [("pca", "features.png"), ("tsne", "features_tsne.png")]
  for name, method in (("features.png", "pca"), ("features_tsne.png", "tsne")):
    with open(os.path.join(run_dir, name), encoding="utf-8") as stream:
      assert stream.read() == method
  with open(os.path.join(run_dir, "report.md"), encoding="utf-8") as stream:
    markdown = stream.read()
  assert "### Features (PCA)" in markdown and "](features.png)" in markdown
  assert "### Features (t-SNE)" in markdown
  assert "](features_tsne.png)" in markdown


def test_relative_output_goes_under_the_experiment_dir(tmp_path, monkeypatch):
  fake = fake_experiment(tmp_path / "fake", {"dann": [(0.9, 0.8)]})
  elsewhere = tmp_path / "elsewhere"
  elsewhere.mkdir()
  monkeypatch.chdir(elsewhere)
  for output in ("comparison.md", os.path.join("compared", "c.md")):
    args = argparse.Namespace(
        workdirs=[fake], features="none", max_points=500, output=output
    )
    assert command_line.run(args, "tljax report") == 0
    assert os.path.isfile(os.path.join(fake, output))
  assert not os.listdir(elsewhere)
  absolute = str(tmp_path / "absolute.md")
  args = argparse.Namespace(
      workdirs=[fake], features="none", max_points=500, output=absolute
  )
  assert command_line.run(args, "tljax report") == 0
  assert os.path.isfile(absolute)
