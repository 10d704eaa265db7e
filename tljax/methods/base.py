"""What a training recipe is: a loss plus the data it consumes."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
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
    needs: the runs that must exist before this one trains, as
      :class:`PriorRun` values: a ``"pretrain"`` run whose final parameters
      initialise this one (``finetune`` starts from ``source_only``), a
      ``"teacher"`` that ``distill`` reads, ... The runners
      (:func:`tljax.train.experiment.run_experiment`, the sweep) train each
      one first, or use its ``workdir``, and hand their directories to the
      set-up (:attr:`TransferContext.prior_runs`).
    hparams: the recipe's *traced* hyper-parameters (e.g. ``{"trade_off":
      1.0}``): they live in the train state (``state.hparams``), the step
      passes them to ``loss_fn`` as the keyword argument ``hparams`` (a dict
      of float32 scalars), and a vmapped sweep
      (:mod:`tljax.train.sweep`) gives each member its own values. A loss
      reads them from there, never as Python constants, so that one compiled
      step serves every value. Empty: ``loss_fn`` takes no ``hparams``.
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
  needs: tuple["PriorRun", ...] = ()
  hparams: Mapping[str, float] = dataclasses.field(default_factory=dict)
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
        raise ValueError(
            f"Method.{field} has unknown domains {sorted(unknown)}; "
            f"allowed: {list(DOMAINS)}"
        )
    if not self.domains:
      raise ValueError("Method.domains must name at least one domain")
    if self.setting not in SETTINGS:
      raise ValueError(
          f"Method.setting {self.setting!r} is unknown; allowed: "
          f"{list(SETTINGS)}"
      )
    roles = [run.role for run in self.needs]
    if len(set(roles)) != len(roles):
      raise ValueError(f"Method.needs has repeated roles {roles}")
    for name, value in self.hparams.items():
      if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(
            f"Method.hparams[{name!r}] must be a number, got " f"{value!r}"
        )

  def prior_run(self, role: str) -> "PriorRun | None":
    """The run this recipe needs in ``role`` (``None`` if it needs none)."""
    return next((run for run in self.needs if run.role == role), None)

  @property
  def pretrain(self) -> str | None:
    """The recipe whose final parameters initialise this one (``None``: none)."""
    run = self.prior_run(PRETRAIN)
    return run.method if run is not None else None


PRETRAIN = "pretrain"


@dataclasses.dataclass(frozen=True)
class PriorRun:
  """A run a recipe needs before it trains (see :attr:`Method.needs`).

  Attributes:
    role: ``"pretrain"`` (its final parameters initialise the run, restored
      with ``dont_load``) or a name the recipe's ``init_extras`` reads the
      run's directory under (``context.prior_runs[role]``, e.g.
      ``"teacher"``).
    method: the recipe that trains it (with its default settings and every
      parameter trainable).
    workdir: a finished run to use instead of training one (``{seed}`` is
      replaced by the seed); ``None``: the runner trains it, into the
      experiment's directory for ``"pretrain"`` (where the same seed's
      ``source_only`` baseline also lives) and into ``<role>/`` for the
      others.
    model: the model config (``name`` plus its keyword arguments) of that
      run; ``None``: the experiment's.
    dont_load: for ``"pretrain"``: the ``dont_load`` patterns used when
      starting from it (``None``: ``config.init_from.dont_load``); LP-FT keeps
      the probe's head with ``()``.
    pretrained: for ``"pretrain"``: a converted checkpoint,
      ``"<format>[:<arch>]=<path>"`` (``config.init_from.pretrained``), that
      stands in for the run: nothing is trained first.
  """

  role: str
  method: str
  workdir: str | None = None
  model: Mapping[str, Any] | None = None
  dont_load: tuple[str, ...] | None = None
  pretrained: str | None = None


def pretrain_run(
    config,
    method: str = "source_only",
    dont_load: tuple[str, ...] | None = None,
) -> PriorRun:
  """The ``"pretrain"`` :class:`PriorRun` of a transfer recipe.

  ``config.init_from.workdir`` stands in for a ``source_only`` pretrain run
  (a source run shared by several experiments), and so does a converted
  checkpoint, ``config.init_from.pretrained`` (an ImageNet ResNet-50, say);
  any other pretrain recipe (LP-FT's ``linear_probe``) is trained by the
  runner (from the converted checkpoint, if one is set).
  """
  stands_in = method == "source_only"
  workdir = config.init_from.get("workdir") if stands_in else None
  pretrained = config.init_from.get("pretrained") if stands_in else None
  return PriorRun(
      PRETRAIN,
      method,
      workdir=workdir or None,
      dont_load=dont_load,
      pretrained=pretrained or None,
  )


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
    source_model: the model ``source_params`` fit, head included: ``model``
      for a source run's checkpoint; for a converted checkpoint its upstream
      architecture (no bottleneck, its own head; ``None`` without a head).
    model: the :class:`tljax.models.Model`.
    domains: the data, ``{domain: {split: source}}``.
    config: the experiment config.
    seed: the run's seed.
    prior_runs: ``{role: directory}`` of the runs the method needs
      (:attr:`Method.needs`), ``{seed}`` already replaced.
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
  prior_runs: Mapping[str, str] = dataclasses.field(default_factory=dict)
  source_model: Any = None


MethodBuilder = Callable[..., Method]  # builder(config, model, **settings)


def cross_entropy_loss(
    model,
    params,
    model_state,
    batch,
    key,
    *,
    label_smoothing: float = 0.0,
    train: bool = True,
):
  """Mean softmax cross-entropy of ``model`` on one labeled batch.

  ``train=False`` runs the model in inference mode (BatchNorm running
  statistics, no dropout), so the features are those of the fixed network, as
  linear probing needs.

  Returns ``(loss, model_state, outputs, metrics)`` where metrics holds the batch
  ``accuracy``.
  """
  outputs, model_state = model.apply(
      params, model_state, batch["input"], train=train, key=key
  )
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
    raise ValueError(
        f"config key 'label_smoothing' must lie in [0, 1), got " f"{value}"
    )
  return value


def supervised_on(domain: str, *, train: bool = True):
  """A loss function: cross-entropy on the labeled batch of one ``domain``."""

  def build(config, model) -> LossFn:
    smoothing = label_smoothing(config)

    def loss_fn(params, model_state, batch, key, extras):
      del extras
      loss, model_state, _, metrics = cross_entropy_loss(
          model,
          params,
          model_state,
          batch[domain],
          key,
          label_smoothing=smoothing,
          train=train,
      )
      return loss, (
          model_state,
          {f"{domain}_{k}": v for k, v in metrics.items()},
      )

    return loss_fn

  return build
