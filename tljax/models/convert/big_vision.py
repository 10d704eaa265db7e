"""big_vision and original ViT / AugReg ``.npz`` checkpoints into tljax.

:func:`load_big_vision` reads the ``.npz`` (``allow_pickle=False``) and
:func:`convert_big_vision` maps its ``a/b/c`` names, which are tljax's ViT
names already, after rewriting the older layouts as big_vision's
``fix_old_checkpoints`` does: the original code's auto-numbered block names,
the position embedding that includes the class token's (folded into ``cls``)
and the blocks stacked by ``scan``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from tljax.models.convert.common import (
    vit_model,
    INCEPTION_MEAN,
    INCEPTION_STD,
    Converted,
    _check_against_model,
    resample_posemb,
)
from tljax.params.tree import unflatten

# The auto-numbered names of the original ViT code (google-research/
# vision_transformer, the AugReg checkpoints) inside an encoder block, and
# big_vision's.
_OLD_BLOCK_NAMES = {
    "MultiHeadDotProductAttention_1": "MultiHeadDotProductAttention_0",
    "LayerNorm_2": "LayerNorm_1",
    "MlpBlock_3": "MlpBlock_0",
}
_BIG_VISION_PREFIXES = ("params/img/", "params/", "opt/target/", "")


def convert_big_vision(
    arrays: Mapping[str, np.ndarray],
    *,
    image_size: int | None = None,
    approximate_gelu: bool = True,
    input_mean: tuple[float, ...] = INCEPTION_MEAN,
    input_std: tuple[float, ...] = INCEPTION_STD,
) -> Converted:
  """Converts a big_vision or original-ViT checkpoint's arrays (``a/b/c`` keys).

  Reads the layouts big_vision's ``vit.load`` reads (``fix_old_checkpoints``):
  big_vision's own (``pos_embedding`` of the patches, optionally under
  ``params/``, encoder blocks stacked under ``Transformer/encoderblock`` when
  trained with ``scan``) and the original ViT / AugReg one
  (``Transformer/posembed_input/pos_embedding`` including the class token's
  position, which is folded into ``cls``; blocks named
  ``MultiHeadDotProductAttention_1``, ``LayerNorm_2``, ``MlpBlock_3``). The
  sizes, heads included, come from the kernels; ``cls`` means class-token
  pooling, its absence average pooling (big_vision's ``gap``). ``map``
  pooling (``MAPHead_0``) and ``pre_logits`` are refused.

  Args:
    arrays: ``name → array``, e.g. ``np.load(path, allow_pickle=False)``.
    image_size: input side to build for; the position embedding is resized
      bilinearly to it (:func:`resample_posemb`); default the checkpoint's.
    approximate_gelu: big_vision's (and the original code's) ``nn.gelu`` is
      the tanh approximation, hence True; timm runs the same weights with the
      exact GELU (False).
    input_mean, input_std: the input convention for images in [0, 1];
      big_vision's ``value_range(-1, 1)`` is 0.5 / 0.5.

  Returns:
    A :class:`Converted` (``vit_*`` when standard, else ``vit``).

  Raises:
    ValueError: an unsupported or inconsistent checkpoint, listing the keys.
  """
  if not isinstance(arrays, Mapping):
    raise ValueError(
        f"arrays must be a mapping of names to arrays, got {type(arrays).__name__}."
    )
  for prefix in _BIG_VISION_PREFIXES:
    if f"{prefix}embedding/kernel" in arrays:
      break
  else:
    raise ValueError(
        "arrays have no key 'embedding/kernel' (nor under params/ or "
        f"opt/target/): not a ViT checkpoint; keys: {sorted(arrays)[:20]}."
    )
  named = {
      key[len(prefix) :]: (key, np.asarray(value, np.float32))
      for key, value in arrays.items()
      if key.startswith(prefix)
  }
  for unsupported, what in (
      ("pre_logits/", "pre_logits (rep_size)"),
      (
          "MAPHead_0/",
          "map pooling (MAPHead_0)",
      ),
  ):
    found = sorted(k for k in named if k.startswith(unsupported))
    if found:
      raise ValueError(f"{what} is not supported; checkpoint keys {found}.")
  # Stacked (scan) blocks become numbered ones.
  stacked = "Transformer/encoderblock/"
  for key in [k for k in named if k.startswith(stacked)]:
    source, value = named.pop(key)
    for index in range(value.shape[0]):
      rest = key[len(stacked) :]
      named[f"Transformer/encoderblock_{index}/{rest}"] = (source, value[index])
  renamed = {}
  for key, item in named.items():
    parts = key.split("/")
    if len(parts) > 2 and parts[1].startswith("encoderblock_"):
      parts[2] = _OLD_BLOCK_NAMES.get(parts[2], parts[2])
    renamed["/".join(parts)] = item
  named = renamed
  for old in (
      "Transformer/posembed_input/pos_embedding",
      "Transformer/pos_embedding",
  ):
    if old in named:
      named["pos_embedding"] = named.pop(old)
  if "pos_embedding" not in named:
    raise ValueError("checkpoint has no position embedding (pos_embedding).")
  pos_source, pos = named.pop("pos_embedding")
  if pos.ndim != 3 or pos.shape[0] != 1:
    raise ValueError(
        f"checkpoint key {pos_source!r} has shape {pos.shape}, expected "
        "(1, tokens, width)."
    )
  side = int(np.sqrt(pos.shape[1]))
  if side * side + 1 == pos.shape[1]:
    if "cls" not in named:
      raise ValueError(
          f"checkpoint key {pos_source!r} has a class token position but "
          "there is no cls."
      )
    cls_source, cls = named["cls"]
    named["cls"] = (cls_source, cls + pos[:, :1])
    pos = pos[:, 1:]
  elif side * side != pos.shape[1]:
    raise ValueError(
        f"checkpoint key {pos_source!r} has shape {pos.shape}: not a square "
        "patch grid."
    )
  kernel = named["embedding/kernel"][1]
  if kernel.ndim != 4 or kernel.shape[0] != kernel.shape[1]:
    raise ValueError(
        f"checkpoint key 'embedding/kernel' has shape {kernel.shape}, expected "
        "(patch, patch, channels, width)."
    )
  patch, width = int(kernel.shape[0]), int(kernel.shape[-1])
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
  depth = 1 + max(
      (
          int(m[1])
          for k in named
          if (m := re.match(r"Transformer/encoderblock_(\d+)/", k))
      ),
      default=-1,
  )
  query = (
      "Transformer/encoderblock_0/MultiHeadDotProductAttention_0/query/kernel"
  )
  dense = "Transformer/encoderblock_0/MlpBlock_0/Dense_0/kernel"
  for key in (query, dense):
    if key not in named:
      raise ValueError(f"checkpoint has no key {key!r} (after renaming).")
  num_heads = int(named[query][1].shape[1])
  mlp_dim = int(named[dense][1].shape[1])
  params, sources = {}, {}
  for key, (source, value) in named.items():
    path = key if key.startswith("head/") else f"backbone/{key}"
    params[path], sources[path] = value, source
  params["backbone/pos_embedding"] = resample_posemb(pos, (grid, grid))
  sources["backbone/pos_embedding"] = pos_source
  num_classes = (
      int(params["head/kernel"].shape[-1]) if "head/kernel" in params else None
  )
  pool_type = "tok" if "backbone/cls" in params else "gap"
  options: dict[str, Any] = {
      "bottleneck_dim": None,
      "pool_type": pool_type,
      "approximate_gelu": bool(approximate_gelu),
  }
  name, options = vit_model(
      options,
      patch=patch,
      width=width,
      depth=depth,
      mlp_dim=mlp_dim,
      num_heads=num_heads,
  )
  converted = Converted(
      model_name=name,
      model_options=options,
      num_classes=num_classes,
      input_shape=(grid * patch, grid * patch, int(kernel.shape[2])),
      input_mean=tuple(input_mean),
      input_std=tuple(input_std),
      params=unflatten(params),
      model_state={},
  )
  _check_against_model(converted, sources)
  return converted


def load_big_vision(
    path: str | os.PathLike,
    *,
    image_size: int | None = None,
    approximate_gelu: bool = True,
    input_mean: tuple[float, ...] = INCEPTION_MEAN,
    input_std: tuple[float, ...] = INCEPTION_STD,
) -> Converted:
  """Reads a big_vision / AugReg ViT ``.npz`` (``allow_pickle=False``) and
  converts it (:func:`convert_big_vision`, same arguments)."""
  if not isinstance(path, str | os.PathLike) or not os.path.isfile(path):
    raise FileNotFoundError(f"path {path!r} is not a file.")
  try:
    with np.load(os.fspath(path), allow_pickle=False) as data:
      arrays = {key: data[key] for key in data.files}
  except (ValueError, OSError) as error:
    raise ValueError(
        f"path {os.fspath(path)!r} is not an .npz of arrays: {error}"
    ) from error
  return convert_big_vision(
      arrays,
      image_size=image_size,
      approximate_gelu=approximate_gelu,
      input_mean=input_mean,
      input_std=input_std,
  )
