"""One training run, top to bottom: data, model, optimizer, step, checkpoints, loop.

``train_and_evaluate(config, workdir, method_name=..., seed=...)`` trains one
method with one seed into ``workdir`` (resuming from its latest checkpoint) and
returns the run's summary, which is also written to ``workdir/summary.json``.
The sections below follow the life of a run in order.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import os
import time
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import jax
import numpy as np
import tqdm

from tljax import data as data_lib
from tljax import methods as methods_lib
from tljax import models as models_lib
from tljax import params as params_lib
from tljax.checkpoint import CHECKPOINT_SUBDIR, Checkpointer
from tljax.errors import DivergenceError
from tljax.train import metrics as metrics_lib
from tljax.train import parallel
from tljax.train.evaluate import evaluate
from tljax.train.optim import make_optimizer, make_schedule
from tljax.train.state import create_train_state
from tljax.train import provenance
from tljax.train import workdir as workdir_lib
from tljax.train.workdir import RUN_CONFIG_FILE
from tljax.train.interrupt import StopSignals
from tljax.train.step import (
    GroupedOptimizer,
    guard_nonfinite,
    keyed_by_step,
    make_staged_train_step,
    make_train_step,
    split_groups,
    updates_per_step,
)

# The splits evaluated during and after training, logged as
# "<domain>_<split>/<metric>".
EVALUATED_SPLITS = ("validation", "test")
TRAIN_EVERYTHING = ((".*", 1.0),)


def load_domains(config) -> dict[str, dict[str, Any]]:
  """The train and test splits of both domains: ``{domain: {"train", "test"}}``."""
  domains = {}
  for domain in methods_lib.base.DOMAINS:
    spec = config[domain]
    kwargs = dict(spec.get("kwargs") or {})
    domains[domain] = {}
    for split in ("train", "test"):
      source = data_lib.get_source(
          spec.name,
          spec[f"{split}_split"],
          data_dir=config.get("data_dir"),
          **kwargs,
      )
      if spec.in_memory and hasattr(source, "to_array_source"):
        source = source.to_array_source()
      domains[domain][split] = source
  shapes = {
      domain: splits["train"].input_shape for domain, splits in domains.items()
  }
  if len(set(shapes.values())) != 1:
    raise ValueError(
        f"source and target inputs differ in shape {shapes}; one "
        "model must read both domains"
    )
  classes = {
      domain: splits["train"].num_classes for domain, splits in domains.items()
  }
  if len(set(classes.values())) != 1:
    raise ValueError(
        f"source and target have different label sets {classes}; "
        "closed-set transfer needs the same classes"
    )
  return domains


def select_target_labels(domains, config, seed: int) -> dict:
  """The target splits a run with ``seed`` uses, given the few-label settings.

  With ``config.target.labels_per_class`` (k) or
  ``config.target.validation_per_class`` set, the target training split is
  divided per seed into a validation set (``validation``) and k labeled
  examples per class (``train``); all training inputs stay available,
  unlabeled, as ``unlabeled``. The test split is never touched.
  """
  spec = config.target
  labels_per_class = spec.get("labels_per_class")
  validation_per_class = spec.get("validation_per_class") or 0
  target = dict(domains["target"])
  target["unlabeled"] = domains["target"]["train"]
  if labels_per_class is None and not validation_per_class:
    return {**domains, "target": target}
  labeled, validation = data_lib.labeled_subsets(
      domains["target"]["train"],
      labels_per_class=labels_per_class,
      validation_per_class=validation_per_class,
      seed=seed,
  )
  target["train"] = labeled
  if validation is not None:
    target["validation"] = validation
  return {**domains, "target": target}


def build_model(config, domains) -> models_lib.Model:
  """The config's model for the domains' input shape and number of classes."""
  kwargs = {key: value for key, value in config.model.items() if key != "name"}
  train = domains["source"]["train"]
  return models_lib.create_model(
      config.model.name,
      num_classes=train.num_classes,
      input_shape=tuple(train.input_shape),
      **kwargs,
  )


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


def _stream_seed(seed: int, domain: str) -> int:
  # The same streams as data.paired_batches(source, target, seed=seed).
  return seed if domain == "source" else data_lib.target_stream_seed(seed)


def training_batches(
    method, domains, *, batch_size: int, seed: int, start_step: int
) -> Iterator[dict]:
  """Batches for ``method``: one stream per domain it trains on, labels only where allowed.

  Each batch is ``{"step": int32, domain: {"input"[, "label"][, "index"]},
  ...}``: ``"index"`` (the examples' positions in the domain's training
  split) for the domains in ``method.example_indices``.

  Every stream is a pure function of (seed, step), so a resumed run sees the
  batches an uninterrupted one would have.
  """
  streams = {}
  for domain in method.domains:
    # A domain the method may not label reads its whole training split.
    split = (
        "train"
        if domain in method.labeled
        else "unlabeled"
        if "unlabeled" in domains[domain]
        else "train"
    )
    streams[domain] = data_lib.batches(
        domains[domain][split],
        batch_size=batch_size,
        seed=_stream_seed(seed, domain),
        start_step=start_step,
        with_indices=domain in method.example_indices,
    )
  for step in itertools.count(start_step):
    # The step lets a loss follow the training progress (DANN's warm-up).
    batch = {"step": np.int32(step)}
    for domain, stream in streams.items():
      examples = next(stream)
      if domain not in method.labeled:
        examples = {
            key: examples[key] for key in ("input", "index") if key in examples
        }
      batch[domain] = examples
    yield batch


def _evaluate_domains(model, state, domains, batch_size, model_keys) -> dict:
  # Parameters a method added next to the model's (model_keys) are not the
  # model's to read.
  params = {
      key: value for key, value in state.params.items() if key in model_keys
  }
  results = {}
  for domain, splits in domains.items():
    for split in EVALUATED_SPLITS:
      if split in splits:
        results[f"{domain}_{split}"] = evaluate(
            model,
            params,
            state.model_state,
            splits[split],
            batch_size=batch_size,
        )
  return results


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

  The part of :func:`train_and_evaluate` before the loop; a sweep
  (:func:`tljax.train.sweep.run_sweep`) calls it once per member.
  ``prior_runs``: ``{role: directory}`` of the runs the method needs (see
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
  if init_from is not None:
    dont_load = tuple(init_from.get("dont_load") or ())
    source_params, source_model_state = params_lib.read_checkpoint(
        init_from["workdir"],
        allow_unverified=bool(init_from.get("allow_unverified")),
    )
    params, model_state = params_lib.merge_pretrained(
        params,
        source_params,
        dont_load=dont_load,
        zero_init=tuple(init_from.get("zero_init") or ()),
        init_model_state=model_state,
        loaded_model_state=source_model_state,
    )
    transferred = params_lib.transferred_names(params, dont_load)
  context = methods_lib.TransferContext(
      params=params,
      model_state=model_state,
      transferred=transferred,
      source_params=source_params,
      source_model_state=source_model_state,
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
  )


def divergence_policy(config) -> str:
  """``config.divergence_policy`` (``"stop"`` when the config predates it)."""
  return config.get("divergence_policy", "stop")


def _divergence_message(
    first_step: int, policy: str, last_finite: tuple[int, dict] | None
) -> str:
  if last_finite is None:
    before = "no finite metrics were logged before it"
  else:
    step, metrics = last_finite
    shown = ", ".join(
        f"{key}={value:.6g}"
        for key, value in metrics.items()
        if isinstance(value, float)
    )
    before = f"the last finite metrics (step {step}): {shown}"
  return (
      f"training stopped (divergence_policy={policy!r}): the loss, "
      f"gradients or new parameters of step {first_step + 1} were not "
      f"finite; {before}. The state was not updated from that step on and "
      "no checkpoint was written after it. Lower the learning rate, clip "
      "gradients (optimizer.grad_clip_norm) or set "
      "divergence_policy='skip' to skip such steps."
  )


def skipped_fraction_limit(config) -> float:
  """``config.max_skipped_fraction`` (0.05 when the config predates it)."""
  return float(config.get("max_skipped_fraction", 0.05))


class SkippedStepsWarning(UserWarning):
  """A run skipped more of its steps than ``config.max_skipped_fraction``."""


def skipped_steps_message(
    method_name: str, seed: int, skipped: int, steps: int, limit: float
) -> str:
  return (
      f"{method_name} seed {seed} skipped {skipped} of its {steps} steps "
      f"({100 * skipped / max(steps, 1):.0f}%, more than "
      f"max_skipped_fraction={limit:g}) as non-finite under "
      "divergence_policy='skip'; its results are not those of a trained "
      "model. Lower the learning rate or clip gradients "
      "(optimizer.grad_clip_norm)"
  )


def train_and_evaluate(
    config,
    workdir: str,
    *,
    method_name: str | None = None,
    seed: int = 0,
    init_from: Mapping | None = None,
    prior_runs: Mapping[str, str] | None = None,
    domains=None,
) -> dict:
  """Trains one method with one seed into ``workdir`` and returns its summary.

  Args:
    config: the experiment config (see ``configs/digits.py``).
    workdir: this run's directory (checkpoints, ``metrics.jsonl``,
      ``summary.json``). An existing run there is resumed from its latest
      checkpoint. The run holds the work dir's lock while it runs
      (:mod:`tljax.train.workdir`): a second writer is refused.
    method_name: which registered method to train (default ``config.method``).
    seed: the run's seed; it fixes initialisation, data order and step keys.
    init_from: ``{"workdir", "dont_load", "zero_init"[, "allow_unverified"]}``
      to start from a source run's parameters (see
      :func:`tljax.params.load_pretrained`); ``None`` trains from scratch.
      :func:`tljax.train.experiment.run_experiment` decides it from the
      method's ``pretrain`` and ``config.init_from``.
    prior_runs: ``{role: directory}`` of the other runs the method needs
      (a ``distill`` teacher; see :attr:`tljax.methods.Method.needs`).
    domains: pre-loaded data (from :func:`load_domains`), to share between runs.

  Raises:
    WorkdirBusyError: another process is writing ``workdir``.
    ValueError: a bad config value, or ``workdir`` holds a run (one that
      completed a step) with another config; nothing is written then.
    DivergenceError: a non-finite step under ``divergence_policy="stop"``.
    CheckpointError: the checkpoint to resume from cannot be trusted.
  """
  method_name = method_name or config.method
  start_time = time.perf_counter()
  # Set up first: a value checked where it is used (a model option, an
  # optimizer setting) then raises before the work dir is touched.
  run = setup_run(
      config,
      method_name,
      seed,
      domains=domains,
      init_from=init_from,
      prior_runs=prior_runs,
  )
  with workdir_lib.WorkdirLock(workdir):
    return _train_and_evaluate(
        config,
        workdir,
        run,
        method_name,
        seed,
        init_from,
        prior_runs,
        start_time,
    )


def _train_and_evaluate(
    config,
    workdir: str,
    run: RunSetup,
    method_name: str,
    seed: int,
    init_from,
    prior_runs,
    start_time: float,
) -> dict:
  """The body of :func:`train_and_evaluate`, with the work dir locked."""
  checkpoint_dir = os.path.join(workdir, CHECKPOINT_SUBDIR)
  # A run that has a checkpoint owns the work dir: a different config is
  # refused before anything is written. Without one, any stored record is
  # that of a run which never completed a step, and is replaced.
  claimed = workdir_lib.has_checkpoint(checkpoint_dir)
  record = {
      "config": config.to_dict(),
      "method": method_name,
      "seed": seed,
      "init_from": dict(init_from) if init_from is not None else None,
  }
  if prior_runs:
    record["prior_runs"] = dict(prior_runs)
  workdir_lib.claim(
      os.path.join(workdir, RUN_CONFIG_FILE),
      record,
      what="a run",
      binding=claimed,
  )
  domains, model, method, state = (
      run.domains,
      run.model,
      run.method,
      run.state,
  )
  train_key, model_keys, schedule = run.train_key, run.model_keys, run.schedule

  # --- The update step: one jitted pure function, state donated -------------
  mesh = parallel.make_mesh() if config.parallel.data_parallel else None
  # The per-step key fold_in(train_key, step) is made inside the step.
  step_fn = keyed_by_step(run.step_fn)
  if mesh is None:
    train_step = jax.jit(step_fn, donate_argnums=0)
  else:
    # The same step, its state placed on the mesh by rule and the batch split
    # along it; XLA inserts the gradient all-reduce.
    parallel.check_batch_size(config.batch_size, mesh)
    shardings = parallel.state_shardings(
        state, mesh, config.parallel.param_rules
    )
    train_step = jax.jit(
        step_fn,
        donate_argnums=0,
        out_shardings=(shardings, parallel.replicated(mesh)),
    )

  # --- Checkpoints: resume from the latest complete one ---------------------
  checkpointer = Checkpointer(
      checkpoint_dir,
      max_to_keep=config.keep_checkpoints,
      save_every=config.checkpoint_every,
  )
  if checkpointer.latest_step() is not None:
    state = checkpointer.restore(state)
  if mesh is not None:
    state = parallel.shard_state(state, shardings)
  start_step = int(state.step)

  provenance.record_session(
      workdir,
      seed=seed,
      config=config,
      start_step=start_step,
      claimed=claimed,
      method=method_name,
  )

  # --- The loop ---------------------------------------------------------------
  policy = divergence_policy(config)
  last_finite = None

  def check_divergence(state, done):
    # One scalar read, only at steps that synchronise anyway (logging,
    # evaluation, checkpoints).
    if policy == "stop":
      first = int(jax.device_get(state.first_nonfinite_step))
      if first >= 0:
        raise DivergenceError(_divergence_message(first, policy, last_finite))

  writer = metrics_lib.MetricWriter(
      workdir,
      tensorboard=bool(config.get("tensorboard")),
      resume_step=start_step,
  )
  batches = data_lib.prefetch(
      training_batches(
          method,
          domains,
          batch_size=config.batch_size,
          seed=seed,
          start_step=start_step,
      ),
      size=config.prefetch,
      transfer=parallel.batch_transfer(mesh) if mesh is not None else None,
  )
  examples_per_step = config.batch_size * len(method.domains)
  progress = tqdm.tqdm(
      range(start_step, config.steps),
      initial=start_step,
      total=config.steps,
      desc=f"{method_name} seed {seed}",
      disable=not config.progress_bar,
      mininterval=2.0,
      dynamic_ncols=True,
  )
  window_start, window_steps = time.perf_counter(), 0
  signals = StopSignals()
  try:
    with signals:
      for step in progress:
        state, step_metrics = train_step(state, next(batches), train_key)
        window_steps += 1
        done = step + 1
        if done % config.log_every == 0 or done == config.steps:
          step_metrics = jax.device_get(step_metrics)
          elapsed = time.perf_counter() - window_start
          throughput = window_steps * examples_per_step / max(elapsed, 1e-9)
          writer.write(
              done,
              {
                  **step_metrics,
                  "examples_per_second": throughput,
                  "learning_rate": schedule(step),
              },
          )
          check_divergence(state, done)
          if np.isfinite(step_metrics["loss"]):
            last_finite = (
                done,
                {
                    key: float(value)
                    for key, value in step_metrics.items()
                    if np.ndim(value) == 0
                },
            )
          progress.set_postfix(
              loss=f"{float(step_metrics['loss']):.4f}",
              ex_per_s=f"{throughput:,.0f}",
          )
          window_start, window_steps = time.perf_counter(), 0
        if config.eval_every and done % config.eval_every == 0:
          check_divergence(state, done)
          evaluation = _evaluate_domains(
              model, state, domains, config.eval_batch_size, model_keys
          )
          writer.write(
              done,
              {
                  f"{name}/{key}": value
                  for name, result in evaluation.items()
                  for key, value in result.items()
              },
          )
        # SIGTERM/SIGINT: this step is logged; save it, then leave.
        stopping = signals.received is not None
        if checkpointer.is_due(done) or done == config.steps or stopping:
          check_divergence(state, done)
          checkpointer.save(done, state, force=True)
        if stopping:
          break
  finally:
    progress.close()
    batches.close()
    checkpointer.close()
    writer.close()
  if signals.received is not None:
    # The checkpoint is on disk: end the way the signal would have.
    signals.resend(int(state.step))

  # --- Final evaluation and summary (the last step: nothing picked on test) ---
  evaluation = _evaluate_domains(
      model, state, domains, config.eval_batch_size, model_keys
  )
  steps, skipped = int(state.step), int(state.skipped_steps)
  limit = skipped_fraction_limit(config)
  summary = {
      "method": method_name,
      "setting": method.setting,
      "seed": seed,
      "steps": steps,
      "resumed_from_step": start_step,
      "skipped_steps": skipped,
      "skipped_too_many": skipped > limit * steps,
      "init_from": dict(init_from) if init_from is not None else None,
      "wall_seconds": time.perf_counter() - start_time,
      **evaluation,
  }
  metrics_lib.write_summary(workdir, summary)
  if summary["skipped_too_many"]:
    warnings.warn(
        skipped_steps_message(method_name, seed, skipped, steps, limit),
        SkippedStepsWarning,
        stacklevel=3,
    )  # the caller of train_and_evaluate
  return summary
