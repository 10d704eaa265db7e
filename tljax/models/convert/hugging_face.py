"""Hugging Face transformers ViTs and CLIP image towers into tljax.

:func:`load_hugging_face` reads a transformers ViT ``model.safetensors``
(``ViTForImageClassification`` or ``ViTModel``; NumPy API, no torch) and
:func:`convert_hugging_face` renames its ``vit.encoder.layer…`` keys to timm's
(query, key and value stacked into ``qkv``) and converts them with
:func:`~tljax.models.convert.timm.convert_timm`, with the config's LayerNorm
epsilon (1e-12 in ``ViTConfig``).

:func:`load_clip_vision` reads a CLIP ``model.safetensors``
(``CLIPVisionModel``, ``CLIPVisionModelWithProjection`` or a whole
``CLIPModel``) and :func:`convert_clip_vision` maps its image tower onto a
tljax ViT with ``pre_norm``, ``quick_gelu`` and no patch bias; the projection
to the joint space and the text tower are left out.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping

import numpy as np

from tljax.models.convert.common import (
    resolve_num_heads,
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
from tljax.models.convert.timm import convert_timm
from tljax.params.tree import unflatten

# OpenAI CLIP's image normalisation.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


_HF_LAYER = re.compile(r"(?:encoder\.layer|layers)\.(\d+)\.(.+)")
_HF_LAYER_NAMES = {
    "layernorm_before": "norm1",
    "layernorm_after": "norm2",
    "attention.output.dense": "attn.proj",
    "attention.o_proj": "attn.proj",
    "intermediate.dense": "mlp.fc1",
    "output.dense": "mlp.fc2",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
}
_HF_QKV = {
    "attention.attention.query": 0,
    "attention.attention.key": 1,
    "attention.attention.value": 2,
    "attention.q_proj": 0,
    "attention.k_proj": 1,
    "attention.v_proj": 2,
}
_HF_NAMES = {
    "embeddings.cls_token": "cls_token",
    "embeddings.position_embeddings": "pos_embed",
    "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
    "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
    "layernorm.weight": "norm.weight",
    "layernorm.bias": "norm.bias",
    "classifier.weight": "head.weight",
    "classifier.bias": "head.bias",
}


def _hugging_face_to_timm(arrays: Mapping[str, np.ndarray]) -> dict:
  """Hugging Face ViT names (``vit.encoder.layer.N…``) to timm's.

  The separate query, key and value projections are stacked into timm's
  ``qkv`` (rows q, k, v); ``ViTModel``'s tanh ``pooler`` is dropped (it is
  not part of the features). A name that does not fit is kept as it is, so
  that it is reported as unexpected.
  """
  renamed, qkv = {}, {}
  for key, value in arrays.items():
    name = key[len("vit.") :] if key.startswith("vit.") else key
    if name.startswith("pooler."):
      continue
    if name in _HF_NAMES:
      renamed[_HF_NAMES[name]] = value
      continue
    match = _HF_LAYER.fullmatch(name)
    if match:
      index, rest = match[1], match[2]
      module, _, leaf = rest.rpartition(".")
      if module in _HF_QKV:
        qkv.setdefault((index, leaf), {})[_HF_QKV[module]] = (key, value)
        continue
      if module in _HF_LAYER_NAMES:
        renamed[f"blocks.{index}.{_HF_LAYER_NAMES[module]}.{leaf}"] = value
        continue
    renamed[key] = value
  for (index, leaf), parts in qkv.items():
    if sorted(parts) == [0, 1, 2]:
      renamed[f"blocks.{index}.attn.qkv.{leaf}"] = np.concatenate(
          [np.asarray(parts[i][1]) for i in range(3)], axis=0
      )
    else:
      for key, value in parts.values():
        renamed[key] = value
  return renamed


def convert_hugging_face(
    arrays: Mapping[str, np.ndarray],
    *,
    image_size: int | None = None,
    num_heads: int | None = None,
    layer_norm_epsilon: float = 1e-12,
    approximate_gelu: bool = False,
    input_mean: tuple[float, ...] = INCEPTION_MEAN,
    input_std: tuple[float, ...] = INCEPTION_STD,
) -> Converted:
  """Converts a Hugging Face transformers ViT state dict (``vit.encoder.layer…``).

  ``ViTForImageClassification`` (with its ``classifier``) or ``ViTModel``
  (its ``pooler`` is dropped), as ``save_pretrained`` writes them; the
  renamed arrays go through :func:`convert_timm`'s ViT path. Hugging Face's
  config says what the weights do not: pass its ``num_attention_heads``
  (default: the standard width's), ``layer_norm_eps`` (default 1e-12, the
  ``ViTConfig`` default; timm and big_vision use 1e-6) and ``hidden_act``
  (``"gelu"``, exact: ``approximate_gelu=False``), and the image processor's
  ``image_mean`` / ``image_std`` (0.5 for google/vit-*). Errors name the
  keys in timm's naming after the renaming (unrenamed keys as they are).

  Returns:
    A :class:`Converted`; its options carry ``layer_norm_epsilon``.
  """
  if not isinstance(arrays, Mapping):
    raise ValueError(
        f"arrays must be a mapping of names to arrays, got {type(arrays).__name__}."
    )
  renamed = _hugging_face_to_timm(arrays)
  if "patch_embed.proj.weight" not in renamed:
    raise ValueError(
        "arrays have no key 'vit.embeddings.patch_embeddings.projection.weight':"
        f" not a Hugging Face ViT; keys: {sorted(arrays)[:20]}."
    )
  if (
      isinstance(layer_norm_epsilon, bool)
      or not isinstance(layer_norm_epsilon, float | int)
      or not layer_norm_epsilon > 0
  ):
    raise ValueError(
        "layer_norm_epsilon must be a positive number, got "
        f"{layer_norm_epsilon!r}."
    )
  converted = convert_timm(
      renamed,
      image_size=image_size,
      num_heads=num_heads,
      input_mean=tuple(input_mean),
      input_std=tuple(input_std),
  )
  options = dict(
      converted.model_options,
      layer_norm_epsilon=float(layer_norm_epsilon),
      approximate_gelu=bool(approximate_gelu),
  )
  return dataclasses.replace(converted, model_options=options)


def load_hugging_face(
    path: str | os.PathLike,
    *,
    image_size: int | None = None,
    num_heads: int | None = None,
    layer_norm_epsilon: float = 1e-12,
    approximate_gelu: bool = False,
    input_mean: tuple[float, ...] = INCEPTION_MEAN,
    input_std: tuple[float, ...] = INCEPTION_STD,
) -> Converted:
  """Reads a Hugging Face ViT ``model.safetensors`` (NumPy API, no torch) and
  converts it (:func:`convert_hugging_face`, same arguments)."""
  arrays = _read_safetensors(path)
  return convert_hugging_face(
      arrays,
      image_size=image_size,
      num_heads=num_heads,
      layer_norm_epsilon=layer_norm_epsilon,
      approximate_gelu=approximate_gelu,
      input_mean=input_mean,
      input_std=input_std,
  )


_CLIP_IGNORED = re.compile(
    r"(text_model\..*|text_projection\..*|visual_projection\..*|logit_scale)"
)


def convert_clip_vision(
    arrays: Mapping[str, np.ndarray],
    *,
    image_size: int | None = None,
    num_heads: int | None = None,
    layer_norm_epsilon: float = 1e-5,
    input_mean: tuple[float, ...] = CLIP_MEAN,
    input_std: tuple[float, ...] = CLIP_STD,
) -> Converted:
  """Converts a Hugging Face CLIP image tower (``vision_model.*``) to a tljax ViT.

  CLIP's ViT (Radford et al., 2021) differs from the classifier ViT in four
  ways, which the converted model's options say: a LayerNorm before the
  encoder (``pre_layrnorm`` → ``norm_pre``, ``pre_norm=True``), QuickGELU
  (``quick_gelu=True``), no bias in the patch embedding
  (``patch_bias=False``), LayerNorm epsilon 1e-5. Its ``post_layernorm`` of
  the class token is the encoder's final norm, so ``backbone_features`` are
  CLIP's ``pooler_output``; its ``visual_projection`` (to the joint
  image-text space), the text tower and ``logit_scale`` are left out.

  Args:
    arrays: ``name → array`` (``vision_model.`` prefix optional).
    image_size: the input side; the position embedding is resized
      bilinearly (:func:`resample_posemb`); default the checkpoint's.
    num_heads: the config's ``num_attention_heads`` (default: the standard
      width's; CLIP ViT-B uses 12, ViT-L 16).
    layer_norm_epsilon: the config's ``layer_norm_eps``.
    input_mean, input_std: CLIP's normalisation by default.

  Returns:
    A :class:`Converted` of ``vit`` without a head (``num_classes`` None).

  Raises:
    ValueError: a missing or unexpected key or a wrong shape (listing the
      keys), or an invalid argument (named).
  """
  if not isinstance(arrays, Mapping):
    raise ValueError(
        f"arrays must be a mapping of names to arrays, got {type(arrays).__name__}."
    )
  vision = {
      (
          key[len("vision_model.") :]
          if key.startswith("vision_model.")
          else key
      ): (value)
      for key, value in arrays.items()
      if not _CLIP_IGNORED.fullmatch(key)
  }
  patch_key = "embeddings.patch_embedding.weight"
  if patch_key not in vision:
    raise ValueError(
        f"arrays have no key 'vision_model.{patch_key}': not a CLIP image "
        f"tower; keys: {sorted(arrays)[:20]}."
    )
  mapper = _Mapper(vision)
  kernel = np.asarray(vision[patch_key])
  _check_rank(patch_key, kernel, 4)
  width, patch = int(kernel.shape[0]), int(kernel.shape[2])
  depth = 1 + max(
      (
          int(m[1])
          for k in vision
          if (m := re.match(r"encoder\.layers\.(\d+)\.", k))
      ),
      default=-1,
  )
  num_heads = resolve_num_heads(width, num_heads)
  head_dim = width // num_heads
  mapper.put("backbone/embedding/kernel", patch_key, _conv_kernel)
  cls = mapper.get("embeddings.class_embedding")
  pos = mapper.get("embeddings.position_embedding.weight")
  if cls is None or pos is None:
    mapper.finish()
  if cls.shape != (width,) or pos.ndim != 2 or pos.shape[1] != width:
    raise ValueError(
        "checkpoint keys embeddings.class_embedding and "
        f"embeddings.position_embedding.weight have shapes {cls.shape} and "
        f"{pos.shape}; expected ({width},) and (1 + tokens, {width})."
    )
  side = int(round(np.sqrt(pos.shape[0] - 1)))
  if side * side + 1 != pos.shape[0]:
    raise ValueError(
        "checkpoint key embeddings.position_embedding.weight has shape "
        f"{pos.shape}: not a class token and a square patch grid."
    )
  if image_size is None:
    image_size = side * patch
  if (
      isinstance(image_size, bool)
      or not isinstance(image_size, int | np.integer)
      or image_size < 1
      or image_size % patch
  ):
    raise ValueError(
        f"image_size must be a positive multiple of the patch size {patch}, "
        f"got {image_size!r}."
    )
  grid = image_size // patch
  # CLIP adds the position embedding after prepending the class token.
  mapper.params["backbone/cls"] = (cls + pos[0]).reshape(1, 1, width)
  mapper.sources["backbone/cls"] = "embeddings.class_embedding"
  mapper.params["backbone/pos_embedding"] = resample_posemb(
      pos[None, 1:], (grid, grid)
  )
  mapper.sources["backbone/pos_embedding"] = (
      "embeddings.position_embedding.weight"
  )
  mapper.put("backbone/norm_pre/scale", "pre_layrnorm.weight", rank=1)
  mapper.put("backbone/norm_pre/bias", "pre_layrnorm.bias", rank=1)
  for index in range(depth):
    key = f"encoder.layers.{index}"
    path = f"backbone/Transformer/encoderblock_{index}"
    for norm, name in (
        ("layer_norm1", "LayerNorm_0"),
        ("layer_norm2", "LayerNorm_1"),
    ):
      mapper.put(f"{path}/{name}/scale", f"{key}.{norm}.weight", rank=1)
      mapper.put(f"{path}/{name}/bias", f"{key}.{norm}.bias", rank=1)
    attention = f"{path}/MultiHeadDotProductAttention_0"
    for projection, name in (
        ("q_proj", "query"),
        ("k_proj", "key"),
        ("v_proj", "value"),
    ):
      mapper.put(
          f"{attention}/{name}/kernel",
          f"{key}.self_attn.{projection}.weight",
          lambda w: w.T.reshape(width, num_heads, head_dim),
          rank=2,
      )
      mapper.put(
          f"{attention}/{name}/bias",
          f"{key}.self_attn.{projection}.bias",
          lambda b: b.reshape(num_heads, head_dim),
          rank=1,
      )
    mapper.put(
        f"{attention}/out/kernel",
        f"{key}.self_attn.out_proj.weight",
        lambda w: w.T.reshape(num_heads, head_dim, width),
        rank=2,
    )
    mapper.put(
        f"{attention}/out/bias", f"{key}.self_attn.out_proj.bias", rank=1
    )
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
  mapper.put(
      "backbone/Transformer/encoder_norm/scale", "post_layernorm.weight", rank=1
  )
  mapper.put(
      "backbone/Transformer/encoder_norm/bias", "post_layernorm.bias", rank=1
  )
  mapper.finish()
  if (
      isinstance(layer_norm_epsilon, bool)
      or not isinstance(layer_norm_epsilon, float | int)
      or not layer_norm_epsilon > 0
  ):
    raise ValueError(
        "layer_norm_epsilon must be a positive number, got "
        f"{layer_norm_epsilon!r}."
    )
  mlp_key = "encoder.layers.0.mlp.fc1.weight"
  converted = Converted(
      model_name="vit",
      model_options={
          "bottleneck_dim": None,
          "pool_type": "tok",
          "patch_size": patch,
          "width": width,
          "depth": depth,
          "mlp_dim": int(vision[mlp_key].shape[0]),
          "num_heads": num_heads,
          "quick_gelu": True,
          "pre_norm": True,
          "patch_bias": False,
          "layer_norm_epsilon": float(layer_norm_epsilon),
      },
      num_classes=None,
      input_shape=(grid * patch, grid * patch, int(kernel.shape[1])),
      input_mean=tuple(input_mean),
      input_std=tuple(input_std),
      params=unflatten(mapper.params),
      model_state={},
  )
  _check_against_model(converted, mapper.sources)
  return converted


def load_clip_vision(
    path: str | os.PathLike,
    *,
    image_size: int | None = None,
    num_heads: int | None = None,
    layer_norm_epsilon: float = 1e-5,
    input_mean: tuple[float, ...] = CLIP_MEAN,
    input_std: tuple[float, ...] = CLIP_STD,
) -> Converted:
  """Reads a Hugging Face CLIP ``model.safetensors`` (NumPy API, no torch) and
  converts its image tower (:func:`convert_clip_vision`, same arguments)."""
  return convert_clip_vision(
      _read_safetensors(path),
      image_size=image_size,
      num_heads=num_heads,
      layer_norm_epsilon=layer_norm_epsilon,
      input_mean=input_mean,
      input_std=input_std,
  )
