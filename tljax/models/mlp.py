"""Multi-layer perceptron classifier for toy domains and small images.

Architecture: flatten → ``[Linear(width) → ReLU]`` for each width in
``hidden_dims`` (the backbone) → :class:`~tljax.models.classifier.Bottleneck`
→ linear head. It is the model for the generated toy domains (two-dimensional
rotated two-moons, Gaussian covariate shift) and a fast baseline on the 8×8×1
digit domains.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from tljax.models.classifier import Classifier, Dtype

__all__ = ["MLP", "MLPBackbone"]


class MLPBackbone(nnx.Module):
  """Flatten, then fully connected layers with ReLU.

  The hidden layers are the submodules ``dense1``, ``dense2``, ... (parameter
  paths ``backbone/dense1/kernel``, ...). With no hidden layers the backbone
  only flattens its inputs.

  Attributes:
    in_features: number of input features after flattening.
    hidden_dims: widths of the hidden layers.
    features_dim: width of the output features (the last hidden width, or
      ``in_features`` without hidden layers).
  """

  def __init__(
      self,
      in_features: int,
      hidden_dims: Sequence[int],
      *,
      dtype: Dtype = jnp.float32,
      param_dtype: Dtype = jnp.float32,
      rngs: nnx.Rngs,
  ):
    """Builds the hidden layers.

    Args:
      in_features: number of input features after flattening.
      hidden_dims: widths of the hidden layers, in order.
      dtype: computation dtype.
      param_dtype: parameter dtype.
      rngs: random streams used for parameter initialisation.
    """
    hidden_dims = tuple(int(width) for width in hidden_dims)
    if any(width < 1 for width in hidden_dims):
      raise ValueError(
          f"hidden_dims must hold positive integers, got {hidden_dims}."
      )
    self.in_features = in_features
    self.hidden_dims = hidden_dims
    self.layer_names = tuple(f"dense{i + 1}" for i in range(len(hidden_dims)))
    widths = (in_features, *hidden_dims)
    for name, fan_in, fan_out in zip(
        self.layer_names, widths[:-1], widths[1:], strict=True
    ):
      setattr(
          self,
          name,
          nnx.Linear(
              fan_in, fan_out, dtype=dtype, param_dtype=param_dtype, rngs=rngs
          ),
      )
    self.features_dim = widths[-1]

  def __call__(self, inputs: jax.Array, *, train: bool) -> jax.Array:
    """Maps ``(batch, ...)`` inputs to ``(batch, features_dim)`` features.

    ``train`` is accepted for the common backbone interface; this backbone
    behaves identically in both modes.
    """
    del train
    x = inputs.reshape(inputs.shape[0], -1)
    for name in self.layer_names:
      x = nnx.relu(getattr(self, name)(x))
    return x


class MLP(Classifier):
  """MLP backbone → bottleneck → head (see :class:`Classifier`)."""

  def __init__(
      self,
      input_shape: Sequence[int],
      num_classes: int,
      *,
      hidden_dims: Sequence[int] = (64, 64),
      bottleneck_dim: int | None = None,
      bottleneck_batch_norm: bool = True,
      bottleneck_dropout: float = 0.0,
      batch_norm_momentum: float = 0.9,
      dtype: Dtype = jnp.float32,
      param_dtype: Dtype = jnp.float32,
      rngs: nnx.Rngs,
  ):
    """Builds the MLP classifier.

    Args:
      input_shape: per-example input shape, e.g. ``(2,)`` or ``(8, 8, 1)``.
      num_classes: number of classes.
      hidden_dims: widths of the backbone's hidden layers.
      bottleneck_dim: bottleneck width; None (the default) for the identity,
        so ``features`` are the last hidden layer's activations.
      bottleneck_batch_norm: BatchNorm in the bottleneck.
      bottleneck_dropout: dropout rate at the end of the bottleneck.
      batch_norm_momentum: running-average momentum (flax convention).
      dtype: computation dtype.
      param_dtype: parameter dtype.
      rngs: random streams used for parameter initialisation.
    """
    input_shape = tuple(input_shape)
    if not input_shape or any(size < 1 for size in input_shape):
      raise ValueError(
          f"input_shape must be a non-empty tuple of positive sizes, got {input_shape}."
      )
    backbone = MLPBackbone(
        math.prod(input_shape),
        hidden_dims,
        dtype=dtype,
        param_dtype=param_dtype,
        rngs=rngs,
    )
    super().__init__(
        backbone,
        backbone.features_dim,
        num_classes,
        bottleneck_dim=bottleneck_dim,
        bottleneck_batch_norm=bottleneck_batch_norm,
        bottleneck_dropout=bottleneck_dropout,
        batch_norm_momentum=batch_norm_momentum,
        dtype=dtype,
        param_dtype=param_dtype,
        rngs=rngs,
    )
