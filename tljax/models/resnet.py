"""Residual networks (ResNet-18, ResNet-50) in NHWC layout.

He, Zhang, Ren and Sun, "Deep residual learning for image recognition",
CVPR 2016. The layout follows torchvision's ResNet ("v1.5": in a bottleneck
block the stride sits on the 3×3 convolution), with the same explicit
paddings and mirrored submodule names (torchvision's ``layer1.0.conv1`` is
``layer1_0/conv1`` here, ``downsample.0``/``downsample.1`` are
``downsample_conv``/``downsample_bn``), so torchvision ImageNet weights map
onto these modules one to one (kernels transposed from OIHW to HWIO; BatchNorm
``weight`` is ``scale``, ``running_mean``/``running_var`` are ``mean``/``var``):

* stem: ``conv1`` and ``bn1``; then, with ``stem="imagenet"``, a 7×7 stride-2
  convolution followed by a 3×3 stride-2 max pool (for 224×224 inputs), or
  with ``stem="small"`` a 3×3 stride-1 convolution and no pooling (the
  CIFAR-style stem, for 8×8 to 32×32 inputs);
* four stages of residual blocks, ``layer{stage}_{index}`` (e.g.
  ``backbone/layer1_0/conv1``), with 64, 128, 256 and 512 base channels,
  stride 2 at the start of stages 2–4; a block whose input and output shapes
  differ has a projection shortcut ``downsample_conv`` (1×1) +
  ``downsample_bn`` (option B of the paper);
* global average pooling, giving 512 (basic blocks) or 2048 (bottleneck
  blocks) backbone features.

Convolutions have no bias (BatchNorm follows each), are initialised with He
normal initialisation in fan-out mode as in torchvision, and BatchNorm uses
PyTorch's defaults (momentum 0.1, i.e. flax ``momentum=0.9``; epsilon 1e-5).
The last BatchNorm scale of each residual block is initialised to one by
default; ``zero_init_residual=True`` initialises it to zero so each block
starts as the identity (Goyal et al., "Accurate, large minibatch SGD", 2017),
which helps large-batch training from scratch but matters little when
fine-tuning pretrained weights.

Parameter counts of the backbone (convolutions and BatchNorm scale/bias, the
torchvision totals minus the 1000-way ``fc``) with 3 input channels and the
ImageNet stem: ResNet-18 11,176,512; ResNet-50 23,508,032.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from tljax.models.classifier import (
    Classifier,
    Dtype,
    check_batch_norm_momentum,
)

__all__ = [
    "BasicBlock",
    "BottleneckBlock",
    "ResNet",
    "ResNetBackbone",
    "resnet",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
]

Stem = Literal["imagenet", "small"]

_STAGE_WIDTHS = (64, 128, 256, 512)
_conv_init = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")


def _positive_int(value) -> bool:
  return (
      isinstance(value, int | np.integer)
      and not isinstance(value, bool)
      and value > 0
  )


def _conv(
    in_channels, out_channels, kernel_size, stride, padding, layer_kwargs
):
  return nnx.Conv(
      in_channels,
      out_channels,
      (kernel_size, kernel_size),
      strides=(stride, stride),
      padding=((padding, padding), (padding, padding)),
      use_bias=False,
      kernel_init=_conv_init,
      **layer_kwargs,
  )


def _batch_norm(channels, momentum, layer_kwargs, *, zero_scale=False):
  return nnx.BatchNorm(
      channels,
      momentum=momentum,
      epsilon=1e-5,
      scale_init=nnx.initializers.zeros
      if zero_scale
      else nnx.initializers.ones,
      **layer_kwargs,
  )


def _projection(in_channels, out_channels, stride, batch_norm_momentum, layer):
  """The shortcut's 1×1 conv and BatchNorm when the shape changes, else Nones."""
  if stride == 1 and in_channels == out_channels:
    return None, None
  return (
      _conv(in_channels, out_channels, 1, stride, 0, layer),
      _batch_norm(out_channels, batch_norm_momentum, layer),
  )


