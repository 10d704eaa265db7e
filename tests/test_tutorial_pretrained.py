"""docs/tutorials/pretrained.md: its tljax commands run as written, offline.

The page's shell variables point to the committed upstream fixtures
(tests/fixtures/pretrained) and to two small image folders made here; the
test adds only what keeps the runs short (see the page's last section).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
import sys
import types
import warnings

import numpy as np
import pytest
from PIL import Image

from tljax import cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGE = os.path.join(REPO, "docs", "tutorials", "pretrained.md")
FIXTURES = os.path.join(REPO, "tests", "fixtures", "pretrained")
CHECKPOINTS = {
    "RESNET50": "resnet_bottleneck.safetensors",
    "RESNET50_TV": "resnet_basic.safetensors",
    "RESNET18": "resnet_basic.safetensors",
    "VIT_B16": "vit_token.safetensors",
}
CLASSES = ("back_pack", "bike", "calculator")
TIMEOUT_SECONDS = 600


def _folder(root, seed, shift):
  rng = np.random.default_rng(seed)
  for label, name in enumerate(CLASSES):
    os.makedirs(os.path.join(root, name))
    for i in range(15):
      pixels = rng.integers(0, 80, (20, 20, 3)).astype(np.uint8)
      pixels[:, :, label] += 100 + shift
      suffix = "png" if i % 2 else "jpg"
      Image.fromarray(pixels).save(os.path.join(root, name, f"{i}.{suffix}"))
  return str(root)


def page_commands() -> list[str]:
  """The ``tljax`` commands of the page's bash blocks, continuations joined."""
  with open(PAGE, encoding="utf-8") as stream:
    text = stream.read()
  commands = []
  for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
    joined = block.replace("\\\n", " ")
    commands += [
        " ".join(line.split())
        for line in joined.splitlines()
        if line.startswith("tljax ")
    ]
  return commands


def offline(command: str, variables: dict, tmp_path) -> list[str]:
  """``command`` with the page's variables set and the short-run options."""
  # The fixtures are small ResNets and ViTs, not the named architectures.
  command = re.sub(
      r"\b(timm|torchvision|big_vision|hugging_face|clip):[^=\s,]+=\$(\w+)",
      r"\1=$\2",
      command,
  )
  command = re.sub(r"\$(\w+)", lambda match: variables[match.group(1)], command)
  command = command.replace("--image_size 224", "--image_size 32")
  arguments = shlex.split(command)
  assert arguments[0] == "tljax"
  arguments = arguments[1:]
  data_dir = str(tmp_path / "data")
  if arguments[0] == "rank-sources":
    return arguments + ["--data_dir", data_dir]
  quick = [
      "steps=2",
      "baselines=()",
      "batch_size=4",
      "eval_batch_size=48",
      "progress_bar=false",
      f"data_dir={data_dir}",
  ]
  for domain in ("source", "target"):
    quick += [
        f"{domain}.kwargs.image_size=32",
        f"{domain}.kwargs.resize=36",
        f"{domain}.in_memory=true",
    ]
  if variables["VIT_B16"] in command:  # the fixture ViT's width is not standard
    quick.append("init_from.pretrained_options.num_heads=2")
  for item in quick:
    arguments += ["--set", item]
  return arguments


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """``[(arguments, completed process)]`` of the page's commands, in order."""
  tmp_path = tmp_path_factory.mktemp("tutorial_pretrained")
  variables = {
      "SOURCE": _folder(tmp_path / "amazon", 0, 0),
      "TARGET": _folder(tmp_path / "webcam", 1, 40),
      **{
          name: os.path.join(FIXTURES, file)
          for name, file in CHECKPOINTS.items()
      },
  }
  results = []
  # In this process, as `tljax` runs them (without a JAX import each); what
  # main() changes for its command's lifetime is put back afterwards.
  with pytest.MonkeyPatch.context() as patch:
    patch.chdir(tmp_path)
    patch.setattr(sys, "unraisablehook", sys.unraisablehook)
    patch.setattr(warnings, "formatwarning", warnings.formatwarning)
    for command in page_commands():
      arguments = offline(command, variables, tmp_path)
      out, err = io.StringIO(), io.StringIO()
      with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = cli.main(arguments)
      process = types.SimpleNamespace(
          returncode=status, stdout=out.getvalue(), stderr=err.getvalue()
      )
      assert (
          status == 0
      ), f"tljax {' '.join(arguments)} failed:\n{process.stderr[-3000:]}"
      results.append((arguments, process))
  return tmp_path, variables, results


