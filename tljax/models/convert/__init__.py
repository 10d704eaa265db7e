"""Pretrained weights into tljax: timm, torchvision, big_vision, Hugging Face.

Each checkpoint format has its module; every public name is re-exported here
(and from :mod:`tljax.models`):

* :mod:`~tljax.models.convert.timm`: :func:`load_timm` reads a timm
  ``model.safetensors`` (as timm's models are hosted; torchvision's ImageNet
  ResNets are republished there under torchvision's own names) with the
  ``safetensors`` package's NumPy API (no torch), and :func:`convert_timm`
  turns its arrays into tljax's ``params`` and ``model_state`` for the
  architecture it recognises (a ResNet or a ViT);
* :mod:`~tljax.models.convert.torchvision`: a torchvision ``.pth`` (or any
  PyTorch state dict under the same names) loads with
  :func:`load_torchvision` where torch is installed
  (``torch.load(weights_only=True)``, never plain pickle);
* :mod:`~tljax.models.convert.big_vision`: a big_vision or original ViT /
  AugReg ``.npz`` ViT loads with :func:`load_big_vision`
  (``allow_pickle=False``); its names are tljax's ViT names already;
* :mod:`~tljax.models.convert.hugging_face`: a Hugging Face transformers ViT
  (``ViTForImageClassification`` or ``ViTModel``, ``model.safetensors``)
  loads with :func:`load_hugging_face`, and a CLIP image tower
  (``CLIPVisionModel``, ``CLIPVisionModelWithProjection`` or a whole
  ``CLIPModel``'s ``model.safetensors``) with :func:`load_clip_vision`;
* :mod:`~tljax.models.convert.spec`: a checkpoint named in one string,
  ``"<format>[:<arch>]=<path>"`` (``config.init_from.pretrained``,
  ``tljax rank-sources --sources``), read by :func:`load_converted`;
* :mod:`~tljax.models.convert.common`: what they share, the result
  (:class:`Converted`: the model's name, options and input convention with
  the variables), the check of every key and shape against the model, and
  :func:`resample_posemb`.

::

    converted = load_timm("resnet50.a1_in1k/model.safetensors")
    model = converted.create_model()          # resnet50, bottleneck_dim=None
    outputs, _ = model.apply(converted.params, converted.model_state,
                             images, train=False)   # images in [0, 1] or uint8

For another task, build the model with its own head and merge the converted
backbone with :func:`tljax.params.merge_pretrained` (``dont_load`` keeps the
new ``head`` and ``bottleneck``)::

    model = converted.create_model(num_classes=31, bottleneck_dim=256)
    params, model_state = model.init(key)
    params, model_state = merge_pretrained(
        params, converted.params, dont_load=("head/.*", "bottleneck/.*"),
        init_model_state=model_state,
        loaded_model_state=converted.model_state)

A key of the checkpoint that the architecture does not use, one it needs that
is missing, or an array of the wrong shape is an error listing the keys.
"""

# The input conventions (IMAGENET_*, INCEPTION_*, CLIP_*) stay reachable as
# tljax.models.convert.<NAME>, as before the formats had modules of their own.
from tljax.models.convert.big_vision import convert_big_vision, load_big_vision
from tljax.models.convert.common import (  # noqa: F401
    IMAGENET_MEAN,
    IMAGENET_STD,
    INCEPTION_MEAN,
    INCEPTION_STD,
    Converted,
    resample_posemb,
)
from tljax.models.convert.hugging_face import (  # noqa: F401
    CLIP_MEAN,
    CLIP_STD,
    convert_clip_vision,
    convert_hugging_face,
    load_clip_vision,
    load_hugging_face,
)
from tljax.models.convert.spec import (
    PretrainedSpec,
    is_pretrained_spec,
    load_converted,
    parse_pretrained,
)
from tljax.models.convert.timm import convert_timm, load_timm
from tljax.models.convert.torchvision import load_torchvision

__all__ = [
    "Converted",
    "PretrainedSpec",
    "is_pretrained_spec",
    "load_converted",
    "parse_pretrained",
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
