"""docs/quickstart.md: its commands run as written, in order, in an empty directory.

Every ``tljax`` command of the page's bash blocks runs in the order of the
page (each later one reads what the earlier ones wrote), shortened only by
options appended at the end (fewer steps, one seed); then its Python block,
with fewer steps. The install and TensorBoard lines are not run.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
import warnings

from tljax import cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGE = os.path.join(REPO, "docs", "quickstart.md")
# Appended to each subcommand: what keeps the test short.
SHORT = {
    "train": ["--set", "steps=20", "--set", "seeds=0,"],
    "sweep": ["--set", "steps=20"],
    "rank-sources": [],
    # t-SNE of 500 test points per domain is most of the page's CPU time.
    "report": ["--max_points", "60"],
}


def _blocks(language: str) -> list[str]:
  with open(PAGE, encoding="utf-8") as stream:
    return re.findall(rf"```{language}\n(.*?)```", stream.read(), flags=re.S)


def page_commands() -> list[str]:
  commands = []
  for block in _blocks("bash"):
    for line in block.replace("\\\n", " ").splitlines():
      line = line.split("  #", 1)[0].strip()  # a trailing comment
      if line.startswith("tljax ") and line != "tljax --help":
        commands.append(" ".join(line.split()))
  return commands


def test_the_quickstart_runs_in_order(tmp_path, monkeypatch, capsys):
  commands = page_commands()
  assert [command.split()[1] for command in commands] == [
      "train",
      "train",
      "report",
      "report",
      "report",
      "sweep",
      "rank-sources",
  ]
  # In this process, as `tljax` runs them (without a JAX import each); what
  # main() changes for its command's lifetime is put back afterwards.
  monkeypatch.chdir(tmp_path)
  monkeypatch.setattr(sys, "unraisablehook", sys.unraisablehook)
  monkeypatch.setattr(warnings, "formatwarning", warnings.formatwarning)
  for command in commands:
    arguments = shlex.split(command)[1:]
    status = cli.main([*arguments, *SHORT[arguments[0]]])
    captured = capsys.readouterr()
    assert (
        status == 0
    ), f"{command} failed:\n{captured.out[-2000:]}\n{captured.err[-3000:]}"
  workdirs = tmp_path / "workdirs"
  assert sorted(os.listdir(workdirs)) == [
      "moons_dann50",
      "moons_jan",
      "moons_rank",
      "moons_sweep",
  ]
  assert (workdirs / "moons_jan" / "comparison.md").is_file()
  assert (
      workdirs / "moons_jan" / "jan" / "seed_0" / "features_tsne.png"
  ).is_file()
  assert (workdirs / "moons_rank" / "rank_sources.md").is_file()
  # Nothing lands in the directory the commands run from.
  assert sorted(os.listdir(tmp_path)) == ["workdirs"]

  (block,) = _blocks("python")
  assert "config.steps, config.seeds = 300, (0,)" in block
  code = block.replace(
      "config.steps, config.seeds = 300", "config.steps, config.seeds = 20"
  )
  exec(compile(code, "quickstart.md[python]", "exec"), {})  # pylint: disable=exec-used
  out = capsys.readouterr().out
  assert re.search(r"^\| jan \|", out, flags=re.M), out
  assert (workdirs / "moons_jan_python" / "results.json").is_file()
