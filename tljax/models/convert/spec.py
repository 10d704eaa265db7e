"""A pretrained checkpoint named in one string: ``"<format>[:<arch>]=<path>"``.

What ``config.init_from.pretrained`` and ``tljax rank-sources --sources``
take, e.g. ``"timm:resnet50=/ckpt/resnet50.a1_in1k/model.safetensors"``:

* ``format``: ``timm`` (a timm ``model.safetensors``: ResNets, ViTs, and
  torchvision's ImageNet ResNets as timm republishes them),
  ``torchvision`` (a ``.pth`` state dict; needs torch), ``big_vision`` (a
  big_vision / AugReg ``.npz`` ViT), ``hugging_face`` (a transformers ViT's
  ``model.safetensors``) or ``clip`` (a CLIP image tower's);
* ``arch`` (optional): the architecture the file must hold, checked after
  conversion: a tljax model name (``resnet50``, ``vit_b16``) or the upstream
  one (``resnet50.a1_in1k``, ``vit_base_patch16_224.augreg_in21k``,
  ``google/vit-base-patch16-224``); a mismatch is an error naming both;
* ``path``: the file.

:func:`load_converted` reads and converts it with the format's loader
(keyword options, such as a ViT's ``num_heads`` or ``image_size``, go to
that loader; an unknown one is an error listing the loader's options).
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import re
from collections.abc import Mapping
from typing import Any

from tljax.models.convert.big_vision import load_big_vision
from tljax.models.convert.common import Converted
from tljax.models.convert.hugging_face import (
    load_clip_vision,
    load_hugging_face,
)
from tljax.models.convert.timm import load_timm
from tljax.models.convert.torchvision import load_torchvision
from tljax.models.vit import VIT_VARIANTS

LOADERS = {
    "timm": load_timm,
    "torchvision": load_torchvision,
    "big_vision": load_big_vision,
    "hugging_face": load_hugging_face,
    "clip": load_clip_vision,
}
_SPEC = re.compile(r"(?P<format>[a-z_]+)(?::(?P<arch>[^=]+))?=(?P<path>.+)")
# timm's, Hugging Face's and CLIP's ViT size names -> big_vision's variants.
_VIT_SIZES = {"tiny": "ti", "small": "s", "base": "b", "large": "l"}
_UPSTREAM_VIT = re.compile(
    r"(?:.*/)?(?:clip-)?vit[_-](?P<size>tiny|small|base|large)[_-]patch"
    r"(?P<patch>\d+)(?:[_-].*)?"
)


@dataclasses.dataclass(frozen=True)
class PretrainedSpec:
  """A parsed ``"<format>[:<arch>]=<path>"``."""

  format: str
  arch: str | None
  path: str

  def __str__(self) -> str:
    arch = f":{self.arch}" if self.arch else ""
    return f"{self.format}{arch}={self.path}"


def is_pretrained_spec(text: Any) -> bool:
  """Whether ``text`` is a ``"<format>[:<arch>]=<path>"`` of a known format."""
  if not isinstance(text, str):
    return False
  match = _SPEC.fullmatch(text.strip())
  return bool(match) and match["format"] in LOADERS


def parse_pretrained(spec: Any, argument: str = "pretrained") -> PretrainedSpec:
  """Parses (and checks) ``"<format>[:<arch>]=<path>"``; the file must exist.

  Raises:
    ValueError: not of that form, or an unknown format (the message lists
      the known ones and an example), naming ``argument``.
    FileNotFoundError: no file at ``path``.
  """
  example = '"timm:resnet50=/path/model.safetensors"'
  if not isinstance(spec, str) or not spec.strip():
    raise ValueError(
        f"{argument} must be a string '<format>[:<arch>]=<path>', e.g. "
        f"{example}; got {spec!r}"
    )
  match = _SPEC.fullmatch(spec.strip())
  if not match:
    raise ValueError(
        f"{argument} must be '<format>[:<arch>]=<path>' with a format of "
        f"{sorted(LOADERS)}, e.g. {example}; got {spec!r}"
    )
  if match["format"] not in LOADERS:
    raise ValueError(
        f"{argument}: unknown checkpoint format {match['format']!r}; known "
        f"formats: {sorted(LOADERS)} (e.g. {example})"
    )
  path = os.path.expanduser(match["path"])
  if not os.path.isfile(path):
    raise FileNotFoundError(
        f"{argument}: no checkpoint file {path!r} (from {spec!r})"
    )
  arch = match["arch"].strip() if match["arch"] else None
  return PretrainedSpec(match["format"], arch or None, path)


def tljax_model_name(arch: str) -> str:
  """The tljax model name of an upstream architecture name (itself if none).

  ``resnet50.a1_in1k`` → ``resnet50``; ``vit_base_patch16_224.augreg_in21k``
  and ``google/vit-base-patch16-224`` → ``vit_b16``.
  """
  name = arch.strip().lower()
  match = _UPSTREAM_VIT.fullmatch(name)
  if match:
    return f"vit_{_VIT_SIZES[match['size']]}{match['patch']}"
  if "/" in name:  # a hub repository: owner/name
    name = name.rsplit("/", 1)[1]
  return name.split(".", 1)[0]


def architecture(converted: Converted) -> str:
  """The name of ``converted``'s architecture that ``arch`` is checked against.

  Its registered model's name, except that a ``vit`` of a standard size (a
  CLIP tower's, say) is named as the standard one (``vit_b32``).
  """
  options = converted.model_options
  if converted.model_name == "vit":
    sizes = tuple(
        options.get(key) for key in ("width", "depth", "mlp_dim", "num_heads")
    )
    for variant, variant_sizes in VIT_VARIANTS.items():
      if sizes == variant_sizes:
        return f"vit_{variant.lower()}{options.get('patch_size')}"
  return converted.model_name


def check_loader_options(
    format_name: str, options: Mapping[str, Any], argument: str = "pretrained"
) -> None:
  """Raises ``ValueError`` for an option ``format_name``'s loader does not take."""
  loader = LOADERS[format_name]
  allowed = [
      name
      for name, parameter in inspect.signature(loader).parameters.items()
      if parameter.kind is inspect.Parameter.KEYWORD_ONLY
  ]
  unknown = sorted(set(options) - set(allowed))
  if unknown:
    raise ValueError(
        f"{argument}: unknown option(s) {unknown} for a {format_name!r} "
        f"checkpoint; its loader takes {allowed}"
    )


