"""The flags and help texts of the ``tljax`` subcommands.

One function per group of flags (:func:`add_config_arguments` for ``train``
and ``sweep``, :func:`add_report_arguments`, :func:`add_rank_sources_arguments`,
:func:`add_traceback_argument` for all) and each subcommand's epilog of
examples; :func:`tljax.cli.build_parser` puts them together. Nothing here
imports JAX or the library, so ``tljax --help`` answers at once: the values
the library also knows (:data:`FEATURE_LAYERS`) are written out.
"""

from __future__ import annotations

import argparse
import os
import textwrap

from tljax.cli.config_file import DEFAULT_CONFIG

PROG = "tljax"
TRACEBACK_ENV = "TLJAX_TRACEBACK"
# tljax.train.rank_sources.FEATURE_LAYERS, written out so that the help
# needs no JAX (a test keeps them equal).
FEATURE_LAYERS = ("bottleneck", "backbone")


def comma_list(text: str) -> list[str]:
  """``a,b,c`` as ``["a", "b", "c"]`` (blanks dropped), as absl list flags split."""
  return [item.strip() for item in text.split(",") if item.strip()]


def int_list(text: str) -> list[int]:
  try:
    return [int(item) for item in comma_list(text)]
  except ValueError:
    raise argparse.ArgumentTypeError(
        f"expected comma-separated integers, got {text!r}"
    ) from None


def add_rank_sources_arguments(parser: argparse.ArgumentParser) -> None:
  """The flags of ``tljax rank-sources`` (lists are comma-separated)."""
  add_traceback_argument(parser)
  add = parser.add_argument
  add(
      "--sources",
      type=comma_list,
      required=True,
      metavar="SOURCE[,SOURCE...]",
      help="source run dirs (WORKDIR/<method>/seed_<n>) and/or converted "
      "checkpoints, <format>[:<arch>]=<path> (formats timm, torchvision, "
      "big_vision, hugging_face, clip)",
  )
  add(
      "--names",
      type=comma_list,
      default=None,
      metavar="NAME[,NAME...]",
      help="labels of the sources (default: from the dirs)",
  )
  add(
      "--target",
      default="uci_digits",
      help="target domain: a source name (folder:<dir>, imagelist:<file>, "
      "tfds:<name>, ...) or an image folder (default: %(default)s)",
  )
  add(
      "--image_size",
      type=int,
      default=None,
      metavar="PIXELS",
      help="side of an image target's inputs (resized to 256/224 of it, "
      "then center-cropped; default: the source's own, 224 for folders)",
  )
  add(
      "--labels_per_class",
      type=int,
      default=10,
      metavar="K",
      help="labeled target examples per class (0: all; default: %(default)s)",
  )
  add(
      "--validation_per_class",
      type=int,
      default=0,
      metavar="K",
      help="target validation examples per class, drawn first (changes which "
      "examples are labeled; default: %(default)s)",
  )
  add(
      "--seeds",
      type=int_list,
      default=[0],
      metavar="SEED[,SEED...]",
      help="seeds: label draws (and verification runs; default: 0)",
  )
  add(
      "--features",
      default="bottleneck",
      choices=FEATURE_LAYERS,
      help="which features the feature-based scores read "
      "(default: %(default)s)",
  )
  add(
      "--scores",
      type=comma_list,
      default=None,
      metavar="SCORE[,SCORE...]",
      help="scores to compute: logme, leep, nce, h_score, "
      "shrinkage_h_score, gbc, transrate (default: all)",
  )
  add(
      "--verify",
      action="store_true",
      help="transfer from every source and measure",
  )
  add(
      "--noverify",
      dest="verify",
      action="store_false",
      help="only score (the default)",
  )
  add(
      "--methods",
      type=comma_list,
      default=["finetune"],
      metavar="METHOD[,METHOD...]",
      help="transfer methods for --verify (default: finetune)",
  )
  add(
      "--learning_rates",
      type=comma_list,
      default=["0.01"],
      metavar="RATE[,METHOD=RATE...]",
      help="learning rate of every verification run, or method=rate entries "
      "(target_only included; default: 0.01)",
  )
  add(
      "--steps",
      type=int,
      default=300,
      help="steps of every verification run (default: %(default)s)",
  )
  add(
      "--batch_size",
      type=int,
      default=32,
      help="target batch size, at most 10 k (default: %(default)s)",
  )
  add(
      "--workdir",
      default=os.path.join("workdirs", "rank_sources"),
      metavar="DIR",
      help="verification runs and results " "(default: %(default)s)",
  )
  add("--data_dir", default=None, metavar="DIR", help="TFDS data dir")
  add(
      "--output",
      default=None,
      metavar="PATH",
      help="also write the markdown here",
  )