def test_the_page_has_its_three_commands():
  commands = page_commands()
  assert [command.split()[1] for command in commands] == [
      "train",
      "train",
      "rank-sources",
  ]
  assert "init_from.pretrained=timm:resnet50=$RESNET50" in commands[0]


def test_the_pages_commands_do_what_it_says(runs):
  """One test for the three commands, so one xdist worker runs them once.

  (Three tests sharing the module fixture could land on both workers, and
  each worker would run all three commands.)
  """
  check_dann_adapts_from_the_resnet_checkpoint(runs)
  check_l2_sp_fine_tunes_the_vit_with_no_source_run_first(runs)
  check_rank_sources_scores_the_zoo(runs)


def check_dann_adapts_from_the_resnet_checkpoint(runs):
  tmp_path, variables, results = runs
  _, process = results[0]
  assert re.search(r"^\| dann \|", process.stdout, flags=re.M), process.stdout
  record_path = tmp_path / "workdirs/amazon_webcam_dann_r50/dann/seed_0"
  with open(record_path / "run_config.json", encoding="utf-8") as stream:
    record = json.load(stream)
  assert record["init_from"]["pretrained"] == (f"timm={variables['RESNET50']}")


def check_l2_sp_fine_tunes_the_vit_with_no_source_run_first(runs):
  tmp_path, variables, results = runs
  _, process = results[1]
  assert re.search(r"^\| l2_sp \|", process.stdout, flags=re.M), process.stdout
  workdir = tmp_path / "workdirs/webcam_l2_sp_vit_b16"
  # The checkpoint stands in for the source_only pretrain run.
  assert sorted(os.listdir(workdir / "l2_sp")) == ["seed_0"]
  assert not (workdir / "source_only").exists()
  with open(workdir / "l2_sp/seed_0/run_config.json", encoding="utf-8") as f:
    record = json.load(f)
  assert record["init_from"]["pretrained"] == f"timm={variables['VIT_B16']}"
  assert record["init_from"]["pretrained_options"] == {"num_heads": 2}
  with open(workdir / "l2_sp/seed_0/summary.json", encoding="utf-8") as f:
    summary = json.load(f)
  # The held-out 20 % of each class: 3 of 15 images.
  assert summary["target_test"]["num_examples"] == 3 * len(CLASSES)


def check_rank_sources_scores_the_zoo(runs):
  tmp_path, _, results = runs
  _, process = results[2]
  rows = [
      line.split("|")[1].strip()
      for line in process.stdout.splitlines()
      if line.startswith("| resnet")
  ]
  assert rows == ["resnet50_a1", "resnet50_tv", "resnet18"]
  with open(
      tmp_path / "workdirs/rank_webcam/rank_sources.json", encoding="utf-8"
  ) as stream:
    results_json = json.load(stream)
  sources = {row["name"]: row for row in results_json["sources"]}
  for row in sources.values():
    assert set(row["scores"]) >= {"logme", "leep", "nce"}
    assert all(np.isfinite(value) for value in row["scores"].values())
  # Two names, one file: the same checkpoint scores the same.
  assert sources["resnet50_tv"]["scores"] == sources["resnet18"]["scores"]
  assert sources["resnet50_a1"]["scores"] != sources["resnet18"]["scores"]
