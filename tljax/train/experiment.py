"""An experiment: the config's method and its baselines, over seeds, in one table.

Every adaptation result is reported next to its references (principle 6 of the
design): ``source_only`` (no transfer) and ``target_only`` (trained on target
labels), so a reader sees both how much of the gap a method closes and whether
it transferred negatively. Runs go to ``workdir/<method>/seed_<seed>``; the
aggregate goes to ``workdir/results.json`` and ``workdir/results.md``.
"""

from __future__ import annotations

import os

import ml_collections
import numpy as np

from tljax import data as data_lib
from tljax import methods as methods_lib
from tljax import models as models_lib
from tljax import rundir_format
from tljax.config import check_config
from tljax.select import negative_transfer_gap
from tljax.train import metrics as metrics_lib
from tljax.train import parallel
from tljax.train import workdir as workdir_lib
from tljax.train.domains import load_domains
from tljax.train.loop import train_and_evaluate
from tljax.train.run_setup import (
    TRAIN_EVERYTHING,
    build_model,
    pretrain_init_from,
    pretrained_init_from,
)

CONFIG_JSON = rundir_format.EXPERIMENT_CONFIG_FILE
RESULTS_JSON = rundir_format.RESULTS_FILE
RESULTS_MARKDOWN = "results.md"


def check_experiment_config(config) -> None:
  """:func:`tljax.config.check_config`, then the names the registries know.

  Raises ``ValueError`` naming the key for an unknown method (``method``,
  ``baselines``), model (``model.name``) or data source (``source.name``,
  ``target.name``, by the source registry; what follows a prefix such as
  ``tfds:`` or ``folder:`` is checked when opened), for
  ``method_kwargs`` the method does not accept (an unknown key, a value of
  the wrong type, or one its recipe's check refuses, e.g. ``distill``'s
  ``teacher_method``: see :func:`tljax.methods.method_settings`), and for
  bad ``parallel.param_rules``, before anything is compiled.
  """
  check_config(config)
  methods = methods_lib.available_methods()
  for key, name in [
      ("method", config.method),
      *((f"baselines[{i}]", name) for i, name in enumerate(config.baselines)),
  ]:
    if name not in methods:
      raise ValueError(
          f"config key {key!r}: method {name!r} is unknown; "
          f"registered methods: {methods}"
      )
  methods_lib.method_settings(config.method, config.get("method_kwargs"))
  if config.get("parallel") is not None:
    parallel.check_param_rules(config.parallel.get("param_rules"))
  models = models_lib.available_models()
  if config.model.name not in models:
    raise ValueError(
        f"config key 'model.name': model {config.model.name!r} is "
        f"unknown; registered models: {models}"
    )
  pretrained = config.init_from.get("pretrained")
  if pretrained:
    key = "config key 'init_from.pretrained'"
    spec = models_lib.parse_pretrained(pretrained, key)
    models_lib.convert.spec.check_loader_options(
        spec.format,
        config.init_from.get("pretrained_options") or {},
        f"{key} (init_from.pretrained_options)",
    )
  for domain in ("source", "target"):
    try:
      data_lib.check_source_name(config[domain].name)
    except ValueError as error:
      raise ValueError(f"config key '{domain}.name': {error}") from error


def prior_run_config(config, prior):
  """The config that trains a :class:`tljax.methods.PriorRun` other than the pretrain run.

  Its method (with the recipe's default settings) and model (the
  experiment's unless ``prior.model``), every parameter trained, no
  baselines. (A ``"pretrain"`` run trains with the experiment's own config,
  as the same seed's baseline of that recipe would.)
  """
  prior_config = config.copy_and_resolve_references()
  prior_config.method = prior.method
  prior_config.method_kwargs = ml_collections.ConfigDict()
  prior_config.baselines = ()
  if prior.model:
    prior_config.model = ml_collections.ConfigDict(dict(prior.model))
    # Another architecture than the experiment's: not the checkpoint's.
    prior_config.init_from.pretrained = None
  prior_config.trainable_rules = TRAIN_EVERYTHING
  return prior_config


def run_dir(workdir: str, method_name: str, seed: int) -> str:
  return os.path.join(workdir, method_name, f"seed_{seed}")


