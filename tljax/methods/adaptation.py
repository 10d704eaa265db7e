"""Domain adaptation recipes (transductive): labeled source, unlabeled target.

Each recipe is the source cross-entropy plus an alignment term of
:mod:`tljax.align` on the bottleneck features of both domains, computed in one
forward pass over the concatenated source and target batch (so BatchNorm sees
both domains, as in the Transfer-Learning-Library). Target labels never reach
these losses: the loop strips them.

* ``dan`` (Long et al., ICML 2015): + λ · MK-MMD²(f_s, f_t).
* ``deep_coral`` (Sun & Saenko, ECCV-W 2016): + λ · CORAL(f_s, f_t).
* ``dann`` (Ganin et al., JMLR 2016): + λ · the domain classifier's loss behind
  a gradient reversal whose strength warms up as 2/(1 + exp(−10 p)) − 1 with
  the training progress p.
* ``cdan`` / ``cdan_e`` (Long et al., NeurIPS 2018): the discriminator reads
  the multilinear map of features and predictions (randomized above 4,096
  dimensions), with entropy conditioning for ``cdan_e``.

* ``jan`` (Long et al., ICML 2017): + λ · JMMD²((f_s, ŷ_s), (f_t, ŷ_t)) over the
  features and the softmax predictions (the predictions with one fixed kernel
  σ = 0.92, as the Transfer-Learning-Library).
* ``mcd`` (Saito et al., CVPR 2018): two classifier heads and a generator
  updated in the paper's three steps per batch (see :func:`build_mcd`).
* ``mdd`` (Zhang et al., ICML 2019): + λ · the margin disparity discrepancy
  with an adversarial head behind a warm-started gradient reversal.
* ``afn`` (Xu et al., ICCV 2019): + λ · stepwise adaptive feature norm of
  both domains (λ = 0.05 by default, the paper's).
* ``mcc`` (Jin et al., ECCV 2020): + λ · minimum class confusion of the
  target predictions.

Each recipe declares its hyper-parameters where it is registered, with the
paper's values as defaults (``config.method_kwargs`` sets them):
``trade_off`` (λ; 0.05 for ``afn``, 1 otherwise) is a *traced*
hyper-parameter (:attr:`tljax.methods.Method.hparams`): it lives in the train
state, so a vmapped sweep gives each member its own. ``bsp_weight > 0`` adds
batch spectral penalization (Chen et al., ICML 2019; the paper's weight is
1e-4) to the adversarial recipes (``dann``, ``cdan``, ``cdan_e``, ``mdd``).

The domain discriminator is a small MLP (``hidden_dim`` units, two hidden
ReLU layers, as the Transfer-Learning-Library's ``DomainDiscriminator`` but
without its BatchNorm layers) whose parameters are added next to the model's
as ``discriminator/...`` and trained by the same step: the reversal makes one
minimisation train the discriminator and fool it. Hyper-parameters are fixed
before training (no target labels choose them).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax

from tljax import align
from tljax.losses import Stage
from tljax.methods.base import Method
from tljax.methods.registry import register_method

DISCRIMINATOR = "discriminator"
RANDOMIZED_ABOVE = (
    4096  # CDAN uses the randomized map for larger outer products
)
SECOND_HEAD = "head2"  # MCD's second classifier
ADVERSARIAL_HEAD = "adversarial_head"  # MDD's auxiliary classifier
JAN_PREDICTION_SIGMA = 0.92  # JAN's fixed kernel on the softmax predictions
ADVERSARIAL = dict(trade_off=1.0, hidden_dim=500, bsp_weight=0.0)


def _check_non_negative(settings, *keys):
  for key in keys:
    if not settings[key] >= 0:
      raise ValueError(
          f"config key 'method_kwargs.{key}' must be >= 0, got "
          f"{settings[key]}"
      )


def _check_positive_int(settings, *keys):
  for key in keys:
    if not settings[key] >= 1:
      raise ValueError(
          f"config key 'method_kwargs.{key}' must be >= 1, got "
          f"{settings[key]}"
      )


def _check_trade_off(settings):
  _check_non_negative(settings, "trade_off")


def _check_adversarial(settings):
  _check_non_negative(settings, "trade_off", "bsp_weight")
  _check_positive_int(settings, "hidden_dim")


def _spectral_penalty(weight: float, source_features, target_features):
  if not weight:
    return 0.0, {}
  penalty = align.batch_spectral_penalization(source_features, target_features)
  return weight * penalty, {"bsp": penalty}


def init_mlp(key, sizes) -> dict:
  """Glorot-uniform MLP with layer widths ``sizes`` as ``{"dense<i>": ...}``."""
  keys = jax.random.split(key, len(sizes) - 1)
  initializer = jax.nn.initializers.glorot_uniform()
  return {
      f"dense{index + 1}": {
          "kernel": initializer(
              keys[index], (sizes[index], sizes[index + 1]), jnp.float32
          ),
          "bias": jnp.zeros((sizes[index + 1],), jnp.float32),
      }
      for index in range(len(sizes) - 1)
  }


def apply_mlp(params: dict, inputs: jax.Array) -> jax.Array:
  """The MLP of :func:`init_mlp` (ReLU between layers) on ``(N, dim)`` inputs."""
  hidden = inputs.astype(jnp.float32)
  for index in range(1, len(params) + 1):
    layer = params[f"dense{index}"]
    hidden = hidden @ layer["kernel"] + layer["bias"]
    if index < len(params):
      hidden = jax.nn.relu(hidden)
  return hidden


def init_discriminator(key, input_dim: int, hidden_dim: int) -> dict:
  """Glorot-uniform MLP ``input_dim → hidden → hidden → 1`` as a parameter dict."""
  return init_mlp(key, [input_dim, hidden_dim, hidden_dim, 1])


def apply_discriminator(params: dict, inputs: jax.Array) -> jax.Array:
  """Domain logits ``(N,)`` (source = 1) of the MLP on ``(N, dim)`` inputs."""
  return apply_mlp(params, inputs)[:, 0]


def _split_params(params, name: str = DISCRIMINATOR):
  model_params = {key: value for key, value in params.items() if key != name}
  return model_params, params.get(name)


def _joint_forward(model, params, model_state, batch, key):
  """One forward pass over source then target; the source cross-entropy."""
  source, target = batch["source"], batch["target"]
  num_source = source["input"].shape[0]
  inputs = jnp.concatenate([source["input"], target["input"]])
  outputs, model_state = model.apply(
      params, model_state, inputs, train=True, key=key
  )
  logits = outputs.logits.astype(jnp.float32)
  source_logits = logits[:num_source]
  loss = jnp.mean(
      optax.softmax_cross_entropy_with_integer_labels(
          source_logits, source["label"]
      )
  )
  accuracy = jnp.mean(jnp.argmax(source_logits, -1) == source["label"])
  features = outputs.features.astype(jnp.float32)
  return (
      loss,
      model_state,
      features[:num_source],
      features[num_source:],
      source_logits,
      logits[num_source:],
      {"source_accuracy": accuracy},
  )


def _progress(batch, config):
  return jnp.minimum(batch["step"].astype(jnp.float32) / config.steps, 1.0)


def _discrepancy_method(
    name: str, discrepancy, model, trade_off: float
) -> Method:

  def loss_fn(params, model_state, batch, key, extras, *, hparams):
    del extras
    loss, model_state, source_features, target_features, _, _, metrics = (
        _joint_forward(model, params, model_state, batch, key)
    )
    term = discrepancy(source_features, target_features)
    return loss + hparams["trade_off"] * term, (
        model_state,
        {**metrics, name: term},
    )

  return Method(
      name=name,
      loss_fn=loss_fn,
      domains=("source", "target"),
      labeled=("source",),
      setting="transductive",
      hparams={"trade_off": trade_off},
  )


@register_method("dan", defaults=dict(trade_off=1.0), check=_check_trade_off)
def build_dan(config, model, *, trade_off) -> Method:
  del config
  return _discrepancy_method("dan", align.mmd, model, trade_off)


def _check_coral(settings):
  _check_trade_off(settings)
  if settings["coral_convention"] not in align.CORAL_CONVENTIONS:
    raise ValueError(
        f"config key 'method_kwargs.coral_convention' must be "
        f"one of {list(align.CORAL_CONVENTIONS)}, got "
        f"{settings['coral_convention']!r}"
    )


@register_method(
    "deep_coral",
    defaults=dict(trade_off=1.0, coral_convention="paper"),
    check=_check_coral,
)
def build_deep_coral(config, model, *, trade_off, coral_convention) -> Method:
  # "paper" (Sun & Saenko) or "tllib" (TLlib's code: 4x the covariance term
  # plus a mean term); see align.coral.
  del config
  return _discrepancy_method(
      "deep_coral",
      functools.partial(align.coral, convention=coral_convention),
      model,
      trade_off,
  )


def _feature_dim(context) -> tuple[int, int]:
  """(bottleneck feature dim, number of classes) of the model."""
  probe, _ = context.model.apply(
      context.params,
      context.model_state,
      jnp.asarray(context.domains["source"]["train"].inputs[:2]),
      train=False,
  )
  return probe.features.shape[-1], probe.logits.shape[-1]


@register_method("dann", defaults=ADVERSARIAL, check=_check_adversarial)
def build_dann(config, model, *, trade_off, hidden_dim, bsp_weight) -> Method:

  def init_params(context):
    feature_dim, _ = _feature_dim(context)
    key = jax.random.fold_in(jax.random.key(context.seed), 0xD155)
    return {DISCRIMINATOR: init_discriminator(key, feature_dim, hidden_dim)}

  def loss_fn(params, model_state, batch, key, extras, *, hparams):
    del extras
    model_params, discriminator = _split_params(params)
    loss, model_state, source_features, target_features, _, _, metrics = (
        _joint_forward(model, model_params, model_state, batch, key)
    )
    coeff = align.dann_coefficient(_progress(batch, config))
    # One discriminator pass over both domains (as TLlib's
    # DomainAdversarialLoss): the same logits, in larger matrix products.
    num_source = source_features.shape[0]
    domain_logits = apply_discriminator(
        discriminator,
        align.gradient_reversal(
            jnp.concatenate([source_features, target_features]), coeff
        ),
    )
    domain_loss = align.domain_adversarial_loss(
        domain_logits[:num_source], domain_logits[num_source:]
    )
    penalty, penalty_metrics = _spectral_penalty(
        bsp_weight, source_features, target_features
    )
    return loss + hparams["trade_off"] * domain_loss + penalty, (
        model_state,
        {
            **metrics,
            **penalty_metrics,
            "domain_loss": domain_loss,
            "reversal_coefficient": coeff,
        },
    )

  return Method(
      name="dann",
      loss_fn=loss_fn,
      domains=("source", "target"),
      labeled=("source",),
      setting="transductive",
      init_params=init_params,
      hparams={"trade_off": trade_off},
  )


def _check_cdan(settings):
  _check_adversarial(settings)
  _check_positive_int(settings, "random_map_dim")


def _build_cdan(
    name: str,
    entropy_conditioning: bool,
    config,
    model,
    *,
    trade_off,
    hidden_dim,
    random_map_dim,
    bsp_weight,
) -> Method:

  def map_dim(context):
    feature_dim, num_classes = _feature_dim(context)
    full = feature_dim * num_classes
    return full if full <= RANDOMIZED_ABOVE else random_map_dim

  def init_params(context):
    key = jax.random.fold_in(jax.random.key(context.seed), 0xCDA0)
    return {
        DISCRIMINATOR: init_discriminator(key, map_dim(context), hidden_dim)
    }

  def init_extras(context):
    feature_dim, num_classes = _feature_dim(context)
    if feature_dim * num_classes <= RANDOMIZED_ABOVE:
      return {}
    key = jax.random.fold_in(jax.random.key(context.seed), 0xCDA1)
    return {
        "random_matrices": align.random_multilinear_matrices(
            key, feature_dim, num_classes, output_dim=random_map_dim
        )
    }

  def loss_fn(params, model_state, batch, key, extras, *, hparams):
    model_params, discriminator = _split_params(params)
    (
        loss,
        model_state,
        source_features,
        target_features,
        source_logits,
        target_logits,
        metrics,
    ) = _joint_forward(model, model_params, model_state, batch, key)
    coeff = align.dann_coefficient(_progress(batch, config))
    domain_loss = align.conditional_adversarial_loss(
        lambda inputs: apply_discriminator(discriminator, inputs),
        source_features,
        source_logits,
        target_features,
        target_logits,
        coeff=coeff,
        entropy_conditioning=entropy_conditioning,
        random_matrices=extras.get("random_matrices"),
    )
    penalty, penalty_metrics = _spectral_penalty(
        bsp_weight, source_features, target_features
    )
    return loss + hparams["trade_off"] * domain_loss + penalty, (
        model_state,
        {
            **metrics,
            **penalty_metrics,
            "domain_loss": domain_loss,
            "reversal_coefficient": coeff,
        },
    )

  return Method(
      name=name,
      loss_fn=loss_fn,
      domains=("source", "target"),
      labeled=("source",),
      setting="transductive",
      init_params=init_params,
      init_extras=init_extras,
      hparams={"trade_off": trade_off},
  )


CDAN = dict(ADVERSARIAL, random_map_dim=1024)


@register_method("cdan", defaults=CDAN, check=_check_cdan)
def build_cdan(config, model, **settings) -> Method:
  return _build_cdan("cdan", False, config, model, **settings)


@register_method("cdan_e", defaults=CDAN, check=_check_cdan)
def build_cdan_e(config, model, **settings) -> Method:
  return _build_cdan("cdan_e", True, config, model, **settings)


@register_method("jan", defaults=dict(trade_off=1.0), check=_check_trade_off)
def build_jan(config, model, *, trade_off) -> Method:
  """JAN: joint MMD of the features and the softmax predictions."""
  del config

  def loss_fn(params, model_state, batch, key, extras, *, hparams):
    del extras
    (
        loss,
        model_state,
        source_features,
        target_features,
        source_logits,
        target_logits,
        metrics,
    ) = _joint_forward(model, params, model_state, batch, key)
    term = align.jmmd(
        [source_features, jax.nn.softmax(source_logits)],
        [target_features, jax.nn.softmax(target_logits)],
        kernel_bandwidths=[None, [JAN_PREDICTION_SIGMA**2]],
    )
    return loss + hparams["trade_off"] * term, (
        model_state,
        {**metrics, "jmmd": term},
    )

  return Method(
      name="jan",
      loss_fn=loss_fn,
      domains=("source", "target"),
      labeled=("source",),
      setting="transductive",
      hparams={"trade_off": trade_off},
  )


@register_method(
    "afn", defaults=dict(trade_off=0.05, delta_r=1.0), check=_check_trade_off
)
def build_afn(config, model, *, trade_off, delta_r) -> Method:
  """Stepwise AFN on the bottleneck features of both domains (``Δr`` = ``delta_r``)."""
  del config

  def loss_fn(params, model_state, batch, key, extras, *, hparams):
    del extras
    loss, model_state, source_features, target_features, _, _, metrics = (
        _joint_forward(model, params, model_state, batch, key)
    )
    term = align.stepwise_adaptive_feature_norm(
        source_features, delta_r=delta_r
    ) + align.stepwise_adaptive_feature_norm(target_features, delta_r=delta_r)
    norm = jnp.mean(
        jnp.linalg.norm(
            jnp.concatenate([source_features, target_features]), axis=-1
        )
    )
    return loss + hparams["trade_off"] * term, (
        model_state,
        {**metrics, "feature_norm_loss": term, "feature_norm": norm},
    )

  return Method(
      name="afn",
      loss_fn=loss_fn,
      domains=("source", "target"),
      labeled=("source",),
      setting="transductive",
      hparams={"trade_off": trade_off},
  )


@register_method(
    "mcc", defaults=dict(trade_off=1.0, temperature=2.5), check=_check_trade_off
)
def build_mcc(config, model, *, trade_off, temperature) -> Method:
  """Minimum class confusion of the target predictions (temperature ``temperature``)."""
  del config

  def loss_fn(params, model_state, batch, key, extras, *, hparams):
    del extras
    loss, model_state, _, _, _, target_logits, metrics = _joint_forward(
        model, params, model_state, batch, key
    )
    term = align.minimum_class_confusion(target_logits, temperature=temperature)
    return loss + hparams["trade_off"] * term, (
        model_state,
        {**metrics, "mcc": term},
    )

  return Method(
      name="mcc",
      loss_fn=loss_fn,
      domains=("source", "target"),
      labeled=("source",),
      setting="transductive",
      hparams={"trade_off": trade_off},
  )


def _fresh_head(context, salt: int) -> dict:
  """The model's head initialised anew (same shapes and initializer)."""
  key = jax.random.fold_in(jax.random.key(context.seed), salt)
  params, _ = context.model.init(key)
  return params["head"]


