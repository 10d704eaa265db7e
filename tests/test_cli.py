"""The ``tljax`` command: help texts, config overrides, train and report end to end."""

import json
import os
import re
import subprocess
import sys
import tomllib

import pytest
from ml_collections import ConfigDict

from tljax import cli
from tljax.config import base_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_main(argv, capsys):
  """``cli.main(argv)``'s exit status (argparse's ``--help`` exits) and output."""
  try:
    status = cli.main(argv)
  except SystemExit as exit_:
    status = exit_.code
  captured = capsys.readouterr()
  return status, captured.out, captured.err


@pytest.mark.parametrize(
    "command, options",
    [
        (
            "train",
            ("--config", "--set", "--workdir", "--noreport", "examples:"),
        ),
        (
            "report",
            ("WORKDIR", "--output", "--features", "--max_points", "examples:"),
        ),
        (
            "sweep",
            (
                "--config",
                "--set",
                "--workdir",
                "sweep.learning_rates",
                "examples:",
            ),
        ),
    ],
)
def test_command_help_exits_0_and_names_its_options(command, options, capsys):
  status, out, _ = run_main([command, "--help"], capsys)
  assert status == 0
  assert out.startswith(f"usage: tljax {command}")
  for option in options:
    assert option in out


def test_top_level_help_lists_every_command(capsys):
  status, out, _ = run_main(["--help"], capsys)
  assert status == 0
  for command in ("train", "report", "rank-sources", "sweep"):
    assert re.search(rf"^\s+{command}\b", out, flags=re.M), command


def test_rank_sources_help_names_its_flags_and_scores(capsys):
  status, out, _ = run_main(["rank-sources", "--help"], capsys)
  assert status == 0
  assert out.startswith("usage: tljax rank-sources")
  for flag in (
      "--sources",
      "--names",
      "--target",
      "--labels_per_class",
      "--validation_per_class",
      "--seeds",
      "--features",
      "--scores",
      "--verify",
      "--noverify",
      "--methods",
      "--learning_rates",
      "--steps",
      "--batch_size",
      "--workdir",
      "--data_dir",
      "--output",
      "examples:",
  ):
    assert flag in out, flag
  for score in (
      "logme",
      "leep",
      "nce",
      "h_score",
      "shrinkage_h_score",
      "gbc",
      "transrate",
  ):
    assert score in out, score


def test_rank_sources_flags_are_checked_naming_them(capsys):
  status, _, err = run_main(
      ["rank-sources", "--seeds", "0,x", "--sources", "a"], capsys
  )
  assert status == 2 and "--seeds" in err
  status, _, err = run_main(["rank-sources", "--labels_per_class", "3"], capsys)
  assert status == 2 and "--sources" in err


def test_python_dash_m_tljax_is_the_command():
  completed = subprocess.run(
      [sys.executable, "-m", "tljax", "--help"],
      capture_output=True,
      text=True,
      check=False,
  )
  assert completed.returncode == 0, completed.stderr
  assert completed.stdout.startswith("usage: tljax")


def test_console_script_points_at_main():
  with open(os.path.join(REPO, "pyproject.toml"), "rb") as stream:
    project = tomllib.load(stream)["project"]
  assert project["scripts"] == {"tljax": "tljax.cli:main"}
  assert any(
      requirement.startswith("tensorboardX")
      for requirement in project["dependencies"]
  )


def test_overrides_take_the_type_of_the_field():
  config = base_config()
  for item in (
      "seeds=(0,)",
      "baselines=()",
      "steps=10",
      "optimizer.learning_rate=1",
      "progress_bar=false",
      "data_dir=/tmp/data",
      "target.labels_per_class=5",
      "method_kwargs.blocks=('backbone/a/.*', 'backbone/b/.*')",
      "method_kwargs.trade_off=0.3",
      "trainable_rules=(('head/.*', 1.0), ('.*', None))",
      "model.hidden_dims=(32, 32)",
  ):
    cli.apply_override(config, item)
  assert config.seeds == (0,) and config.baselines == ()
  assert config.steps == 10 and isinstance(config.steps, int)
  assert config.optimizer.learning_rate == 1.0
  assert isinstance(config.optimizer.learning_rate, float)
  assert config.progress_bar is False
  assert config.data_dir == "/tmp/data"
  assert config.target.labels_per_class == 5
  # method_kwargs is free-form: a new key takes the literal's type.
  assert config.method_kwargs.blocks == ("backbone/a/.*", "backbone/b/.*")
  assert config.method_kwargs.trade_off == 0.3
  assert config.trainable_rules == (("head/.*", 1.0), (".*", None))
  assert config.model.hidden_dims == (32, 32)  # a new free-form key


@pytest.mark.parametrize(
    "item, message",
    [
        ("no.such=1", "config key 'no.such' is unknown"),
        ("optimizer.learning_rate.x=1", "is a value, not a group"),
        ("steps=abc", "config key 'steps' takes a value of type int"),
        (
            "progress_bar=maybe",
            "config key 'progress_bar' takes a value of type bool",
        ),
        ("optimizer=sgd", "config key 'optimizer' is a group"),
        ("steps", "must look like key=value"),
    ],
)
def test_bad_overrides_are_errors_naming_the_key(item, message):
  with pytest.raises(cli.CommandError, match=re.escape(message)):
    cli.apply_override(base_config(), item)


