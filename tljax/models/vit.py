"""Vision Transformer (ViT): patch embedding → Transformer encoder → pooling.

The architecture of Dosovitskiy et al., *An Image is Worth 16x16 Words:
Transformers for Image Recognition at Scale* (ICLR 2021), structured and
named as big_vision's ``big_vision/models/vit.py`` (the reference
implementation; Beyer et al., *Better plain ViT baselines for ImageNet-1k*,
2022), so its checkpoints map onto these names one to one:

* ``embedding``: the patch embedding, a ``patch × patch`` convolution with
  stride ``patch`` and ``VALID`` padding, giving an ``(h, w)`` grid of
  ``width``-dimensional tokens;
* ``pos_embedding``: a learnt ``(1, h·w, width)`` position embedding, added to
  the patch tokens *before* the class token is prepended (big_vision's
  layout; timm and the original ViT code add a ``(1, 1 + h·w, width)`` one
  after, which the converter folds exactly into ``cls`` and this one);
* ``cls``: the class token ``(1, 1, width)`` (``pool_type="tok"`` only);
* ``Transformer/encoderblock_{i}``: pre-norm encoder blocks, ``x + MHA(LN(x))``
  then ``x + MLP(LN(x))``, with submodules ``LayerNorm_0``,
  ``MultiHeadDotProductAttention_0`` (``query``, ``key``, ``value`` and
  ``out``, kernels ``(width, heads, head_dim)`` and ``(heads, head_dim,
  width)``), ``LayerNorm_1`` and ``MlpBlock_0`` (``Dense_0`` → GELU →
  ``Dense_1``);
* ``Transformer/encoder_norm``: the final LayerNorm;
* pooling: the class token's output (``"tok"``) or the mean over the patch
  tokens (``"gap"``, big_vision's default).

This is the ``backbone`` of a :class:`~tljax.models.Classifier`, followed by
the usual bottleneck and head; the backbone's ``feature_maps`` are the
encoded patch tokens as an ``(h, w, width)`` grid (big_vision's
``pre_logits_2d`` before the head).

Deliberate deviations from big_vision: no dropout inside the backbone (the
bottleneck has its own); GELU is exact by default (``approximate_gelu=False``,
as the paper, timm and Hugging Face; big_vision's ``nn.gelu`` is the tanh
approximation, so its checkpoints are run with ``approximate_gelu=True``); no
``map`` pooling, ``rep_size`` pre-logits or sin-cos position embedding.
For CLIP's image tower (Radford et al., 2021) the options ``quick_gelu``,
``pre_norm`` and ``patch_bias=False`` add its differences; its final
``post_layernorm`` of the class token is ``encoder_norm`` (a LayerNorm acts
per token), and its ``visual_projection`` is not part of the backbone.
LayerNorm epsilon is 1e-6 (Flax's default, as big_vision and timm's ViT;
``layer_norm_epsilon`` sets it, e.g. 1e-12 for Hugging Face's ViT).

Sizes (Table 1 of the paper, Ti from Touvron et al. 2021 as in big_vision's
``decode_variant``): width / depth / MLP / heads = Ti 192/12/768/3,
S 384/12/1536/6, B 768/12/3072/12, L 1024/24/4096/16; registered as
``vit_ti16``, ``vit_s16``, ``vit_b16``, ``vit_l16`` and the ``…32`` patch-32
variants, plus ``vit`` with every size given. ViT-B/16 at 224×224 has
85,797,888 backbone parameters with the class token (86.6M with a 1000-way
head: the paper's "86M").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from tljax.models.classifier import Classifier, Dtype

__all__ = [
    "VIT_VARIANTS",
    "ViT",
    "ViTBackbone",
]

PoolType = Literal["tok", "gap"]
POOL_TYPES = ("tok", "gap")

# (width, depth, mlp_dim, num_heads), big_vision's decode_variant.
VIT_VARIANTS = {
    "Ti": (192, 12, 768, 3),
    "S": (384, 12, 1536, 6),
    "B": (768, 12, 3072, 12),
    "L": (1024, 24, 4096, 16),
}

_xavier = nnx.initializers.xavier_uniform()


def _positive_int(value) -> bool:
  return (
      isinstance(value, int | np.integer)
      and not isinstance(value, bool)
      and value > 0
  )


class MlpBlock(nnx.Module):
  """``Dense_0`` (width → mlp_dim) → GELU → ``Dense_1`` (mlp_dim → width).

  ``activation``: ``"gelu"`` (exact), ``"gelu_tanh"`` (the tanh
  approximation) or ``"quick_gelu"`` (CLIP's ``x * sigmoid(1.702 x)``).
  """

  def __init__(
      self,
      width: int,
      mlp_dim: int,
      *,
      activation: str,
      dtype: Dtype,
      param_dtype: Dtype,
      rngs: nnx.Rngs,
  ):
    layer = dict(
        kernel_init=_xavier,
        bias_init=nnx.initializers.normal(stddev=1e-6),
        dtype=dtype,
        param_dtype=param_dtype,
        rngs=rngs,
    )
    self.Dense_0 = nnx.Linear(width, mlp_dim, **layer)
    self.Dense_1 = nnx.Linear(mlp_dim, width, **layer)
    self.activation = activation

  def __call__(self, x: jax.Array) -> jax.Array:
    x = self.Dense_0(x)
    if self.activation == "quick_gelu":
      x = x * nnx.sigmoid(1.702 * x)  # CLIP's
    else:
      x = nnx.gelu(x, approximate=self.activation == "gelu_tanh")
    return self.Dense_1(x)


class Encoder1DBlock(nnx.Module):
  """One pre-norm encoder block: ``x + MHA(LN(x))``, then ``x + MLP(LN(x))``."""

  def __init__(
      self,
      width: int,
      mlp_dim: int,
      num_heads: int,
      *,
      activation: str,
      layer_norm_epsilon: float,
      dtype: Dtype,
      param_dtype: Dtype,
      rngs: nnx.Rngs,
  ):
    common = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.LayerNorm_0 = nnx.LayerNorm(
        width, epsilon=layer_norm_epsilon, **common
    )
    self.MultiHeadDotProductAttention_0 = nnx.MultiHeadAttention(
        num_heads,
        width,
        kernel_init=_xavier,
        decode=False,
        deterministic=True,
        **common,
    )
    self.LayerNorm_1 = nnx.LayerNorm(
        width, epsilon=layer_norm_epsilon, **common
    )
    self.MlpBlock_0 = MlpBlock(width, mlp_dim, activation=activation, **common)

  def __call__(self, x: jax.Array) -> jax.Array:
    y = self.LayerNorm_0(x)
    x = x + self.MultiHeadDotProductAttention_0(y)
    return x + self.MlpBlock_0(self.LayerNorm_1(x))


class Encoder(nnx.Module):
  """``encoderblock_0`` … ``encoderblock_{depth-1}``, then ``encoder_norm``."""

  def __init__(
      self,
      width: int,
      depth: int,
      mlp_dim: int,
      num_heads: int,
      *,
      activation: str,
      layer_norm_epsilon: float,
      dtype: Dtype,
      param_dtype: Dtype,
      rngs: nnx.Rngs,
  ):
    common = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    for index in range(depth):
      setattr(
          self,
          f"encoderblock_{index}",
          Encoder1DBlock(
              width,
              mlp_dim,
              num_heads,
              activation=activation,
              layer_norm_epsilon=layer_norm_epsilon,
              **common,
          ),
      )
    self.depth = depth
    self.encoder_norm = nnx.LayerNorm(
        width, epsilon=layer_norm_epsilon, **common
    )

  def __call__(self, x: jax.Array) -> jax.Array:
    for index in range(self.depth):
      x = getattr(self, f"encoderblock_{index}")(x)
    return self.encoder_norm(x)


class ViTBackbone(nnx.Module):
  """The ViT feature extractor (see the module docstring for its structure).

  Attributes:
    grid: ``(h, w)``, the patch grid of the input size.
    features_dim: ``width``.
    pool_type: ``"tok"`` or ``"gap"``.
  """

  def __init__(
      self,
      input_shape: Sequence[int],
      *,
      patch_size: int,
      width: int,
      depth: int,
      mlp_dim: int,
      num_heads: int,
      pool_type: PoolType = "tok",
      approximate_gelu: bool = False,
      layer_norm_epsilon: float = 1e-6,
      quick_gelu: bool = False,
      pre_norm: bool = False,
      patch_bias: bool = True,
      dtype: Dtype = jnp.float32,
      param_dtype: Dtype = jnp.float32,
      rngs: nnx.Rngs,
  ):
    """Builds the backbone.

    Args:
      input_shape: per-example ``(height, width, channels)``; height and width
        must be multiples of ``patch_size``.
      patch_size: side of the square patches (16 or 32 for the standard
        variants).
      width: token dimension (``hidden_size``).
      depth: number of encoder blocks.
      mlp_dim: hidden width of each block's MLP.
      num_heads: attention heads; must divide ``width``.
      pool_type: ``"tok"`` (class token) or ``"gap"`` (mean of the patch
        tokens).
      approximate_gelu: the tanh approximation of GELU (big_vision's
        checkpoints) instead of the exact one (timm, Hugging Face).
      layer_norm_epsilon: every LayerNorm's epsilon: 1e-6 (big_vision, timm);
        Hugging Face's ViT uses 1e-12, CLIP 1e-5.
      quick_gelu: CLIP's ``x * sigmoid(1.702 x)`` instead of GELU.
      pre_norm: a LayerNorm (``norm_pre``) on the tokens before the encoder
        (CLIP's ``ln_pre`` / ``pre_layrnorm``).
      patch_bias: a bias in the patch embedding (CLIP has none).
      dtype: computation dtype.
      param_dtype: parameter dtype.
      rngs: random streams used for parameter initialisation.
    """
    input_shape = tuple(input_shape)
    for argument, value in (
        ("patch_size", patch_size),
        ("width", width),
        ("depth", depth),
        ("mlp_dim", mlp_dim),
        ("num_heads", num_heads),
    ):
      if not _positive_int(value):
        raise ValueError(
            f"{argument} must be a positive integer, got {value!r}."
        )
    if width % num_heads:
      raise ValueError(f"num_heads ({num_heads}) must divide width ({width}).")
    if (
        isinstance(layer_norm_epsilon, bool)
        or not isinstance(layer_norm_epsilon, float | int)
        or not layer_norm_epsilon > 0
    ):
      raise ValueError(
          "layer_norm_epsilon must be a positive number, got "
          f"{layer_norm_epsilon!r}."
      )
    if pool_type not in POOL_TYPES:
      raise ValueError(
          f"pool_type must be one of {list(POOL_TYPES)}, got {pool_type!r}."
      )
    if (
        len(input_shape) != 3
        or input_shape[0] % patch_size
        or input_shape[1] % patch_size
    ):
      raise ValueError(
          "input_shape must be (height, width, channels) with height and "
          f"width multiples of patch_size={patch_size} for ViT, got "
          f"{input_shape}."
      )
    common = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.grid = (input_shape[0] // patch_size, input_shape[1] // patch_size)
    self.embedding = nnx.Conv(
        input_shape[-1],
        width,
        (patch_size, patch_size),
        strides=(patch_size, patch_size),
        padding="VALID",
        use_bias=patch_bias,
        **common,
    )
    self.pos_embedding = nnx.Param(
        nnx.initializers.normal(stddev=1 / np.sqrt(width))(
            rngs.params(),
            (1, self.grid[0] * self.grid[1], width),
            param_dtype,
        )
    )
    self.cls = (
        nnx.Param(jnp.zeros((1, 1, width), param_dtype))
        if pool_type == "tok"
        else None
    )
    self.norm_pre = (
        nnx.LayerNorm(width, epsilon=layer_norm_epsilon, **common)
        if pre_norm
        else None
    )
    self.Transformer = Encoder(
        width,
        depth,
        mlp_dim,
        num_heads,
        activation="quick_gelu"
        if quick_gelu
        else ("gelu_tanh" if approximate_gelu else "gelu"),
        layer_norm_epsilon=layer_norm_epsilon,
        **common,
    )
    self.pool_type = pool_type
    self.features_dim = width
    self.dtype = dtype

  def forward_with_feature_maps(
      self, inputs: jax.Array, *, train: bool
  ) -> tuple[jax.Array, jax.Array]:
    """Maps ``(batch, H, W, C)`` images to features and the token grid.

    Returns:
      ``(features, feature_maps)``: the pooled ``(batch, width)`` features and
      the encoded patch tokens as a ``(batch, H / patch, W / patch, width)``
      grid.
    """
    del train  # No BatchNorm or dropout in the backbone.
    x = self.embedding(inputs)
    n, h, w, c = x.shape
    x = jnp.reshape(x, (n, h * w, c))
    x = x + self.pos_embedding[...].astype(x.dtype)
    if self.pool_type == "tok":
      cls = jnp.broadcast_to(self.cls[...].astype(x.dtype), (n, 1, c))
      x = jnp.concatenate([cls, x], axis=1)
    if self.norm_pre is not None:
      x = self.norm_pre(x)
    x = self.Transformer(x)
    if self.pool_type == "tok":
      features, tokens = x[:, 0], x[:, 1:]
    else:
      features, tokens = jnp.mean(x, axis=1), x
    return features, jnp.reshape(tokens, (n, h, w, c))

  def __call__(self, inputs: jax.Array, *, train: bool) -> jax.Array:
    """Maps ``(batch, H, W, C)`` images to ``(batch, width)`` features."""
    return self.forward_with_feature_maps(inputs, train=train)[0]


class ViT(Classifier):
  """ViT backbone → bottleneck → head (see :class:`Classifier`)."""

  def __init__(
      self,
      input_shape: Sequence[int],
      num_classes: int,
      *,
      patch_size: int,
      width: int,
      depth: int,
      mlp_dim: int,
      num_heads: int,
      pool_type: PoolType = "tok",
      approximate_gelu: bool = False,
      layer_norm_epsilon: float = 1e-6,
      quick_gelu: bool = False,
      pre_norm: bool = False,
      patch_bias: bool = True,
      bottleneck_dim: int | None = 256,
      bottleneck_batch_norm: bool = True,
      bottleneck_dropout: float = 0.0,
      batch_norm_momentum: float = 0.9,
      dtype: Dtype = jnp.float32,
      param_dtype: Dtype = jnp.float32,
      rngs: nnx.Rngs,
  ):
    """Builds the classifier; arguments as for :class:`ViTBackbone` and
    :class:`~tljax.models.Classifier` (``bottleneck_dim=None`` puts the head
    straight on the pooled features, as the pretrained ViTs have it)."""
    backbone = ViTBackbone(
        input_shape,
        patch_size=patch_size,
        width=width,
        depth=depth,
        mlp_dim=mlp_dim,
        num_heads=num_heads,
        pool_type=pool_type,
        approximate_gelu=approximate_gelu,
        layer_norm_epsilon=layer_norm_epsilon,
        quick_gelu=quick_gelu,
        pre_norm=pre_norm,
        patch_bias=patch_bias,
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


def standard_vit(variant: str, patch_size: int):
  """The builder of ViT-``variant``/``patch_size`` (sizes fixed, the rest options)."""
  width, depth, mlp_dim, num_heads = VIT_VARIANTS[variant]
  name = f"vit_{variant.lower()}{patch_size}"

  def build(
      input_shape: Sequence[int],
      num_classes: int,
      *,
      pool_type: PoolType = "tok",
      approximate_gelu: bool = False,
      layer_norm_epsilon: float = 1e-6,
      bottleneck_dim: int | None = 256,
      bottleneck_batch_norm: bool = True,
      bottleneck_dropout: float = 0.0,
      batch_norm_momentum: float = 0.9,
      dtype: Dtype = jnp.float32,
      param_dtype: Dtype = jnp.float32,
      rngs: nnx.Rngs,
  ) -> ViT:
    return ViT(
        input_shape,
        num_classes,
        patch_size=patch_size,
        width=width,
        depth=depth,
        mlp_dim=mlp_dim,
        num_heads=num_heads,
        pool_type=pool_type,
        approximate_gelu=approximate_gelu,
        layer_norm_epsilon=layer_norm_epsilon,
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
      f"{name}: ViT-{variant}/{patch_size}, width {width}, depth {depth}, MLP "
      f"{mlp_dim}, {num_heads} heads.\n\n  Arguments as for :class:`ViT`."
  )
  return name, build


STANDARD_VITS = dict(
    standard_vit(variant, patch)
    for variant in VIT_VARIANTS
    for patch in (16, 32)
)
