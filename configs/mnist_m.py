"""MNIST → MNIST-M (Ganin & Lempitsky, ICML 2015), built offline.

The source is the bundled MNIST-5k in colour, the target MNIST-M made from
the same digits blended over photograph patches (see
:mod:`tljax.data.mnist_m` for how it is built and how it differs from the
paper's); both are written once as image folders under ``root``
(``root/<domain>/<split>/<class>/<index>.png``), so training reads them
through the image-folder path (decode, resize, model input convention):

  python -c "from tljax.data import mnist_m; mnist_m.write_mnist_m('data/mnist_m')"
  tljax train --config configs/mnist_m.py:root=data/mnist_m,method=dann

Splits: MNIST-5k's fixed stratified 4,000 / 1,000 for both domains (the
MNIST-M test images come from MNIST test digits). Images are 28×28, resized
to 32×32 as in the DANN paper's MNIST experiments; no augmentation. A LeNet
(or ``model=resnet18``: the small 3×3 stem) with a 256-wide bottleneck; SGD
with momentum 0.9, learning rate 0.01 annealed by the inverse-decay schedule
(the paper's ``μ_p = μ_0 / (1 + 10 p)^0.75``), weight decay 5e-4; batch
64 + 64. Target labels choose nothing: every run stops at its last step.

Argument keys: ``root`` (where write_mnist_m wrote), ``method`` (a
registered recipe), ``model`` (``lenet``, ``resnet18``), ``steps``,
``seeds`` (how many, 0..seeds-1).
"""

from tljax.config import base_config, parse_arg


def get_config(arg=None):
  arg = parse_arg(
      arg,
      root="data/mnist_m",
      method="dann",
      model="lenet",
      steps=3000,
      seeds=3,
  )
  config = base_config()
  config.method = arg.method
  config.baselines = ("source_only", "target_only")
  config.seeds = tuple(range(arg.seeds))

  config.source.name = f"folder:{arg.root}/mnist_rgb/{{split}}"
  config.target.name = f"folder:{arg.root}/mnist_m/{{split}}"
  for domain in (config.source, config.target):
    domain.kwargs.image_size = 32
    domain.in_memory = True  # 5,000 small images

  config.model.name = arg.model
  config.model.bottleneck_dim = 256
  if arg.model.startswith("resnet"):
    config.model.stem = "small"

  config.optimizer.name = "sgd"
  config.optimizer.learning_rate = 0.01
  config.optimizer.momentum = 0.9
  config.optimizer.weight_decay = 5e-4
  config.optimizer.schedule = "inv"

  config.steps = arg.steps
  config.batch_size = 64
  config.eval_every = 1000
  config.log_every = 100
  config.checkpoint_every = 1000
  return config
