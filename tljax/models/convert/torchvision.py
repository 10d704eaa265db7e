"""PyTorch ``.pth`` state dicts (torchvision's ImageNet ResNets) into tljax.

:func:`load_torchvision` reads the file with torch (``torch.load`` with
``weights_only=True``, never plain pickle; torch is imported only when it is
called) and converts the state dict with
:func:`~tljax.models.convert.timm.convert_timm`, whose names torchvision's
ResNets share.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from tljax.models.convert.common import Converted
from tljax.models.convert.timm import convert_timm


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
