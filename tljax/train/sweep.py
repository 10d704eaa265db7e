"""Sweeps as one compiled program: N small models trained together by ``jax.vmap``.

``run_sweep(config, workdir)`` trains ``config.method`` for every member of
the grid ``config.seeds × config.sweep.learning_rates ×
config.sweep.trade_offs`` (an empty list stands for the config's own value)
in one jitted, vmapped step: the members' train states are stacked along a
leading axis, each member reads its own batch (its seed's data stream), its
own step key, its own learning rate and its own adaptation weight λ. On one
accelerator N small models then cost little more than one; on CPU the gain is
the fewer, larger kernels.

How the hyper-parameters become per-member values:

* learning rate: the optimizer is wrapped by
  :func:`tljax.train.loop.scale_updates`, whose state holds a scale; member
  ``i`` gets ``lr_i / config.optimizer.learning_rate`` (every tljax optimizer
  and schedule is proportional to its learning rate);
* λ: each member's batch carries ``hparams["trade_off"]``, which the
  adaptation recipes read in place of their configured weight
  (:func:`tljax.methods.adaptation.swept_trade_off`).

Each member ends with the parameters its own single run
(:func:`tljax.train.loop.train_and_evaluate` with that seed, learning rate
and λ) would have, to float tolerance (tested). Initialisation runs once per
member on the host (the same code as a single run), the stacked state is
checkpointed in ``workdir/checkpoints`` every ``config.checkpoint_every``
steps (a rerun resumes), and each member's evaluation is written to
``workdir/<member>/summary.json`` plus ``workdir/sweep.json`` and
``workdir/sweep.md`` (target test accuracy per learning rate and λ, mean ±
std over seeds). Each member has its own divergence guard
(``config.divergence_policy``): a member that meets a non-finite step is
skipped over or stopped at its last finite state while the others train on,
and its summary says at which step (``diverged_at_step``). SIGTERM and
SIGINT save a checkpoint before the sweep exits. A recipe that starts from
a source run (``finetune``, ``linear_probe``, ...) starts every member from
``config.init_from.workdir`` (``{seed}`` replaced by the member's seed); a
sweep does not train that run itself. Members are evaluated once, at the
end (``config.eval_every`` and ``config.tensorboard`` apply to single runs).
Not supported: recipes updated in stages (``mcd``) and data parallelism (a
sweep is the other way to use devices).
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
from tljax.methods.adaptation import DEFAULT_TRADE_OFFS
from tljax.checkpoint import CHECKPOINT_SUBDIR, Checkpointer
from tljax.train import metrics as metrics_lib
from tljax.train.experiment import check_experiment_config
from tljax.train.interrupt import StopSignals
from tljax.train import workdir as workdir_lib
from tljax.train.loop import (_evaluate_domains, build_model, load_domains,
                              pretrain_init_from, setup_run, training_batches)
from tljax.train.step import keyed_by_step

SWEEP_JSON = "sweep.json"
SWEEP_MARKDOWN = "sweep.md"
# Significant digits of a swept value in member names (1e-3 → "0.001").
NAME_DIGITS = 10


def sweep_members(config) -> list[dict]:
  """The grid: ``[{"seed", "learning_rate", "trade_off"}]`` (``trade_off`` None: the recipe's)."""
  def values(name, default):
    given = tuple(config.sweep.get(name) or ())
    for value in given:
      if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
          np.isfinite(value) and value > 0 if name == "learning_rates"
          else np.isfinite(value) and value >= 0):
        bound = "> 0" if name == "learning_rates" else ">= 0"
        raise ValueError(f"config key 'sweep.{name}' must hold finite numbers "
                         f"{bound}, got {given!r}")
    if len({member_value(float(v)) for v in given}) != len(given):
      # Members are named (and their summaries stored) by these values.
      raise ValueError(f"config key 'sweep.{name}' has repeated values (to "
                       f"{NAME_DIGITS} significant digits): {given!r}")
    return tuple(float(v) for v in given) or (default,)

  learning_rates = values("learning_rates",
                          float(config.optimizer.learning_rate))
  trade_offs = values("trade_offs", None)
  if trade_offs != (None,) and config.method not in DEFAULT_TRADE_OFFS:
    raise ValueError(f"config key 'sweep.trade_offs': method {config.method!r} "
                     f"has no trade-off; recipes with one: "
                     f"{sorted(DEFAULT_TRADE_OFFS)}")
  return [{"seed": int(seed), "learning_rate": lr, "trade_off": trade_off}
          for seed, lr, trade_off in itertools.product(
              config.seeds, learning_rates, trade_offs)]


