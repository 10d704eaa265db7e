"""A run's data: both domains, the target's labelled subset per seed, the batches.

:func:`load_domains` reads the train and test splits of the config's source
and target; :func:`select_target_labels` draws, per seed, the few target
labels a run may see (``config.target.labels_per_class``,
``validation_per_class``); :func:`training_batches` is the stream of
training batches a recipe trains on, a pure function of (seed, step), so a
resumed run sees the batches an uninterrupted one would have. The training
loop (:mod:`tljax.train.loop`), the sweep, rank-sources and the readers of a
run (:class:`tljax.train.rundir.Run`) take their data from here.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import numpy as np

from tljax import data as data_lib
from tljax import methods as methods_lib


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
