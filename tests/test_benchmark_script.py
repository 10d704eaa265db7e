"""scripts/benchmark.py (and its sections in scripts/benchmarks/) at toy size, JAX
parts only; its NumPy LogME against tljax's."""

import importlib
import importlib.util
import os
import sys
import types

import numpy as np
import pytest

from tljax import select

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def benchmark():
  name = "tljax_benchmark_script"
  spec = importlib.util.spec_from_file_location(
      name, os.path.join(REPO, "scripts", "benchmark.py")
  )
  module = importlib.util.module_from_spec(spec)
  sys.modules[name] = module  # dataclasses look their module up
  try:
    spec.loader.exec_module(module)
    yield module
  finally:
    sys.modules.pop(name, None)


@pytest.fixture(scope="module")
def parts(benchmark):
  """The section modules of scripts/benchmarks/ (importable once benchmark.py,
  which puts scripts/ on the path, is loaded)."""
  return types.SimpleNamespace(
      **{
          name: importlib.import_module(f"benchmarks.{name}")
          for name in ("common", "logme", "reweight")
      }
  )


def _tables(report):
  """The markdown tables of ``report``: lists of rows, each a list of cells."""
  tables, current = [], []
  for line in report.splitlines() + [""]:
    if line.startswith("|"):
      current.append(
          [cell.strip() for cell in line.strip().strip("|").split(" | ")]
      )
    elif current:
      tables.append(current)
      current = []
  return tables


def test_numpy_logme_matches_tljax(parts):
  rng = np.random.default_rng(0)
  n, dim, classes = 400, 24, 6
  labels = rng.integers(0, classes, n)
  structured = rng.standard_normal((classes, dim))[labels] + 2.0 * (
      rng.standard_normal((n, dim))
  )
  noise = 3.0 * rng.standard_normal((n, dim))  # no class structure at all
  for features in (structured, noise):
    features = features.astype(np.float32)
    ours = float(select.logme(features, labels))
    reference = parts.logme.logme_numpy(features, labels)
    assert abs(ours - reference) <= 1e-4, (ours, reference)


def test_loglog_slope_recovers_the_exponent(parts):
  sizes = [100, 200, 400, 800]
  assert parts.common.loglog_slope(sizes, [3e-6 * n**2 for n in sizes]) == (
      pytest.approx(2.0)
  )
  assert parts.common.loglog_slope([100], [1.0]) is None


@pytest.fixture
def cheap_random_init():
  """The RBG PRNG for one test: initialising LeNet then compiles 4× faster."""
  import jax

  previous = jax.config.jax_default_prng_impl
  jax.config.update("jax_default_prng_impl", "rbg")
  try:
    yield
  finally:
    jax.config.update("jax_default_prng_impl", previous)


