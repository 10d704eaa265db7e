"""The classifier shared by every tljax architecture: backbone → bottleneck → head.

Transfer-learning methods need to reach a network's features, not only its
logits: alignment losses (MMD, CORAL, DANN, ...) act on the bottleneck output,
transferability scores (LogME, LEEP, ...) on backbone or bottleneck features,
and parameter-transfer rules on the backbone's weights. Every architecture in
tljax is therefore a :class:`Classifier` with exactly three top-level
submodules, following the classifier of the Transfer-Learning-Library
(Jiang et al., *Transfer-Learning-Library*, 2020; ``tllib.modules.classifier``):

* ``backbone`` — the feature extractor (MLP, LeNet, ResNet, ...), mapping inputs
  to ``backbone_features`` of width ``backbone_dim``;
* ``bottleneck`` — ``Linear(backbone_dim → bottleneck_dim)`` followed by an
  optional BatchNorm, ReLU and optional dropout; its output is ``features``,
  the representation alignment methods work on;
* ``head`` — ``Linear(bottleneck_dim → num_classes)``, producing ``logits``.

Parameter paths therefore start with ``backbone/``, ``bottleneck/`` or
``head/`` (e.g. ``head/kernel``, ``head/bias``), which is what the regex rules
of :mod:`tljax.params` match on.

Modules hold no random state: dropout layers are built without ``rngs`` and
receive them at call time, and BatchNorm / dropout take their mode from the
``train`` flag of ``__call__``. The module structure (its ``GraphDef``) is thus
the same in training and evaluation, which lets :mod:`tljax.models.functional`
use one graph definition for both.
"""

from __future__ import annotations

import numbers
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

__all__ = ["Bottleneck", "Classifier", "ModelOutput"]

Dtype = Any


def check_batch_norm_momentum(momentum: Any) -> float:
  """A number in ``[0, 1]`` (flax's convention: the weight of the old average).

  Outside it the running statistics extrapolate away from the batches
  instead of averaging them.
  """
  if (
      isinstance(momentum, bool)
      or not isinstance(momentum, numbers.Real)
      or not 0.0 <= momentum <= 1.0
  ):
    raise ValueError(
        f"batch_norm_momentum must be a number in [0, 1] (the weight of the old "
        f"running average), got {momentum!r}."
    )
  return float(momentum)


class ModelOutput(NamedTuple):
  """What a tljax model returns; a NamedTuple, hence a JAX pytree.

  Attributes:
    backbone_features: ``(batch, backbone_dim)`` backbone output, before the
      bottleneck.
    features: ``(batch, bottleneck_dim)`` bottleneck output (equal to
      ``backbone_features`` when the bottleneck is the identity); the features
      feature-alignment methods act on.
    logits: ``(batch, num_classes)`` head output.
    feature_maps: ``(batch, height, width, channels)``: the backbone's last
      spatial feature map (NHWC), before it is flattened or globally pooled
      into ``backbone_features`` (LeNet: conv2 → ReLU → max pool; ResNet: the
      last stage's output); what feature-map regularisers such as DELTA act
      on. None for backbones without a spatial map (MLP). Last field, with a
      default, so ``ModelOutput(backbone_features, features, logits)`` keeps
      working.
  """

  backbone_features: jax.Array
  features: jax.Array
  logits: jax.Array
  feature_maps: jax.Array | None = None


class Bottleneck(nnx.Module):
  """Linear → (BatchNorm) → ReLU → (Dropout) between backbone and head.

  This is the bottleneck of the Transfer-Learning-Library's ``Classifier``
  (``nn.Sequential(nn.Linear, nn.BatchNorm1d, nn.ReLU)``), used by DANN,
  CDAN, MDD and most domain-adaptation recipes to get a lower-dimensional
  feature space in which to align domains (Long et al., ICML 2015;
  Ganin et al., JMLR 2016).

  With ``out_features=None`` the bottleneck is the identity: the module still
  exists (so ``model.bottleneck`` is always defined) but owns no variables, so
  no ``bottleneck/...`` path appears in the parameters or the model state.

  Submodules (when ``out_features`` is not None): ``linear``, ``batch_norm``
  (when ``use_batch_norm``) and ``dropout`` (when ``dropout_rate > 0``), so the
  parameter paths are ``bottleneck/linear/{kernel,bias}`` and
  ``bottleneck/batch_norm/{scale,bias}``.

  Attributes:
    in_features: width of the backbone features.
    out_features: width of the bottleneck features (``in_features`` when the
      bottleneck is the identity).
  """

  def __init__(
      self,
      in_features: int,
      out_features: int | None,
      *,
      use_batch_norm: bool = True,
      dropout_rate: float = 0.0,
      batch_norm_momentum: float = 0.9,
      dtype: Dtype = jnp.float32,
      param_dtype: Dtype = jnp.float32,
      rngs: nnx.Rngs,
  ):
    """Builds the bottleneck.

    Args:
      in_features: width of the backbone features.
      out_features: bottleneck width, or None for the identity bottleneck.
      use_batch_norm: whether to normalise after the linear layer.
      dropout_rate: dropout rate after the ReLU; 0 adds no dropout layer.
      batch_norm_momentum: running-average momentum in flax's convention
        (``running = momentum * running + (1 - momentum) * batch``; 0.9 is
        PyTorch's ``momentum=0.1``).
      dtype: computation dtype.
      param_dtype: parameter dtype.
      rngs: random streams used for parameter initialisation only.
    """
    if out_features is not None and (
        isinstance(out_features, bool)
        or not isinstance(out_features, numbers.Integral)
        or out_features < 1
    ):
      raise ValueError(
          f"bottleneck_dim must be a positive integer or None, got "
          f"{out_features!r}."
      )
    check_batch_norm_momentum(batch_norm_momentum)
    if not 0.0 <= dropout_rate < 1.0:
      raise ValueError(
          f"bottleneck_dropout must lie in [0, 1), got {dropout_rate}."
      )
    if out_features is None and dropout_rate > 0.0:
      raise ValueError(
          "bottleneck_dropout needs a bottleneck layer; set bottleneck_dim, or "
          "bottleneck_dropout=0.0 for the identity bottleneck."
      )
    self.in_features = in_features
    self.out_features = in_features if out_features is None else out_features
    self.is_identity = out_features is None
    self.linear = (
        nnx.Linear(
            in_features,
            out_features,
            dtype=dtype,
            param_dtype=param_dtype,
            rngs=rngs,
        )
        if not self.is_identity
        else None
    )
    self.batch_norm = (
        nnx.BatchNorm(
            out_features,
            momentum=batch_norm_momentum,
            dtype=dtype,
            param_dtype=param_dtype,
            rngs=rngs,
        )
        if not self.is_identity and use_batch_norm
        else None
    )
    self.dropout = nnx.Dropout(dropout_rate) if dropout_rate > 0.0 else None

  def __call__(
      self, inputs: jax.Array, *, train: bool, rngs: nnx.Rngs | None = None
  ) -> jax.Array:
    """Maps ``(batch, in_features)`` to ``(batch, out_features)``."""
    if self.is_identity:
      return inputs
    x = self.linear(inputs)
    if self.batch_norm is not None:
      x = self.batch_norm(x, use_running_average=not train)
    x = nnx.relu(x)
    if self.dropout is not None:
      x = self.dropout(x, deterministic=not train, rngs=rngs)
    return x


