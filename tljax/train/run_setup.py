"""Everything one run needs before its first step: model, recipe, state, step.

:func:`setup_run` builds, from a config, a recipe's name and a seed, the
run's data (:mod:`tljax.train.domains`), its model (:func:`build_model`), the
recipe (:func:`tljax.methods.build_method`), the initial parameters (fresh,
or merged from a source run's checkpoint or a converted pretrained one by
``init_from``; :func:`pretrain_init_from` makes it for a recipe that starts
from its pretrain run, :func:`pretrained_init_from` for one that starts from
``config.init_from.pretrained``), the optimizer (one per parameter group for a staged recipe)
and the unjitted, guarded step. :func:`tljax.train.loop.train_and_evaluate`
runs it; a sweep (:mod:`tljax.train.sweep`) calls it once per member.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from collections.abc import Mapping
from typing import Any

import jax

from tljax import methods as methods_lib
from tljax import models as models_lib
from tljax import params as params_lib
from tljax.train.divergence import divergence_policy
from tljax.train.domains import load_domains, select_target_labels
from tljax.train.optim import make_optimizer, make_schedule
from tljax.train.state import create_train_state
from tljax.train.step import (
    GroupedOptimizer,
    guard_nonfinite,
    make_staged_train_step,
    make_train_step,
    split_groups,
    updates_per_step,
)

# The trainable rules of a run whose recipe and config name none (the
# references, a recipe's prior runs).
TRAIN_EVERYTHING = ((".*", 1.0),)
# The options of config.model that a converted checkpoint leaves to the
# config (the rest of the architecture is the checkpoint's).
PRETRAINED_MODEL_OPTIONS = (
    "bottleneck_dim",
    "bottleneck_batch_norm",
    "bottleneck_dropout",
    "batch_norm_momentum",
    "dtype",
    "param_dtype",
)
# Upstream checkpoints have no bottleneck: a model with one starts it fresh.
PRETRAINED_DONT_LOAD = ("bottleneck/.*",)
_PRETRAINED_KEY = "config key 'init_from.pretrained'"


@functools.lru_cache(maxsize=4)
def _read_converted(spec: str, options: tuple, _file_version: tuple):
  # One read and conversion per file (and version) however many runs use it.
  return models_lib.load_converted(
      spec, argument=_PRETRAINED_KEY, **dict(options)
  )


def converted_checkpoint(
    pretrained: str, pretrained_options, input_shape
) -> models_lib.Converted:
  """The checkpoint ``pretrained`` names, read and converted for ``input_shape``.

  ``pretrained`` and ``pretrained_options`` as ``config.init_from``'s. The
  loader's ``image_size`` is the inputs' side (a ViT's position embedding is
  resized to it) unless the options set it. Cached per file and version.
  """
  spec = models_lib.parse_pretrained(pretrained, _PRETRAINED_KEY)
  options = _options(pretrained_options)
  if len(input_shape) == 3 and input_shape[0] == input_shape[1]:
    options.setdefault("image_size", int(input_shape[0]))
  stat = os.stat(spec.path)
  converted = _read_converted(
      str(spec),
      tuple(
          sorted(
              (key, tuple(value) if isinstance(value, list) else value)
              for key, value in options.items()
          )
      ),
      (stat.st_mtime_ns, stat.st_size),
  )
  channels = converted.input_shape[-1]
  if tuple(input_shape)[-1:] != (channels,):
    raise ValueError(
        f"{_PRETRAINED_KEY}: the checkpoint takes {channels}-channel images "
        f"of shape {converted.input_shape}; the data's inputs have shape "
        f"{tuple(input_shape)}"
    )
  return converted


def pretrained_model(config, num_classes: int, input_shape) -> models_lib.Model:
  """The model of ``config.init_from.pretrained``, for this task's data.

  The checkpoint's architecture and input convention; the config's
  :data:`PRETRAINED_MODEL_OPTIONS` (a bottleneck, the compute dtype); a new
  ``num_classes`` head.
  """
  converted = converted_checkpoint(
      config.init_from.pretrained,
      config.init_from.get("pretrained_options"),
      input_shape,
  )
  options = {
      key: value
      for key, value in config.model.items()
      if key in PRETRAINED_MODEL_OPTIONS
  }
  ignored = sorted(
      key
      for key in config.model.keys()
      if key not in PRETRAINED_MODEL_OPTIONS and key != "name"
  )
  if ignored or config.model.name != converted.model_name:
    logging.info(
        "model: %s%s from %s (config.model's name %r and options %s are the "
        "checkpoint's to decide)",
        converted.model_name,
        converted.model_options,
        config.init_from.pretrained,
        config.model.name,
        ignored,
    )
  return converted.create_model(
      num_classes=num_classes, input_shape=tuple(input_shape), **options
  )


def build_model(config, domains) -> models_lib.Model:
  """The config's model for the domains' input shape and number of classes.

  With ``config.init_from.pretrained``: the checkpoint's
  (:func:`pretrained_model`).
  """
  train = domains["source"]["train"]
  if config.init_from.get("pretrained"):
    return pretrained_model(config, train.num_classes, tuple(train.input_shape))
  kwargs = {key: value for key, value in config.model.items() if key != "name"}
  return models_lib.create_model(
      config.model.name,
      num_classes=train.num_classes,
      input_shape=tuple(train.input_shape),
      **kwargs,
  )


def _options(block) -> dict:
  return dict(block.to_dict() if hasattr(block, "to_dict") else block or {})


def pretrained_init_from(method, config) -> dict:
  """``init_from`` for ``method`` started from ``config.init_from.pretrained``.

  The ``dont_load`` rules of the method's ``"pretrain"``
  :class:`tljax.methods.PriorRun` when the checkpoint stands in for it,
  else the config's ``init_from.dont_load``; the config's
  ``init_from.zero_init`` and the loader's ``pretrained_options``.
  """
  prior = method.prior_run(methods_lib.base.PRETRAIN)
  dont_load = (
      prior.dont_load
      if prior is not None and prior.pretrained and prior.dont_load is not None
      else config.init_from.dont_load
  )
  return {
      "pretrained": config.init_from.pretrained,
      "pretrained_options": _options(
          config.init_from.get("pretrained_options")
      ),
      "dont_load": list(dont_load),
      "zero_init": list(config.init_from.zero_init),
  }


def pretrain_init_from(method, config, source_dir: str) -> dict:
  """``init_from`` for ``method`` started from the pretrain run in ``source_dir``.

  The ``dont_load`` rules of the method's ``"pretrain"``
  :class:`tljax.methods.PriorRun`, else the config's ``init_from.dont_load``;
  the config's ``init_from.zero_init`` and ``init_from.allow_unverified``.
  """
  prior = method.prior_run(methods_lib.base.PRETRAIN)
  dont_load = (
      config.init_from.dont_load
      if prior is None or prior.dont_load is None
      else prior.dont_load
  )
  init_from = {
      "workdir": source_dir,
      "dont_load": list(dont_load),
      "zero_init": list(config.init_from.zero_init),
  }
  if config.init_from.get("allow_unverified"):
    # Only when asked: a run's record of init_from stays as it was otherwise.
    init_from["allow_unverified"] = True
  return init_from


@functools.lru_cache(maxsize=16)
def _jitted_init(model):
  # One compilation per architecture, however many runs (a sweep's members).
  return jax.jit(model.init)


@dataclasses.dataclass(frozen=True)
class RunSetup:
  """Everything a run needs before its first step (see :func:`setup_run`)."""

  domains: dict
  model: Any
  method: Any
  state: Any
  optimizer: Any
  step_fn: Any
  train_key: jax.Array
  model_keys: frozenset
  schedule: Any
  init_from: dict | None = None


def setup_run(
    config,
    method_name: str,
    seed: int,
    *,
    domains=None,
    init_from: Mapping | None = None,
    prior_runs: Mapping[str, str] | None = None,
    inject_learning_rate: bool = False,
) -> RunSetup:
  """Data, model, method, initial train state, optimizer and (unjitted) step of one run.

  The part of :func:`tljax.train.loop.train_and_evaluate` before the loop;
  a sweep (:func:`tljax.train.sweep.run_sweep`) calls it once per member.
  ``init_from`` None with ``config.init_from.pretrained`` set: the run starts
  from that checkpoint (:func:`pretrained_init_from`; the result's
  ``init_from`` says so). ``prior_runs``: ``{role: directory}`` of the runs the method needs (see
  :attr:`tljax.methods.Method.needs`; the ``"pretrain"`` one arrives as
  ``init_from``). With ``inject_learning_rate`` the learning rate lives in
  the optimizer state (:func:`tljax.train.optim.set_learning_rate`).
  """
  # --- Data: both domains; the target's labeled subset for this seed -------
  domains = select_target_labels(domains or load_domains(config), config, seed)

  # --- Model, method and optimizer ------------------------------------------
  model = build_model(config, domains)
  method = methods_lib.build_method(method_name, config, model)
  init_key, train_key = jax.random.split(jax.random.key(seed))
  params, model_state = _jitted_init(model)(init_key)
  transferred, source_params, source_model_state = frozenset(), None, None
  source_model = model
  if init_from is None and config.init_from.get("pretrained"):
    init_from = pretrained_init_from(method, config)
  if init_from is not None:
    dont_load = tuple(init_from.get("dont_load") or ())
    if init_from.get("pretrained"):
      converted = converted_checkpoint(
          init_from["pretrained"],
          init_from.get("pretrained_options"),
          model.input_shape,
      )
      source_params, source_model_state = (
          converted.params,
          converted.model_state,
      )
      if "bottleneck" in params and "bottleneck" not in source_params:
        dont_load += PRETRAINED_DONT_LOAD
      # The model the checkpoint's own head fits (None: it has none).
      source_model = (
          converted.create_model(input_shape=model.input_shape)
          if converted.num_classes is not None
          else None
      )
    else:
      source_params, source_model_state = params_lib.read_checkpoint(
          init_from["workdir"],
          allow_unverified=bool(init_from.get("allow_unverified")),
      )
    # What a recipe trained next to the source model (a DANN discriminator,
    # MCD's second head) is not the model's: only the model's own top-level
    # parts (backbone, bottleneck, head) are merged.
    params, model_state = params_lib.merge_pretrained(
        params,
        {key: value for key, value in source_params.items() if key in params},
        dont_load=dont_load,
        zero_init=tuple(init_from.get("zero_init") or ()),
        init_model_state=model_state,
        loaded_model_state={
            key: value
            for key, value in (source_model_state or {}).items()
            if key in model_state
        },
    )
    transferred = params_lib.transferred_names(params, dont_load)
  context = methods_lib.TransferContext(
      params=params,
      model_state=model_state,
      transferred=transferred,
      source_params=source_params,
      source_model_state=source_model_state,
      source_model=source_model,
      model=model,
      domains=domains,
      config=config,
      seed=seed,
      # Finished runs the method names itself, unless the caller gives them.
      prior_runs={
          **{
              prior.role: prior.workdir.format(seed=seed)
              for prior in method.needs
              if prior.workdir and prior.role != methods_lib.PRETRAIN
          },
          **(prior_runs or {}),
      },
  )
  model_keys = frozenset(params)
  if method.init_params is not None:
    added = method.init_params(context)
    clash = sorted(set(added) & set(params))
    if clash:
      raise ValueError(
          f"method {method_name!r} adds parameters {clash} that "
          "the model already has"
      )
    params = {**params, **added}
  extras = method.init_extras(context) if method.init_extras else None
  # Rules: the method's own, else the config's for the experiment's method;
  # the references train everything.
  rules = method.trainable_rules or (
      config.trainable_rules
      if method_name == config.method
      else TRAIN_EVERYTHING
  )
  rules = [tuple(rule) for rule in rules]
  trainable, _ = params_lib.split(params, rules)
  optimizer_config = dict(config.optimizer)
  if method.replaces_weight_decay:
    optimizer_config["weight_decay"] = 0.0

  layer_decay = config.optimizer.get("layer_decay")
  depth_rules = [tuple(rule) for rule in config.optimizer.depth_rules]
  # Layer-wise decay counts from the deepest trainable parameter of the whole
  # model, also for a recipe that splits it into groups (MCD).
  max_depth = (
      max(params_lib.depths(trainable, depth_rules).values(), default=0)
      if layer_decay is not None and depth_rules
      else None
  )

  def build_optimizer(subtree, updates: int = 1):
    # A group updated k times per step runs its schedule over k * steps
    # updates (warm-up scaled alike), so it follows the step-wise schedule.
    group_config = dict(optimizer_config)
    group_config["warmup_steps"] = updates * int(
        optimizer_config.get("warmup_steps") or 0
    )
    return params_lib.with_learning_rate_multipliers(
        make_optimizer(
            group_config,
            updates * config.steps,
            inject_learning_rate=inject_learning_rate,
        ),
        subtree,
        rules,
        layer_decay=layer_decay,
        depth_rules=depth_rules,
        max_depth=max_depth,
    )

  if method.stages:
    names = sorted({group for _, group in method.param_groups})
    idle = [name for name in names if not updates_per_step(method.stages, name)]
    if idle:
      raise ValueError(
          f"method {method_name!r}: parameter groups {idle} are "
          "updated by no stage"
      )
    optimizer = GroupedOptimizer(
        {
            group: build_optimizer(
                subtree, updates_per_step(method.stages, group)
            )
            for group, subtree in split_groups(
                trainable, method.param_groups, names
            ).items()
        },
        method.param_groups,
    )
  else:
    optimizer = build_optimizer(trainable)
  schedule = make_schedule(config.optimizer, config.steps)
  state = create_train_state(
      params,
      model_state,
      optimizer,
      rules=rules,
      extras=extras,
      hparams=method.hparams,
  )
  step_fn = (
      make_staged_train_step(method.stages, optimizer, jit=False)
      if method.stages
      else make_train_step(method.loss_fn, optimizer, jit=False)
  )
  step_fn = guard_nonfinite(step_fn, divergence_policy(config))
  return RunSetup(
      domains=domains,
      model=model,
      method=method,
      state=state,
      optimizer=optimizer,
      step_fn=step_fn,
      train_key=train_key,
      model_keys=model_keys,
      schedule=schedule,
      init_from=dict(init_from) if init_from is not None else None,
  )
