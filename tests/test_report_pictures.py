"""What the pictures show, read back from the figures: synthetic runs, no training.

The training curves of a hand-written ``metrics.jsonl``: the loss split into
classification and λ × transfer term, no ``skipped_steps`` line while the
guard skipped nothing, every panel from the first logged step. The feature
picture's markers: one shape per domain, one colour per class.
"""

import json
import os

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgba_array
from matplotlib.figure import Figure

from tljax import report
from tljax.methods.registry import available_methods, method_defaults
from tljax.report import curves, features


def write_run(directory, records, method="jan", method_kwargs=None):
  """A run directory with ``run_config.json`` and ``metrics.jsonl`` only."""
  os.makedirs(directory)
  config = {"method": method, "method_kwargs": method_kwargs or {}}
  with open(os.path.join(directory, "run_config.json"), "w") as stream:
    json.dump({"config": config, "method": method, "seed": 0}, stream)
  with open(os.path.join(directory, "metrics.jsonl"), "w") as stream:
    for record in records:
      stream.write(json.dumps(record) + "\n")
  return str(directory)


def jan_records(trade_off, skipped=0):
  """JAN's logged metrics at steps 1, 50, 100, 150, 200 and evaluations every 100.

  The logged total is cross-entropy + λ × jmmd, as JAN's loss; the JMMD
  estimate is negative late in training, and so is the total.
  """
  rng = np.random.default_rng(0)
  records, cross_entropy = [], {}
  for step in (1, 50, 100, 150, 200):
    cross_entropy[step] = float(2.3 * np.exp(-step / 20) + 0.01)
    jmmd = float(0.3 - step / 400 + 0.01 * rng.normal())
    records.append(
        {
            "step": step,
            "loss": cross_entropy[step] + trade_off * jmmd,
            "jmmd": jmmd,
            "source_accuracy": min(1.0, 0.1 + step / 150),
            "skipped_steps": skipped,
            "grad_norm": 1.0 / step,
            "learning_rate": 0.01,
            "examples_per_second": 1000.0,
        }
    )
    if step in (1, 100, 200):
      records.append(
          {
              "step": step,
              "target_test/accuracy": 0.1 + step / 300,
              "target_test/loss": 2.0 * np.exp(-step / 20) + 0.1,
              "target_test/num_examples": 450,
          }
      )
  return records, cross_entropy


def panel(figure, title):
  (axis,) = [axis for axis in figure.axes if axis.get_title() == title]
  return {line.get_label(): line for line in axis.get_lines()}, axis


def test_loss_panel_splits_classification_and_weighted_transfer_term(tmp_path):
  trade_off = 0.3
  records, cross_entropy = jan_records(trade_off)
  run_dir = write_run(
      tmp_path / "jan", records, method_kwargs={"trade_off": trade_off}
  )
  figure = curves.training_curves_figure(run_dir)
  lines, axis = panel(figure, "loss terms")
  weighted = "λ × jmmd (λ = 0.3)"
  assert set(lines) >= {"loss (total)", "classification", weighted}
  assert "jmmd" not in lines  # drawn weighted, not raw
  steps = [record["step"] for record in records if "jmmd" in record]
  np.testing.assert_array_equal(lines["classification"].get_xdata(), steps)
  # loss − λ × jmmd is the cross-entropy the records were built from.
  np.testing.assert_allclose(
      lines["classification"].get_ydata(),
      [cross_entropy[step] for step in steps],
      rtol=1e-9,
  )
  np.testing.assert_allclose(
      lines[weighted].get_ydata(),
      [trade_off * record["jmmd"] for record in records if "jmmd" in record],
      rtol=1e-12,
  )
  # The total goes below zero, so zero is marked.
  assert min(lines["loss (total)"].get_ydata()) < 0
  assert any(list(line.get_ydata()) == [0.0, 0.0] for line in axis.get_lines())
  # The evaluation's cross-entropy stays, dashed.
  assert lines["target_test/loss"].get_linestyle() == "--"
  # Step 1's loss is ~20 times the late terms: linear within ±0.1 (the late
  # half's largest magnitude, 0.11, rounded down to a power of ten), log
  # beyond.
  assert axis.get_yscale() == "symlog"
  assert axis.yaxis.get_transform().linthresh == pytest.approx(0.1)


def test_loss_panel_stays_linear_when_nothing_dwarfs_the_rest(tmp_path):
  records = [
      {"step": step, "loss": 0.5 + 0.1 * np.sin(step), "jmmd": -0.1}
      for step in range(1, 200, 20)
  ]
  figure = curves.training_curves_figure(write_run(tmp_path / "jan", records))
  _, axis = panel(figure, "loss terms")
  assert axis.get_yscale() == "linear"


def test_recipe_default_trade_off_and_unsplit_recipes(tmp_path):
  records, cross_entropy = jan_records(1.0)
  figure = curves.training_curves_figure(write_run(tmp_path / "jan", records))
  lines, _ = panel(figure, "loss terms")
  assert "λ × jmmd (λ = 1)" in lines  # JAN's default λ
  np.testing.assert_allclose(
      lines["classification"].get_ydata(),
      list(cross_entropy.values()),
      rtol=1e-9,
  )
  # A recipe without a transfer term: the loss as logged, nothing derived.
  plain = [
      {key: value for key, value in record.items() if key != "jmmd"}
      for record in records
  ]
  figure = curves.training_curves_figure(
      write_run(tmp_path / "source_only", plain, method="source_only")
  )
  lines, _ = panel(figure, "loss terms")
  assert "classification" not in lines and "loss (total)" in lines


