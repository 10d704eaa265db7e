#!/usr/bin/env python
"""Relational-knowledge transfer: a LeNet teacher distilled into an MLP student on the target digits.

Task: configs/digits.py (MNIST-5k → UCI digits, 1,000 steps of SGD-Nesterov
0.01 with cosine decay, batch 64 per domain). The teacher is a LeNet
(bottleneck 256) trained

* ``source``: on the labeled source (``source_only``), or
* ``target_k``: on ``k`` labeled target examples per class (``target_only``
  with ``target.labels_per_class = k``, drawn per seed);

the student is another architecture, an MLP (one hidden layer of 128,
bottleneck 64), trained with the source labels (``source_only``) plus, for
``distill``, the distillation terms on the unlabeled target training inputs
(:mod:`tljax.methods.distillation`, each loss with its paper's weight: KD at
T = 4, RKD 25/50, SP 3,000). No target label reaches the student; none
chooses anything (fixed budget, last step, published weights).

The table gives the target test accuracy (mean ± std over seeds) of the
student alone, with KD, RKD, SP and KD + RKD, next to the teacher's.

  python scripts/distillation.py --workdir workdirs/distillation \\
      --output docs/distillation_results.md
"""

import json
import os
import sys
import time

import numpy as np
from absl import app, flags, logging

from tljax.train.experiment import run_dir, run_experiment

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(_REPO, "configs"))
import digits  # noqa: E402

VARIANTS = {  # name: (label, losses; None = the student alone)
    "student": ("student alone (source labels)", None),
    "kd": ("+ KD", ("kd",)),
    "rkd": ("+ RKD", ("rkd",)),
    "sp": ("+ SP", ("sp",)),
    "kd_rkd": ("+ KD + RKD", ("kd", "rkd")),
}
STUDENT_MODEL = {"name": "mlp", "hidden_dims": (128,), "bottleneck_dim": 64}

_WORKDIR = flags.DEFINE_string(
    "workdir", "workdirs/distillation", "Where the runs go (resumable)."
)
_OUTPUT = flags.DEFINE_string(
    "output", None, "Markdown file for the table (also printed)."
)
_SEEDS = flags.DEFINE_integer("seeds", 3, "Seeds 0..seeds-1.")
_STEPS = flags.DEFINE_integer(
    "steps", None, "Override the training steps (quick runs)."
)
_TEACHERS = flags.DEFINE_list(
    "teachers", ["source", "target_10"], "Teachers: 'source' or 'target_<k>'."
)
_VARIANTS = flags.DEFINE_list(
    "variants", list(VARIANTS), f"Student variants, of {list(VARIANTS)}."
)


def base_config():
  config = digits.get_config(f"method=source_only,seeds={_SEEDS.value}")
  config.baselines = ()
  config.progress_bar = False
  config.eval_every = 0
  if _STEPS.value:
    config.steps = _STEPS.value
    config.checkpoint_every = _STEPS.value
  return config


def teacher_config(teacher: str):
  config = base_config()
  if teacher == "source":
    config.method = "source_only"
  elif teacher.startswith("target_") and teacher[len("target_") :].isdigit():
    config.method = "target_only"
    config.target.labels_per_class = int(teacher[len("target_") :])
  else:
    raise ValueError(
        f"--teachers: {teacher!r} is neither 'source' nor " "'target_<k>'"
    )
  return config


def student_config(variant: str, teacher_dir: str, teacher_model):
  config = base_config()
  config.model = dict(STUDENT_MODEL)
  losses = VARIANTS[variant][1]
  if losses is not None:
    config.method = "distill"
    config.method_kwargs.base = "source_only"
    config.method_kwargs.losses = losses
    config.method_kwargs.teacher_workdir = os.path.join(
        teacher_dir, "seed_{seed}"
    )
    config.method_kwargs.teacher_model = dict(teacher_model)
  return config


def target_accuracies(results, method):
  return [
      run["target_test"]["accuracy"]
      for run in results["runs"]
      if run["method"] == method
  ]


def cell(values):
  values = 100 * np.asarray(values)
  std = values.std(ddof=1) if len(values) > 1 else 0.0
  return f"{values.mean():.1f} ± {std:.1f}"


def main(argv):
  del argv
  unknown = sorted(set(_VARIANTS.value) - set(VARIANTS))
  if unknown:
    raise ValueError(f"--variants: unknown {unknown}; known: {list(VARIANTS)}")
  start = time.perf_counter()
  workdir = _WORKDIR.value
  summary = {"teachers": {}, "students": {}}
  for teacher in _TEACHERS.value:
    config = teacher_config(teacher)
    teacher_root = os.path.join(workdir, f"teacher_{teacher}")
    logging.info("teacher %s", teacher)
    results = run_experiment(config, teacher_root)
    summary["teachers"][teacher] = target_accuracies(results, config.method)
    teacher_dir = os.path.dirname(run_dir(teacher_root, config.method, 0))
    for variant in _VARIANTS.value:
      if variant == "student" and "student" in summary["students"]:
        continue  # the student alone does not depend on the teacher
      student = student_config(variant, teacher_dir, config.model)
      root = (
          os.path.join(workdir, "student")
          if variant == "student"
          else os.path.join(workdir, f"{variant}_from_{teacher}")
      )
      logging.info("student %s from %s", variant, teacher)
      results = run_experiment(student, root)
      key = "student" if variant == "student" else f"{variant}/{teacher}"
      summary["students"][key] = target_accuracies(results, student.method)

  teachers = _TEACHERS.value
  lines = [
      "# Relational-knowledge transfer: LeNet teacher → MLP student on UCI digits",
      "",
      f"Generated by `scripts/distillation.py` ({_SEEDS.value} seeds, "
      f"{base_config().steps} steps per run, "
      f"{(time.perf_counter() - start) / 60:.0f} min on this machine for the "
      "runs not already in the work dir). Target (UCI digits) test accuracy "
      "(%), mean ± std over seeds; the student never sees a target label.",
      "",
      "| model | " + " | ".join(f"teacher: {name}" for name in teachers) + " |",
      "| --- | " + " | ".join("---" for _ in teachers) + " |",
      "| teacher (LeNet) | "
      + " | ".join(cell(summary["teachers"][name]) for name in teachers)
      + " |",
  ]
  for variant in _VARIANTS.value:
    label = VARIANTS[variant][0]
    if variant == "student":
      cells = [cell(summary["students"]["student"])] * len(teachers)
    else:
      cells = [
          cell(summary["students"][f"{variant}/{name}"]) for name in teachers
      ]
    lines.append(f"| {label} | " + " | ".join(cells) + " |")
  report = "\n".join(lines) + "\n"
  print(report)
  with open(
      os.path.join(workdir, "distillation.json"), "w", encoding="utf-8"
  ) as f:
    json.dump(summary, f, indent=2)
  if _OUTPUT.value:
    with open(_OUTPUT.value, "w", encoding="utf-8") as f:
      f.write(report)


if __name__ == "__main__":
  app.run(main)