def _shortcut(downsample_conv, downsample_bn, inputs, use_running_average):
  """The residual branch's shortcut: identity or the projection."""
  if downsample_conv is None:
    return inputs
  return downsample_bn(
      downsample_conv(inputs), use_running_average=use_running_average
  )


class BasicBlock(nnx.Module):
  """Two 3×3 convolutions with a residual connection (ResNet-18/34).

  ``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``; ``conv1`` carries
  the stride, and ``shortcut`` is ``downsample_bn(downsample_conv(x))`` when
  the stride or the channel count changes, else the identity.
  """

  expansion = 1

  def __init__(
      self,
      in_channels: int,
      channels: int,
      stride: int,
      *,
      batch_norm_momentum: float,
      zero_init_residual: bool,
      dtype: Dtype,
      param_dtype: Dtype,
      rngs: nnx.Rngs,
  ):
    """Builds the block; it outputs ``channels`` channels."""
    layer = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    out_channels = channels * self.expansion
    self.conv1 = _conv(in_channels, channels, 3, stride, 1, layer)
    self.bn1 = _batch_norm(channels, batch_norm_momentum, layer)
    self.conv2 = _conv(channels, channels, 3, 1, 1, layer)
    self.bn2 = _batch_norm(
        channels, batch_norm_momentum, layer, zero_scale=zero_init_residual
    )
    self.downsample_conv, self.downsample_bn = _projection(
        in_channels, out_channels, stride, batch_norm_momentum, layer
    )

  def __call__(self, inputs: jax.Array, *, train: bool) -> jax.Array:
    use_running_average = not train
    x = nnx.relu(
        self.bn1(self.conv1(inputs), use_running_average=use_running_average)
    )
    x = self.bn2(self.conv2(x), use_running_average=use_running_average)
    shortcut = _shortcut(
        self.downsample_conv, self.downsample_bn, inputs, use_running_average
    )
    return nnx.relu(x + shortcut)


class BottleneckBlock(nnx.Module):
  """1×1 reduce → 3×3 → 1×1 expand (×4) with a residual connection (ResNet-50).

  ``relu(bn3(conv3(relu(bn2(conv2(relu(bn1(conv1(x)))))))) + shortcut(x))``;
  the stride sits on ``conv2`` (torchvision's "v1.5"), and ``shortcut`` is
  ``downsample_bn(downsample_conv(x))`` when the stride or the channel count
  changes, else the identity.
  """

  expansion = 4

  def __init__(
      self,
      in_channels: int,
      channels: int,
      stride: int,
      *,
      batch_norm_momentum: float,
      zero_init_residual: bool,
      dtype: Dtype,
      param_dtype: Dtype,
      rngs: nnx.Rngs,
  ):
    """Builds the block; it outputs ``4 * channels`` channels."""
    layer = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    out_channels = channels * self.expansion
    self.conv1 = _conv(in_channels, channels, 1, 1, 0, layer)
    self.bn1 = _batch_norm(channels, batch_norm_momentum, layer)
    self.conv2 = _conv(channels, channels, 3, stride, 1, layer)
    self.bn2 = _batch_norm(channels, batch_norm_momentum, layer)
    self.conv3 = _conv(channels, out_channels, 1, 1, 0, layer)
    self.bn3 = _batch_norm(
        out_channels, batch_norm_momentum, layer, zero_scale=zero_init_residual
    )
    self.downsample_conv, self.downsample_bn = _projection(
        in_channels, out_channels, stride, batch_norm_momentum, layer
    )

  def __call__(self, inputs: jax.Array, *, train: bool) -> jax.Array:
    use_running_average = not train
    x = nnx.relu(
        self.bn1(self.conv1(inputs), use_running_average=use_running_average)
    )
    x = nnx.relu(
        self.bn2(self.conv2(x), use_running_average=use_running_average)
    )
    x = self.bn3(self.conv3(x), use_running_average=use_running_average)
    shortcut = _shortcut(
        self.downsample_conv, self.downsample_bn, inputs, use_running_average
    )
    return nnx.relu(x + shortcut)