def test_mdd_disparity_is_subtracted():
  terms = curves.weighted_terms(
      "mdd", {"method": "mdd", "method_kwargs": {"trade_off": 0.5}}
  )
  series = {"loss": ([10], [1.0]), "disparity": ([10], [0.4])}
  split = curves.split_loss(series, terms)
  # MDD's loss is cross-entropy − λ × disparity: 1.0 = CE − 0.5 × 0.4.
  assert split["classification"] == ([10], [pytest.approx(1.2)])
  assert split["−λ × disparity (λ = 0.5)"] == ([10], [pytest.approx(-0.2)])
  # A baseline of the experiment trains with its recipe's defaults, not
  # the experiment method's method_kwargs.
  assert curves.weighted_terms(
      "dann", {"method": "mdd", "method_kwargs": {"trade_off": 0.5}}
  )[0] == ("domain_loss", 1.0, "λ × domain_loss (λ = 1)")


def test_loss_terms_name_registered_recipes_and_their_settings():
  for recipe, terms in curves.LOSS_TERMS.items():
    assert recipe in available_methods()
    for _, setting, sign in terms:
      assert setting is None or setting in method_defaults(recipe)
      assert sign in (1.0, -1.0)


def test_skipped_steps_only_when_the_guard_skipped(tmp_path):
  records, _ = jan_records(1.0)
  figure = curves.training_curves_figure(write_run(tmp_path / "none", records))
  titles = [axis.get_title() for axis in figure.axes if axis.get_visible()]
  assert "steps skipped by the divergence guard" not in titles
  assert all(
      "skipped_steps" not in line.get_label()
      for axis in figure.axes
      for line in axis.get_lines()
  )
  records, _ = jan_records(1.0, skipped=2)
  figure = curves.training_curves_figure(write_run(tmp_path / "two", records))
  lines, _ = panel(figure, "steps skipped by the divergence guard")
  assert set(lines) == {"skipped_steps"}
  loss_lines, _ = panel(figure, "loss terms")
  assert "skipped_steps" not in loss_lines


def test_every_panel_starts_at_the_first_logged_step(tmp_path):
  records, _ = jan_records(1.0)
  records = [record for record in records if record["step"] >= 50]
  figure = curves.training_curves_figure(write_run(tmp_path / "jan", records))
  for axis in figure.axes:
    if not axis.get_visible():
      continue
    left, right = axis.get_xlim()
    assert 40 < left < 50 and 200 < right < 210
  # Logged from step 1, the curves and the evaluations start there.
  records, _ = jan_records(1.0)
  figure = curves.training_curves_figure(write_run(tmp_path / "one", records))
  lines, axis = panel(figure, "accuracy")
  assert lines["source_accuracy"].get_xdata()[0] == 1
  assert lines["target_test/accuracy"].get_xdata()[0] == 1
  assert axis.get_xlim()[0] < 1


def test_feature_markers_tell_domains_and_classes_apart():
  rng = np.random.default_rng(0)
  num_classes = 10
  labels = np.tile(np.arange(num_classes), 6)
  domain = np.array(["source"] * 30 + ["target"] * 30)
  points = rng.normal(size=(60, 2))
  figure = Figure()
  FigureCanvasAgg(figure)
  axis = figure.subplots()
  features._draw(axis, points, domain, labels, num_classes)
  source, target = axis.collections
  # Two shapes: a filled disc (a closed path) and a cross (open strokes).
  source_path, target_path = (
      collection.get_paths()[0] for collection in (source, target)
  )
  assert not np.array_equal(source_path.vertices, target_path.vertices)
  assert target.get_linewidths()[0] > 0
  # Each point's colour is its class's; the class colours are far apart.
  colours = features.class_colours(num_classes)
  np.testing.assert_allclose(
      source.get_facecolors()[:, :3], colours[labels[:30], :3]
  )
  np.testing.assert_allclose(
      target.get_facecolors()[:, :3], colours[labels[30:], :3]
  )
  distances = np.linalg.norm(
      colours[:, None, :3] - colours[None, :, :3], axis=-1
  )
  assert distances[~np.eye(num_classes, dtype=bool)].min() > 0.1
  handles = features._legend_handles(num_classes)
  assert [handle.get_label() for handle in handles] == [
      "source test",
      "target test",
  ] + [f"class {label}" for label in range(num_classes)]
  # Many classes: one colour each still, no legend of 100 entries.
  many = features.class_colours(100)
  assert len(np.unique(many, axis=0)) == 100
  assert len(features._legend_handles(100)) == 2
  assert to_rgba_array(features.class_colours(15)).shape == (15, 4)


def test_training_curves_picture_of_a_synthetic_run(tmp_path):
  records, _ = jan_records(0.3)
  run_dir = write_run(tmp_path / "jan", records)
  path = report.plot_training_curves(run_dir, str(tmp_path / "curves.png"))
  assert os.path.getsize(path) > 5_000
