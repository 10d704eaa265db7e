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
only the arithmetic differs:

* ``"matmul"`` (default): each convolution is one matrix product. A feature
  map of at most 64 pixels (both convolutions on tljax's 8×8 digits: 8×8
  and 4×4) is multiplied by the convolution's dense
  ``(H·W·C_in, H·W·C_out)`` matrix, assembled from the kernel by a constant
  0/1 tap selector. It costs ``H·W / 25`` times the multiply-adds of the
  convolution (at most 2.56×, on a layer that is small at that size) but
  needs no unfolding, and at 4×4 more than half the 5×5 taps fall on the
  'SAME' padding anyway. A larger map is unfolded into ``(H, W, 25·C_in)``
  patches from 25 shifted slices of the padded input (im2col) and
  multiplied by the ``(25·C_in, C_out)`` kernel. Both give the convolution
  exactly, up to the order of floating-point summation, and autodiff gives
  their gradients.
* ``"xla"``: ``lax.conv_general_dilated`` (what ``nnx.Conv`` calls).

The default exists for speed on CPU, where XLA's convolutions at these
shapes are slow: with ``"matmul"`` the whole DANN training step on 8×8
digits (batch 64+64) took 19 ms instead of 50, and at 28×28 186 ms instead
of 224, on a 2-core machine (``scripts/benchmark.py``, section ``dann``;
docs/benchmarks.md). On GPU either is fine for digit-sized images.
Max pooling takes the maximum of each 2×2 block (a reshape and ``max``), as
``nnx.max_pool`` with a 2×2 'VALID' window; it differs in the gradient only
where two inputs of a block tie for the maximum (the reshape splits the
gradient between them, ``reduce_window`` gives it to one). After a ReLU a
tie is, but for probability zero, a block of zeros, where the ReLU's
gradient is zero anyway.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from tljax.models.classifier import Classifier, Dtype

__all__ = ["LeNet", "LeNetBackbone"]

CONV_IMPLEMENTATIONS = ("matmul", "xla")
# Maps up to this many pixels use the dense matrix (module docstring).
_DENSE_MAX_PIXELS = 64


def _same_padding(size: int) -> tuple[int, int]:
  """'SAME' padding of a stride-1 window of ``size`` (as XLA pads)."""
  return (size - 1) // 2, size - 1 - (size - 1) // 2


def _tap_selector(height: int, width: int, kh: int, kw: int) -> np.ndarray:
  """0/1 array ``(H·W · H·W, kh·kw)``: input pixel p feeds output q through tap t.

  Row ``p · H·W + q`` has a one at tap ``t = i·kw + j`` when input pixel
  ``p`` is at offset ``(i, j)`` of the 'SAME'-padded window of output pixel
  ``q``; rows of pairs that no tap connects are zero.
  """
  top, left = _same_padding(kh)[0], _same_padding(kw)[0]
  pixels = height * width
  selector = np.zeros((pixels, pixels, kh * kw), np.float32)
  rows, cols = np.divmod(np.arange(pixels), width)
  for i in range(kh):
    for j in range(kw):
      source_rows, source_cols = rows + i - top, cols + j - left
      valid = ((source_rows >= 0) & (source_rows < height)
               & (source_cols >= 0) & (source_cols < width))
      selector[source_rows[valid] * width + source_cols[valid],
               np.arange(pixels)[valid], i * kw + j] = 1.0
  return selector.reshape(pixels * pixels, kh * kw)


def _conv_same(conv: nnx.Conv, inputs: jax.Array) -> jax.Array:
  """``conv(inputs)`` (stride 1, 'SAME') as one matrix product with the inputs.

  See the module docstring for the two forms (dense matrix, im2col).
  """
  kernel, bias = conv.kernel[...], conv.bias[...]
  dtype = conv.dtype or jnp.result_type(inputs, kernel)
  inputs, kernel, bias = (inputs.astype(dtype), kernel.astype(dtype),
                          bias.astype(dtype))
  kh, kw, in_features, out_features = kernel.shape
  batch, height, width, _ = inputs.shape
  pixels = height * width
  if pixels <= _DENSE_MAX_PIXELS:
    # Dense (H·W·C_in, H·W·C_out) matrix of the convolution: each entry is
    # one kernel weight or zero, so building it is exact in any dtype.
    selector = jnp.asarray(_tap_selector(height, width, kh, kw), dtype)
    dense = selector @ kernel.reshape(kh * kw, in_features * out_features)
    dense = dense.reshape(pixels, pixels, in_features, out_features)
    dense = dense.transpose(0, 2, 1, 3).reshape(pixels * in_features,
                                                pixels * out_features)
    outputs = jnp.dot(inputs.reshape(batch, pixels * in_features), dense,
                      precision=conv.precision)
    outputs = outputs.reshape(batch, height, width, out_features)
  else:
    padded = jnp.pad(inputs, ((0, 0), _same_padding(kh), _same_padding(kw),
                              (0, 0)))
    patches = jnp.concatenate(
      [padded[:, i : i + height, j : j + width, :]
       for i in range(kh) for j in range(kw)], axis=-1)
    outputs = jnp.dot(patches, kernel.reshape(kh * kw * in_features,
                                              out_features),
                      precision=conv.precision)
  return outputs + bias


def _max_pool_2x2(inputs: jax.Array) -> jax.Array:
  """2×2 max pooling, stride 2, 'VALID' (odd trailing rows/columns dropped)."""
  batch, height, width, channels = inputs.shape
  inputs = inputs[:, : height // 2 * 2, : width // 2 * 2]
  return inputs.reshape(batch, height // 2, 2, width // 2, 2,
                        channels).max(axis=(2, 4))


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
      raise ValueError(f"conv_impl must be one of {list(CONV_IMPLEMENTATIONS)}, "
                       f"got {conv_impl!r}.")
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
    x = _max_pool_2x2(nnx.relu(self._conv(self.conv1, inputs)))
    feature_maps = _max_pool_2x2(nnx.relu(self._conv(self.conv2, x)))
    x = feature_maps.reshape(feature_maps.shape[0], -1)
    return nnx.relu(self.fc(x)), feature_maps

  def _conv(self, layer: nnx.Conv, inputs: jax.Array) -> jax.Array:
    """``layer(inputs)``, computed as ``conv_impl`` says."""
    return layer(inputs) if self.conv_impl == "xla" else _conv_same(layer, inputs)

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
      input_shape, dtype=dtype, param_dtype=param_dtype, conv_impl=conv_impl,
      rngs=rngs
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
