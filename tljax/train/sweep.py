"""Sweeps as one compiled program: N small models trained together by ``jax.vmap``.

``run_sweep(config, workdir)`` trains ``config.method`` for every member of
the grid ``config.seeds × config.sweep.learning_rates × config.sweep.hparams``
(``hparams`` maps each swept hyper-parameter to its values; an empty list
stands for the config's own value) in one jitted, vmapped step: the members'
train states are stacked along a leading axis, each member reads its own
batch (its seed's data stream), its own step key, its own learning rate and
its own hyper-parameters. On one accelerator N small models then cost little
more than one; on CPU the gain is the fewer, larger kernels.

What can be swept is what the recipe traces: the learning rate, and the
recipe's :attr:`tljax.methods.Method.hparams` (the adaptation recipes'
``trade_off`` λ, ...). Both live in the train state, so vmap gives each
member its own:

* learning rate: the optimizer is made with ``inject_learning_rate``
  (:func:`optax.inject_hyperparams`), and each member's optimizer state holds
  its rate (:func:`tljax.train.optim.set_learning_rate`);
* a traced hyper-parameter: each member's ``state.hparams[name]``, which the
  step passes to the recipe's loss.

Each member ends with the parameters its own single run
(:func:`tljax.train.loop.train_and_evaluate` with that seed, learning rate
and ``method_kwargs``) would have, to float tolerance (tested). Initialisation runs once per
member on the host (the same code as a single run), the stacked state is
checkpointed in ``workdir/checkpoints`` every ``config.checkpoint_every``
steps (a rerun resumes), and each member's evaluation is written to
``workdir/<member>/summary.json`` plus ``workdir/sweep.json`` and
``workdir/sweep.md`` (target test accuracy per learning rate and swept
hyper-parameters, mean ± std over seeds). Each member has its own divergence guard
(``config.divergence_policy``): a member that meets a non-finite step is
skipped over or stopped at its last finite state while the others train on,
and its summary says at which step (``diverged_at_step``). SIGTERM and
SIGINT save a checkpoint before the sweep exits. A recipe that needs runs
first (:attr:`tljax.methods.Method.needs`) must name finished ones: a
recipe that starts from a source run (``finetune``, ``linear_probe``, ...)
starts every member from ``config.init_from.workdir`` (``{seed}`` replaced by
the member's seed); a sweep does not train those runs itself. Members are evaluated once, at the
end (``config.eval_every`` and ``config.tensorboard`` apply to single runs).
Not supported: recipes updated in stages (``mcd``) and data parallelism (a
sweep is the other way to use devices).

With ``config.progress_bar`` the sweep says where it is on standard error
(:mod:`tljax.train.progress`): a line as each member is set up and
evaluated (``sweep: setting up member 2 of 6: seed_0_lr_0.003 [3s]``), and
the steps as a single run shows them (a bar labelled ``(compiling)`` until
the first step is done, or outside a terminal one line per log step with
the members' mean loss and the ETA).
"""

from __future__ import annotations

import itertools
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from tljax import data as data_lib
from tljax import methods as methods_lib
from tljax.checkpoint import CHECKPOINT_SUBDIR, Checkpointer
from tljax.train import metrics as metrics_lib
from tljax.train.experiment import check_experiment_config
from tljax.train.interrupt import StopSignals
from tljax.train.progress import Progress, Stages
from tljax.train import workdir as workdir_lib
from tljax.train.domains import load_domains, training_batches
from tljax.train.loop import _evaluate_domains
from tljax.train.run_setup import (
    build_model,
    pretrain_init_from,
    pretrained_init_from,
    setup_run,
)
from tljax.train.optim import set_learning_rate
from tljax.train.step import keyed_by_step

SWEEP_JSON = "sweep.json"
SWEEP_MARKDOWN = "sweep.md"
# Significant digits of a swept value in member names (1e-3 → "0.001").
NAME_DIGITS = 10