def run_experiment(config, workdir: str) -> dict:
  """Trains ``config.method`` and ``config.baselines`` for every seed; returns the results.

  The runs a method needs first (:attr:`tljax.methods.Method.needs`) are
  trained per seed before it, unless the :class:`tljax.methods.PriorRun`
  names a finished one (its ``workdir``, ``{seed}`` replaced by the seed):
  a ``"pretrain"`` run (``finetune`` and the other transfer recipes start
  from the same seed's run of their pretrain recipe; ``config.init_from.workdir``
  stands in for a ``source_only`` one, e.g. a source run shared by several
  experiments) goes to ``workdir/<method>/seed_<seed>``, beside the
  baselines; any other (``distill``'s ``"teacher"``) to
  ``workdir/<role>/<method>/seed_<seed>``, with
  :func:`prior_run_config`. Methods that need none (``source_only``,
  ``target_only``, the domain-adaptation recipes) train from scratch, or
  from ``config.init_from.pretrained`` where it is set; that converted
  checkpoint also stands in for a ``source_only`` pretrain run. Existing
  runs in ``workdir`` resume.

  Returns:
    ``{"runs": [summary, ...], "table": [row, ...]}``, each row aggregating one
    method over seeds (mean and standard deviation of the test accuracies).

  Raises:
    WorkdirBusyError: another process is writing ``workdir``.
    ValueError: a bad config, or ``workdir`` holds an experiment (one whose
      runs completed a step) with another config: refused before anything
      is written, naming the keys that differ.
  """
  check_experiment_config(config)
  with workdir_lib.WorkdirLock(workdir):
    # The experiment's config binds once one of its runs completed a step.
    workdir_lib.claim(
        os.path.join(workdir, CONFIG_JSON),
        config.to_dict(),
        what="an experiment",
        config_key=None,
        binding=workdir_lib.completed_a_step(workdir),
    )
    return _run_experiment(config, workdir)


def _run_experiment(config, workdir: str) -> dict:
  """The body of :func:`run_experiment`, with the work dir locked."""
  domains = load_domains(config)
  model = build_model(config, domains)
  names = list(dict.fromkeys([config.method, *config.baselines]))
  methods = {
      name: methods_lib.build_method(name, config, model) for name in names
  }
  summaries: dict[tuple[str, str, int], dict] = {}
  total = planned_runs(names, methods, config, model)
  started = [0]

  def run(name: str, seed: int, cfg=config, root: str = workdir) -> dict:
    if (root, name, seed) in summaries:
      return summaries[(root, name, seed)]
    run_model = model if cfg is config else build_model(cfg, domains)
    method = (
        methods.get(name) if cfg is config else None
    ) or methods_lib.build_method(name, cfg, run_model)
    init_from, prior_runs = None, {}
    for prior in method.needs:
      if prior.pretrained:  # a converted checkpoint stands in for the run
        init_from = pretrained_init_from(method, cfg)
        continue
      if prior.workdir:
        directory = prior.workdir.format(seed=seed)
      elif prior.role == methods_lib.PRETRAIN:
        run(prior.method, seed, cfg, root)
        directory = run_dir(root, prior.method, seed)
      else:
        prior_root = os.path.join(root, prior.role)
        run(prior.method, seed, prior_run_config(cfg, prior), prior_root)
        directory = run_dir(prior_root, prior.method, seed)
      if prior.role == methods_lib.PRETRAIN:
        init_from = pretrain_init_from(method, cfg, directory)
      else:
        prior_runs[prior.role] = directory
    started[0] += 1
    summaries[(root, name, seed)] = train_and_evaluate(
        cfg,
        run_dir(root, name, seed),
        method_name=name,
        seed=seed,
        init_from=init_from,
        prior_runs=prior_runs,
        domains=domains,
        description=(
            f"run {started[0]} of {max(total, started[0])}: {name} seed {seed}"
        ),
    )
    return summaries[(root, name, seed)]

  for name in names:
    for seed in config.seeds:
      run(name, int(seed))
  table = [
      aggregate(
          name,
          methods[name].setting,
          [summaries[(workdir, name, int(seed))] for seed in config.seeds],
      )
      for name in names
  ]
  gaps = transfer_gaps(
      names,
      {name: method.setting for name, method in methods.items()},
      {
          (name, seed): summary
          for (root, name, seed), summary in summaries.items()
          if root == workdir
      },
      [int(seed) for seed in config.seeds],
  )
  results = {
      "runs": list(summaries.values()),
      "table": table,
      "negative_transfer": gaps,
  }
  if not parallel.is_primary():  # one writer per experiment: process 0
    return results
  metrics_lib.write_json_atomically(
      os.path.join(workdir, RESULTS_JSON), results
  )
  with open(
      os.path.join(workdir, RESULTS_MARKDOWN), "w", encoding="utf-8"
  ) as f:
    f.write(format_table(table) + "\n")
    if gaps:
      f.write("\n" + format_gaps(gaps) + "\n")
  return results


def planned_runs(names, methods, config, model) -> int:
  """How many runs :func:`run_experiment` trains: every name and the runs it needs, per seed.

  A prior run that names a finished one (``workdir``) or a converted
  checkpoint (``pretrained``) is not trained; a pretrain run of a recipe
  that is also a baseline is trained once.
  """
  planned = set()

  def visit(name: str, role: str, method) -> None:
    if (role, name) in planned:
      return
    planned.add((role, name))
    for prior in method.needs:
      if prior.workdir or prior.pretrained:
        continue
      prior_role = role if prior.role == methods_lib.PRETRAIN else prior.role
      visit(
          prior.method,
          prior_role,
          methods.get(prior.method)
          or methods_lib.build_method(prior.method, config, model),
      )

  for name in names:
    visit(name, "", methods[name])
  return len(planned) * len(config.seeds)