def test_train_with_an_unknown_key_fails_naming_it(capsys, tmp_path):
  status, _, err = run_main(
      ["train", "--config", "configs/moons.py", "--set", "no.such=1"], capsys
  )
  assert status == 2
  assert "tljax train: error:" in err and "'no.such'" in err
  # An unknown key inside a known group: check_config's message.
  status, _, err = run_main(
      ["train", "--config", "configs/moons.py", "--set", "optimizer.lr=1"],
      capsys,
  )
  assert status == 2 and "'optimizer.lr' is unknown" in err
  # Values checked where they are used (the model's options, the optimizer's
  # settings) are one-line errors too, not tracebacks.
  for item, message in (
      ("model.no_such_option=1", "no_such_option"),
      ("optimizer.name=bogus", "optimizer.name 'bogus'"),
  ):
    workdir = tmp_path / item.split("=")[0]
    status, _, err = run_main(
        [
            "train",
            "--config",
            "configs/moons.py",
            "--set",
            item,
            "--set",
            "steps=2",
            "--workdir",
            str(workdir),
        ],
        capsys,
    )
    assert status == 2, err
    assert "tljax train: error:" in err and message in err
    assert "Traceback" not in err
    # No run was claimed there: the corrected config can use the work dir.
    assert not list(workdir.glob("*/seed_*/run_config.json"))


def test_config_argument_and_missing_config_are_errors(capsys, tmp_path):
  status, _, err = run_main(
      ["train", "--config", "configs/moons.py:bogus=1"], capsys
  )
  assert status == 2 and "'bogus'" in err
  status, _, err = run_main(
      ["train", "--config", str(tmp_path / "missing.py")], capsys
  )
  assert status == 2 and "not found" in err


def test_configs_resolve_in_the_cwd_then_in_the_package(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)  # no configs/ here: the packaged ones
  assert cli.available_configs() == [
      "digits.py",
      "images.py",
      "mnist_m.py",
      "moons.py",
      "unsupervised.py",
  ]
  assert cli.load_config_file("configs/moons.py:method=jan").method == "jan"
  assert cli.load_config_file("moons.py").method == "dann"
  assert cli.load_config_file(None).model.name == "lenet"  # digits.py
  with pytest.raises(cli.CommandError) as error:
    cli.load_config_file("configs/nope.py")
  assert "--config 'configs/nope.py'" in str(error.value)
  assert "'configs/moons.py'" in str(error.value)
  # A file in the current directory comes first.
  (tmp_path / "configs").mkdir()
  (tmp_path / "configs" / "moons.py").write_text(
      "from tljax.config import base_config\n"
      "def get_config(arg=None):\n"
      "  config = base_config()\n"
      "  config.method = 'jan'\n"
      "  return config\n",
      encoding="utf-8",
  )
  assert cli.load_config_file("configs/moons.py").method == "jan"


def test_config_argument_is_passed_to_get_config():
  config = cli.load_config(
      "configs/moons.py:method=jan,rotation=50", ["steps=7"]
  )
  assert isinstance(config, ConfigDict)
  assert config.method == "jan" and config.steps == 7
  assert config.target.kwargs.rotation_degrees == 50.0


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """``python -m tljax.cli train`` on moons, run from outside the repository."""
  directory = tmp_path_factory.mktemp("cli")
  workdir = str(directory / "moons")
  completed = subprocess.run(
      [
          sys.executable,
          "-m",
          "tljax.cli",
          "train",
          "--config",
          "configs/moons.py",
          "--workdir",
          workdir,
          "--set",
          "steps=10",
          "--set",
          "batch_size=32",
          "--set",
          "seeds=(0,)",
          "--set",
          "baselines=()",
          "--set",
          "progress_bar=false",
          "--set",
          "checkpoint_every=10",
          "--noreport",
      ],
      capture_output=True,
      text=True,
      cwd=str(directory),
      check=False,
  )
  assert completed.returncode == 0, completed.stderr[-3000:]
  return workdir, completed.stdout


def test_train_writes_results_matching_its_runs(trained):
  workdir, out = trained
  with open(os.path.join(workdir, "results.json"), encoding="utf-8") as stream:
    results = json.load(stream)
  (row,) = results["table"]
  assert row["method"] == "dann" and row["seeds"] == 1
  run_dir = os.path.join(workdir, "dann", "seed_0")
  with open(os.path.join(run_dir, "summary.json"), encoding="utf-8") as stream:
    summary = json.load(stream)
  with open(
      os.path.join(run_dir, "run_config.json"), encoding="utf-8"
  ) as stream:
    run_config = json.load(stream)["config"]
  # The overrides reached the run.
  assert summary["steps"] == 10
  assert run_config["batch_size"] == 32 and run_config["seeds"] == [0]
  assert run_config["baselines"] == []
  target = summary["target_test"]["accuracy"]
  assert 0.0 <= target <= 1.0
  assert row["target_test_accuracy_mean"] == pytest.approx(target)
  # The printed table is results.md's.
  with open(os.path.join(workdir, "results.md"), encoding="utf-8") as stream:
    table = stream.read().strip()
  assert table in out
  assert "| dann | transductive |" in out and f"{100 * target:.1f} ± 0.0" in out
  assert not os.path.exists(os.path.join(workdir, "report.md"))  # --noreport


def test_report_writes_the_experiment_report(trained, capsys):
  workdir, _ = trained
  status, _, err = run_main(["report", workdir], capsys)
  assert status == 0, err
  assert os.path.isfile(os.path.join(workdir, "report.md"))
  assert os.path.isfile(os.path.join(workdir, "dann", "seed_0", "report.md"))
  status, _, err = run_main(
      ["report", os.path.join(workdir, "nothing")], capsys
  )
  assert status == 2 and "tljax report: error:" in err