def test_pure_jax_sections_at_toy_size_without_torch(
    benchmark, parts, tmp_path, monkeypatch, cheap_random_init
):
  # As if torch and adapt were not installed.
  monkeypatch.setattr(benchmark, "import_torch", lambda: None)
  monkeypatch.setattr(benchmark, "find_adapt", lambda: False)
  output = tmp_path / "benchmarks.md"
  benchmark.main(
      [
          "--sections",
          "dann,resnet,mmd,logme",
          "--output",
          str(output),
          "--note",
          "toy run",
          "--image_sizes",
          "8",
          "--batch_sizes",
          "4",
          "--warmup",
          "2",
          "--steps",
          "5",
          "--round_seconds",
          "0",
          "--rounds",
          "1",
          "--repeats",
          "1",
          "--mmd_sizes",
          "8",
          "--mmd_dim",
          "4",
          "--logme_sizes",
          "40",
          "--logme_dim",
          "4",
          "--logme_classes",
          "3",
      ]
  )
  report = output.read_text()
  assert report.startswith("# tljax benchmarks")
  assert "**Note:** toy run" in report
  assert "- CPU: " in report and "PyTorch: not installed" in report
  for title in (
      "## DANN training step: LeNet",
      "## DANN training step: ResNet-50",
      "## MK-MMD loss and gradient",
      "## LogME next to a NumPy LogME",
  ):
    assert title in report
  assert "## Compile time" not in report  # not asked for
  tables = _tables(report)
  assert len(tables) == 4  # dann, mmd, logme and its slopes; resnet not run
  for table in tables:
    header, separator, *rows = table
    assert separator == ["---"] * len(header)
    assert rows
    assert all(len(row) == len(header) for row in rows), table
  dann, mmd, logme, slopes = tables
  by_name = {row[2]: row for row in dann[2:]}
  tljax_row = by_name["tljax (jit, donated)"]
  assert tljax_row[3] == "5 × 1"  # the least timed steps (round_seconds 0)
  steps_per_second = float(tljax_row[4].replace(",", ""))
  assert steps_per_second > 0
  # images/s = steps/s x (4 + 4), to the printed precision.
  assert float(tljax_row[5].replace(",", "")) == pytest.approx(
      8 * steps_per_second, rel=0.01
  )
  # The same step with XLA's convolutions: tljax's images/s over its own.
  xla_rate = float(by_name[parts.common.XLA_CONV_ROW][5].replace(",", ""))
  assert float(
      by_name[parts.common.XLA_CONV_ROW][6].rstrip("×")
  ) == pytest.approx(float(tljax_row[5].replace(",", "")) / xla_rate, rel=0.02)
  assert (
      by_name["PyTorch eager (TLlib style)"][6] == "n/a (torch not installed)"
  )
  assert "n/a (torch not installed)" in mmd[-1][-1]
  assert [row[0] for row in logme[2:]] == ["40"]
  assert all(float(row[5]) <= 1e-4 for row in logme[2:])  # |score difference|
  assert slopes[2:] == [["tljax (warm)", "n/a"], ["NumPy", "n/a"]]  # one size
  assert "Not run: JAX's device is cpu" in report


def test_adapt_worker_reports_a_missing_adapt(benchmark, parts):
  if benchmark.find_adapt():
    pytest.skip("adapt is installed here; its worker would import TensorFlow")
  times, reason = parts.reweight.run_adapt_worker(20, 2)
  assert times == {}
  assert "adapt" in reason


def test_one_section_run_replaces_only_that_section_of_the_page(
    benchmark, tmp_path, monkeypatch
):
  # Without torch the features section is a "Not run" paragraph: no model.
  monkeypatch.setattr(benchmark, "import_torch", lambda: None)
  page = (
      "# tljax benchmarks\n\nGenerated by `scripts/benchmark.py`.\n\n"
      "## LogME next to a NumPy LogME\n\nlogme text\n\n\n"
      "## Feature extraction: a converted timm resnet50 next to timm's own "
      "(CPU)\n\nold figures\n\n"
      "## Image input pipeline\n\nhand-written\n"
  )
  output = tmp_path / "benchmarks.md"
  output.write_text(page)
  argv = ["--sections", "features", "--output", str(output)]
  benchmark.main(argv)
  report = output.read_text()
  before, after = page.split("old figures\n\n")
  head = before.rsplit("\n\n", 1)[0]  # up to the section's title
  assert report.startswith(head + "\n\nMeasured on its own on ")
  assert report.endswith("\n\n## Image input pipeline\n\nhand-written\n")
  assert "old figures" not in report
  assert "Not run: the converted model is timm's own resnet50" in report
  assert "torch not installed" in report
  # A section the page lacks is appended; the page keeps the rest.
  output.write_text(page.split("## Feature")[0].rstrip("\n") + "\n")
  benchmark.main(argv)
  report = output.read_text()
  assert report.startswith(
      page.split("## Feature")[0].rstrip("\n") + "\n\n## Feature extraction"
  )
  assert report.count("## ") == 2 and report.endswith("torch and timm.\n")
