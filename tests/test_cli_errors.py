"""Everyday mistakes on the ``tljax`` command line: one line, the right exit status.

A work dir that is a file or cannot be written, a source given options its
config wrote for another source, ``--set seeds=3``, big_vision's
``--config.key=value`` and a typo in a config key, a recipe's name or
setting, or a model's name are each one line with exit status 2, said before
anything trains (all but the source's options before JAX is imported);
Ctrl-C during training saves the step and says so, status 130.
"""

import os
import re
import signal
import subprocess
import sys

import pytest

from tljax import cli
from tljax import data
from tljax import methods
from tljax import models
from tljax.cli import registered
from tljax.methods import registry as method_registry
from tljax.models.functional import _REGISTRY as model_registry
from tljax.train import interrupt
from tljax.train import loop

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# One small run of configs/moons.py: one seed, no baselines, no bar.
SMALL = [
    "--config",
    "configs/moons.py:seeds=1",
    "--set",
    "baselines=()",
    "--set",
    "progress_bar=false",
    "--set",
    "eval_every=0",
    "--noreport",
]


def run_main(argv, capsys):
  """``cli.main(argv)``'s exit status (argparse's errors exit) and stderr."""
  try:
    status = cli.main(argv)
  except SystemExit as exit_:
    status = exit_.code
  return status, capsys.readouterr().err


def assert_one_line(err, *parts):
  lines = err.strip().splitlines()
  assert len(lines) == 1 and "Traceback" not in err, err
  for part in parts:
    assert part in lines[0], (part, lines[0])


@pytest.mark.parametrize("command", ["train", "sweep", "rank-sources"])
def test_a_work_dir_that_is_a_file_is_refused_at_once(
    command, tmp_path, capsys
):
  afile = tmp_path / "results.txt"
  afile.write_text("not a directory", encoding="utf-8")
  arguments = {
      "train": SMALL,
      "sweep": SMALL[:-1],  # no --noreport
      "rank-sources": ["--sources", "a"],
  }[command]
  for workdir in (afile, afile / "below"):
    status, err = run_main(
        [command, *arguments, "--workdir", str(workdir)], capsys
    )
    assert status == 2
    assert_one_line(
        err, f"tljax {command}: error: --workdir", f"{afile} is a file"
    )
  assert afile.read_text(encoding="utf-8") == "not a directory"


def test_a_work_dir_that_cannot_be_written_is_refused_at_once(
    tmp_path, capsys, monkeypatch
):
  locked = tmp_path / "locked"
  locked.mkdir()
  access = os.access
  # Root writes anywhere whatever the mode bits: the answer of access(2) for
  # a directory without write permission, for this directory only.
  monkeypatch.setattr(
      os,
      "access",
      lambda path, mode: (
          False if str(path) == str(locked) else access(path, mode)
      ),
  )
  for workdir in (locked, locked / "new" / "experiment"):
    status, err = run_main(["train", *SMALL, "--workdir", str(workdir)], capsys)
    assert status == 2
    assert_one_line(
        err,
        "tljax train: error: --workdir",
        f"permission denied: {locked} cannot be written",
    )
  assert not list(locked.iterdir())  # nothing made


def test_source_options_written_for_another_source_are_one_line(
    tmp_path, capsys, data_dir
):
  # configs/moons.py gives its target two_moons options; tfds:uci_digits
  # (prepared here) takes none of them.
  data.get_source("uci_digits", "test", data_dir=data_dir)
  capsys.readouterr()  # what preparing it printed
  argv = [
      "train",
      *SMALL,
      "--set",
      f"data_dir={data_dir}",
      "--set",
      "target.name=tfds:uci_digits",
      "--workdir",
      str(tmp_path / "w"),
  ]
  status, err = run_main(argv, capsys)
  assert status == 2
  assert_one_line(
      err,
      "tljax train: error: config key 'target.kwargs.num_examples': "
      "'tfds:uci_digits' takes no option 'num_examples'",
      "--set target.kwargs={}",
  )
  # Cleared, they are no longer in the way: the next error is the next
  # mistake (two-moons points and 8x8 digits cannot share a model).
  status, err = run_main([*argv, "--set", "target.kwargs={}"], capsys)
  assert status == 2
  assert_one_line(err, "source and target inputs differ in shape")
  # A misspelt option of the right source: the same line names it.
  status, err = run_main(
      [
          "train",
          *SMALL,
          "--set",
          "target.kwargs.rotation_degree=10",
          "--workdir",
          str(tmp_path / "typo"),
      ],
      capsys,
  )
  assert status == 2
  assert_one_line(
      err,
      "config key 'target.kwargs.rotation_degree': 'two_moons' takes no "
      "option 'rotation_degree'",
  )