class ResNetBackbone(nnx.Module):
  """ResNet feature extractor: stem, four residual stages, global average pool.

  Submodules: ``conv1``, ``bn1`` (stem) and ``layer{stage}_{index}`` blocks,
  ``stage`` in 1..4 and ``index`` from 0.

  Attributes:
    stem: ``"imagenet"`` or ``"small"``.
    features_dim: ``stage_widths[-1] * block.expansion`` (``512 *
      block.expansion`` with the default widths).
  """

  def __init__(
      self,
      in_channels: int,
      *,
      block: type[BasicBlock] | type[BottleneckBlock],
      stage_sizes: Sequence[int],
      stem: Stem = "imagenet",
      batch_norm_momentum: float = 0.9,
      zero_init_residual: bool = False,
      stage_widths: Sequence[int] = _STAGE_WIDTHS,
      stem_width: int = 64,
      dtype: Dtype = jnp.float32,
      param_dtype: Dtype = jnp.float32,
      rngs: nnx.Rngs,
  ):
    """Builds the backbone.

    Args:
      in_channels: number of input image channels.
      block: :class:`BasicBlock` or :class:`BottleneckBlock`.
      stage_sizes: number of blocks in each of the four stages, e.g.
        ``(2, 2, 2, 2)`` for ResNet-18, ``(3, 4, 6, 3)`` for ResNet-50.
      stem: ``"imagenet"`` (7×7/2 conv + 3×3/2 max pool) or ``"small"``
        (3×3/1 conv, no pooling).
      batch_norm_momentum: running-average momentum (flax convention).
      zero_init_residual: zero-initialise the last BatchNorm scale of each
        block.
      stage_widths: the four stages' widths (a block's inner width;
        ``block.expansion`` times it comes out), ``(64, 128, 256, 512)`` as
        in torchvision; timm's ``channels``.
      stem_width: the stem convolution's output channels (64; timm's
        ``stem_width``).
      dtype: computation dtype.
      param_dtype: parameter dtype.
      rngs: random streams used for parameter initialisation.
    """
    if stem not in ("imagenet", "small"):
      raise ValueError(f"stem must be 'imagenet' or 'small', got {stem!r}.")
    check_batch_norm_momentum(batch_norm_momentum)
    if len(stage_sizes) != len(_STAGE_WIDTHS) or any(
        n < 1 for n in stage_sizes
    ):
      raise ValueError(
          f"stage_sizes must be four positive block counts, got {tuple(stage_sizes)}."
      )
    stage_widths = tuple(stage_widths)
    if len(stage_widths) != len(_STAGE_WIDTHS) or not all(
        _positive_int(w) for w in stage_widths
    ):
      raise ValueError(
          f"stage_widths must be four positive widths, got {stage_widths}."
      )
    if not _positive_int(stem_width):
      raise ValueError(
          f"stem_width must be a positive integer, got {stem_width!r}."
      )
    layer = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.stem = stem
    if stem == "imagenet":
      self.conv1 = _conv(in_channels, stem_width, 7, 2, 3, layer)
    else:
      self.conv1 = _conv(in_channels, stem_width, 3, 1, 1, layer)
    self.bn1 = _batch_norm(stem_width, batch_norm_momentum, layer)
    block_names = []
    channels_in = stem_width
    for stage, (width, num_blocks) in enumerate(
        zip(stage_widths, stage_sizes, strict=True)
    ):
      for index in range(num_blocks):
        stride = 2 if stage > 0 and index == 0 else 1
        name = f"layer{stage + 1}_{index}"
        setattr(
            self,
            name,
            block(
                channels_in,
                width,
                stride,
                batch_norm_momentum=batch_norm_momentum,
                zero_init_residual=zero_init_residual,
                **layer,
            ),
        )
        block_names.append(name)
        channels_in = width * block.expansion
    self.block_names = tuple(block_names)
    self.features_dim = channels_in

  def forward_with_feature_maps(
      self, inputs: jax.Array, *, train: bool
  ) -> tuple[jax.Array, jax.Array]:
    """Maps ``(batch, H, W, C)`` images to features and feature maps.

    Returns:
      ``(features, feature_maps)``: the ``(batch, features_dim)`` features
      and the last stage's ``(batch, H', W', features_dim)`` output, whose
      spatial mean the features are (``H' = ceil(H / 32)`` with the ImageNet
      stem, ``ceil(H / 8)`` with the small one).
    """
    x = nnx.relu(self.bn1(self.conv1(inputs), use_running_average=not train))
    if self.stem == "imagenet":
      x = nnx.max_pool(
          x, window_shape=(3, 3), strides=(2, 2), padding=((1, 1), (1, 1))
      )
    for name in self.block_names:
      x = getattr(self, name)(x, train=train)
    return jnp.mean(x, axis=(1, 2)), x

  def __call__(self, inputs: jax.Array, *, train: bool) -> jax.Array:
    """Maps ``(batch, H, W, C)`` images to ``(batch, features_dim)`` features."""
    return self.forward_with_feature_maps(inputs, train=train)[0]


