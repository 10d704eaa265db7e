"""The ``tljax`` command from a plain (non-editable) wheel install, in an empty directory.

The checkout is built into a wheel once, installed with ``--no-deps
--no-index`` into a fresh virtual environment, and every subcommand runs from
an empty temporary directory with the packaged default configs. The fresh
environment sees the test environment's packages (jax, flax, ...) but not its
tljax: ``--system-site-packages`` covers a test environment that is the
system Python, and a ``.pth`` file lists the test environment's
site-packages (which ``--system-site-packages`` does not reach when the tests
run in a virtual environment); a ``.pth`` line adds a directory without
running that directory's own ``.pth`` files, so an editable install of tljax
there stays out, and the test checks that ``tljax`` is imported from the
wheel.
"""

import json
import os
import shutil
import site
import subprocess
import sys
import textwrap

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# What the wheel is built from (build/ and *.egg-info in the checkout are
# left out: a stale build/lib would leak into the wheel).
SOURCES = ("pyproject.toml", "setup.py", "README.md", "tljax", "configs")
TINY = (
    "--set",
    "steps=6",
    "--set",
    "batch_size=32",
    "--set",
    "seeds=(0,)",
    "--set",
    "baselines=()",
    "--set",
    "progress_bar=false",
    "--set",
    "checkpoint_every=6",
    "--set",
    "log_every=3",
)


def run(command, **kwargs):
  return subprocess.run(
      command,
      capture_output=True,
      text=True,
      check=False,
      timeout=300,
      **kwargs,
  )


def build_wheel(directory) -> str:
  """The checkout's wheel, built without build isolation (no network)."""
  try:
    import setuptools  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
  except ImportError:
    pytest.fail(
        "tests/test_install.py builds tljax's wheel without build "
        "isolation and needs setuptools in the test environment: "
        "pip install -e '.[test]'"
    )
  source = directory / "source"
  for name in SOURCES:
    path = os.path.join(REPO, name)
    if os.path.isdir(path):
      shutil.copytree(
          path,
          source / name,
          ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
      )
    else:
      source.mkdir(exist_ok=True)
      shutil.copy(path, source / name)
  wheels = directory / "wheels"
  completed = run(
      [
          sys.executable,
          "-m",
          "pip",
          "wheel",
          "--no-deps",
          "--no-build-isolation",
          "--no-index",
          "-w",
          str(wheels),
          str(source),
      ]
  )
  assert completed.returncode == 0, completed.stdout + completed.stderr
  (wheel,) = wheels.glob("tljax-*.whl")
  return str(wheel)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
  """``(bin dir, environment, empty working dir)`` of a fresh wheel install."""
  directory = tmp_path_factory.mktemp("install")
  wheel = build_wheel(directory)
  venv = directory / "venv"
  completed = run(
      [
          sys.executable,
          "-m",
          "venv",
          "--system-site-packages",
          "--without-pip",
          str(venv),
      ]
  )
  assert completed.returncode == 0, completed.stderr
  python = str(venv / "bin" / "python")
  venv_site = run(
      [
          python,
          "-c",
          "import sysconfig; " "print(sysconfig.get_paths()['purelib'])",
      ]
  ).stdout.strip()
  outer = [
      path
      for path in site.getsitepackages() + [site.getusersitepackages()]
      if os.path.isdir(path)
  ]
  with open(
      os.path.join(venv_site, "test_environment.pth"), "w", encoding="utf-8"
  ) as stream:
    stream.write("\n".join(outer) + "\n")
  environment = {
      key: value
      for key, value in os.environ.items()
      if key not in ("PYTHONPATH", "PYTHONHOME")
  }
  environment["TLJAX_DATA_DIR"] = str(directory / "data")
  # The test environment's pip, run by the new interpreter, installs there;
  # --ignore-installed: the test environment's tljax is neither seen as
  # satisfying the wheel nor uninstalled.
  completed = run(
      [
          python,
          "-m",
          "pip",
          "install",
          "--no-deps",
          "--no-index",
          "--ignore-installed",
          "--no-compile",
          wheel,
      ],
      env=environment,
  )
  assert completed.returncode == 0, completed.stdout + completed.stderr
  empty = directory / "empty"
  empty.mkdir()
  # The configs import as modules of the package, too (big_vision style),
  # and the bundled digits are prepared by the installed TFDS builders.
  completed = run(
      [
          python,
          "-c",
          textwrap.dedent("""
      import tljax
      from tljax.configs import digits, moons, unsupervised
      from tljax.data import get_source
      assert moons.get_config("method=jan").method == "jan"
      assert len(get_source("uci_digits", "test")) == 450
      print(tljax.__file__, moons.__file__)
      """),
      ],
      cwd=empty,
      env=environment,
  )
  assert completed.returncode == 0, completed.stderr
  # The last line (TFDS reports its preparation before it).
  for path in completed.stdout.strip().splitlines()[-1].split():
    assert path.startswith(
        venv_site
    ), f"tljax imported from {path}, not from the wheel in {venv_site}"
  return str(venv / "bin"), environment, empty


