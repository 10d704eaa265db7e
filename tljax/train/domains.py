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
from tljax.data import augment as augment_lib
from tljax.data import images as images_lib
from tljax.data import loader as loader_lib
from tljax.data.image_sources import ImageSource


def load_domains(config) -> dict[str, dict[str, Any]]:
  """The train and test splits of both domains: ``{domain: {"train", "test"}}``.

  A domain with ``in_memory`` is decoded into memory once
  (``to_array_source``), except the training split of an image domain that
  ``config.augment`` augments: its encoded images stay on disk for the
  augmentation to read.
  """
  augmenting = _augmenting(config)
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
      keep_encoded = augmenting and split == "train" and _is_image(source)
      if (
          spec.in_memory
          and hasattr(source, "to_array_source")
          and not keep_encoded
      ):
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


def _augmenting(config) -> bool:
  augment = config.get("augment")
  return augment is not None and augment.get("name", "none") != "none"


def _is_image(source) -> bool:
  """An image domain's source: encoded records a worker decodes."""
  return isinstance(source, ImageSource)


def train_augment(config, source) -> augment_lib.TrainAugment | None:
  """The training augmentation of ``source`` under ``config.augment``.

  ``None`` unless ``source`` is an image domain and ``config.augment.name``
  is ``"tllib"``: then TLlib's training transform at the source's size:
  resize to ``source.resize`` squared (when set), ``RandomResizedCrop(
  image_size, scale, ratio)``, ``RandomHorizontalFlip(flip_prob)``,
  ``ColorJitter(*color_jitter)``, as uint8 (the model scales and
  normalises; see :meth:`tljax.models.Model.normalize_inputs`).

  Raises:
    ValueError: a bad ``config.augment`` value, naming its key.
  """
  if not _augmenting(config) or not _is_image(source):
    return None
  settings = config.augment
  jitter = tuple(settings.color_jitter)
  if len(jitter) != 4:
    raise ValueError(
        "config key 'augment.color_jitter' must hold 4 numbers (brightness, "
        f"contrast, saturation, hue), got {jitter!r}"
    )
  try:
    return augment_lib.TrainAugment(
        size=source.image_size,
        scale=tuple(settings.scale),
        ratio=tuple(settings.ratio),
        flip_prob=settings.flip_prob,
        brightness=jitter[0],
        contrast=jitter[1],
        saturation=jitter[2],
        hue=jitter[3],
        resize=None if source.resize is None else (source.resize,) * 2,
    )
  except ValueError as error:
    raise ValueError(f"config key 'augment': {error}") from error


def _training_split(method, domains, domain: str) -> str:
  # A domain the method may not label reads its whole training split.
  if domain in method.labeled:
    return "train"
  return "unlabeled" if "unlabeled" in domains[domain] else "train"


def training_batches(
    method,
    domains,
    *,
    batch_size: int,
    seed: int,
    start_step: int,
    config=None,
) -> Iterator[dict]:
  """Batches for ``method``: one stream per domain it trains on, labels only where allowed.

  Each batch is ``{"step": int32, domain: {"input"[, "label"][, "index"]},
  ...}``: ``"index"`` (the examples' positions in the domain's training
  split) for the domains in ``method.example_indices``.

  Every stream is a pure function of (seed, step), so a resumed run sees the
  batches an uninterrupted one would have: the examples of
  :func:`tljax.data.batch_indices`, and for an augmented image domain the
  augmentation of example ``i`` of step ``k`` drawn from
  :func:`tljax.data.loader.example_rng` ``(stream seed, k, i)``.

  Where: with ``config.augment`` on an image domain, or
  ``config.data_workers`` > 0, the batches are made by grain
  (:func:`tljax.data.loader.grain_domain_batches`; the image domain's
  encoded records are decoded and augmented there, in ``data_workers``
  processes); otherwise by the in-process iterators of
  :mod:`tljax.data.iterators`, which are faster for arrays in memory (no
  per-record work to spread). Both give the same batches when nothing is
  augmented.
  """
  workers = int(config.get("data_workers", 0)) if config is not None else 0
  sources = {
      domain: domains[domain][_training_split(method, domains, domain)]
      for domain in method.domains
  }
  augments = {
      domain: train_augment(config, source) if config is not None else None
      for domain, source in sources.items()
  }
  if workers or any(a is not None for a in augments.values()):
    streams = {}
    for domain, source in sources.items():
      transform = None
      if augments[domain] is not None:
        transform = loader_lib.ImageTransform(
            augments[domain], decode=images_lib.decode_image
        )
        source = source.records
      streams[domain] = loader_lib.Stream(
          source,
          batch_size,
          _stream_seed(seed, domain),
          transform=transform,
          with_indices=domain in method.example_indices,
      )
    domain_batches = loader_lib.grain_domain_batches(
        streams, start_step=start_step, worker_count=workers
    )
  else:
    iterators = {
        domain: data_lib.batches(
            source,
            batch_size=batch_size,
            seed=_stream_seed(seed, domain),
            start_step=start_step,
            with_indices=domain in method.example_indices,
        )
        for domain, source in sources.items()
    }
    domain_batches = (
        {domain: next(stream) for domain, stream in iterators.items()}
        for _ in itertools.count()
    )
  for step, examples_by_domain in zip(
      itertools.count(start_step), domain_batches
  ):
    # The step lets a loss follow the training progress (DANN's warm-up).
    batch = {"step": np.int32(step)}
    for domain, examples in examples_by_domain.items():
      if domain not in method.labeled:
        examples = {
            key: examples[key] for key in ("input", "index") if key in examples
        }
      batch[domain] = examples
    yield batch
