r"""DELTA: feature maps kept near the pretrained model's, weighted by channel attention.

Li et al., ICLR 2019: :func:`delta` is the penalty, with the channel weights
of :func:`delta_channel_attention`.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from tljax.checks import (
    check_int,
    check_non_negative,
    check_positive,
    is_traced,
)
from tljax.params.regularizers._checks import (
    as_float,
    check_array,
    check_finite,
    check_finite_result,
)

__all__ = ["delta", "delta_channel_attention"]


def delta(
    feature_maps: jax.Array,
    start_feature_maps: jax.Array,
    *,
    channel_weights: jax.Array | None = None,
    alpha: float = 0.01,
) -> jax.Array:
  r"""DELTA: attention-weighted distance to the pretrained feature maps.

  Li, Xiong, Wang, Rao, Liu, Chen and Huan, "DELTA: DEep Learning Transfer
  using Feature Map with Attention for convolutional networks", ICLR 2019::

    Ω(w, w⁰, x) = Σ_j W_j ‖FM_j(w, x) − FM_j(w⁰, x)‖²

  where ``FM_j(w, x)`` is channel ``j`` of the feature map the network with
  parameters ``w`` computes for input ``x`` (the fine-tuned network) and
  ``w⁰`` the pretrained one, and ``W_j`` the channel's attention weight
  (:func:`delta_channel_attention`). The normalisation follows the authors'
  code (lixingjian/DELTA, ``train.py``, ``reg_att_fea_map``), which sums over
  the batch and averages over spatial positions::

    α · ½ Σ_n Σ_j C · W_nj · (1 / (H W)) Σ_{h,w} (FM(w, x_n) − FM(w⁰, x_n))²_hwj

  for NHWC maps of shape ``(N, H, W, C)``. The factor ``C`` makes uniform
  weights ``W_j = 1/C`` (the default) weigh every channel by one. Because the
  batch is summed, not averaged, the term grows with the batch size, as in
  the reference, whose ``α = 0.01`` went with batches of 64 (``run.sh``; 0.1
  on Stanford Dogs). The paper's full objective adds an L2 penalty on the
  new parameters, ``β/2 ‖w_S̄‖²`` with ``β = 0.01`` in the reference; with
  tljax::

    loss = (cross_entropy
            + delta(outputs.feature_maps, start_outputs.feature_maps,
                    channel_weights=attention)
            + l2_sp(params, pretrained_backbone, alpha=0.0, beta=0.01))

  where ``start_outputs`` is the pretrained model applied to the same batch
  (in evaluation mode, as the reference does).

  Deviations: the reference regularises four layers of a ResNet (the output
  of the last block's last convolution, before BatchNorm, in each stage); a
  tljax model exposes one map, :attr:`ModelOutput.feature_maps` (the last
  stage's output for ResNets); for several layers, add one ``delta`` term per
  layer. The paper writes ``W_j`` as depending on the example; the reference
  computes one weight vector per layer from a few training batches. Both are
  accepted here: ``channel_weights`` of shape ``(C,)`` or ``(N, C)``.

  Args:
    feature_maps: ``(N, H, W, C)`` feature maps of the network being
      fine-tuned.
    start_feature_maps: the pretrained network's feature maps for the same
      inputs, same shape; a constant (no gradient flows into it).
    channel_weights: attention weights ``W``, shape ``(C,)`` or ``(N, C)``,
      normally summing to one over channels; None for uniform ``1/C``.
    alpha: the trade-off weight, >= 0.

  Returns:
    The scalar penalty (float32 or wider).

  Raises:
    ValueError: if ``feature_maps`` is None, not rank 4, has an empty axis
      or is not real, shapes differ, ``channel_weights`` has the wrong shape,
      or, when concrete, an array is not finite, a channel weight is
      negative or the penalty overflows; or if ``alpha`` is negative.
  """
  check_non_negative(alpha, "alpha")
  if feature_maps is None:
    raise ValueError(
        "feature_maps is None: the model exposes no spatial feature map (an MLP "
        "backbone); DELTA needs (batch, height, width, channels) maps."
    )
  feature_maps = check_array(feature_maps, "feature_maps")
  shape = tuple(feature_maps.shape)
  if len(shape) != 4 or 0 in shape:
    raise ValueError(
        f"feature_maps must have shape (batch, height, width, channels) (NHWC) "
        f"with no empty axis, got shape {shape}."
    )
  if (
      start_feature_maps is None
      or tuple(jnp.shape(start_feature_maps)) != shape
  ):
    start_shape = (
        None if start_feature_maps is None else jnp.shape(start_feature_maps)
    )
    raise ValueError(
        f"start_feature_maps must have the shape of feature_maps {shape}, got "
        f"{start_shape}."
    )
  start_feature_maps = check_array(start_feature_maps, "start_feature_maps")
  batch, height, width, channels = shape
  if channel_weights is None:
    weights = jnp.full((channels,), 1.0 / channels, jnp.float32)
  else:
    weights = as_float(check_array(channel_weights, "channel_weights"))
    if weights.shape not in ((channels,), (batch, channels)):
      raise ValueError(
          f"channel_weights must have shape ({channels},) or ({batch}, {channels}), "
          f"got shape {weights.shape}."
      )
    if not is_traced(weights) and bool(np.any(np.asarray(weights) < 0)):
      raise ValueError("channel_weights must be non-negative.")
  difference = as_float(feature_maps) - jax.lax.stop_gradient(
      as_float(start_feature_maps)
  )
  # (N, C): the mean over spatial positions of each channel's squared change.
  per_channel = jnp.sum(jnp.square(difference), axis=(1, 2)) / (height * width)
  return check_finite_result(
      alpha * 0.5 * channels * jnp.sum(weights * per_channel),
      "delta overflows: the penalty of these feature_maps and "
      "start_feature_maps is not finite in float32 (differences of order 1e19 "
      "or more); rescale them or reduce alpha.",
  )


def delta_channel_attention(
    loss_fn: Callable[[jax.Array], jax.Array],
    num_channels: int,
    *,
    temperature: float = 5.0,
    standardize: bool = True,
    batch_size: int | None = None,
) -> jax.Array:
  r"""DELTA's supervised channel attention: how much each channel matters.

  Li et al., ICLR 2019 (see :func:`delta`)::

    W_j = softmax_j( L(z(x, w⁰ \ j), y) − L(z(x, w⁰), y) )

  the increase of the target loss when channel ``j`` of the pretrained
  model's feature map is removed, ``w⁰ \ j`` being the pretrained parameters
  with the ``j``-th filter zeroed. It is computed once, before fine-tuning,
  on the target training data.

  The caller builds ``loss_fn(mask)``: the loss of the pretrained model on
  target training data with its feature map's channels multiplied by
  ``mask`` (shape ``(C,)``, 1 keeps a channel, 0 removes it), e.g. by scaling
  the kernel and bias of the layer that produces the map, which is what the
  reference does. This function evaluates it on the all-ones mask and,
  under ``jax.vmap``, on the ``C`` masks that each remove one channel.
  Following the reference (lixingjian/DELTA, ``channel_eval.py`` then
  ``train.py``), the model is the pretrained backbone with a new head first
  fitted on the target data with the backbone frozen, the drops are averaged
  over a few training batches (``loss_fn`` should average over the data it
  sees), standardised over channels (zero mean, unit standard deviation) and
  divided by a temperature of 5 before the softmax. ``temperature=1.0,
  standardize=False`` gives the paper's formula as written.

  For LeNet's ``feature_maps`` (conv2 → ReLU → max pool), zeroing conv2's
  kernel and bias for a channel zeroes that channel of the map::

    def loss_fn(mask):
      conv2 = params["backbone"]["conv2"]
      backbone = dict(params["backbone"], conv2={
          "kernel": conv2["kernel"] * mask, "bias": conv2["bias"] * mask})
      outputs, _ = model.apply(dict(params, backbone=backbone), model_state,
                               images, train=False)
      return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(
          outputs.logits, labels))

    attention = delta_channel_attention(loss_fn, 50)

  Args:
    loss_fn: ``loss_fn(mask) -> loss``, pure and vmappable; ``mask`` is a
      float32 ``(C,)`` array. It returns a scalar (one weight vector, as in
      the reference) or per-example losses ``(N,)`` (per-example weights, as
      the paper's notation allows).
    num_channels: ``C``, the number of channels of the feature map.
    temperature: the softmax temperature, > 0 (5 in the reference).
    standardize: standardise the drops over channels before the softmax (a
      channel-constant set of drops gives uniform weights).
    batch_size: None evaluates the ``C`` masks in one ``jax.vmap``; an int
      evaluates them that many at a time (``jax.lax.map``), bounding memory.

  Returns:
    The weights, shape ``(C,)`` (or ``(N, C)`` for per-example losses),
    non-negative and summing to one over channels; pass them to
    :func:`delta` as ``channel_weights``.

  Raises:
    ValueError: if ``loss_fn`` is not callable or returns neither a scalar nor
      a vector of real numbers, or (when concrete) non-finite losses, or the
      other arguments are out of range.
  """
  if not callable(loss_fn):
    raise ValueError(f"loss_fn must be callable, got {loss_fn!r}.")
  num_channels = check_int(num_channels, "num_channels", minimum=1)
  check_positive(temperature, "temperature")
  if batch_size is not None:
    batch_size = check_int(batch_size, "batch_size", minimum=1)
  if not isinstance(standardize, (bool, np.bool_)):
    raise ValueError(f"standardize must be True or False, got {standardize!r}.")
  full_loss = check_array(
      loss_fn(jnp.ones((num_channels,), jnp.float32)), "loss_fn's loss"
  )
  if full_loss.ndim > 1:
    raise ValueError(
        "loss_fn must return a scalar or per-example losses of shape (batch,), "
        f"got shape {full_loss.shape}."
    )
  one_channel_off = 1.0 - jnp.eye(num_channels, dtype=jnp.float32)
  if batch_size is None:
    losses = jax.vmap(loss_fn)(one_channel_off)
  else:
    losses = jax.lax.map(loss_fn, one_channel_off, batch_size=batch_size)
  losses = check_array(losses, "loss_fn's losses with one channel removed")
  if losses.shape != (num_channels, *full_loss.shape):
    raise ValueError(
        f"loss_fn must return the same shape for every mask: {full_loss.shape} "
        f"for all channels kept, {losses.shape[1:]} with one removed."
    )
  # Channels last: (C,) or (N, C).
  drops = jnp.moveaxis(as_float(losses) - as_float(full_loss), 0, -1)
  check_finite(drops, "loss_fn's loss increases (they overflow)")
  if standardize:
    centred = drops - jnp.mean(drops, axis=-1, keepdims=True)
    spread = jnp.std(drops, axis=-1, keepdims=True)
    drops = jnp.where(
        spread > 0, centred / jnp.where(spread > 0, spread, 1.0), 0.0
    )
  return jax.nn.softmax(drops / temperature, axis=-1)
