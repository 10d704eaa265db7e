"""LeNet-style convolutional classifier for small digit images.

LeCun, Bottou, Bengio and Haffner, "Gradient-based learning applied to
document recognition", Proc. IEEE 86(11), 1998. The variant here is the one
used by the domain-adaptation digit benchmarks (MNIST ↔ USPS ↔ SVHN) in the
Transfer-Learning-Library and in ADDA (Tzeng et al., CVPR 2017): ReLU instead
of sigmoid, max pooling instead of subsampling, 20 and 50 feature maps and a
500-unit fully connected layer. The 2-D dropout some of those versions put
after the second convolution is left out; the bottleneck offers dropout.

Backbone (NHWC): ``conv1`` 5×5×20 → ReLU → 2×2 max pool → ``conv2`` 5×5×50 →
ReLU → 2×2 max pool (the ``feature_maps`` of the model's output) → flatten →
``fc`` Linear(500) → ReLU. The convolutions
use 'SAME' padding, so the 8×8×1 digit domains of tljax (and 28×28 or 32×32
images) all work: the spatial size after the two poolings is
``(H // 2 // 2) × (W // 2 // 2)``, giving ``fc`` ``(H//4)·(W//4)·50`` inputs
(200 for 8×8, 2,450 for 28×28, 3,200 for 32×32).

How the convolutions are computed (``conv_impl``). The layers are
``nnx.Conv`` modules (``conv1``/``conv2``, kernel ``(5, 5, C_in, C_out)``
HWIO, bias), so parameters, checkpoints and rules are the same either way;
only the arithmetic differs. ``"matmul"`` (default), tuned for CPU: a map of
at most 64 pixels is multiplied by the convolution's dense matrix, and the
conv → ReLU → 2×2 max-pool stages on larger maps run together in blocks of
the batch, with a VJP of their own; ``"xla"``: ``lax.conv_general_dilated``
(what ``nnx.Conv`` calls), then ReLU and pooling, differentiated by
autodiff. Both give the same function and gradients up to the order of
floating-point summation, ties of the pooling inputs included. How
``"matmul"`` works, the profile that shaped it and its measurements (134
against 36 DANN steps/s on 8×8 digits on 2 CPU cores) are in
:mod:`tljax.models._lenet_conv`.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from tljax.models._lenet_conv import (
    DENSE_MAX_PIXELS,
    conv_relu_pool_stages,
    dense_conv_same,
    max_pool_2x2,
)
from tljax.models.classifier import Classifier, Dtype

__all__ = ["LeNet", "LeNetBackbone"]

CONV_IMPLEMENTATIONS = ("matmul", "xla")


class LeNetBackbone(nnx.Module):
  """LeNet feature extractor: two conv/pool stages and a 500-unit layer.

  Submodules: ``conv1``, ``conv2``, ``fc``.

  Attributes:
    input_shape: per-example ``(height, width, channels)``.
    features_dim: 500.
    conv_impl: ``"matmul"`` or ``"xla"`` (see the module docstring).
  """

  def __init__(
      self,
      input_shape: Sequence[int],
      *,
      dtype: Dtype = jnp.float32,
      param_dtype: Dtype = jnp.float32,
      conv_impl: str = "matmul",
      rngs: nnx.Rngs,
  ):
    """Builds the layers for inputs of shape ``input_shape``.

    Args:
      input_shape: per-example ``(height, width, channels)``; height and width
        must be at least 4 so that two 2×2 poolings leave a pixel.
      dtype: computation dtype.
      param_dtype: parameter dtype.
      conv_impl: how the convolutions are computed: ``"matmul"`` (default) or
        ``"xla"``; the same parameters and function either way (module
        docstring).
      rngs: random streams used for parameter initialisation.
    """
    input_shape = tuple(input_shape)
    if len(input_shape) != 3 or any(size < 1 for size in input_shape):
      raise ValueError(
          f"input_shape must be (height, width, channels) for LeNet, got {input_shape}."
      )
    height, width, channels = input_shape
    if height < 4 or width < 4:
      raise ValueError(
          f"input_shape {input_shape} is too small for LeNet: height and width "
          "must be at least 4 (two 2x2 max poolings)."
      )
    if conv_impl not in CONV_IMPLEMENTATIONS:
      raise ValueError(
          f"conv_impl must be one of {list(CONV_IMPLEMENTATIONS)}, "
          f"got {conv_impl!r}."
      )
    self.input_shape = input_shape
    self.conv_impl = conv_impl
    layer = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.conv1 = nnx.Conv(channels, 20, (5, 5), padding="SAME", **layer)
    self.conv2 = nnx.Conv(20, 50, (5, 5), padding="SAME", **layer)
    self.fc = nnx.Linear((height // 4) * (width // 4) * 50, 500, **layer)
    self.features_dim = 500

  def forward_with_feature_maps(
      self, inputs: jax.Array, *, train: bool
  ) -> tuple[jax.Array, jax.Array]:
    """Maps ``(batch, H, W, C)`` images to features and feature maps.

    ``train`` is accepted for the common backbone interface; this backbone
    behaves identically in both modes.

    Returns:
      ``(features, feature_maps)``: the ``(batch, 500)`` features and the
      ``(batch, H // 4, W // 4, 50)`` output of conv2 → ReLU → max pool, the
      map that is flattened into ``fc``.
    """
    del train
    layers = [self.conv1, self.conv2]
    if self.conv_impl == "xla":
      for layer in layers:
        inputs = max_pool_2x2(nnx.relu(layer(inputs)))
    else:
      # The leading stages whose maps exceed DENSE_MAX_PIXELS run together
      # (tljax.models._lenet_conv); the rest by their dense matrices.
      stages, (height, width) = 0, inputs.shape[1:3]
      while stages < len(layers) and height * width > DENSE_MAX_PIXELS:
        stages, height, width = stages + 1, height // 2, width // 2
      if stages:
        dtype, kernels, biases = inputs.dtype, [], []
        for layer in layers[:stages]:
          kernel = layer.kernel[...]
          dtype = layer.dtype or jnp.result_type(dtype, kernel)
          kernels.append(kernel.astype(dtype))
          biases.append(layer.bias[...].astype(dtype))
        inputs = conv_relu_pool_stages(
            inputs.astype(kernels[0].dtype),
            tuple(kernels),
            tuple(biases),
            tuple(layer.precision for layer in layers[:stages]),
        )
      for layer in layers[stages:]:
        inputs = max_pool_2x2(nnx.relu(dense_conv_same(layer, inputs)))
    feature_maps = inputs
    x = feature_maps.reshape(feature_maps.shape[0], -1)
    return nnx.relu(self.fc(x)), feature_maps

  def __call__(self, inputs: jax.Array, *, train: bool) -> jax.Array:
    """Maps ``(batch, H, W, C)`` images to ``(batch, 500)`` features."""
    return self.forward_with_feature_maps(inputs, train=train)[0]


class LeNet(Classifier):
  """LeNet backbone → bottleneck → head (see :class:`Classifier`)."""

  def __init__(
      self,
      input_shape: Sequence[int],
      num_classes: int,
      *,
      bottleneck_dim: int | None = 256,
      bottleneck_batch_norm: bool = True,
      bottleneck_dropout: float = 0.0,
      batch_norm_momentum: float = 0.9,
      dtype: Dtype = jnp.float32,
      param_dtype: Dtype = jnp.float32,
      conv_impl: str = "matmul",
      rngs: nnx.Rngs,
  ):
    """Builds the LeNet classifier.

    Args:
      input_shape: per-example ``(height, width, channels)``.
      num_classes: number of classes.
      bottleneck_dim: bottleneck width (256, the default of the
        Transfer-Learning-Library's ``ImageClassifier``); None for the
        identity.
      bottleneck_batch_norm: BatchNorm in the bottleneck.
      bottleneck_dropout: dropout rate at the end of the bottleneck.
      batch_norm_momentum: running-average momentum (flax convention).
      dtype: computation dtype.
      param_dtype: parameter dtype.
      conv_impl: ``"matmul"`` (default) or ``"xla"``, see
        :class:`LeNetBackbone`.
      rngs: random streams used for parameter initialisation.
    """
    backbone = LeNetBackbone(
        input_shape,
        dtype=dtype,
        param_dtype=param_dtype,
        conv_impl=conv_impl,
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