def test_a_free_form_group_is_replaced_whole_by_a_dict():
  config = cli.load_config("configs/moons.py", ["target.kwargs={'seed': 3}"])
  assert config.target.kwargs.to_dict() == {"seed": 3}
  assert config.source.kwargs.to_dict() == {"num_examples": 1000}
  with pytest.raises(cli.CommandError, match="'optimizer' is a group"):
    cli.load_config("configs/moons.py", ["optimizer={}"])


def test_ctrl_c_in_training_saves_the_step_and_says_so(
    tmp_path, capsys, monkeypatch
):
  batches = loop.training_batches

  def batches_with_a_ctrl_c(*args, **kwargs):
    for batch in batches(*args, **kwargs):
      if int(batch["step"]) == 5:
        os.kill(os.getpid(), signal.SIGINT)
      yield batch

  monkeypatch.setattr(loop, "training_batches", batches_with_a_ctrl_c)
  workdir = tmp_path / "moons"
  # Python's own handler, whatever pytest was started with (a background
  # job of a non-interactive shell starts with SIGINT ignored).
  found = signal.signal(signal.SIGINT, signal.default_int_handler)
  try:
    status, err = run_main(
        [
            "train",
            *SMALL,
            # The quickest recipe to compile.
            "--config",
            "configs/moons.py:method=source_only,seeds=1",
            "--set",
            "steps=200",
            "--set",
            "checkpoint_every=1000",
            "--workdir",
            str(workdir),
        ],
        capsys,
    )
  finally:
    signal.signal(signal.SIGINT, found)
  assert status == 130 == cli.INTERRUPTED_STATUS
  # Batches are drawn ahead of the step that trains on them: the signal
  # came at or before step 5, and the step it came in was saved.
  stopped = re.fullmatch(
      "tljax train: interrupted at step ([0-9]+); checkpoint saved; run the "
      "same command to resume",
      err.strip(),
  )
  assert stopped, err
  checkpoints = os.listdir(workdir / "source_only" / "seed_0" / "checkpoints")
  assert checkpoints == [stopped.group(1)] and 1 <= int(checkpoints[0]) <= 6


def test_ctrl_c_outside_the_training_loop_is_one_line(
    tmp_path, capsys, monkeypatch
):
  def interrupted(config, workdir):
    del config, workdir
    raise KeyboardInterrupt

  monkeypatch.setattr("tljax.train.experiment.run_experiment", interrupted)
  status, err = run_main(
      ["train", *SMALL, "--workdir", str(tmp_path / "w")], capsys
  )
  assert status == 130
  assert_one_line(err, "tljax train: interrupted; run the same command")


def test_the_loop_s_sigint_is_a_keyboard_interrupt_naming_the_step():
  found = signal.signal(signal.SIGINT, signal.default_int_handler)
  try:
    signals = interrupt.StopSignals()
    with signals:
      os.kill(os.getpid(), signal.SIGINT)
    assert signals.received == signal.SIGINT
    with pytest.raises(KeyboardInterrupt) as raised:
      signals.resend(7)
  finally:
    signal.signal(signal.SIGINT, found)
  assert isinstance(raised.value, interrupt.Interrupted)
  assert raised.value.step == 7 and raised.value.signum == signal.SIGINT


def test_seeds_is_a_list_of_seed_numbers_everywhere(capsys, tmp_path):
  # configs/<file>.py:seeds=N counts seeds; --set seeds lists them, and a
  # bare number, which could mean either, is refused saying both.
  assert cli.load_config("configs/moons.py:seeds=3").seeds == (0, 1, 2)
  for item, seeds in (
      ("seeds=0,1,2", (0, 1, 2)),
      ("seeds=(4, 5)", (4, 5)),
      ("seeds=3,", (3,)),
      ("seeds=[3]", (3,)),
  ):
    assert cli.load_config("configs/moons.py", [item]).seeds == seeds
  status, err = run_main(
      ["train", *SMALL, "--set", "seeds=3", "--workdir", str(tmp_path)],
      capsys,
  )
  assert status == 2
  assert_one_line(
      err,
      "--set seeds=3: seeds is a list of seed numbers: --set seeds=0,1,2",
      "--set seeds=3,",
      "configs/<file>.py:seeds=3 runs seeds 0..2",
  )
  assert not os.listdir(tmp_path)