def _swept_values(name: str, given, *, positive: bool) -> tuple[float, ...]:
  """``given`` (one number or a sequence) as floats, checked, naming ``sweep.<name>``."""
  if isinstance(given, (int, float)) and not isinstance(given, bool):
    given = (given,)
  given = tuple(given or ())
  for value in given:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not (np.isfinite(value) and (value > 0 or not positive))
    ):
      bound = "finite numbers > 0" if positive else "finite numbers"
      raise ValueError(
          f"config key 'sweep.{name}' must hold {bound}, got " f"{given!r}"
      )
  if len({member_value(float(v)) for v in given}) != len(given):
    # Members are named (and their summaries stored) by these values.
    raise ValueError(
        f"config key 'sweep.{name}' has repeated values (to "
        f"{NAME_DIGITS} significant digits): {given!r}"
    )
  return tuple(float(v) for v in given)


def sweep_members(config, method) -> list[dict]:
  """The grid: ``[{"seed", "learning_rate", "hparams": {name: value}}]``.

  ``method`` is the built :class:`tljax.methods.Method` of ``config.method``:
  ``config.sweep.hparams`` may name its traced hyper-parameters
  (``method.hparams``) only; each swept value must pass the recipe's own
  check of that setting. ``hparams`` holds every traced hyper-parameter of
  the member (the config's value where not swept).
  """
  learning_rates = _swept_values(
      "learning_rates", config.sweep.get("learning_rates"), positive=True
  ) or (float(config.optimizer.learning_rate),)
  swept = dict(config.sweep.get("hparams") or {})
  unknown = sorted(set(swept) - set(method.hparams))
  if unknown:
    raise ValueError(
        f"config key 'sweep.hparams.{unknown[0]}': method "
        f"{config.method!r} traces no such hyper-parameter; it "
        f"can sweep: {sorted(method.hparams)}"
    )
  grids = {}
  settings = methods_lib.method_defaults(config.method)
  for name in sorted(method.hparams):
    values = _swept_values(f"hparams.{name}", swept.get(name), positive=False)
    for value in values:
      if name in settings:
        # The recipe's own check of the setting (e.g. trade_off >= 0).
        try:
          methods_lib.method_settings(
              config.method,
              {**dict(config.get("method_kwargs") or {}), name: value},
          )
        except ValueError as error:
          raise ValueError(
              f"config key 'sweep.hparams.{name}': {value!r} is "
              f"refused: {error}"
          ) from None
    grids[name] = values or (float(method.hparams[name]),)
  names = list(grids)
  return [
      {
          "seed": int(seed),
          "learning_rate": lr,
          "hparams": dict(zip(names, values)),
      }
      for seed, lr, *values in itertools.product(
          config.seeds, learning_rates, *grids.values()
      )
  ]


def _prior_runs(config, method) -> tuple[dict | None, dict]:
  """``(init_from, prior_runs)`` of a recipe that needs runs first, ``{seed}`` still in them.

  As :func:`tljax.train.experiment.run_experiment` does with finished runs
  (:func:`tljax.train.run_setup.pretrain_init_from` for the ``"pretrain"`` one);
  a sweep does not train them itself, so a recipe that needs an unnamed
  run is an error rather than a silent training from scratch.
  """
  init_from, prior_runs = None, {}
  for prior in method.needs:
    if prior.pretrained:  # a converted checkpoint stands in for the run
      init_from = pretrained_init_from(method, config)
      continue
    if not prior.workdir:
      if prior.role == methods_lib.PRETRAIN:
        raise ValueError(
            f"config key 'init_from.workdir': method {config.method!r} starts "
            f"from a {prior.method!r} run, which a sweep does not train; "
            "train it first (tljax train) and set init_from.workdir to its "
            "run directory ({seed} is replaced by each member's seed)"
        )
      raise ValueError(
          f"config key 'method_kwargs': method {config.method!r} needs a "
          f"{prior.role!r} run ({prior.method!r}), which a sweep does not "
          "train; train it first and name its run directory in the "
          "method's settings ({seed} is replaced by each member's seed)"
      )
    if prior.role == methods_lib.PRETRAIN:
      init_from = pretrain_init_from(method, config, prior.workdir)
    else:
      prior_runs[prior.role] = prior.workdir
  return init_from, prior_runs


def member_value(value: float) -> str:
  """A swept value as it appears in a member's name."""
  return f"{value:.{NAME_DIGITS}g}"


def member_name(member: dict) -> str:
  name = f"seed_{member['seed']}_lr_{member_value(member['learning_rate'])}"
  for key, value in sorted(member["hparams"].items()):
    name += f"_{key}_{member_value(value)}"
  return name


def _stack(trees):
  return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def _member(tree, index):
  return jax.tree.map(lambda leaf: leaf[index], tree)