def apply_head(head: dict, features: jax.Array) -> jax.Array:
  """A linear head ``{"kernel", "bias"}`` on ``(N, dim)`` features."""
  return features.astype(jnp.float32) @ head["kernel"].astype(
      jnp.float32
  ) + head["bias"].astype(jnp.float32)


def _check_mcd(settings):
  _check_positive_int(settings, "num_k")


@register_method("mcd", defaults=dict(num_k=4), check=_check_mcd)
def build_mcd(config, model, *, num_k) -> Method:
  """Maximum Classifier Discrepancy (Saito et al., CVPR 2018), three steps per batch.

  The generator ``G`` is the backbone and bottleneck, ``F1`` the model's
  head and ``F2`` a second head of the same shape (``head2/...``,
  initialised independently). Each training step runs, in one compiled
  function, with one optimizer state for ``G`` and one for ``F1, F2`` (as
  the authors' two optimizers):

  A. ``G, F1, F2`` ← minimise CE(F1) + CE(F2) on the source batch;
  B. ``F1, F2`` ← minimise CE(F1) + CE(F2) − d(F1, F2) on target;
  C. ``G`` ← minimise d(F1, F2) on target, ``num_k`` times
     (4, the authors').

  with ``d`` :func:`tljax.align.classifier_discrepancy`. Every forward pass
  runs on the concatenated source and target batch. Evaluation uses ``F1``.
  Deviations: the classifiers are the model's linear head (the paper's
  digit networks use three-layer fully-connected classifiers after a
  convolutional generator; here ``G`` includes the bottleneck layer); and
  the learning-rate schedule of each group runs over its own number of
  updates (``G`` is updated ``1 + num_k`` times per step).
  """
  del config

  def init_params(context):
    return {SECOND_HEAD: _fresh_head(context, 0x3CD)}

  def forward(params, model_state, batch, key):
    model_params, second = _split_params(params, SECOND_HEAD)
    (
        loss_1,
        model_state,
        source_features,
        target_features,
        source_logits,
        target_logits,
        metrics,
    ) = _joint_forward(model, model_params, model_state, batch, key)
    source_logits_2 = apply_head(second, source_features)
    loss_2 = jnp.mean(
        optax.softmax_cross_entropy_with_integer_labels(
            source_logits_2, batch["source"]["label"]
        )
    )
    discrepancy = align.classifier_discrepancy(
        jax.nn.softmax(target_logits),
        jax.nn.softmax(apply_head(second, target_features)),
    )
    return loss_1 + loss_2, discrepancy, model_state, metrics

  def step_a(params, model_state, batch, key, extras):
    del extras
    loss, _, model_state, metrics = forward(params, model_state, batch, key)
    return loss, (model_state, metrics)

  def step_b(params, model_state, batch, key, extras):
    del extras
    loss, discrepancy, model_state, metrics = forward(
        params, model_state, batch, key
    )
    return loss - discrepancy, (
        model_state,
        {**metrics, "discrepancy": discrepancy},
    )

  def step_c(params, model_state, batch, key, extras):
    del extras
    _, discrepancy, model_state, _ = forward(params, model_state, batch, key)
    return discrepancy, (model_state, {"discrepancy": discrepancy})

  stages = (
      Stage("a", step_a, ("generator", "classifiers")),
      Stage("b", step_b, ("classifiers",)),
      Stage("c", step_c, ("generator",), repeat=num_k),
  )
  return Method(
      name="mcd",
      loss_fn=step_a,
      domains=("source", "target"),
      labeled=("source",),
      setting="transductive",
      init_params=init_params,
      stages=stages,
      param_groups=(
          (f"(head|{SECOND_HEAD})/.*", "classifiers"),
          (".*", "generator"),
      ),
  )


