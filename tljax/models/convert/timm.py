"""timm ResNets and ViTs (``model.safetensors``) into tljax, exactly.

:func:`load_timm` reads a timm ``model.safetensors`` with the ``safetensors``
package's NumPy API (no torch, no pickle), and :func:`convert_timm` turns its
arrays into tljax's ``params`` and ``model_state`` for the architecture it
recognises, with the model's name, options and input convention
(:class:`~tljax.models.convert.common.Converted`).

What the conversion does, following the upstream definitions (timm's
``resnet.py`` and ``vision_transformer.py``; big_vision's ``vit.py``):

* convolution kernels go from PyTorch's ``(out, in, kh, kw)`` to Flax's
  ``(kh, kw, in, out)``, linear weights ``(out, in)`` are transposed; torch's
  explicit padding is kept (tljax's ResNet pads explicitly, not ``SAME``);
* BatchNorm ``weight``/``bias`` become ``scale``/``bias`` and its running
  statistics ``running_mean``/``running_var`` the model state's ``mean`` and
  ``var`` (epsilon 1e-5 on both sides; ``num_batches_tracked`` is dropped);
* a ViT's fused ``attn.qkv`` is split into ``query``, ``key`` and ``value``
  kernels of shape ``(width, heads, head_dim)`` and ``attn.proj`` becomes
  ``out`` ``(heads, head_dim, width)``; LayerNorm epsilon is 1e-6 on both
  sides; GELU is the exact one (``approximate_gelu=False``) as in timm;
* timm's position embedding covers the class token too (added after it is
  prepended); big_vision's, which tljax follows, covers only the patches (added
  before). Since both are sums, ``cls + pos_embed[:, :1]`` becomes the class
  token and ``pos_embed[:, 1:]`` the position embedding: the same function;
* for another resolution the patch grid's position embedding is resized
  bilinearly as big_vision's ``resample_posemb`` does
  (:func:`~tljax.models.convert.common.resample_posemb`), not bicubically as
  timm does.

A key of the checkpoint that the architecture does not use, one it needs that
is missing, or an array of the wrong shape is an error listing the keys.
A ViT whose pooled features are normalised after pooling (timm's ``fc_norm``,
the ``global_pool="avg"`` models) is refused: big_vision normalises before.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from tljax.models.convert.common import (
    vit_model,
    resolve_num_heads,
    IMAGENET_MEAN,
    IMAGENET_STD,
    INCEPTION_MEAN,
    INCEPTION_STD,
    Converted,
    _check_against_model,
    _check_rank,
    _conv_kernel,
    _linear_kernel,
    _Mapper,
    _read_safetensors,
    resample_posemb,
)
from tljax.params.tree import unflatten

_STANDARD_RESNETS = {
    ("basic", (2, 2, 2, 2)): "resnet18",
    ("basic", (3, 4, 6, 3)): "resnet34",
    ("bottleneck", (3, 4, 6, 3)): "resnet50",
    ("bottleneck", (3, 4, 23, 3)): "resnet101",
}


def _head(mapper: _Mapper, weight: str, bias: str) -> int | None:
  if weight not in mapper.arrays and bias not in mapper.arrays:
    return None
  mapper.put("head/kernel", weight, _linear_kernel, rank=2)
  mapper.put("head/bias", bias, rank=1)
  return int(mapper.arrays[weight].shape[0]) if weight in mapper.arrays else 0


def _convert_resnet(arrays, image_size):
  """timm / torchvision ResNet (``conv1``, ``bn1``, ``layer1.0.conv1``, …)."""
  mapper = _Mapper(arrays)
  blocks: dict[int, int] = {}
  for key in arrays:
    match = re.match(r"layer([1-4])\.(\d+)\.", key)
    if match:
      stage, index = int(match[1]), int(match[2])
      blocks[stage] = max(blocks.get(stage, 0), index + 1)
  if sorted(blocks) != [1, 2, 3, 4]:
    raise ValueError(
        "checkpoint is not a four-stage ResNet: found stages "
        f"{sorted(blocks)} in keys layer<stage>.<block>.*."
    )
  stage_sizes = tuple(blocks[s] for s in (1, 2, 3, 4))
  block = "bottleneck" if "layer1.0.conv3.weight" in arrays else "basic"
  stage_widths = []
  for stage in (1, 2, 3, 4):
    key = f"layer{stage}.0.conv1.weight"
    if key not in arrays:
      raise ValueError(f"checkpoint has no key {key!r}.")
    stage_widths.append(int(arrays[key].shape[0]))
  if "conv1.weight" not in arrays:
    raise ValueError(
        "checkpoint has no key 'conv1.weight' (a deep stem, conv1.0/1/2 as in "
        "timm's resnet*d, is not supported)."
    )
  stem = arrays["conv1.weight"]
  if tuple(stem.shape[2:]) != (7, 7):
    raise ValueError(
        f"checkpoint key 'conv1.weight' has shape {tuple(stem.shape)}; only "
        "the 7x7 ImageNet stem is supported."
    )
  mapper.put("backbone/conv1/kernel", "conv1.weight", _conv_kernel, rank=4)
  mapper.batch_norm("backbone/bn1", "bn1")
  convs = (1, 2, 3) if block == "bottleneck" else (1, 2)
  for stage in (1, 2, 3, 4):
    for index in range(blocks[stage]):
      key, path = f"layer{stage}.{index}", f"backbone/layer{stage}_{index}"
      for conv in convs:
        mapper.put(
            f"{path}/conv{conv}/kernel",
            f"{key}.conv{conv}.weight",
            _conv_kernel,
            rank=4,
        )
        mapper.batch_norm(f"{path}/bn{conv}", f"{key}.bn{conv}")
      if f"{key}.downsample.0.weight" in arrays:
        mapper.put(
            f"{path}/downsample_conv/kernel",
            f"{key}.downsample.0.weight",
            _conv_kernel,
            rank=4,
        )
        mapper.batch_norm(f"{path}/downsample_bn", f"{key}.downsample.1")
  num_classes = _head(mapper, "fc.weight", "fc.bias")
  mapper.finish()
  options: dict[str, Any] = {"bottleneck_dim": None}
  name = _STANDARD_RESNETS.get((block, stage_sizes))
  stem_width = int(stem.shape[0])
  if (
      name is None
      or tuple(stage_widths) != (64, 128, 256, 512)
      or (stem_width != 64)
  ):
    name = "resnet"
    options.update(
        block=block,
        stage_sizes=stage_sizes,
        stage_widths=tuple(stage_widths),
        stem_width=stem_width,
    )
  return mapper, options, name, num_classes, image_size or 224


def _convert_vit(arrays, image_size, num_heads):
  """timm ViT (``patch_embed.proj``, ``cls_token``, ``pos_embed``, ``blocks.N``)."""
  if any(key.startswith("fc_norm.") for key in arrays):
    raise ValueError(
        "checkpoint has fc_norm keys (timm's LayerNorm after average "
        "pooling); tljax's ViT normalises before pooling, as big_vision."
    )
  mapper = _Mapper(arrays)
  embedding = arrays["patch_embed.proj.weight"]
  _check_rank("patch_embed.proj.weight", embedding, 4)
  width, _, patch, patch_w = (int(s) for s in embedding.shape)
  if patch != patch_w:
    raise ValueError(
        "checkpoint key 'patch_embed.proj.weight' has non-square patches "
        f"{tuple(embedding.shape[2:])}."
    )
  depth = 1 + max(
      (int(m[1]) for k in arrays if (m := re.match(r"blocks\.(\d+)\.", k))),
      default=-1,
  )
  if depth < 1:
    raise ValueError("checkpoint has no keys blocks.<index>.*")
  num_heads = resolve_num_heads(width, num_heads)
  head_dim = width // num_heads
  mlp_key = "blocks.0.mlp.fc1.weight"
  if mlp_key not in arrays:
    raise ValueError(f"checkpoint has no key {mlp_key!r}.")
  mlp_dim = int(arrays[mlp_key].shape[0])

  mapper.put(
      "backbone/embedding/kernel", "patch_embed.proj.weight", _conv_kernel
  )
  mapper.put("backbone/embedding/bias", "patch_embed.proj.bias", rank=1)
  pos = mapper.get("pos_embed")
  pool_type = "tok" if "cls_token" in arrays else "gap"
  if pos is None:
    mapper.finish()
  _check_rank("pos_embed", pos, 3)
  if pool_type == "tok":
    cls = mapper.get("cls_token")
    if cls.shape != (1, 1, width):
      raise ValueError(
          f"checkpoint key 'cls_token' has shape {cls.shape}, expected "
          f"{(1, 1, width)}."
      )
    # timm adds pos_embed[:, 0] to the class token after prepending it;
    # big_vision (and tljax) add position embeddings to the patches only.
    mapper.params["backbone/cls"] = cls + pos[:, :1]
    mapper.sources["backbone/cls"] = "cls_token"
    pos = pos[:, 1:]
  side = int(round(np.sqrt(pos.shape[1])))
  if side * side != pos.shape[1]:
    raise ValueError(
        f"checkpoint key 'pos_embed' has shape {tuple(pos.shape)}: not a "
        "square patch grid (with a class token position when cls_token is "
        "present)."
    )
  if image_size is None:
    image_size = side * patch
  if image_size % patch:
    raise ValueError(
        f"image_size must be a multiple of the patch size {patch}, got "
        f"{image_size}."
    )
  grid = image_size // patch
  mapper.params["backbone/pos_embedding"] = resample_posemb(pos, (grid, grid))
  mapper.sources["backbone/pos_embedding"] = "pos_embed"

  def split_heads(rows: np.ndarray) -> np.ndarray:
    return rows.T.reshape(width, num_heads, head_dim)

  for index in range(depth):
    key, path = f"blocks.{index}", f"backbone/Transformer/encoderblock_{index}"
    for norm, name in (("norm1", "LayerNorm_0"), ("norm2", "LayerNorm_1")):
      mapper.put(f"{path}/{name}/scale", f"{key}.{norm}.weight", rank=1)
      mapper.put(f"{path}/{name}/bias", f"{key}.{norm}.bias", rank=1)
    attention = f"{path}/MultiHeadDotProductAttention_0"
    qkv = mapper.get(f"{key}.attn.qkv.weight")
    qkv_bias = mapper.get(f"{key}.attn.qkv.bias")
    if qkv is not None and qkv_bias is not None:
      if qkv.shape != (3 * width, width) or qkv_bias.shape != (3 * width,):
        raise ValueError(
            f"checkpoint keys {key}.attn.qkv.weight/bias have shapes "
            f"{qkv.shape}, {qkv_bias.shape}; expected {(3 * width, width)} "
            f"and {(3 * width,)}."
        )
      for part, name in enumerate(("query", "key", "value")):
        rows = slice(part * width, (part + 1) * width)
        mapper.params[f"{attention}/{name}/kernel"] = split_heads(qkv[rows])
        mapper.params[f"{attention}/{name}/bias"] = qkv_bias[rows].reshape(
            num_heads, head_dim
        )
        mapper.sources[f"{attention}/{name}/kernel"] = f"{key}.attn.qkv.weight"
        mapper.sources[f"{attention}/{name}/bias"] = f"{key}.attn.qkv.bias"
    mapper.put(
        f"{attention}/out/kernel",
        f"{key}.attn.proj.weight",
        lambda w: w.T.reshape(num_heads, head_dim, width),
        rank=2,
    )
    mapper.put(f"{attention}/out/bias", f"{key}.attn.proj.bias", rank=1)
    for fc, name in (("fc1", "Dense_0"), ("fc2", "Dense_1")):
      mapper.put(
          f"{path}/MlpBlock_0/{name}/kernel",
          f"{key}.mlp.{fc}.weight",
          _linear_kernel,
          rank=2,
      )
      mapper.put(
          f"{path}/MlpBlock_0/{name}/bias", f"{key}.mlp.{fc}.bias", rank=1
      )
  mapper.put("backbone/Transformer/encoder_norm/scale", "norm.weight", rank=1)
  mapper.put("backbone/Transformer/encoder_norm/bias", "norm.bias", rank=1)
  num_classes = _head(mapper, "head.weight", "head.bias")
  mapper.finish()
  options: dict[str, Any] = {
      "bottleneck_dim": None,
      "pool_type": pool_type,
      "approximate_gelu": False,
  }
  name, options = vit_model(
      options,
      patch=patch,
      width=width,
      depth=depth,
      mlp_dim=mlp_dim,
      num_heads=num_heads,
  )
  return mapper, options, name, num_classes, image_size


def convert_timm(
    arrays: Mapping[str, np.ndarray],
    *,
    image_size: int | None = None,
    num_heads: int | None = None,
    input_mean: tuple[float, ...] | None = None,
    input_std: tuple[float, ...] | None = None,
) -> Converted:
  """Converts a timm state dict (name → array) into tljax variables.

  The architecture is recognised from the keys: ``layer1.0.conv1.weight``
  a ResNet (basic or bottleneck blocks, any stage sizes and widths; the
  registered ``resnet18``/``resnet50`` when it is one of them, else
  ``resnet``), ``patch_embed.proj.weight`` a ViT (class token or average
  pooling; ``vit_{ti,s,b,l}{16,32}`` when standard, else ``vit``).

  Args:
    arrays: the checkpoint's arrays by timm name, e.g.
      ``safetensors.numpy.load_file(path)``.
    image_size: the input side the model is built for (default: 224 for a
      ResNet, the checkpoint's own for a ViT); a ViT's position embedding is
      resized bilinearly to it (:func:`resample_posemb`).
    num_heads: a ViT's attention heads, which the weights do not determine
      (default: the standard width's: 192→3, 384→6, 768→12, 1024→16).
    input_mean, input_std: the checkpoint's input convention for images in
      [0, 1], from its model card (default: ImageNet's for a ResNet,
      0.5 / 0.5 for a ViT, as the original and timm's AugReg ViTs).

  Returns:
    A :class:`Converted`.

  Raises:
    ValueError: keys of no supported architecture; a missing or unexpected
      key or a wrong shape (listing the keys); an invalid argument (named).
  """
  if not isinstance(arrays, Mapping) or not all(
      isinstance(k, str) for k in arrays
  ):
    raise ValueError(
        "arrays must be a mapping from timm key names to arrays, got "
        f"{type(arrays).__name__}."
    )
  if image_size is not None and (
      isinstance(image_size, bool)
      or not isinstance(image_size, int | np.integer)
      or image_size < 1
  ):
    raise ValueError(
        f"image_size must be None or a positive integer, got {image_size!r}."
    )
  if "layer1.0.conv1.weight" in arrays:
    mapper, options, name, num_classes, size = _convert_resnet(
        arrays, image_size
    )
    default_mean, default_std = IMAGENET_MEAN, IMAGENET_STD
  elif "patch_embed.proj.weight" in arrays:
    mapper, options, name, num_classes, size = _convert_vit(
        arrays, image_size, num_heads
    )
    default_mean, default_std = INCEPTION_MEAN, INCEPTION_STD
  else:
    raise ValueError(
        "arrays are neither a timm ResNet (no key 'layer1.0.conv1.weight') nor "
        f"a timm ViT (no key 'patch_embed.proj.weight'); keys: "
        f"{sorted(arrays)[:20]}."
    )
  if (input_mean is None) != (input_std is None):
    raise ValueError(
        "input_mean and input_std must be given together (or neither)."
    )
  converted = Converted(
      model_name=name,
      model_options=options,
      num_classes=num_classes,
      input_shape=(int(size), int(size), 3),
      input_mean=tuple(input_mean or default_mean),
      input_std=tuple(input_std or default_std),
      params=unflatten(mapper.params),
      model_state=unflatten(mapper.model_state),
  )
  _check_against_model(converted, mapper.sources)
  return converted


def load_timm(
    path: str | os.PathLike,
    *,
    image_size: int | None = None,
    num_heads: int | None = None,
    input_mean: tuple[float, ...] | None = None,
    input_std: tuple[float, ...] | None = None,
) -> Converted:
  """Reads a timm ``model.safetensors`` and converts it (:func:`convert_timm`).

  Uses ``safetensors.numpy.load_file``: no torch, no pickle. Arguments as
  :func:`convert_timm`'s, with the file's ``path`` instead of its arrays.

  Raises:
    FileNotFoundError: if ``path`` is not a file.
    ValueError: as :func:`convert_timm`, or a file that is not safetensors.
  """
  arrays = _read_safetensors(path)
  return convert_timm(
      arrays,
      image_size=image_size,
      num_heads=num_heads,
      input_mean=input_mean,
      input_std=input_std,
  )