class ResNet(Classifier):
  """ResNet backbone → bottleneck → head (see :class:`Classifier`).

  ``ResNet(..., block=BasicBlock, stage_sizes=(2, 2, 2, 2))`` is ResNet-18,
  ``ResNet(..., block=BottleneckBlock, stage_sizes=(3, 4, 6, 3))`` ResNet-50.
  """

  def __init__(
      self,
      input_shape: Sequence[int],
      num_classes: int,
      *,
      block: type[BasicBlock] | type[BottleneckBlock],
      stage_sizes: Sequence[int],
      stem: Stem = "imagenet",
      zero_init_residual: bool = False,
      bottleneck_dim: int | None = 256,
      bottleneck_batch_norm: bool = True,
      bottleneck_dropout: float = 0.0,
      batch_norm_momentum: float = 0.9,
      stage_widths: Sequence[int] = _STAGE_WIDTHS,
      stem_width: int = 64,
      dtype: Dtype = jnp.float32,
      param_dtype: Dtype = jnp.float32,
      rngs: nnx.Rngs,
  ):
    """Builds the ResNet classifier.

    Args:
      input_shape: per-example ``(height, width, channels)``.
      num_classes: number of classes.
      block: :class:`BasicBlock` or :class:`BottleneckBlock`.
      stage_sizes: blocks per stage.
      stem: ``"imagenet"`` for 224×224-like inputs, ``"small"`` for 8×8 to
        32×32 inputs.
      zero_init_residual: zero-initialise the last BatchNorm scale of each
        residual block.
      bottleneck_dim: bottleneck width (256, the default of the
        Transfer-Learning-Library's ``ImageClassifier``); None for the
        identity.
      bottleneck_batch_norm: BatchNorm in the bottleneck.
      bottleneck_dropout: dropout rate at the end of the bottleneck.
      batch_norm_momentum: running-average momentum (flax convention) of
        every BatchNorm.
      stage_widths: the four stages' widths (see :class:`ResNetBackbone`).
      stem_width: the stem's output channels.
      dtype: computation dtype.
      param_dtype: parameter dtype.
      rngs: random streams used for parameter initialisation.
    """
    input_shape = tuple(input_shape)
    if len(input_shape) != 3 or any(size < 1 for size in input_shape):
      raise ValueError(
          f"input_shape must be (height, width, channels) for ResNet, got {input_shape}."
      )
    backbone = ResNetBackbone(
        input_shape[-1],
        block=block,
        stage_sizes=stage_sizes,
        stem=stem,
        batch_norm_momentum=batch_norm_momentum,
        zero_init_residual=zero_init_residual,
        stage_widths=stage_widths,
        stem_width=stem_width,
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


def _standard_resnet(
    name: str, block, stage_sizes: tuple[int, ...], features_dim: int
):
  """A builder of the standard ResNet ``name`` (fixed block and stage sizes)."""

  def build(
      input_shape: Sequence[int],
      num_classes: int,
      *,
      stem: Stem = "imagenet",
      zero_init_residual: bool = False,
      bottleneck_dim: int | None = 256,
      bottleneck_batch_norm: bool = True,
      bottleneck_dropout: float = 0.0,
      batch_norm_momentum: float = 0.9,
      dtype: Dtype = jnp.float32,
      param_dtype: Dtype = jnp.float32,
      rngs: nnx.Rngs,
  ) -> ResNet:
    return ResNet(
        input_shape,
        num_classes,
        block=block,
        stage_sizes=stage_sizes,
        stem=stem,
        zero_init_residual=zero_init_residual,
        bottleneck_dim=bottleneck_dim,
        bottleneck_batch_norm=bottleneck_batch_norm,
        bottleneck_dropout=bottleneck_dropout,
        batch_norm_momentum=batch_norm_momentum,
        dtype=dtype,
        param_dtype=param_dtype,
        rngs=rngs,
    )

  build.__name__ = build.__qualname__ = name
  build.__doc__ = (
      f"{name}: {block.__name__} blocks, stages ``{stage_sizes}``, "
      f"{features_dim} backbone features.\n\n  Arguments as for :class:`ResNet`."
  )
  return build


resnet18 = _standard_resnet("resnet18", BasicBlock, (2, 2, 2, 2), 512)
resnet34 = _standard_resnet("resnet34", BasicBlock, (3, 4, 6, 3), 512)
resnet50 = _standard_resnet("resnet50", BottleneckBlock, (3, 4, 6, 3), 2048)
resnet101 = _standard_resnet("resnet101", BottleneckBlock, (3, 4, 23, 3), 2048)


_BLOCKS = {"basic": BasicBlock, "bottleneck": BottleneckBlock}


def resnet(
    input_shape: Sequence[int],
    num_classes: int,
    *,
    block: Literal["basic", "bottleneck"],
    stage_sizes: Sequence[int],
    stage_widths: Sequence[int] = _STAGE_WIDTHS,
    stem_width: int = 64,
    stem: Stem = "imagenet",
    zero_init_residual: bool = False,
    bottleneck_dim: int | None = 256,
    bottleneck_batch_norm: bool = True,
    bottleneck_dropout: float = 0.0,
    batch_norm_momentum: float = 0.9,
    dtype: Dtype = jnp.float32,
    param_dtype: Dtype = jnp.float32,
    rngs: nnx.Rngs,
) -> ResNet:
  """Any ResNet: ``block`` ``"basic"`` or ``"bottleneck"``, stage sizes and widths.

  ResNet-34 is ``block="basic", stage_sizes=(3, 4, 6, 3)``, ResNet-101
  ``block="bottleneck", stage_sizes=(3, 4, 23, 3)``; narrow ones (timm's
  ``channels`` and ``stem_width``) are what the converter tests' fixtures
  use. Other arguments as for :class:`ResNet`.
  """
  if block not in _BLOCKS:
    raise ValueError(f"block must be one of {sorted(_BLOCKS)}, got {block!r}.")
  return ResNet(
      input_shape,
      num_classes,
      block=_BLOCKS[block],
      stage_sizes=tuple(stage_sizes),
      stem=stem,
      zero_init_residual=zero_init_residual,
      bottleneck_dim=bottleneck_dim,
      bottleneck_batch_norm=bottleneck_batch_norm,
      bottleneck_dropout=bottleneck_dropout,
      batch_norm_momentum=batch_norm_momentum,
      stage_widths=tuple(stage_widths),
      stem_width=stem_width,
      dtype=dtype,
      param_dtype=param_dtype,
      rngs=rngs,
  )
