"""Rotated two-moons: the classic toy domain-adaptation problem.

Source: scikit-learn's two moons (1,000 training points, noise 0.1); target:
the same distribution rotated by ``rotation`` degrees about the moons'
centre (unlabeled for the transductive recipes). A small MLP (two hidden
layers of 64, bottleneck 32) is trained for 1,000 steps of batch 256 per
domain with Adam (learning rate 1e-3); the recipes with a domain
discriminator or adversarial head (:data:`NARROW_HEAD_METHODS`) use width 64.

  tljax train --config configs/moons.py:method=dann,rotation=30
  tljax train --config configs/moons.py:method=mdd,rotation=50

Argument keys: ``method`` (a registered recipe), ``rotation`` (degrees),
``seeds`` (how many seeds, 0..seeds-1).
"""

from tljax.config import base_config, parse_arg

# The recipes whose hidden_dim setting (an adversarial MLP's width) these
# small domains narrow to 64.
NARROW_HEAD_METHODS = ("dann", "cdan", "cdan_e", "mdd")
HIDDEN_DIM = 64


def get_config(arg=None):
  arg = parse_arg(arg, method="dann", rotation=30.0, seeds=3)
  config = base_config()
  config.method = arg.method
  config.baselines = ("source_only", "target_only")
  config.seeds = tuple(range(arg.seeds))

  config.source.name = "two_moons"
  config.source.kwargs.num_examples = 1000
  config.target.name = "two_moons"
  config.target.kwargs.num_examples = 1000
  config.target.kwargs.rotation_degrees = float(arg.rotation)
  config.target.kwargs.seed = 1  # an independent draw, not the source rotated

  config.model.name = "mlp"
  config.model.hidden_dims = (64, 64)
  config.model.bottleneck_dim = 32

  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 1e-3
  config.optimizer.weight_decay = 0.0
  config.optimizer.schedule = "constant"

  if arg.method in NARROW_HEAD_METHODS:
    config.method_kwargs.hidden_dim = HIDDEN_DIM

  config.steps = 1000
  config.batch_size = 256
  config.eval_every = 100
  config.log_every = 100
  config.checkpoint_every = 1000
  return config