def _source_run(config, domains) -> dict | None:
  """``init_from`` (workdir still with ``{seed}``) for a recipe that starts from a source run.

  As :func:`tljax.train.experiment.run_experiment` does with
  ``config.init_from.workdir`` (:func:`tljax.train.loop.pretrain_init_from`);
  a sweep does not train the pretrain run itself, so a transfer recipe
  without it is an error rather than a silent training from scratch.
  ``None`` for recipes that train from scratch.
  """
  method = methods_lib.build_method(config.method, config,
                                    build_model(config, domains))
  if not method.pretrain:
    return None
  workdir = config.init_from.get("workdir")
  if method.pretrain != "source_only" or not workdir:
    raise ValueError(
        f"config key 'init_from.workdir': method {config.method!r} starts "
        f"from a {method.pretrain!r} run, which a sweep does not train; "
        "train it first (tljax train) and set init_from.workdir to its run "
        "directory ({seed} is replaced by each member's seed)")
  return pretrain_init_from(method, config, workdir)


def member_value(value: float) -> str:
  """A swept value as it appears in a member's name."""
  return f"{value:.{NAME_DIGITS}g}"


def member_name(member: dict) -> str:
  name = f"seed_{member['seed']}_lr_{member_value(member['learning_rate'])}"
  if member["trade_off"] is not None:
    name += f"_lambda_{member_value(member['trade_off'])}"
  return name


def _stack(trees):
  return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def _member(tree, index):
  return jax.tree.map(lambda leaf: leaf[index], tree)


def run_sweep(config, workdir: str) -> dict:
  """Trains every member of the config's sweep grid together; returns the results.

  Returns:
    ``{"members": [summary, ...], "table": [row, ...]}``: each member's
    summary (its seed, learning rate, λ and evaluation) and one row per
    (learning rate, λ) with the mean and sample std over seeds of the target
    test accuracy.
  """
  check_experiment_config(config)
  if config.parallel.data_parallel:
    raise ValueError("config key 'parallel.data_parallel': a sweep runs on one "
                     "device; use one or the other")
  members = sweep_members(config)
  start_time = time.perf_counter()
  base_domains = load_domains(config)
  source = _source_run(config, base_domains)

  runs = [setup_run(config, config.method, member["seed"],
                    domains=base_domains, update_scale=True,
                    init_from=None if source is None else dict(
                        source, workdir=source["workdir"].format(
                            seed=member["seed"])))
          for member in members]
  if runs[0].method.stages:
    raise ValueError(f"config key 'method': {config.method!r} updates in "
                     "stages; sweeps support single-update recipes")
  with workdir_lib.WorkdirLock(workdir):
    return _train_sweep(config, workdir, members, runs, start_time)


