"""What a training recipe is: a loss plus the data it consumes."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from tljax.losses import LossFn

DOMAINS = ("source", "target")
SETTINGS = ("inductive", "transductive", "unsupervised")


@dataclasses.dataclass(frozen=True)
class Method:
  """A training recipe.

  Attributes:
    name: the registry name.
    loss_fn: ``loss_fn(params, model_state, batch, key, extras) -> (loss,
      (model_state, metrics))`` where ``batch`` maps each domain in ``domains`` to a dict with
      ``"input"`` (and ``"label"`` where labels are used).
    domains: which training domains the step consumes, e.g. ``("source",)``.
    labeled: the domains whose training labels the method may see. The loop
      removes labels from every other domain's batches, so a transductive method
      cannot peek at target labels even by mistake.
    setting: ``"inductive"``, ``"transductive"`` or ``"unsupervised"``.
    pretrain: a method whose final parameters initialise this one when the
      config gives no ``init_from`` (``finetune`` starts from ``source_only``).
    pretrain_dont_load: the ``dont_load`` patterns used when starting from the
      pretrain run (default ``config.init_from.dont_load``); LP-FT keeps the
      probe's head with ``()``.
    trainable_rules: the method's own ``(regex, value)`` rules (linear probing
      freezes the backbone); default: ``config.trainable_rules``.
    init_extras: ``init_extras(context) -> extras``, run once on the host
      before training (a :class:`TransferContext`); the result is stored in the
      train state and passed to every ``loss_fn`` call.
    init_params: ``init_params(context) -> dict`` of extra *trainable*
      parameter subtrees the method adds next to the model's (e.g. the source
      head Co-Tuning keeps), under top-level names the model does not use;
      ``loss_fn`` separates them from the model's before ``model.apply``.
    replaces_weight_decay: the method's loss holds its own weight penalty
      (L2-SP pulls towards the start, not zero), so the optimizer's weight
      decay is switched off for it.
    stages: for recipes with several players updated in turn (MCD), the
      :class:`tljax.train.Stage` updates one step runs in order, each on its
      parameter groups with their own optimizer state; ``loss_fn`` is then
      the first stage's loss (kept for callers that evaluate one loss).
    param_groups: ``(regex, group)`` rules assigning every trainable
      parameter to a group named by ``stages`` (first full match wins).
    example_indices: domains whose batches carry ``"index"``, the examples'
      positions in the training split (importance weighting looks its
      per-example weights up by it).
  """
  name: str
  loss_fn: LossFn
  domains: tuple[str, ...]
  labeled: tuple[str, ...]
  setting: str
  pretrain: str | None = None
  pretrain_dont_load: tuple[str, ...] | None = None
  trainable_rules: tuple | None = None
  init_extras: Callable[["TransferContext"], Any] | None = None
  init_params: Callable[["TransferContext"], dict] | None = None
  replaces_weight_decay: bool = False
  stages: tuple | None = None
  param_groups: tuple | None = None
  example_indices: tuple[str, ...] = ()

  def __post_init__(self):
    if (self.stages is None) != (self.param_groups is None):
      raise ValueError("Method.stages and Method.param_groups go together")
    for field in ("domains", "labeled", "example_indices"):
      unknown = set(getattr(self, field)) - set(DOMAINS)
      if unknown:
        raise ValueError(f"Method.{field} has unknown domains {sorted(unknown)}; "
                         f"allowed: {list(DOMAINS)}")
    if not self.domains:
      raise ValueError("Method.domains must name at least one domain")
    if self.setting not in SETTINGS:
      raise ValueError(f"Method.setting {self.setting!r} is unknown; allowed: "
                       f"{list(SETTINGS)}")


@dataclasses.dataclass(frozen=True)
class TransferContext:
  """What a method's ``init_extras`` may read before training starts.

  Attributes:
    params: the initial parameters (restored from the source run where
      transferred).
    model_state: the initial model state (BatchNorm statistics).
    transferred: names (``a/b/c``) of the parameters restored from a source
      checkpoint; empty when training from scratch.
    source_params: the source checkpoint's full parameters as saved (its own
      head included), or ``None`` when training from scratch.
    source_model_state: the source checkpoint's model state, or ``None``.
    model: the :class:`tljax.models.Model`.
    domains: the data, ``{domain: {split: source}}``.
    config: the experiment config.
    seed: the run's seed.
  """
  params: Any
  model_state: Any
  transferred: frozenset
  source_params: Any
  source_model_state: Any
  model: Any
  domains: Any
  config: Any
  seed: int


MethodBuilder = Callable[[Any, Any], Method]


def cross_entropy_loss(model, params, model_state, batch, key, *,
                       label_smoothing: float = 0.0, train: bool = True):
  """Mean softmax cross-entropy of ``model`` on one labeled batch.

  ``train=False`` runs the model in inference mode (BatchNorm running
  statistics, no dropout), so the features are those of the fixed network, as
  linear probing needs.

  Returns ``(loss, model_state, outputs, metrics)`` where metrics holds the batch
  ``accuracy``.
  """
  outputs, model_state = model.apply(params, model_state, batch["input"],
                                     train=train, key=key)
  logits = outputs.logits.astype(jnp.float32)
  num_classes = logits.shape[-1]
  targets = jax.nn.one_hot(batch["label"], num_classes)
  if label_smoothing:
    targets = optax.smooth_labels(targets, label_smoothing)
  loss = jnp.mean(optax.softmax_cross_entropy(logits, targets))
  accuracy = jnp.mean(jnp.argmax(logits, -1) == batch["label"])
  return loss, model_state, outputs, {"accuracy": accuracy}


def label_smoothing(config) -> float:
  """``config.label_smoothing``: a number in ``[0, 1)`` (0 when unset)."""
  value = float(config.get("label_smoothing", 0.0) or 0.0)
  if not 0.0 <= value < 1.0:
    raise ValueError(f"config key 'label_smoothing' must lie in [0, 1), got "
                     f"{value}")
  return value


def supervised_on(domain: str, *, train: bool = True):
  """A loss function: cross-entropy on the labeled batch of one ``domain``."""

  def build(config, model) -> LossFn:
    smoothing = label_smoothing(config)

    def loss_fn(params, model_state, batch, key, extras):
      del extras
      loss, model_state, _, metrics = cross_entropy_loss(
          model, params, model_state, batch[domain], key,
          label_smoothing=smoothing, train=train)
      return loss, (model_state, {f"{domain}_{k}": v for k, v in metrics.items()})

    return loss_fn

  return build
