"""Models split as backbone → bottleneck → head, used through pure functions.

Every architecture is a Flax NNX :class:`Classifier` whose top-level
submodules are ``backbone``, ``bottleneck`` and ``head``, so parameter paths
start with ``backbone/``, ``bottleneck/`` or ``head/`` and any transfer method
can reach the backbone features, the bottleneck features, the logits and, for
convolutional backbones, the last spatial feature map (:class:`ModelOutput`).
The rest of tljax uses them through :func:`create_model`, which returns a
:class:`Model` with pure ``init`` and ``apply`` functions over plain nested
dicts of arrays.

Architectures: ``mlp`` (:class:`MLP`), ``lenet`` (:class:`LeNet`; LeCun et al.,
1998), ``resnet18``, ``resnet34``, ``resnet50``, ``resnet101`` and ``resnet``
(:class:`ResNet`; He et al., 2016),
``vit`` and ``vit_{ti,s,b,l}{16,32}`` (:class:`ViT`; Dosovitskiy et al., 2021).
Pretrained ResNets and ViTs from timm, torchvision, big_vision and Hugging
Face (ViT, CLIP) load with :func:`load_timm` and its siblings, or from one
``"<format>[:<arch>]=<path>"`` string with :func:`load_converted`
(:mod:`tljax.models.convert`).
"""

from tljax.models.classifier import Bottleneck, Classifier, ModelOutput
from tljax.models.functional import (
    Model,
    available_models,
    create_model,
    register_model,
)
from tljax.models.lenet import LeNet, LeNetBackbone
from tljax.models.mlp import MLP, MLPBackbone
from tljax.models.resnet import (
    BasicBlock,
    BottleneckBlock,
    ResNet,
    ResNetBackbone,
    resnet,
    resnet18,
    resnet34,
    resnet50,
    resnet101,
)
from tljax.models.vit import VIT_VARIANTS, ViT, ViTBackbone
from tljax.models.convert import (
    Converted,
    convert_big_vision,
    convert_clip_vision,
    convert_hugging_face,
    convert_timm,
    load_big_vision,
    load_clip_vision,
    load_hugging_face,
    load_timm,
    load_converted,
    load_torchvision,
    parse_pretrained,
    resample_posemb,
)

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "BottleneckBlock",
    "Classifier",
    "Converted",
    "convert_big_vision",
    "convert_clip_vision",
    "convert_hugging_face",
    "LeNet",
    "LeNetBackbone",
    "MLP",
    "MLPBackbone",
    "Model",
    "ModelOutput",
    "ResNet",
    "ResNetBackbone",
    "available_models",
    "convert_timm",
    "create_model",
    "load_big_vision",
    "load_clip_vision",
    "load_hugging_face",
    "load_timm",
    "load_converted",
    "load_torchvision",
    "parse_pretrained",
    "register_model",
    "resnet",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resample_posemb",
    "VIT_VARIANTS",
    "ViT",
    "ViTBackbone",
]
