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
1998), ``resnet18`` and ``resnet50`` (:class:`ResNet`; He et al., 2016).
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
    resnet18,
    resnet50,
)

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "BottleneckBlock",
    "Classifier",
    "LeNet",
    "LeNetBackbone",
    "MLP",
    "MLPBackbone",
    "Model",
    "ModelOutput",
    "ResNet",
    "ResNetBackbone",
    "available_models",
    "create_model",
    "register_model",
    "resnet18",
    "resnet50",
]