class Classifier(nnx.Module):
  """A backbone followed by a :class:`Bottleneck` and a linear head.

  The architectures (:class:`~tljax.models.MLP`, :class:`~tljax.models.LeNet`,
  :class:`~tljax.models.ResNet`) subclass this and only build their backbone.
  A backbone is any ``nnx.Module`` whose ``__call__(inputs, *, train)``
  returns ``(batch, backbone_dim)`` features. A backbone may also define
  ``forward_with_feature_maps(inputs, *, train)`` returning ``(features,
  feature_maps)``, its features together with its last spatial feature map
  (or None); the classifier then calls that instead of ``__call__`` and
  returns the map as :attr:`ModelOutput.feature_maps` (None for a backbone
  without the method).

  Attributes:
    backbone: the feature extractor.
    bottleneck: the :class:`Bottleneck` (possibly the identity).
    head: ``nnx.Linear(bottleneck_dim → num_classes)``.
    backbone_dim: width of the backbone features.
    features_dim: width of the bottleneck features.
    num_classes: number of classes.
  """

  def __init__(
      self,
      backbone: nnx.Module,
      backbone_dim: int,
      num_classes: int,
      *,
      bottleneck_dim: int | None,
      bottleneck_batch_norm: bool = True,
      bottleneck_dropout: float = 0.0,
      batch_norm_momentum: float = 0.9,
      dtype: Dtype = jnp.float32,
      param_dtype: Dtype = jnp.float32,
      rngs: nnx.Rngs,
  ):
    """Builds bottleneck and head on top of ``backbone``.

    Args:
      backbone: the feature extractor (already built).
      backbone_dim: width of the backbone features.
      num_classes: number of output classes.
      bottleneck_dim: bottleneck width; None for an identity bottleneck.
      bottleneck_batch_norm: BatchNorm after the bottleneck's linear layer.
      bottleneck_dropout: dropout rate at the end of the bottleneck.
      batch_norm_momentum: running-average momentum (flax convention).
      dtype: computation dtype, e.g. ``jnp.bfloat16`` for mixed precision.
      param_dtype: parameter dtype.
      rngs: random streams used for parameter initialisation only.
    """
    if num_classes < 1:
      raise ValueError(
          f"num_classes must be a positive integer, got {num_classes}."
      )
    self.backbone = backbone
    self.bottleneck = Bottleneck(
        backbone_dim,
        bottleneck_dim,
        use_batch_norm=bottleneck_batch_norm,
        dropout_rate=bottleneck_dropout,
        batch_norm_momentum=batch_norm_momentum,
        dtype=dtype,
        param_dtype=param_dtype,
        rngs=rngs,
    )
    self.head = nnx.Linear(
        self.bottleneck.out_features,
        num_classes,
        dtype=dtype,
        param_dtype=param_dtype,
        rngs=rngs,
    )
    self.backbone_dim = backbone_dim
    self.features_dim = self.bottleneck.out_features
    self.num_classes = num_classes

  def __call__(
      self, inputs: jax.Array, *, train: bool, rngs: nnx.Rngs | None = None
  ) -> ModelOutput:
    """Runs backbone, bottleneck and head.

    Args:
      inputs: a batch of inputs, ``(batch, *input_shape)``.
      train: training mode: BatchNorm normalises with batch statistics and
        updates its running averages, dropout is active.
      rngs: random streams for dropout (stream ``dropout`` or the default);
        needed only when ``train`` is True and the model has dropout.

    Returns:
      A :class:`ModelOutput`.
    """
    forward = getattr(self.backbone, "forward_with_feature_maps", None)
    if forward is None:
      backbone_features, feature_maps = self.backbone(inputs, train=train), None
    else:
      backbone_features, feature_maps = forward(inputs, train=train)
    features = self.bottleneck(backbone_features, train=train, rngs=rngs)
    logits = self.head(features)
    return ModelOutput(
        backbone_features=backbone_features,
        features=features,
        logits=logits,
        feature_maps=feature_maps,
    )