def run_sweep(config, workdir: str) -> dict:
  """Trains every member of the config's sweep grid together; returns the results.

  Returns:
    ``{"members": [summary, ...], "table": [row, ...]}``: each member's
    summary (its seed, learning rate, traced ``hparams`` and evaluation) and
    one row per (learning rate, hparams) with the mean and sample std over
    seeds of the target test accuracy.
  """
  check_experiment_config(config)
  if config.parallel.data_parallel:
    raise ValueError(
        "config key 'parallel.data_parallel': a sweep runs on one "
        "device; use one or the other"
    )
  start_time = time.perf_counter()
  base_domains = load_domains(config)
  method = methods_lib.build_method(
      config.method, config, build_model(config, base_domains)
  )
  members = sweep_members(config, method)
  init_from, prior_runs = _prior_runs(config, method)
  say = Stages("sweep", enabled=config.progress_bar)

  def for_seed(template, seed):
    return (
        None
        if template is None
        else {
            key: (value.format(seed=seed) if key == "workdir" else value)
            for key, value in template.items()
        }
    )

  def set_up(index, member):
    say(
        f"setting up member {index + 1} of {len(members)}: "
        f"{member_name(member)}"
    )
    return setup_run(
        config,
        config.method,
        member["seed"],
        domains=base_domains,
        inject_learning_rate=True,
        init_from=for_seed(init_from, member["seed"]),
        prior_runs={
            role: directory.format(seed=member["seed"])
            for role, directory in prior_runs.items()
        },
    )

  runs = [set_up(index, member) for index, member in enumerate(members)]
  if runs[0].method.stages:
    raise ValueError(
        f"config key 'method': {config.method!r} updates in "
        "stages; sweeps support single-update recipes"
    )
  with workdir_lib.WorkdirLock(workdir):
    return _train_sweep(config, workdir, members, runs, start_time, say)