def tljax(installed, *arguments):
  bin_dir, environment, empty = installed
  completed = run(
      [os.path.join(bin_dir, "tljax"), *arguments], cwd=empty, env=environment
  )
  assert not os.listdir(empty), "the command wrote into its working directory"
  return completed


def test_help_and_the_packaged_configs(installed):
  # Four quick commands, run side by side (each spends its time importing).
  bin_dir, environment, empty = installed
  commands = {
      "help": ["--help"],
      "rank_help": ["rank-sources", "--help"],
      # No --config: the packaged digits.py is loaded (and its unknown-key
      # error names the key, so nothing trains).
      "default": ["train", "--set", "no.such=1"],
      "missing": ["sweep", "--config", "configs/nope.py"],
  }
  processes = {
      name: subprocess.Popen(
          [os.path.join(bin_dir, "tljax"), *arguments],
          cwd=empty,
          env=environment,
          stdout=subprocess.PIPE,
          stderr=subprocess.PIPE,
          text=True,
      )
      for name, arguments in commands.items()
  }
  results = {}
  for name, process in processes.items():
    out, err = process.communicate(timeout=300)
    results[name] = (process.returncode, out, err)
  status, out, err = results["help"]
  assert status == 0 and out.startswith("usage: tljax"), err
  for command in ("train", "report", "rank-sources", "sweep"):
    assert command in out
  status, out, err = results["rank_help"]
  assert status == 0 and out.startswith("usage: tljax rank-sources"), err
  status, _, err = results["default"]
  assert status == 2 and "'no.such' is unknown" in err, err
  status, _, err = results["missing"]
  assert status == 2
  (line,) = err.strip().splitlines()
  assert "'configs/nope.py'" in line and "configs/moons.py" in line, line
  assert not os.listdir(empty)


def test_train_report_sweep_and_rank_sources(installed, tmp_path):
  workdir = tmp_path / "moons"
  completed = tljax(
      installed,
      "train",
      "--config",
      "configs/moons.py:method=source_only",
      *TINY,
      "--workdir",
      str(workdir),
      "--noreport",
  )
  assert completed.returncode == 0, completed.stderr[-3000:]
  assert "| source_only | transductive |" in completed.stdout
  run_dir = workdir / "source_only" / "seed_0"
  assert json.loads((run_dir / "summary.json").read_text())["steps"] == 6

  completed = tljax(installed, "report", str(workdir), "--features", "none")
  assert completed.returncode == 0, completed.stderr[-3000:]
  assert (workdir / "report.md").is_file()

  sweep = tmp_path / "sweep"
  completed = tljax(
      installed,
      "sweep",
      "--config",
      "moons.py",
      *TINY,
      "--set",
      "sweep.learning_rates=(1e-3, 3e-3)",
      "--workdir",
      str(sweep),
  )
  assert completed.returncode == 0, completed.stderr[-3000:]
  members = json.loads((sweep / "sweep.json").read_text())["members"]
  assert len(members) == 2

  ranked = tmp_path / "ranked"
  completed = tljax(
      installed,
      "rank-sources",
      "--sources",
      str(run_dir),
      "--target",
      "two_moons",
      "--labels_per_class",
      "8",
      "--scores",
      "logme,leep,h_score",
      "--workdir",
      str(ranked),
  )
  assert completed.returncode == 0, completed.stderr[-3000:]
  markdown = (ranked / "rank_sources.md").read_text(encoding="utf-8")
  assert "| moons |" in markdown and markdown in completed.stdout