def test_sequences_of_bare_words_in_brackets():
  config = cli.load_config(
      "configs/moons.py", ["baselines=(source_only,target_only)"]
  )
  assert config.baselines == ("source_only", "target_only")
  config = cli.load_config("configs/moons.py", ["baselines=[source_only]"])
  assert config.baselines == ("source_only",)


@pytest.mark.parametrize("command", ["train", "sweep"])
def test_big_vision_config_flags_point_at_set(command, capsys):
  status, err = run_main(
      [command, "--config", "configs/moons.py", "--config.steps=5"], capsys
  )
  assert status == 2
  assert (
      "error: --config.steps=5: config fields are set with --set steps=5"
      in (err)
  )


def test_typos_and_bad_work_dirs_are_reported_before_jax_is_imported(
    tmp_path,
):
  # In a fresh interpreter: the checks made before the run starts need
  # neither JAX nor the library's heavy modules.
  afile = tmp_path / "afile"
  afile.write_text("", encoding="utf-8")
  cases = [
      ["--set", "typo=1"],
      ["--set", "optimizer.lr=1"],
      ["--set", "method=jann"],
      ["--set", "method_kwargs.trade_of=1"],
      ["--set", "baselines=(source_only,target_onyl)"],
      ["--set", "model.name=mpl"],
      ["--set", "steps=many"],
      ["--set", "seeds=3"],
      ["--workdir", str(afile)],
  ]
  program = (
      "import sys; from tljax import cli\n"
      f"for extra in {cases!r}:\n"
      "  status = cli.main(['train', '--config', 'configs/moons.py', *extra])\n"
      "  print(status, sorted({'jax', 'flax', 'optax', 'orbax', 'tensorflow'}"
      " & {name.split('.')[0] for name in sys.modules}))\n"
  )
  completed = subprocess.run(
      [sys.executable, "-c", program],
      cwd=REPO,
      capture_output=True,
      text=True,
      check=False,
  )
  assert completed.returncode == 0, completed.stderr[-2000:]
  assert completed.stdout.split("\n")[: len(cases)] == ["2 []"] * len(cases)
  errors = completed.stderr.strip().splitlines()
  assert len(errors) == len(cases), completed.stderr
  assert all(line.startswith("tljax train: error: ") for line in errors)
  assert "'typo'" in errors[0] and "'optimizer.lr'" in errors[1]
  # The registries' own messages (check_experiment_config's).
  assert "config key 'method': method 'jann' is unknown" in errors[2]
  assert (
      "config key 'method_kwargs.trade_of' is unknown for method 'dann'; "
      "allowed keys: ['bsp_weight', 'hidden_dim', 'trade_off']"
  ) in errors[3]
  assert "config key 'baselines[1]': method 'target_onyl'" in errors[4]
  assert "config key 'model.name': model 'mpl' is unknown" in errors[5]


def _tljax_builder(builder) -> bool:
  """Registered by tljax itself (not by a test's plugin in this process)."""
  builder = getattr(builder, "func", builder)  # a functools.partial
  return getattr(builder, "__module__", "").startswith("tljax.")


def test_the_names_checked_before_jax_are_the_registries():
  builtin_methods = [
      name
      for name in methods.available_methods()
      if _tljax_builder(methods.get_method(name))
  ]
  registry_methods = {
      name: tuple(sorted(method_registry.method_defaults(name)))
      for name in builtin_methods
  }
  # A recipe added or changed: write it out in tljax/cli/registered.py.
  assert registered.METHODS == registry_methods, {
      name: keys
      for name, keys in registry_methods.items()
      if registered.METHODS.get(name) != keys
  }
  builtin_models = [
      name
      for name in models.available_models()
      if _tljax_builder(model_registry[name])
  ]
  assert list(registered.MODELS) == builtin_models


def test_a_recipe_the_registry_knows_is_left_to_it(tmp_path, capsys):
  # Here tljax.methods is imported (as a config registering a plugin recipe
  # would): the registry, not the written-out list, decides.
  assert "tljax.methods" in sys.modules
  config = cli.load_config("configs/moons.py", ["method=jann"])
  registered.check_registered_names(config)  # no error here
  status, err = run_main(
      ["train", *SMALL, "--set", "method=jann", "--workdir", str(tmp_path)],
      capsys,
  )
  assert status == 2
  assert_one_line(err, "config key 'method': method 'jann' is unknown")