def load_converted(
    spec: str | PretrainedSpec,
    *,
    argument: str = "pretrained",
    **options: Any,
) -> Converted:
  """Reads and converts the checkpoint ``spec`` names (see the module doc).

  Args:
    spec: ``"<format>[:<arch>]=<path>"`` or a parsed :class:`PretrainedSpec`.
    argument: the name errors give the spec (e.g. the config key).
    **options: the format's loader options (:func:`load_timm`'s
      ``image_size``, ``num_heads``, ...; ``None`` values are dropped).

  Returns:
    The :class:`Converted` checkpoint.

  Raises:
    ValueError: a bad spec or option, a file the format's converter refuses
      (missing or unexpected keys, listed), or an ``arch`` that is not the
      architecture the file holds.
    FileNotFoundError: no such file.
  """
  if not isinstance(spec, PretrainedSpec):
    spec = parse_pretrained(spec, argument)
  options = {key: value for key, value in options.items() if value is not None}
  check_loader_options(spec.format, options, argument)
  try:
    converted = LOADERS[spec.format](spec.path, **options)
  except (ValueError, KeyError) as error:
    raise ValueError(f"{argument} {str(spec)!r}: {error}") from error
  if spec.arch is not None:
    expected = tljax_model_name(spec.arch)
    held = architecture(converted)
    if expected != held:
      raise ValueError(
          f"{argument} {str(spec)!r}: the file holds a {held!r} (tljax's "
          f"name; model {converted.model_name!r}, options "
          f"{converted.model_options}), not {spec.arch!r} ({expected!r}); "
          "fix the name after the format, or leave it out"
      )
  return converted
