"""Images: domain adaptation between two of the user's image folders.

Each domain is an image folder (``root/<class>/<image>``, the layout of
Office-31, Office-Home and ImageNet) or an image-list file (TLlib's ``path
label`` lines, ``*.txt``), prepared once into a TFDS ArrayRecord dataset of
the encoded images under the data dir (see :mod:`tljax.data.image_sources`).
Classes are matched by name: the target uses the source's class names, and a
class missing from one domain is an error that lists it.

  tljax train --config configs/images.py:source=DIR_A,target=DIR_B \\
      --workdir workdirs/a_to_b

Defaults follow the Transfer-Learning-Library's ResNet-50 setup for
Office-31 (Long et al.'s protocol): every source and every target image
trains (target unlabeled) and the table reports accuracy on every target
image (``train_split = test_split = "all"``); ResNet-50 (ImageNet stem),
bottleneck 256; SGD, learning rate 0.01, momentum 0.9, weight decay 1e-3,
the inverse-decay schedule (``lr · (1 + 10 p)^-0.75``); batch 32 + 32;
``ResizeImage(256)`` then ``RandomResizedCrop(224)`` and a horizontal flip
for training, ``ResizeImage(256)`` + ``CenterCrop(224)`` for evaluation;
ImageNet mean/std normalisation (the model's input convention). The
network starts from random weights until pretrained backbones land: expect
far lower accuracies than TLlib's ImageNet-initialised ones.

Argument keys: ``source``, ``target`` (a directory, ``folder:<dir>``,
``imagelist:<file>`` or a ``*.txt`` list file), ``method`` (a registered
recipe, default ``dann``), ``model`` (``resnet50``, ``resnet18``, ``lenet``,
...), ``image_size`` (224; with ``resize`` = 256/224 of it), ``steps``,
``seeds`` (how many, 0..seeds-1), ``workers`` (``data_workers``). Images
under 64 pixels get the ResNets' small stem (3×3, no max-pool). Any field
can also be set with ``--set``, e.g. ``--set batch_size=16``.
"""

from tljax.config import base_config, parse_arg

# ImageNet's per-channel mean and standard deviation of images in [0, 1]
# (torchvision's transforms.Normalize in every ImageNet recipe).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def domain_name(path: str) -> str:
  """A source name for a config argument: prefixed names stay, else a folder or list."""
  if not path:
    raise ValueError(
        "configs/images.py needs source=<dir or list> and target=<dir or "
        "list>, e.g. --config configs/images.py:source=/data/amazon,"
        "target=/data/webcam"
    )
  if path.startswith(("folder:", "imagelist:", "tfds:")):
    return path
  if path.endswith(".txt"):
    return f"imagelist:{path}"
  return f"folder:{path}"


def get_config(arg=None):
  arg = parse_arg(
      arg,
      source="",
      target="",
      method="dann",
      model="resnet50",
      image_size=224,
      steps=5000,
      seeds=1,
      workers=0,
  )
  config = base_config()
  config.method = arg.method
  config.baselines = ("source_only",)
  config.seeds = tuple(range(arg.seeds))

  config.source.name = domain_name(arg.source)
  config.target.name = domain_name(arg.target)
  resize = arg.image_size * 256 // 224
  for domain in (config.source, config.target):
    domain.train_split = "all"
    domain.test_split = "all"
    domain.in_memory = arg.image_size <= 64  # small images fit in memory
    domain.kwargs.image_size = arg.image_size
    domain.kwargs.resize = resize
  if config.source.name.startswith("folder:"):
    config.target.kwargs.classes = config.source.name  # matched by name
  config.augment.name = "tllib"
  config.data_workers = arg.workers

  config.model.name = arg.model
  config.model.bottleneck_dim = 256
  config.model.input_mean = IMAGENET_MEAN
  config.model.input_std = IMAGENET_STD
  if arg.model.startswith("resnet") and arg.image_size < 64:
    config.model.stem = "small"

  config.optimizer.name = "sgd"
  config.optimizer.learning_rate = 0.01
  config.optimizer.momentum = 0.9
  config.optimizer.nesterov = True
  config.optimizer.weight_decay = 1e-3
  config.optimizer.schedule = "inv"

  config.steps = arg.steps
  config.batch_size = 32
  config.eval_batch_size = 64
  config.eval_every = 1000
  config.log_every = 100
  config.checkpoint_every = 1000
  return config
