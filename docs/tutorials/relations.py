#!/usr/bin/env python
"""Relational transfer: distillation losses and the ``distill`` recipe.

The script behind docs/tutorials/relations.md. Part 1 evaluates the losses
of tljax.relational on arrays: relational knowledge distillation (RKD) and
similarity-preserving distillation (SP) compare how two networks relate the
examples of a batch, so a student whose features are a rotated, scaled (and,
for RKD, shifted) copy of the teacher's costs nothing, whatever its width.
Part 2 trains a small student network on two moons with the target rotated
by 50°: it has the source labels only, plus a teacher trained on five
labeled target examples per class, distilled (KD) on unlabeled target inputs.

  python docs/tutorials/relations.py            # 3 seeds
  python docs/tutorials/relations.py --quick    # 1 seed, fewer steps
"""

import argparse
import collections
import tempfile

import jax
import numpy as np
from ml_collections import ConfigDict

from tljax import relational
from tljax.config import base_config
from tljax.train.experiment import format_table, run_experiment


def relational_losses():
  """Part 1: the losses are zero for any student that keeps the teacher's relations."""
  keys = jax.random.split(jax.random.key(0), 4)
  teacher = jax.random.normal(keys[0], (32, 16))
  # An isometric embedding of the 16-d features into 24 dimensions.
  embedding, _ = np.linalg.qr(np.asarray(jax.random.normal(keys[1], (24, 16))))
  rotated_and_scaled = 3.0 * teacher @ embedding.T
  unrelated = jax.random.normal(keys[2], (32, 24))
  for name, student in (("rotated, scaled, 24-d", rotated_and_scaled),
                        ("shifted as well", rotated_and_scaled + 1.0),
                        ("unrelated, 24-d", unrelated)):
    print(f"student {name}: "
          f"RKD distance {float(relational.rkd_distance(student, teacher)):.4f}  "
          f"RKD angle {float(relational.rkd_angle(student, teacher)):.4f}  "
          f"SP {float(relational.similarity_preserving(student, teacher)):.5f}")
  teacher_logits = jax.random.normal(keys[3], (32, 10))
  for name, student_logits in (("the teacher's", teacher_logits),
                               ("uniform", np.zeros((32, 10)))):
    loss = relational.knowledge_distillation(student_logits, teacher_logits,
                                             temperature=4.0)
    print(f"KD at T = 4 with {name} logits: {float(loss):.4f}")


def moons_config(*, seeds: int, steps: int) -> ConfigDict:
  """Two moons → the moons rotated by 50°; five target labels per class."""
  config = base_config()
  config.source.name = config.target.name = "two_moons"
  config.target.kwargs.rotation_degrees = 50.0
  config.target.kwargs.seed = 1  # an independent draw, not the source rotated
  config.target.labels_per_class = 5  # drawn per seed, for the teacher only
  config.model = ConfigDict({"name": "mlp", "hidden_dims": (16,)})
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 1e-3
  config.optimizer.weight_decay = 0.0
  config.optimizer.schedule = "constant"
  config.seeds = tuple(range(seeds))
  config.steps = steps
  config.batch_size = 10  # the ten labeled target examples per teacher batch
  config.log_every = config.checkpoint_every = steps
  config.progress_bar = False
  return config


def distill(workdir: str, *, quick: bool) -> None:
  """Part 2: a student distilled from a teacher of the target's few labels."""
  config = moons_config(seeds=1 if quick else 3, steps=300 if quick else 1000)
  config.method = "distill"
  config.baselines = ("source_only",)  # the student alone
  # The student: source labels (base recipe) + KD on unlabeled target inputs.
  config.method_kwargs.base = "source_only"
  config.method_kwargs.losses = ("kd",)
  config.method_kwargs.domains = ("target",)
  # The teacher: a wider network trained first on the labeled target examples.
  config.method_kwargs.teacher_method = "target_only"
  config.method_kwargs.teacher_model = ConfigDict(
      {"name": "mlp", "hidden_dims": (64, 64), "bottleneck_dim": 32})
  results = run_experiment(config, workdir)
  print(format_table(results["table"]))
  teacher = collections.defaultdict(list)
  for summary in results["runs"]:
    teacher[summary["method"]].append(summary["target_test"]["accuracy"])
  print(f"\nteacher (target_only, MLP 64-64, 5 labels per class): target test "
        f"accuracy {100 * np.mean(teacher['target_only']):.1f} %")


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--quick", action="store_true",
                      help="one seed and fewer steps (seconds)")
  parser.add_argument("--workdir", default=None,
                      help="where the runs go (default: a new temporary dir)")
  args = parser.parse_args()
  relational_losses()
  print()
  distill(args.workdir or tempfile.mkdtemp(prefix="tljax_relations_"),
          quick=args.quick)


if __name__ == "__main__":
  main()
