"""The newcomer's tutorials: docs/tutorials/own_data.md and own_loop.md.

Each page's Python blocks are code of its script; each script runs with
--quick and prints what its page says; own_data.md's ``tljax train`` command
runs as written on the files the script saved (shortened to 30 steps and
one seed).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TUTORIALS = os.path.join(REPO, "docs", "tutorials")
TIMEOUT_SECONDS = 600


def _blocks(name: str, language: str) -> list[str]:
  with open(os.path.join(TUTORIALS, f"{name}.md"), encoding="utf-8") as f:
    return re.findall(rf"```{language}\n(.*?)```", f.read(), flags=re.S)


def _run(arguments, cwd) -> str:
  process = subprocess.run(
      arguments,
      cwd=cwd,
      capture_output=True,
      text=True,
      timeout=TIMEOUT_SECONDS,
      env={**os.environ, "PYTHONPATH": REPO},
  )
  assert (
      process.returncode == 0
  ), f"{' '.join(arguments)} failed:\n{process.stderr[-3000:]}"
  return process.stdout


def _rows(text: str) -> dict[str, list[str]]:
  rows = {}
  for line in text.splitlines():
    cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
    if line.startswith("| ") and not line.startswith("| ---"):
      rows[cells[0]] = cells[1:]
  return rows


def _percent(cell: str) -> float:
  return float(cell.split("±")[0])


@pytest.mark.parametrize("name", ["own_data", "own_loop"])
def test_the_page_embeds_its_script(name):
  with open(os.path.join(TUTORIALS, f"{name}.py"), encoding="utf-8") as f:
    script = f.read()
  blocks = _blocks(name, "python")
  assert blocks
  for block in blocks:
    assert block in script, block


def test_own_loop_trains_freezes_and_resumes(tmp_path):
  out = _run(
      [
          sys.executable,
          os.path.join(TUTORIALS, "own_loop.py"),
          "--workdir",
          str(tmp_path / "loop"),
          "--quick",
      ],
      tmp_path,
  )
  assert "trained steps 0..60\n" in out
  assert "frozen: backbone/conv1/bias, backbone/conv1/kernel\n" in out
  first = float(re.search(r"^target test accuracy: ([\d.]+)%", out, re.M)[1])
  again = re.search(
      r"rerun resumed at step 60: target test accuracy ([\d.]+)%", out
  )
  assert again, out
  assert float(again[1]) == first  # nothing trained again
  assert first > 40.0  # ten classes: chance is 10 %


def test_own_data_from_python_and_from_the_command_line(tmp_path):
  workdir = tmp_path / "own_data"
  out = _run(
      [
          sys.executable,
          os.path.join(TUTORIALS, "own_data.py"),
          "--workdir",
          str(workdir),
          "--quick",
      ],
      tmp_path,
  )
  rows = _rows(out)
  assert set(rows) >= {"method", "dann", "source_only", "target_only"}
  # The shift is real: the source-only model loses accuracy on camera B.
  assert _percent(rows["source_only"][2]) < _percent(rows["target_only"][2]) - 5
  for name in ("camera_a", "camera_b"):
    assert (
        f"saved {workdir / name}.npz with x_test, x_train, y_test, y_train"
        in out
    )
  # The page's command, from the directory where the script saved the files.
  (command,) = [
      " ".join(line.split())
      for block in _blocks("own_data", "bash")
      for line in block.replace("\\\n", " ").splitlines()
      if line.startswith("tljax train --config configs/digits.py")
  ]
  arguments = shlex.split(command)
  arguments = [sys.executable, "-m", "tljax", *arguments[1:]]
  arguments += ["--set", "steps=30", "--set", "seeds=(0,)", "--noreport"]
  out = _run(arguments, workdir)
  rows = _rows(out)
  assert set(rows) >= {"dann", "source_only", "target_only"}
  assert os.path.isdir(workdir / "workdirs" / "cameras" / "dann" / "seed_0")
