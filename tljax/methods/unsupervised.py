"""Unsupervised recipes: learn a representation from unlabeled inputs of one domain.

The setting is ``"unsupervised"``: no labels on either side. A recipe trains
on the unlabeled training inputs of ``config.source`` (``labeled=()``: the
loop strips every label before a batch reaches the step); the representation
is the model's ``features`` (the backbone and, if configured, the bottleneck),
which :mod:`tljax.unsupervised` clusters on the target (``scripts/
unsupervised.py``). To learn on the target alone, point ``config.source`` at
the target's dataset (``configs/unsupervised.py:representation=target``).

* ``dae`` (Vincent et al., ICML 2008): a decoder MLP ``features → hidden →
  input`` (``decoder/...``) reconstructs the clean input from the features of
  its corrupted copy; masking noise (ν = 0.25) and the cross-entropy loss of
  :func:`tljax.unsupervised.denoising_autoencoder_loss`.
* ``simclr`` (Chen et al., ICML 2020): two random views of every image
  (:func:`tljax.unsupervised.augment_digits`) go through the model in one
  forward pass (so BatchNorm normalises over all 2N views, as the paper's
  global BatchNorm), a projection head ``features → hidden → ReLU → 128``
  (``projection_head/...``) maps the features, and the loss is
  :func:`tljax.unsupervised.nt_xent_loss` with τ = 0.5.

Both recipes freeze the model's classification ``head`` (nothing trains it:
there are no labels), so it gets no gradient, weight decay or optimizer state.
The added decoder or projection head is discarded after training.

Deviations from the papers: the encoder is the tljax model (a LeNet, not the
DAE paper's one-layer sigmoid encoder with tied weights, nor SimCLR's
ResNet-50), the decoder is a two-layer MLP, the optimizer and schedule are
the config's (SimCLR uses LARS with large batches), and the augmentations are
the digit-sized ones of :mod:`tljax.unsupervised.augment`. The
hyper-parameters are the keyword arguments of :func:`make_dae` and
:func:`make_simclr`; a config sets them in ``config.method_kwargs`` (e.g.
``method_kwargs.corruption_level=0.5``), and the registered defaults are
those of the two functions (``hidden_dim=0``: the feature dim).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from tljax import unsupervised
from tljax.align._arrays import check_choice
from tljax.checks import check_int, check_non_negative, check_positive
from tljax.methods.adaptation import apply_mlp, init_mlp
from tljax.methods.base import Method
from tljax.methods.registry import register_method

DECODER = "decoder"
PROJECTION_HEAD = "projection_head"
#: Every recipe here trains the representation, never the classifier head.
FREEZE_HEAD = (("head/.*", None), (".*", 1.0))
SIMCLR_PROJECTION_DIM = 128  # the paper's output dimension of g(·)
DOMAIN = "source"


def _split_params(params: dict, name: str) -> tuple[dict, dict]:
  return (
      {key: value for key, value in params.items() if key != name},
      params[name],
  )


def _shapes(context) -> tuple[int, tuple[int, ...]]:
  """(feature dim, per-example input shape) of the model on the domain."""
  train = context.domains[DOMAIN]["train"]
  input_shape = tuple(train.input_shape)
  probe, _ = jax.eval_shape(
      lambda: context.model.apply(
          context.params,
          context.model_state,
          jnp.zeros((2, *input_shape)),
          train=False,
      )
  )
  return probe.features.shape[-1], input_shape


def _init_head(context, salt: int, sizes) -> dict:
  """An MLP of layer widths ``sizes`` (:func:`init_mlp`), seeded by the run."""
  key = jax.random.fold_in(jax.random.key(context.seed), salt)
  # One compiled program instead of one per initializer call.
  return jax.jit(init_mlp, static_argnums=1)(key, tuple(sizes))


def _check_dae(settings) -> None:
  """The denoising autoencoder's settings; errors name the setting."""
  if settings["hidden_dim"] is not None:
    check_int(settings["hidden_dim"], "hidden_dim", minimum=0)
  check_choice(settings["corruption"], "corruption", unsupervised.CORRUPTIONS)
  check_choice(
      settings["reconstruction_loss"],
      "reconstruction_loss",
      unsupervised.RECONSTRUCTION_LOSSES,
  )
  check_non_negative(settings["corruption_level"], "corruption_level")
  if settings["corruption"] == "masking" and settings["corruption_level"] > 1:
    raise ValueError(
        f"corruption_level must be a fraction in [0, 1] for "
        f"masking corruption, got {settings['corruption_level']}."
    )


def _check_simclr(settings) -> None:
  """SimCLR's settings; errors name the setting."""
  check_positive(settings["temperature"], "temperature")
  check_int(settings["projection_dim"], "projection_dim", minimum=1)
  if settings["hidden_dim"] is not None:
    check_int(settings["hidden_dim"], "hidden_dim", minimum=0)