def _check_mdd(settings):
  _check_adversarial(settings)
  if not settings["warmup_iters"] > 0:
    raise ValueError(
        f"config key 'method_kwargs.warmup_iters' must be > 0, "
        f"got {settings['warmup_iters']}"
    )


@register_method(
    "mdd",
    defaults=dict(
        ADVERSARIAL, margin=4.0, max_coefficient=0.1, warmup_iters=1000.0
    ),
    check=_check_mdd,
)
def build_mdd(
    config,
    model,
    *,
    trade_off,
    hidden_dim,
    bsp_weight,
    margin,
    max_coefficient,
    warmup_iters,
) -> Method:
  """Margin Disparity Discrepancy with an adversarial head (Zhang et al. 2019).

  loss = CE(f(G(x_s)), y_s) − λ · D_γ, where D_γ
  (:func:`tljax.align.margin_disparity_discrepancy`, margin
  ``margin`` = 4) compares the main head ``f`` with an
  adversarial head ``f'`` (an MLP ``bottleneck → hidden_dim → classes``,
  ``adversarial_head/...``) that reads the features through a gradient
  reversal. The reversal coefficient warms up as the
  Transfer-Learning-Library's ``WarmStartGradientReverseLayer``:
  ``0.1 · (2 / (1 + exp(−i / 1000)) − 1)`` at step ``i``
  (``max_coefficient``, ``warmup_iters``).
  """
  del config
  high = max_coefficient

  def init_params(context):
    feature_dim, num_classes = _feature_dim(context)
    key = jax.random.fold_in(jax.random.key(context.seed), 0x3DD)
    return {
        ADVERSARIAL_HEAD: init_mlp(key, [feature_dim, hidden_dim, num_classes])
    }

  def loss_fn(params, model_state, batch, key, extras, *, hparams):
    del extras
    model_params, adversarial = _split_params(params, ADVERSARIAL_HEAD)
    (
        loss,
        model_state,
        source_features,
        target_features,
        source_logits,
        target_logits,
        metrics,
    ) = _joint_forward(model, model_params, model_state, batch, key)
    # TLlib's warm start: step / warmup_iters grows past 1 (unbounded).
    coeff = align.dann_coefficient(
        batch["step"].astype(jnp.float32) / warmup_iters,
        gamma=1.0,
        high=high,
        max_progress=None,
    )
    disparity = align.margin_disparity_discrepancy(
        source_logits,
        apply_mlp(adversarial, align.gradient_reversal(source_features, coeff)),
        target_logits,
        apply_mlp(adversarial, align.gradient_reversal(target_features, coeff)),
        margin=margin,
    )
    penalty, penalty_metrics = _spectral_penalty(
        bsp_weight, source_features, target_features
    )
    return loss - hparams["trade_off"] * disparity + penalty, (
        model_state,
        {
            **metrics,
            **penalty_metrics,
            "disparity": disparity,
            "reversal_coefficient": coeff,
        },
    )

  return Method(
      name="mdd",
      loss_fn=loss_fn,
      domains=("source", "target"),
      labeled=("source",),
      setting="transductive",
      init_params=init_params,
      hparams={"trade_off": trade_off},
  )
