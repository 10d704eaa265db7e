"""What the checkpoint formats share: the result, key and shape checks.

:class:`Converted` is what every converter returns; :class:`_Mapper` collects
``tljax path → array`` from upstream keys (PyTorch kernels transposed to
Flax's layout, BatchNorm statistics into the model state) and reports the
missing and unexpected keys; :func:`_check_against_model` checks every
converted array against the path and shape the tljax model expects;
:func:`resample_posemb` resizes a ViT's patch position embedding for another
resolution bilinearly, as big_vision's ``resample_posemb`` does
(``scipy.ndimage.zoom(order=1)``, corners aligned). timm resizes bicubically
instead (``resample_abs_pos_embed``), so a resized model matches big_vision,
not timm, at the new resolution (a deliberate choice).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np
import scipy.ndimage

from tljax.models.functional import Model, create_model
from tljax.models.vit import VIT_VARIANTS
from tljax.params.tree import flatten

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The original ViT checkpoints and timm's AugReg ones: inputs in [-1, 1].
INCEPTION_MEAN = (0.5, 0.5, 0.5)
INCEPTION_STD = (0.5, 0.5, 0.5)
_HEADS_BY_WIDTH = {width: heads for width, _, _, heads in VIT_VARIANTS.values()}


def resolve_num_heads(width: int, num_heads: int | None) -> int:
  """``num_heads``, or the standard ViT's for ``width`` when None (checked).

  A checkpoint's arrays give the width but not the number of heads.
  """
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
  return num_heads


def vit_model(
    options: dict[str, Any],
    *,
    patch: int,
    width: int,
    depth: int,
    mlp_dim: int,
    num_heads: int,
) -> tuple[str, dict[str, Any]]:
  """The registered ViT name for these sizes, and ``options`` completed.

  A standard size (``VIT_VARIANTS``, patch 16 or 32) is ``vit_<variant><patch>``;
  any other is ``vit`` with every size among the options.
  """
  for variant, sizes in VIT_VARIANTS.items():
    if sizes == (width, depth, mlp_dim, num_heads) and patch in (16, 32):
      return f"vit_{variant.lower()}{patch}", options
  return "vit", dict(
      options,
      patch_size=patch,
      width=width,
      depth=depth,
      mlp_dim=mlp_dim,
      num_heads=num_heads,
  )


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