def transfer_gaps(
    names: list[str],
    settings: dict[str, str],
    summaries: dict,
    seeds: list[int],
) -> list:
  """ε(method) − ε(target_only) on the target test split, per inductive method.

  Only methods in the inductive setting are compared: they see the same target
  labels as ``target_only``, so a positive gap means the source made the
  target worse (negative transfer). A transductive method sees no target
  label, and its distance to the target-only oracle is not negative transfer.
  Empty unless ``target_only`` ran; see
  :func:`tljax.select.negative_transfer_gap`.
  """
  if "target_only" not in names:
    return []
  reference = [
      1 - summaries[("target_only", seed)]["target_test"]["accuracy"]
      for seed in seeds
  ]
  gaps = []
  for name in names:
    if name == "target_only" or settings[name] != "inductive":
      continue
    errors = [
        1 - summaries[(name, seed)]["target_test"]["accuracy"] for seed in seeds
    ]
    gap = negative_transfer_gap(errors, reference)
    gaps.append(
        {
            "method": name,
            "gap": gap.gap,
            "low": gap.low,
            "high": gap.high,
            "seeds": gap.num_seeds,
            "verdict": gap.verdict,
        }
    )
  return gaps


def format_gaps(gaps: list[dict]) -> str:
  """The negative-transfer gaps as a markdown table, in points of error."""
  lines = [
      "| method | ε(method) − ε(target_only) (points) | 95% CI | verdict |",
      "| --- | --- | --- | --- |",
  ]
  for row in gaps:
    lines.append(
        f"| {row['method']} | {100 * row['gap']:+.1f} | "
        f"[{100 * row['low']:+.1f}, {100 * row['high']:+.1f}] | "
        f"{row['verdict']} |"
    )
  return "\n".join(lines)


def aggregate(name: str, setting: str, summaries: list[dict]) -> dict:
  """Mean and sample standard deviation of the test accuracies over seeds."""
  row = {"method": name, "setting": setting, "seeds": len(summaries)}
  flagged = [
      summary for summary in summaries if summary.get("skipped_too_many")
  ]
  if flagged:
    # divergence_policy="skip" dropped most updates of these seeds.
    row["skipped_steps"] = {
        str(summary["seed"]): [summary["skipped_steps"], summary["steps"]]
        for summary in flagged
    }
  for split in ("source_test", "target_validation", "target_test"):
    if split not in summaries[0]:
      continue
    accuracies = np.array([summary[split]["accuracy"] for summary in summaries])
    row[f"{split}_accuracy_mean"] = float(accuracies.mean())
    row[f"{split}_accuracy_std"] = (
        float(accuracies.std(ddof=1)) if len(accuracies) > 1 else 0.0
    )
  return row


def format_table(table: list[dict]) -> str:
  """A markdown table of accuracies in percent, mean ± std over seeds.

  A target validation column appears when the runs had a validation split.
  A method some of whose seeds skipped more than ``max_skipped_fraction``
  of their steps is marked ⚠ and explained under the table.
  """
  splits = ["source_test", "target_test"]
  headers = ["source test acc (%)", "target test acc (%)"]
  if any("target_validation_accuracy_mean" in row for row in table):
    splits.insert(1, "target_validation")
    headers.insert(1, "target val acc (%)")
  lines = [
      "| method | setting | " + " | ".join(headers) + " | seeds |",
      "| --- | --- | " + " | ".join("---" for _ in headers) + " | --- |",
  ]
  notes = []
  for row in table:
    cells = [row["method"], row["setting"]]
    if row.get("skipped_steps"):
      cells[0] += " ⚠"
      seeds = ", ".join(
          f"seed {seed}: {skipped} of {steps}"
          for seed, (skipped, steps) in row["skipped_steps"].items()
      )
      notes.append(
          f"⚠ {row['method']}: steps skipped as non-finite "
          f"(divergence_policy='skip') — {seeds}; these numbers are "
          "not those of trained models"
      )
    for split in splits:
      if f"{split}_accuracy_mean" in row:
        cells.append(
            f"{100 * row[f'{split}_accuracy_mean']:.1f} ± "
            f"{100 * row[f'{split}_accuracy_std']:.1f}"
        )
      else:
        cells.append("")
    cells.append(str(row["seeds"]))
    lines.append("| " + " | ".join(cells) + " |")
  if notes:
    lines += ["", *notes]
  return "\n".join(lines)