def make_dae(
    config,
    model,
    *,
    name: str = "dae",
    corruption: str = "masking",
    corruption_level: float = 0.25,
    reconstruction_loss: str = "cross_entropy",
    hidden_dim: int | None = None,
) -> Method:
  """The denoising-autoencoder recipe (see the module docstring).

  Args:
    config: the experiment config.
    model: the :class:`tljax.models.Model` whose features are learned.
    name: the recipe's name (that of a registered variant).
    corruption: ``"masking"`` or ``"gaussian"`` (see
      :func:`tljax.unsupervised.corrupt`).
    corruption_level: ν for masking, σ for Gaussian noise.
    reconstruction_loss: ``"cross_entropy"`` (inputs in [0, 1]) or
      ``"squared_error"``.
    hidden_dim: the decoder's hidden width (``None`` or 0: the feature dim).
  """
  del config
  _check_dae(
      dict(
          corruption=corruption,
          corruption_level=corruption_level,
          reconstruction_loss=reconstruction_loss,
          hidden_dim=hidden_dim,
      )
  )

  def init_params(context):
    feature_dim, input_shape = _shapes(context)
    inputs = getattr(context.domains[DOMAIN]["train"], "inputs", None)
    if (
        reconstruction_loss == "cross_entropy"
        and inputs is not None
        and not (inputs.min() >= 0 and inputs.max() <= 1)
    ):
      raise ValueError(
          "dae: the cross-entropy reconstruction needs inputs in [0, 1]; the "
          f"{DOMAIN} inputs span [{inputs.min()}, {inputs.max()}] (use "
          "reconstruction_loss='squared_error')"
      )
    return {
        DECODER: _init_head(
            context,
            0xDAE,
            [feature_dim, hidden_dim or feature_dim, math.prod(input_shape)],
        )
    }

  def loss_fn(params, model_state, batch, key, extras):
    del extras
    model_params, decoder = _split_params(params, DECODER)
    clean = batch[DOMAIN]["input"]
    noise_key, model_key = jax.random.split(key)
    corrupted = unsupervised.corrupt(
        clean, noise_key, corruption=corruption, level=corruption_level
    )
    outputs, model_state = model.apply(
        model_params, model_state, corrupted, train=True, key=model_key
    )
    reconstructions = apply_mlp(decoder, outputs.features).reshape(clean.shape)
    loss = unsupervised.denoising_autoencoder_loss(
        reconstructions, clean, reconstruction_loss=reconstruction_loss
    )
    return loss, (model_state, {"reconstruction_loss": loss})

  return Method(
      name=name,
      loss_fn=loss_fn,
      domains=(DOMAIN,),
      labeled=(),
      setting="unsupervised",
      trainable_rules=FREEZE_HEAD,
      init_params=init_params,
  )


def make_simclr(
    config,
    model,
    *,
    name: str = "simclr",
    temperature: float = unsupervised.DEFAULT_TEMPERATURE,
    projection_dim: int = SIMCLR_PROJECTION_DIM,
    hidden_dim: int | None = None,
    min_area: float = 0.5,
    max_rotation_degrees: float = 10.0,
    noise_std: float = 0.05,
) -> Method:
  """The SimCLR recipe (see the module docstring).

  Args:
    config: the experiment config.
    model: the :class:`tljax.models.Model` whose features are learned; its
      inputs must be images ``(height, width, channels)``.
    name: the recipe's name (that of a registered variant).
    temperature: NT-Xent's τ.
    projection_dim: the projection head's output dimension.
    hidden_dim: the projection head's hidden width (``None`` or 0: the
      feature dim, as the paper's).
    min_area, max_rotation_degrees, noise_std: the augmentation's (see
      :func:`tljax.unsupervised.augment_digits`).
  """
  del config
  _check_simclr(
      dict(
          temperature=temperature,
          projection_dim=projection_dim,
          hidden_dim=hidden_dim,
      )
  )

  def augment(images, key):
    return unsupervised.augment_digits(
        images,
        key,
        min_area=min_area,
        max_rotation_degrees=max_rotation_degrees,
        noise_std=noise_std,
    )

  def init_params(context):
    feature_dim, input_shape = _shapes(context)
    if len(input_shape) != 3:
      raise ValueError(
          f"simclr augments images (height, width, channels); "
          f"the {DOMAIN} inputs have shape {input_shape}"
      )
    return {
        PROJECTION_HEAD: _init_head(
            context,
            0x51C,
            [feature_dim, hidden_dim or feature_dim, projection_dim],
        )
    }

  def loss_fn(params, model_state, batch, key, extras):
    del extras
    model_params, projection_head = _split_params(params, PROJECTION_HEAD)
    images = batch[DOMAIN]["input"]
    num_examples = images.shape[0]
    first_key, second_key, model_key = jax.random.split(key, 3)
    views = jnp.concatenate(
        [augment(images, first_key), augment(images, second_key)]
    )
    outputs, model_state = model.apply(
        model_params, model_state, views, train=True, key=model_key
    )
    projections = apply_mlp(projection_head, outputs.features)
    loss = unsupervised.nt_xent_loss(
        projections[:num_examples],
        projections[num_examples:],
        temperature=temperature,
    )
    return loss, (model_state, {"nt_xent": loss})

  return Method(
      name=name,
      loss_fn=loss_fn,
      domains=(DOMAIN,),
      labeled=(),
      setting="unsupervised",
      trainable_rules=FREEZE_HEAD,
      init_params=init_params,
  )


@register_method(
    "dae",
    defaults=dict(
        corruption="masking",
        corruption_level=0.25,
        reconstruction_loss="cross_entropy",
        hidden_dim=0,
    ),
    check=_check_dae,
)
def build_dae(config, model, **settings) -> Method:
  return make_dae(config, model, **settings)


@register_method(
    "simclr",
    defaults=dict(
        temperature=unsupervised.DEFAULT_TEMPERATURE,
        projection_dim=SIMCLR_PROJECTION_DIM,
        hidden_dim=0,
        min_area=0.5,
        max_rotation_degrees=10.0,
        noise_std=0.05,
    ),
    check=_check_simclr,
)
def build_simclr(config, model, **settings) -> Method:
  return make_simclr(config, model, **settings)