def add_traceback_argument(parser: argparse.ArgumentParser) -> None:
  parser.add_argument(
      "--traceback",
      action="store_true",
      help="on an error, also print the full stack (for bug reports; "
      f"{TRACEBACK_ENV}=1 does the same)",
  )


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
  add_traceback_argument(parser)
  parser.add_argument(
      "--config",
      metavar="PATH[:ARG]",
      default=None,
      help="a Python config file whose get_config(arg) returns the experiment "
      "config, optionally with its argument after a colon "
      "(configs/moons.py:method=jan,rotation=50). A relative path is looked "
      "up in the current directory, then among the configs packaged with "
      "tljax (configs/digits.py, configs/moons.py, configs/unsupervised.py). "
      f"Default: the packaged {DEFAULT_CONFIG}.",
  )
  parser.add_argument(
      "--set",
      action="append",
      default=[],
      metavar="KEY=VALUE",
      help="override a config field (repeatable); dotted keys reach into "
      "groups (optimizer.learning_rate=0.03) and the value is converted to "
      "the field's type: numbers, true/false, None, tuples as '(0, 1)' or "
      "0,1 and '()' for empty, and '{}' (a dict) replaces a free-form group "
      "such as target.kwargs. seeds lists seed numbers (seeds=0,1,2; one: "
      "seeds=3,), where the config argument seeds=3 counts them, so "
      "--set seeds=3 is refused. An unknown key is an error naming it.",
  )


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
  """The arguments of ``tljax report`` (:mod:`tljax.report.command_line`)."""
  parser.add_argument(
      "workdirs",
      nargs="+",
      metavar="WORKDIR",
      help="run dirs, experiment dirs, rank_sources.py work dirs or "
      "rank_sources.json files",
  )
  parser.add_argument(
      "--features",
      choices=("pca", "tsne", "none"),
      default="pca",
      help="2-D projection of the feature pictures; 'none' skips them "
      "(they load the data and the checkpoints). Default: %(default)s.",
  )
  parser.add_argument(
      "--max_points",
      type=int,
      default=500,
      metavar="N",
      help="test examples per domain in the feature pictures "
      "(default: %(default)s)",
  )
  parser.add_argument(
      "--output",
      default=None,
      metavar="PATH",
      help="the comparison report across the experiment dirs (markdown); "
      "with several experiment dirs it is also printed",
  )


TRAIN_EPILOG = f"""\
examples:
  {PROG} train                                   # configs/digits.py: JAN, MNIST -> UCI digits
  {PROG} train --config configs/moons.py:method=dann,rotation=50 --workdir workdirs/dann50
  {PROG} train --config configs/digits.py:method=finetune --set steps=500 \\
      --set target.labels_per_class=10 --set seeds='(0, 1)'
  {PROG} train --config configs/moons.py --set tensorboard=true --noreport

Runs go to WORKDIR/<method>/seed_<n>; the table to WORKDIR/results.md and
results.json. Running the same command again resumes every run. Ctrl-C
stops after saving the step in progress (exit status 130).
"""

REPORT_EPILOG = f"""\
Each WORKDIR may be a run dir (WORKDIR/<method>/seed_<n>), an experiment dir
(tljax train's --workdir: every run's report and WORKDIR/report.md), or a
rank-sources work dir (written with --verify). Several experiment dirs, or
--output, also give one comparison report.

examples:
  {PROG} report workdirs/digits
  {PROG} report workdirs/digits/jan/seed_0 --features tsne
  {PROG} report workdirs/dann workdirs/jan --output comparison.md
  {PROG} report workdirs/rank_sources
"""

RANK_SOURCES_EPILOG = f"""\
Writes WORKDIR/rank_sources.md and rank_sources.json and prints the tables.

examples:
  {PROG} rank-sources --sources workdirs/a/source_only/seed_0,workdirs/b/source_only/seed_0 \\
      --labels_per_class 10
  {PROG} rank-sources --sources ... --verify --seeds 0,1,2 --workdir workdirs/rank_sources
  {PROG} rank-sources --sources timm=ckpt/resnet50.a1_in1k/model.safetensors,\
timm=ckpt/resnet50.tv_in1k/model.safetensors --target /data/my_images --labels_per_class 0
  {PROG} report workdirs/rank_sources      # its pictures, after --verify
"""

SWEEP_EPILOG = f"""\
The grid is config.seeds x config.sweep.learning_rates x the values in
config.sweep.hparams of each hyper-parameter the recipe traces (e.g.
trade_off; empty: the config's own values); every member trains in one
jitted, vmapped step (tljax.train.sweep).

examples:
  {PROG} sweep --config configs/moons.py:method=dann \\
      --set sweep.learning_rates='(1e-3, 3e-3)' --set sweep.hparams.trade_off='(0.3, 1.0)'
  {PROG} sweep --config configs/moons.py:method=jan,seeds=3 --set steps=500 \\
      --workdir workdirs/jan_sweep
"""


def wrap(text: str) -> str:
  return textwrap.fill(text, width=79)
