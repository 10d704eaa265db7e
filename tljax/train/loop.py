"""One training run, top to bottom: set-up, step, checkpoints, loop, summary.

``train_and_evaluate(config, workdir, method_name=..., seed=...)`` trains one
method with one seed into ``workdir`` (resuming from its latest checkpoint) and
returns the run's summary, which is also written to ``workdir/summary.json``.
The sections below follow the life of a run in order. What comes before the
first step is :func:`tljax.train.run_setup.setup_run` (data from
:mod:`tljax.train.domains`, model, recipe, state, optimizer, step); the
work dir's lock and the claim of its config are :mod:`tljax.train.workdir`;
the divergence policy's messages are :mod:`tljax.train.divergence`. Their
names used to live here and are still importable from this module.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Mapping

import jax
import numpy as np

from tljax import data as data_lib
from tljax.checkpoint import CHECKPOINT_SUBDIR, Checkpointer
from tljax.errors import DivergenceError
from tljax.train import metrics as metrics_lib
from tljax.train import parallel
from tljax.train import provenance
from tljax.train import workdir as workdir_lib
from tljax.train.divergence import (
    SkippedStepsWarning,
    divergence_message,
    divergence_policy,
    skipped_fraction_limit,
    skipped_steps_message,
)
from tljax.train.domains import (
    load_domains,
    select_target_labels,
    training_batches,
)
from tljax.train.evaluate import evaluate
from tljax.train.interrupt import StopSignals
from tljax.train.progress import Progress
from tljax.train.run_setup import (
    TRAIN_EVERYTHING,
    RunSetup,
    build_model,
    pretrain_init_from,
    setup_run,
)
from tljax.train.step import keyed_by_step

__all__ = [
    "EVALUATED_SPLITS",
    "RunSetup",
    "SkippedStepsWarning",
    "TRAIN_EVERYTHING",
    "build_model",
    "divergence_policy",
    "load_domains",
    "pretrain_init_from",
    "select_target_labels",
    "setup_run",
    "skipped_fraction_limit",
    "skipped_steps_message",
    "train_and_evaluate",
    "training_batches",
]

# The splits evaluated during and after training, logged as
# "<domain>_<split>/<metric>".
EVALUATED_SPLITS = ("validation", "test")


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


def train_and_evaluate(
    config,
    workdir: str,
    *,
    method_name: str | None = None,
    seed: int = 0,
    init_from: Mapping | None = None,
    prior_runs: Mapping[str, str] | None = None,
    domains=None,
    description: str | None = None,
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
      :func:`tljax.params.load_pretrained`), or ``{"pretrained",
      "pretrained_options", "dont_load", "zero_init"}`` from a converted
      checkpoint (:func:`tljax.train.run_setup.pretrained_init_from`);
      ``None`` trains from scratch, or from ``config.init_from.pretrained``
      where it is set.
      :func:`tljax.train.experiment.run_experiment` decides it from the
      method's ``pretrain`` and ``config.init_from``.
    prior_runs: ``{role: directory}`` of the other runs the method needs
      (a ``distill`` teacher; see :attr:`tljax.methods.Method.needs`).
    domains: pre-loaded data (from :func:`load_domains`), to share between runs.
    description: what the progress shows (default ``"<method> seed
      <seed>"``; an experiment's runs say ``"run 4 of 9: jan seed 0"``; see
      :mod:`tljax.train.progress`).

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
        run.init_from,
        prior_runs,
        start_time,
        description,
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
    description: str | None = None,
) -> dict:
  """The body of :func:`train_and_evaluate`, with the work dir locked."""
  checkpoint_dir = os.path.join(workdir, CHECKPOINT_SUBDIR)
  # Refused here, before anything is written, if the work dir holds a run
  # (one that completed a step) with another config.
  claimed = workdir_lib.claim_run(
      workdir,
      config,
      method=method_name,
      seed=seed,
      init_from=init_from,
      prior_runs=prior_runs,
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
        raise DivergenceError(divergence_message(first, policy, last_finite))

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
          config=config,
      ),
      size=config.prefetch,
      transfer=parallel.batch_transfer(mesh) if mesh is not None else None,
  )
  examples_per_step = config.batch_size * len(method.domains)
  progress = Progress(
      description or f"{method_name} seed {seed}",
      start=start_step,
      total=config.steps,
      enabled=config.progress_bar,
  )
  window_start, window_steps = time.perf_counter(), 0
  signals = StopSignals()
  try:
    with signals:
      for step in range(start_step, config.steps):
        state, step_metrics = train_step(state, next(batches), train_key)
        window_steps += 1
        done = step + 1
        progress.step(done)
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
          progress.log(done, float(step_metrics["loss"]), throughput)
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
  except jax.errors.JaxRuntimeError as error:
    if jax.process_count() == 1:
      raise
    # Another process died: say so, and where the rerun resumes.
    raise parallel.peer_failure(error, checkpointer.latest_step()) from error
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
