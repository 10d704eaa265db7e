"""Pretrained weights from timm into tljax: ResNets and ViTs, exactly.

:func:`load_timm` reads a timm ``model.safetensors`` (as timm's models are
hosted; torchvision's ImageNet ResNets are republished there under
torchvision's own names) with the ``safetensors`` package's NumPy API (no
torch), and :func:`convert_timm` turns its arrays into tljax's ``params`` and
``model_state`` for the architecture it recognises, with the model's name,
options and input convention (:class:`Converted`)::

    converted = load_timm("resnet50.a1_in1k/model.safetensors")
    model = converted.create_model()          # resnet50, bottleneck_dim=None
    outputs, _ = model.apply(converted.params, converted.model_state,
                             images, train=False)   # images in [0, 1] or uint8

A big_vision or original ViT / AugReg ``.npz`` ViT loads with
:func:`load_big_vision` (``allow_pickle=False``); its names are tljax's ViT
names already.

A Hugging Face transformers ViT (``ViTForImageClassification`` or
``ViTModel``, ``model.safetensors``) loads with :func:`load_hugging_face`.

A Hugging Face CLIP image tower (``CLIPVisionModel``,
``CLIPVisionModelWithProjection`` or a whole ``CLIPModel``'s
``model.safetensors``) loads with :func:`load_clip_vision`.

A torchvision ``.pth`` (or any PyTorch state dict under the same names) loads
with :func:`load_torchvision` where torch is installed
(``torch.load(weights_only=True)``, never plain pickle).

For another task, build the model with its own head and merge the converted
backbone with :func:`tljax.params.merge_pretrained` (``dont_load`` keeps the
new ``head`` and ``bottleneck``)::

    model = converted.create_model(num_classes=31, bottleneck_dim=256)
    params, model_state = model.init(key)
    params, model_state = merge_pretrained(
        params, converted.params, dont_load=("head/.*", "bottleneck/.*"),
        init_model_state=model_state,
        loaded_model_state=converted.model_state)

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
  (``scipy.ndimage.zoom(order=1)``, corners aligned). timm resizes bicubically
  instead (``resample_abs_pos_embed``), so a resized model matches big_vision,
  not timm, at the new resolution (a deliberate choice).

A key of the checkpoint that the architecture does not use, one it needs that
is missing, or an array of the wrong shape is an error listing the keys.
A ViT whose pooled features are normalised after pooling (timm's ``fc_norm``,
the ``global_pool="avg"`` models) is refused: big_vision normalises before.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np
import scipy.ndimage

from tljax.models.functional import Model, create_model
from tljax.models.vit import VIT_VARIANTS
from tljax.params.tree import flatten, unflatten

__all__ = [
    "Converted",
    "convert_big_vision",
    "convert_clip_vision",
    "convert_hugging_face",
    "convert_timm",
    "load_big_vision",
    "load_clip_vision",
    "load_hugging_face",
    "load_timm",
    "load_torchvision",
    "resample_posemb",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The original ViT checkpoints and timm's AugReg ones: inputs in [-1, 1].
INCEPTION_MEAN = (0.5, 0.5, 0.5)
INCEPTION_STD = (0.5, 0.5, 0.5)
# OpenAI CLIP's image normalisation.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

_STANDARD_RESNETS = {
    ("basic", (2, 2, 2, 2)): "resnet18",
    ("bottleneck", (3, 4, 6, 3)): "resnet50",
}
_HEADS_BY_WIDTH = {width: heads for width, _, _, heads in VIT_VARIANTS.values()}


@dataclasses.dataclass(frozen=True)
class Converted:
  """A converted checkpoint: the tljax model it fits, its variables, its inputs.

  Attributes:
    model_name: the registered tljax model, e.g. ``"resnet50"``,
      ``"vit_b16"``, or ``"resnet"`` / ``"vit"`` with every size in
      ``model_options``.
    model_options: the model's options (``bottleneck_dim=None``: the head sits
      on the backbone features, as upstream).
    num_classes: the upstream head's classes; None when the checkpoint has no
      head (then ``params`` has no ``head``).
    input_shape: ``(height, width, 3)``, the resolution the model is built
      for.
    input_mean, input_std: the input convention for images in [0, 1] (see
      :class:`~tljax.models.Model`).
    params, model_state: nested dicts of NumPy arrays under tljax's names.
  """

  model_name: str
  model_options: dict
  num_classes: int | None
  input_shape: tuple[int, int, int]
  input_mean: tuple[float, ...]
  input_std: tuple[float, ...]
  params: dict
  model_state: dict

  def create_model(self, **overrides: Any) -> Model:
    """The :class:`~tljax.models.Model` these variables fit.

    ``overrides`` replace ``num_classes``, ``input_shape``, ``input_mean``,
    ``input_std`` or model options (e.g. ``bottleneck_dim=256`` for a model
    that :func:`~tljax.params.merge_pretrained` then fills).
    """
    arguments = dict(
        num_classes=self.num_classes,
        input_shape=self.input_shape,
        input_mean=self.input_mean,
        input_std=self.input_std,
        **self.model_options,
    )
    arguments.update(overrides)
    if arguments["num_classes"] is None:
      raise ValueError(
          "num_classes is required: the checkpoint has no head, so give "
          "create_model(num_classes=...)."
      )
    return create_model(self.model_name, **arguments)


def _conv_kernel(array: np.ndarray) -> np.ndarray:
  """PyTorch ``(out, in, kh, kw)`` to Flax ``(kh, kw, in, out)``."""
  return np.transpose(array, (2, 3, 1, 0))


def _linear_kernel(array: np.ndarray) -> np.ndarray:
  """PyTorch ``(out, in)`` to Flax ``(in, out)``."""
  return np.transpose(array)


def _check_rank(key: str, array: np.ndarray, rank: int) -> None:
  if array.ndim != rank:
    raise ValueError(
        f"checkpoint key {key!r} has shape {tuple(array.shape)}, expected "
        f"{rank} dimensions."
    )


class _Mapper:
  """Collects ``tljax path → array`` from upstream keys, recording use."""

  def __init__(self, arrays: Mapping[str, np.ndarray]):
    self.arrays = arrays
    self.used: set[str] = set()
    self.missing: list[str] = []
    self.params: dict[str, np.ndarray] = {}
    self.model_state: dict[str, np.ndarray] = {}
    self.sources: dict[str, str] = {}

  def get(self, key: str) -> np.ndarray | None:
    if key not in self.arrays:
      self.missing.append(key)
      return None
    self.used.add(key)
    return np.asarray(self.arrays[key], dtype=np.float32)

  def put(
      self,
      path: str,
      key: str,
      transform: Callable[[np.ndarray], np.ndarray] = lambda a: a,
      *,
      state: bool = False,
      rank: int | None = None,
  ) -> None:
    array = self.get(key)
    if array is None:
      return
    if rank is not None:
      _check_rank(key, array, rank)
    (self.model_state if state else self.params)[path] = transform(array)
    self.sources[path] = key

  def batch_norm(self, path: str, key: str) -> None:
    self.put(f"{path}/scale", f"{key}.weight", rank=1)
    self.put(f"{path}/bias", f"{key}.bias", rank=1)
    self.put(f"{path}/mean", f"{key}.running_mean", state=True, rank=1)
    self.put(f"{path}/var", f"{key}.running_var", state=True, rank=1)
    self.used.add(f"{key}.num_batches_tracked")

  def finish(self) -> None:
    unexpected = sorted(key for key in self.arrays if key not in self.used)
    if self.missing or unexpected:
      raise ValueError(
          f"checkpoint does not match the architecture: missing keys "
          f"{sorted(self.missing)}, unexpected keys {unexpected}."
      )


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


def resample_posemb(posemb: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
  """Resizes a ``(1, h·w, width)`` patch position embedding to ``grid``.

  Bilinear on the ``(h, w)`` grid with the corners aligned, as big_vision's
  ``resample_posemb`` (``scipy.ndimage.zoom(order=1)``), which assumes a
  square grid (so does this: the old grid is ``sqrt(h·w)`` on a side).

  Args:
    posemb: ``(1, tokens, width)``, without a class token's position.
    grid: the new ``(h, w)``.

  Returns:
    ``(1, h·w, width)`` float32.
  """
  posemb = np.asarray(posemb, np.float32)
  if posemb.ndim != 3 or posemb.shape[0] != 1:
    raise ValueError(
        f"posemb must have shape (1, tokens, width), got {posemb.shape}."
    )
  side = int(round(np.sqrt(posemb.shape[1])))
  if side * side != posemb.shape[1]:
    raise ValueError(f"posemb has {posemb.shape[1]} tokens, not a square grid.")
  grid = tuple(int(g) for g in grid)
  if len(grid) != 2 or min(grid) < 1:
    raise ValueError(f"grid must be two positive sizes, got {grid!r}.")
  if grid == (side, side):
    return posemb
  old = posemb.reshape(side, side, -1)
  zoom = (grid[0] / side, grid[1] / side, 1)
  new = scipy.ndimage.zoom(old, zoom, order=1)
  return new.reshape(1, grid[0] * grid[1], -1).astype(np.float32)


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
  if num_heads is None:
    if width not in _HEADS_BY_WIDTH:
      raise ValueError(
          f"num_heads is required for a ViT of width {width} (the checkpoint "
          f"does not say; the standard widths are {sorted(_HEADS_BY_WIDTH)})."
      )
    num_heads = _HEADS_BY_WIDTH[width]
  if (
      isinstance(num_heads, bool)
      or not isinstance(num_heads, int)
      or num_heads < 1
      or width % num_heads
  ):
    raise ValueError(
        f"num_heads must be a positive divisor of the width {width}, got "
        f"{num_heads!r}."
    )
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
  name = None
  for variant, sizes in VIT_VARIANTS.items():
    if sizes == (width, depth, mlp_dim, num_heads) and patch in (16, 32):
      name = f"vit_{variant.lower()}{patch}"
  if name is None:
    name = "vit"
    options.update(
        patch_size=patch,
        width=width,
        depth=depth,
        mlp_dim=mlp_dim,
        num_heads=num_heads,
    )
  return mapper, options, name, num_classes, image_size


def _check_against_model(converted: Converted, sources: Mapping[str, str]):
  """Every converted array has the path and shape the tljax model expects."""
  model = converted.create_model(num_classes=converted.num_classes or 1)
  params, model_state = jax.eval_shape(model.init, jax.random.key(0))
  problems = []
  for what, expected, given in (
      ("params", flatten(params), flatten(converted.params)),
      ("model_state", flatten(model_state), flatten(converted.model_state)),
  ):
    if converted.num_classes is None:
      expected = {
          k: v for k, v in expected.items() if not k.startswith("head/")
      }
    for path in sorted(set(expected) | set(given)):
      if path not in given:
        problems.append(f"{what} {path!r} has no checkpoint key")
      elif path not in expected:
        problems.append(
            f"checkpoint key {sources.get(path)!r} gives {what} {path!r}, "
            "which the model does not have"
        )
      elif tuple(expected[path].shape) != tuple(given[path].shape):
        problems.append(
            f"checkpoint key {sources.get(path)!r} gives {what} {path!r} "
            f"shape {tuple(given[path].shape)}, the model expects "
            f"{tuple(expected[path].shape)}"
        )
  if problems:
    raise ValueError(
        f"checkpoint does not fit model {converted.model_name!r}: "
        + "; ".join(problems)
        + "."
    )


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


def _read_safetensors(path) -> dict:
  if not isinstance(path, str | os.PathLike) or not os.path.isfile(path):
    raise FileNotFoundError(f"path {path!r} is not a file.")
  from safetensors.numpy import load_file  # pylint: disable=import-outside-toplevel

  try:
    return load_file(os.fspath(path))
  except Exception as error:  # safetensors raises its own SafetensorError.
    raise ValueError(
        f"path {os.fspath(path)!r} is not a safetensors file: {error}"
    ) from error


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


def load_torchvision(
    path: str | os.PathLike,
    *,
    image_size: int | None = None,
    num_heads: int | None = None,
    input_mean: tuple[float, ...] | None = None,
    input_std: tuple[float, ...] | None = None,
) -> Converted:
  """Reads a PyTorch ``.pth`` state dict and converts it (:func:`convert_timm`).

  For torchvision's ImageNet ResNets (``resnet18-f37072fd.pth``, …), whose
  names timm shares, and timm's own ``pytorch_model.bin``. Needs torch, which
  loads the file with ``weights_only=True`` (tensors only, no arbitrary
  pickled objects). Arguments as :func:`convert_timm`'s.

  Raises:
    FileNotFoundError: if ``path`` is not a file.
    ImportError: without torch (``pip install torch``, the ``bench`` extra).
    ValueError: as :func:`convert_timm`, or a file that does not hold a
      state dict of tensors.
  """
  if not isinstance(path, str | os.PathLike) or not os.path.isfile(path):
    raise FileNotFoundError(f"path {path!r} is not a file.")
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError as error:
    raise ImportError(
        "load_torchvision needs torch to read a .pth file (pip install torch); "
        "load_timm reads model.safetensors without it."
    ) from error
  try:
    state = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
  except Exception as error:  # torch raises pickle and runtime errors.
    raise ValueError(
        f"path {os.fspath(path)!r} is not a PyTorch state dict loadable with "
        f"weights_only=True: {error}"
    ) from error
  if not isinstance(state, Mapping) or not all(
      isinstance(v, torch.Tensor) for v in state.values()
  ):
    raise ValueError(
        f"path {os.fspath(path)!r} does not hold a state dict of tensors "
        f"(got {type(state).__name__})."
    )
  arrays = {k: v.detach().cpu().float().numpy() for k, v in state.items()}
  return convert_timm(
      arrays,
      image_size=image_size,
      num_heads=num_heads,
      input_mean=input_mean,
      input_std=input_std,
  )


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
  name = None
  for variant, sizes in VIT_VARIANTS.items():
    if sizes == (width, depth, mlp_dim, num_heads) and patch in (16, 32):
      name = f"vit_{variant.lower()}{patch}"
  if name is None:
    name = "vit"
    options.update(
        patch_size=patch,
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
  if num_heads is None:
    if width not in _HEADS_BY_WIDTH:
      raise ValueError(
          f"num_heads is required for a ViT of width {width} (the checkpoint "
          "does not say)."
      )
    num_heads = _HEADS_BY_WIDTH[width]
  if (
      isinstance(num_heads, bool)
      or not isinstance(num_heads, int)
      or num_heads < 1
      or width % num_heads
  ):
    raise ValueError(
        f"num_heads must be a positive divisor of the width {width}, got "
        f"{num_heads!r}."
    )
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