def _train_sweep(config, workdir: str, members: list[dict], runs: list,
                 start_time: float) -> dict:
  """The body of :func:`run_sweep`, with the work dir locked."""
  method, model = runs[0].method, runs[0].model
  base_rate = float(config.optimizer.learning_rate)
  checkpoint_dir = os.path.join(workdir, CHECKPOINT_SUBDIR)
  # Checked once the set-up has checked every value it uses; binding once
  # the sweep has a checkpoint (see tljax.train.workdir).
  workdir_lib.claim(os.path.join(workdir, workdir_lib.RUN_CONFIG_FILE),
                    {"config": config.to_dict(), "sweep": members},
                    what="a sweep",
                    binding=workdir_lib.has_checkpoint(checkpoint_dir))
  states = []
  for run, member in zip(runs, members):
    scale = jnp.asarray(member["learning_rate"] / base_rate, jnp.float32)
    states.append(run.state.replace(
        opt_state=run.state.opt_state._replace(scale=scale)))
  state = _stack(states)
  train_keys = jnp.stack([run.train_key for run in runs])
  trade_offs = [member["trade_off"] for member in members]
  hparams = (None if trade_offs[0] is None
             else {"trade_off": jnp.asarray(trade_offs, jnp.float32)})

  def step(state, batch, train_keys):
    # Each member's key is fold_in(its train key, step), made in the step.
    return jax.vmap(keyed_by_step(runs[0].step_fn))(state, batch, train_keys)

  train_step = jax.jit(step, donate_argnums=0)
  checkpointer = Checkpointer(checkpoint_dir,
                              max_to_keep=config.keep_checkpoints,
                              save_every=config.checkpoint_every)
  if checkpointer.latest_step() is not None:
    state = checkpointer.restore(state)
  start_step = int(state.step[0])
  streams = [training_batches(method, run.domains, batch_size=config.batch_size,
                              seed=member["seed"], start_step=start_step)
             for run, member in zip(runs, members)]

  def stacked_batches():
    for batches in zip(*streams):
      batch = _stack([{k: v for k, v in b.items() if k != "step"}
                      for b in batches])
      batch["step"] = jnp.full((len(members),), batches[0]["step"], jnp.int32)
      if hparams is not None:
        batch["hparams"] = hparams
      yield batch

  batches = data_lib.prefetch(stacked_batches(), size=config.prefetch)
  writer = metrics_lib.MetricWriter(workdir, resume_step=start_step)
  signals = StopSignals()
  try:
    with signals:
      for index in range(start_step, config.steps):
        state, step_metrics = train_step(state, next(batches), train_keys)
        done = index + 1
        if done % config.log_every == 0 or done == config.steps:
          step_metrics = jax.device_get(step_metrics)
          writer.write(done, {f"{member_name(member)}/{key}": float(value[i])
                              for key, value in step_metrics.items()
                              for i, member in enumerate(members)})
        stopping = signals.received is not None  # SIGTERM/SIGINT
        checkpointer.save(done, state,
                          force=done == config.steps or stopping)
        if stopping:
          break
  finally:
    batches.close()
    checkpointer.close()
    writer.close()
  if signals.received is not None:
    signals.resend(int(state.step[0]))

  summaries = []
  for index, (run, member) in enumerate(zip(runs, members)):
    evaluation = _evaluate_domains(model, _member(state, index), run.domains,
                                   config.eval_batch_size, run.model_keys)
    summary = {"method": config.method, **member, "name": member_name(member),
               "steps": int(state.step[index]),
               "skipped_steps": int(state.skipped_steps[index]),
               # Under divergence_policy "stop" a diverged member keeps its
               # last finite state; the others train on.
               "diverged_at_step": (
                   int(state.first_nonfinite_step[index]) + 1
                   if int(state.first_nonfinite_step[index]) >= 0 else None),
               **evaluation}
    member_dir = os.path.join(workdir, member_name(member))
    os.makedirs(member_dir, exist_ok=True)
    metrics_lib.write_summary(member_dir, summary)
    summaries.append(summary)
  table = []
  for (lr, trade_off), group in itertools.groupby(
      sorted(summaries, key=lambda s: (s["learning_rate"],
                                       -1 if s["trade_off"] is None
                                       else s["trade_off"])),
      key=lambda s: (s["learning_rate"], s["trade_off"])):
    accuracies = np.array([s["target_test"]["accuracy"] for s in group])
    table.append({"learning_rate": lr, "trade_off": trade_off,
                  "seeds": len(accuracies),
                  "target_test_accuracy_mean": float(accuracies.mean()),
                  "target_test_accuracy_std": (float(accuracies.std(ddof=1))
                                               if len(accuracies) > 1 else 0.0)})
  results = {"method": config.method, "members": summaries, "table": table,
             "wall_seconds": time.perf_counter() - start_time}
  metrics_lib.write_json_atomically(os.path.join(workdir, SWEEP_JSON), results)
  with open(os.path.join(workdir, SWEEP_MARKDOWN), "w", encoding="utf-8") as f:
    f.write(format_sweep(results) + "\n")
  return results


def format_sweep(results: dict) -> str:
  lines = [f"| {results['method']}: learning rate | λ | seeds | target test "
           "accuracy (%) |", "| --- | --- | --- | --- |"]
  for row in results["table"]:
    trade_off = ("default" if row["trade_off"] is None
                 else f"{row['trade_off']:g}")
    lines.append(f"| {row['learning_rate']:g} | {trade_off} | {row['seeds']} | "
                 f"{100 * row['target_test_accuracy_mean']:.1f} ± "
                 f"{100 * row['target_test_accuracy_std']:.1f} |")
  return "\n".join(lines)
