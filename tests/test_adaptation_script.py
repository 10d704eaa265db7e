"""scripts/adaptation.py end to end at toy size: the table matches the runs."""

import json
import os
import subprocess
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_adaptation_script_reports_every_method_per_task(tmp_path, data_dir):
  output = tmp_path / "report.md"
  completed = subprocess.run(
      [
          sys.executable,
          os.path.join(REPO, "scripts", "adaptation.py"),
          "--tasks",
          "moons_30",
          "--methods",
          "dann,mcd",
          "--seeds",
          "2",
          "--steps",
          "6",
          "--workdir",
          str(tmp_path / "runs"),
          "--data_dir",
          data_dir,
          "--output",
          str(output),
      ],
      capture_output=True,
      text=True,
      timeout=600,
      check=False,
  )
  assert completed.returncode == 0, completed.stderr[-3000:]
  results = json.loads((tmp_path / "runs" / "results.json").read_text())
  task = results["results"]["moons_30"]
  assert list(task) == ["source_only", "dann", "mcd", "target_only"]
  report = output.read_text()
  for method, row in task.items():
    summaries = [
        json.loads(
            (
                tmp_path
                / "runs"
                / "moons_30"
                / method
                / f"seed_{seed}"
                / "summary.json"
            ).read_text()
        )
        for seed in (0, 1)
    ]
    accuracies = [summary["target_test"]["accuracy"] for summary in summaries]
    np.testing.assert_allclose(row["runs"], accuracies)
    cell = f"{100 * np.mean(accuracies):.1f} ± {100 * np.std(accuracies, ddof=1):.1f}"
    line = next(
        line for line in report.splitlines() if line.startswith(f"| {method} |")
    )
    assert cell in line
  assert "no target label chooses anything" in report
  # The label-free picks: each validator's choice, per seed, is the run it
  # scores highest, and its row reports those runs' mean test accuracy.
  scores = results["validator_scores"]["moons_30"]
  for row in results["selection"]["moons_30"]:
    if not row["picks"]:
      continue
    for seed, pick in enumerate(row["picks"]):
      candidates = {
          method: scores[method][str(seed)][row["validator"]]
          for method in ("source_only", "dann", "mcd")
      }
      assert pick == max(candidates, key=candidates.get)
    np.testing.assert_allclose(
        row["mean"],
        np.mean(
            [task[pick]["runs"][seed] for seed, pick in enumerate(row["picks"])]
        ),
    )
    assert f"| {row['validator']} | {100 * row['mean']:.1f}" in report


def test_adaptation_script_rejects_unknown_tasks_and_methods(tmp_path):
  for flag, value in (("--tasks", "mnist_to_mars"), ("--methods", "dan,nope")):
    completed = subprocess.run(
        [
            sys.executable,
            os.path.join(REPO, "scripts", "adaptation.py"),
            flag,
            value,
            "--workdir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode != 0
    assert value.split(",")[-1] in completed.stderr