def _train_sweep(
    config,
    workdir: str,
    members: list[dict],
    runs: list,
    start_time: float,
    say: Stages,
) -> dict:
  """The body of :func:`run_sweep`, with the work dir locked."""
  method, model = runs[0].method, runs[0].model
  checkpoint_dir = os.path.join(workdir, CHECKPOINT_SUBDIR)
  # Checked once the set-up has checked every value it uses; binding once
  # the sweep has a checkpoint (see tljax.train.workdir).
  workdir_lib.claim(
      os.path.join(workdir, workdir_lib.RUN_CONFIG_FILE),
      {"config": config.to_dict(), "sweep": members},
      what="a sweep",
      binding=workdir_lib.has_checkpoint(checkpoint_dir),
  )
  # Each member's learning rate and traced hyper-parameters in its state.
  state = _stack(
      [
          run.state.replace(
              opt_state=set_learning_rate(
                  run.state.opt_state, member["learning_rate"]
              ),
              hparams={
                  name: jnp.asarray(value, jnp.float32)
                  for name, value in member["hparams"].items()
              },
          )
          for run, member in zip(runs, members)
      ]
  )
  train_keys = jnp.stack([run.train_key for run in runs])

  def step(state, batch, train_keys):
    # Each member's key is fold_in(its train key, step), made in the step.
    return jax.vmap(keyed_by_step(runs[0].step_fn))(state, batch, train_keys)

  train_step = jax.jit(step, donate_argnums=0)
  checkpointer = Checkpointer(
      checkpoint_dir,
      max_to_keep=config.keep_checkpoints,
      save_every=config.checkpoint_every,
  )
  if checkpointer.latest_step() is not None:
    state = checkpointer.restore(state)
  start_step = int(state.step[0])
  streams = [
      training_batches(
          method,
          run.domains,
          batch_size=config.batch_size,
          seed=member["seed"],
          start_step=start_step,
          config=config,
      )
      for run, member in zip(runs, members)
  ]

  def stacked_batches():
    for batches in zip(*streams):
      batch = _stack(
          [{k: v for k, v in b.items() if k != "step"} for b in batches]
      )
      batch["step"] = jnp.full((len(members),), batches[0]["step"], jnp.int32)
      yield batch

  batches = data_lib.prefetch(stacked_batches(), size=config.prefetch)
  writer = metrics_lib.MetricWriter(workdir, resume_step=start_step)
  examples_per_step = len(members) * config.batch_size * len(method.domains)
  progress = Progress(
      f"sweep of {len(members)} members",
      start=start_step,
      total=config.steps,
      enabled=config.progress_bar,
  )
  window_start, window_steps = time.perf_counter(), 0
  signals = StopSignals()
  try:
    with signals:
      for index in range(start_step, config.steps):
        state, step_metrics = train_step(state, next(batches), train_keys)
        done = index + 1
        window_steps += 1
        progress.step(done)
        if done % config.log_every == 0 or done == config.steps:
          step_metrics = jax.device_get(step_metrics)
          elapsed = time.perf_counter() - window_start
          losses = np.asarray(step_metrics["loss"], np.float64)
          progress.log(
              done,
              # The members' mean loss (those still finite).
              float(np.mean(losses[np.isfinite(losses)]))
              if np.isfinite(losses).any()
              else float("nan"),
              window_steps * examples_per_step / max(elapsed, 1e-9),
          )
          window_start, window_steps = time.perf_counter(), 0
          writer.write(
              done,
              {
                  f"{member_name(member)}/{key}": float(value[i])
                  for key, value in step_metrics.items()
                  for i, member in enumerate(members)
              },
          )
        stopping = signals.received is not None  # SIGTERM/SIGINT
        checkpointer.save(done, state, force=done == config.steps or stopping)
        if stopping:
          break
  finally:
    progress.close()
    batches.close()
    checkpointer.close()
    writer.close()
  if signals.received is not None:
    signals.resend(int(state.step[0]))

  summaries = []
  for index, (run, member) in enumerate(zip(runs, members)):
    say(
        f"evaluating member {index + 1} of {len(members)}: "
        f"{member_name(member)}"
    )
    evaluation = _evaluate_domains(
        model,
        _member(state, index),
        run.domains,
        config.eval_batch_size,
        run.model_keys,
    )
    summary = {
        "method": config.method,
        **member,
        "name": member_name(member),
        "steps": int(state.step[index]),
        "skipped_steps": int(state.skipped_steps[index]),
        # Under divergence_policy "stop" a diverged member keeps its
        # last finite state; the others train on.
        "diverged_at_step": (
            int(state.first_nonfinite_step[index]) + 1
            if int(state.first_nonfinite_step[index]) >= 0
            else None
        ),
        **evaluation,
    }
    member_dir = os.path.join(workdir, member_name(member))
    os.makedirs(member_dir, exist_ok=True)
    metrics_lib.write_summary(member_dir, summary)
    summaries.append(summary)
  table = []

  def setting(summary):
    return (summary["learning_rate"], tuple(sorted(summary["hparams"].items())))

  for (lr, hparams), group in itertools.groupby(
      sorted(summaries, key=setting), key=setting
  ):
    accuracies = np.array([s["target_test"]["accuracy"] for s in group])
    table.append(
        {
            "learning_rate": lr,
            "hparams": dict(hparams),
            "seeds": len(accuracies),
            "target_test_accuracy_mean": float(accuracies.mean()),
            "target_test_accuracy_std": (
                float(accuracies.std(ddof=1)) if len(accuracies) > 1 else 0.0
            ),
        }
    )
  results = {
      "method": config.method,
      "members": summaries,
      "table": table,
      "wall_seconds": time.perf_counter() - start_time,
  }
  metrics_lib.write_json_atomically(os.path.join(workdir, SWEEP_JSON), results)
  with open(os.path.join(workdir, SWEEP_MARKDOWN), "w", encoding="utf-8") as f:
    f.write(format_sweep(results) + "\n")
  return results


def format_sweep(results: dict) -> str:
  """The sweep's table in markdown: one row per learning rate and hyper-parameters."""
  names = sorted({name for row in results["table"] for name in row["hparams"]})
  lines = [
      f"| {results['method']}: learning rate | "
      + "".join(f"{name} | " for name in names)
      + "seeds | target test accuracy (%) |",
      "| --- | " + "--- | " * len(names) + "--- | --- |",
  ]
  for row in results["table"]:
    values = "".join(f"{row['hparams'][name]:g} | " for name in names)
    lines.append(
        f"| {row['learning_rate']:g} | {values}{row['seeds']} | "
        f"{100 * row['target_test_accuracy_mean']:.1f} ± "
        f"{100 * row['target_test_accuracy_std']:.1f} |"
    )
  return "\n".join(lines)
