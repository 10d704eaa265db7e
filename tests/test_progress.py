"""What a run shows while it trains (tljax.train.progress) and how many runs an experiment plans."""

import io
import re
import time

from tljax import methods as methods_lib
from tljax.config import base_config
from tljax.models import create_model
from tljax.train.experiment import planned_runs
from tljax.train.progress import Progress, Stages, format_seconds


def test_outside_a_terminal_each_log_step_is_one_line_with_an_eta():
  stream = io.StringIO()  # not a terminal: no bar
  progress = Progress(
      "run 2 of 3: jan seed 0", start=0, total=10, stream=stream
  )
  time.sleep(0.3)  # the first step: compilation, excluded from the rate
  progress.step(1)
  progress.log(1, 2.5, 100.0)
  for done in range(2, 6):
    time.sleep(0.01)
    progress.step(done)
  progress.log(5, 0.12345, 12345.6)
  progress.close()
  lines = stream.getvalue().splitlines()
  # The compilation is a stage of its own: said before the first step.
  assert lines[0] == "run 2 of 3: jan seed 0: compiling (step 0/10)"
  assert (
      lines[1]
      == "run 2 of 3: jan seed 0: step 1/10, loss 2.5000, 100 examples/s"
  )
  match = re.fullmatch(
      r"run 2 of 3: jan seed 0: step 5/10, loss 0\.1235, 12,346 "
      r"examples/s, ETA (\d+)s",
      lines[2],
  )
  assert match, lines
  # 4 steps of ~0.01 s since the first: ~0.05 s for the 5 left, not the
  # ~0.3 s/step a rate including the first step would give.
  assert int(match[1]) <= 1
  assert len(lines) == 3  # nothing else: no bar in a log file


def test_a_resumed_or_finished_run_says_where_it_starts():
  stream = io.StringIO()
  Progress("jan seed 1", start=500, total=1000, stream=stream).close()
  Progress("jan seed 2", start=1000, total=1000, stream=stream).close()
  # Resumed at 500; a finished run compiles nothing and says nothing.
  assert stream.getvalue() == "jan seed 1: compiling (step 500/1000)\n"


def test_stages_are_one_line_each_with_the_time_since_the_first():
  stream = io.StringIO()
  stages = Stages("report", stream=stream)
  stages("run 1 of 2: jan/seed_0: training curves")
  time.sleep(1.1)
  stages("run 1 of 2: jan/seed_0: features (PCA)")
  assert stream.getvalue().splitlines() == [
      "report: run 1 of 2: jan/seed_0: training curves [0s]",
      "report: run 1 of 2: jan/seed_0: features (PCA) [1s]",
  ]
  quiet = io.StringIO()
  Stages("report", enabled=False, stream=quiet)("anything")
  assert quiet.getvalue() == ""


def test_disabled_progress_prints_nothing():
  stream = io.StringIO()
  progress = Progress("x", start=0, total=3, enabled=False, stream=stream)
  progress.step(1)
  progress.log(1, 1.0, 1.0)
  progress.close()
  assert stream.getvalue() == ""  # not even the compiling line


def test_format_seconds():
  assert [format_seconds(s) for s in (0, 59.4, 75, 3700)] == [
      "0s",
      "59s",
      "1m15s",
      "1h01m",
  ]


def test_planned_runs_count_the_runs_a_recipe_needs_once():
  config = base_config()
  config.seeds = (0, 1, 2)
  model = create_model("mlp", num_classes=10, input_shape=(8, 8, 1))

  def count(names):
    built = {
        name: methods_lib.build_method(name, config, model) for name in names
    }
    return planned_runs(names, built, config, model)

  assert count(["jan", "source_only", "target_only"]) == 9
  # finetune's pretrain run is the source_only baseline: trained once.
  assert count(["finetune", "source_only"]) == 6
  # lp_ft needs linear_probe, which needs source_only.
  assert count(["lp_ft"]) == 9
  config.init_from.workdir = "/finished/{seed}"  # stands in for source_only
  assert count(["finetune"]) == 3
