"""Fine-tuning regularizers: L2-SP, DELTA, BSS and Co-Tuning.

When a model pretrained on a source task is fine-tuned on a small target
task, these terms keep what the source model learned from being overwritten,
each by a different handle:

* :func:`l2_sp` — the *weights* stay near their pretrained values (Li,
  Grandvalet & Davoine, ICML 2018);
* :func:`delta` — the *feature maps* stay near the pretrained model's, channel
  by channel, weighted by :func:`delta_channel_attention` (Li et al.,
  ICLR 2019);
* :func:`batch_spectral_shrinkage` — the smallest singular values of a batch
  of features are shrunk, suppressing the spectral components that transfer
  badly (Chen et al., NeurIPS 2019);
* :func:`cotuning_loss` — the *source head* is kept and trained on source
  labels translated from target labels through a category relationship
  (:func:`cotuning_relationship`, :func:`cotuning_reverse_relationship`; You
  et al., NeurIPS 2020).

Conventions shared by every penalty here:

* Each returns the *weighted* term, ready to add to the task loss
  (``loss = cross_entropy + batch_spectral_shrinkage(features)``); its
  trade-off weight is a keyword-only argument defaulting to the value of the
  authors' released code, and passing 1 gives the bare term.
* They are pure functions of arrays: jit-, vmap- and grad-safe. Shapes are
  checked when traced; hyper-parameters when they are Python numbers (a
  traced hyper-parameter, as in a ``jax.vmap`` sweep, is taken as given); data
  values (label ranges, empty classes, probability rows) when the arrays are
  concrete, i.e. outside ``jax.jit``.
* Reductions run in at least float32, so bfloat16 activations are fine.
* The pretrained side (``start_params``, ``start_feature_maps``) is a
  constant: its gradient is stopped.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from tljax.checks import (check_int, check_labels, check_non_negative,
                          check_positive, check_probability_rows, is_traced)
from tljax.params.tree import flatten_tree
from tljax.solvers import minimize_lbfgs

__all__ = [
  "batch_spectral_shrinkage",
  "cotuning_loss",
  "cotuning_relationship",
  "cotuning_reverse_relationship",
  "delta",
  "delta_channel_attention",
  "l2_sp",
]

# The grid of inverse regularisation strengths the Co-Tuning code searches
# for its reverse approach (thuml/CoTuning, module/relationship_learning.py).
# fmt: off
COTUNING_INVERSE_REGULARIZATIONS = (
  1e4, 3e3, 1e3, 3e2, 1e2, 3e1, 1e1, 3.0, 1.0, 3e-1, 1e-1, 3e-2, 1e-2, 3e-3,
  1e-3, 3e-4, 1e-4,
)
# fmt: on


# --- Argument checks ---------------------------------------------------------


def _as_float(array: Any) -> jax.Array:
  """The array in float32, or wider if it already is (float64 under x64)."""
  array = jnp.asarray(array)
  return array.astype(jnp.promote_types(array.dtype, jnp.float32))


def _check_array(array: Any, argument: str) -> jax.Array:
  """A real (float or integer) array; finite when concrete."""
  if array is None:
    raise ValueError(f"{argument} must be an array of numbers, got None.")
  try:
    array = jnp.asarray(array)
  except (TypeError, ValueError) as error:
    raise ValueError(f"{argument} must be an array of numbers: {error}") from None
  if not (
    jnp.issubdtype(array.dtype, jnp.floating)
    or jnp.issubdtype(array.dtype, jnp.integer)
  ):
    raise ValueError(f"{argument} must hold real numbers, got dtype {array.dtype}.")
  _check_finite(array, argument)
  return array


def _check_finite(array: jax.Array, argument: str) -> None:
  if not is_traced(array) and not bool(np.all(np.isfinite(np.asarray(array)))):
    raise ValueError(f"{argument} must be finite (it holds NaN or infinity).")


def _check_finite_result(value: jax.Array, message: str) -> jax.Array:
  """``value``; when concrete and not finite (an overflow), a ``ValueError``."""
  if not is_traced(value) and not bool(jnp.all(jnp.isfinite(value))):
    raise ValueError(message)
  return value


def _check_probabilities(probabilities: Any, argument: str) -> jax.Array:
  """A ``(batch, classes)`` matrix whose rows are distributions, when concrete."""
  try:
    probabilities = jnp.asarray(probabilities)
  except (TypeError, ValueError) as error:
    raise ValueError(f"{argument} must be an array of numbers: {error}") from None
  if probabilities.ndim != 2 or 0 in probabilities.shape:
    raise ValueError(
      f"{argument} must have shape (num_examples, num_source_classes) with both "
      f"sizes positive, got shape {probabilities.shape}."
    )
  if not jnp.issubdtype(probabilities.dtype, jnp.floating):
    raise ValueError(f"{argument} must hold floats, got dtype {probabilities.dtype}.")
  check_probability_rows(probabilities, argument)
  return probabilities


# --- L2-SP -------------------------------------------------------------------


def l2_sp(
  params: Mapping[str, Any],
  start_params: Mapping[str, Any],
  *,
  alpha: float = 0.1,
  beta: float = 0.01,
) -> jax.Array:
  r"""L2-SP: an L2 penalty towards the pretrained starting point.

  Li, Grandvalet and Davoine, "Explicit inductive bias for transfer learning
  with convolutional networks", ICML 2018::

    Ω(w) = α/2 ‖w_S − w⁰_S‖² + β/2 ‖w_S̄‖²

  where ``w⁰`` are the pretrained (source) parameters, ``S`` the parameters
  transferred from the source model and ``S̄`` the new ones (typically the
  re-initialised head). Here ``S`` is every parameter whose ``a/b/c`` name
  (:func:`tljax.params.tree.flatten`) appears in ``start_params``, ``S̄`` every
  other parameter of ``params``. The gradient is ``α (w − w⁰)`` on transferred
  parameters and ``β w`` on new ones, so only the transferred ones are pulled
  towards their start; plain weight decay (``β w`` everywhere) would pull
  them towards zero instead.

  Defaults: ``alpha=0.1``, ``beta=0.01``, the values of the authors' released
  run script (holyseven/TransferLearningClassification,
  ``run_classification/train.sh``: ``--weight_decay_rate 0.1
  --weight_decay_rate2 0.01`` with ResNet-101 on Stanford Dogs). That code
  penalises only the convolution and linear kernels (its ``weights``
  variables), not biases or BatchNorm parameters; here every leaf of
  ``params`` is penalised, so to do the same pass only the kernels, e.g.
  ``kernels, _ = tljax.params.split(params, [(".*/kernel", 1.0), (".*",
  None)])`` and likewise for ``start_params``.

  DELTA's second term, ``β/2 ‖w_S̄‖²`` on the new parameters alone, is
  ``l2_sp(params, start_params, alpha=0.0, beta=0.01)``.

  Args:
    params: the parameters being fine-tuned, a nested dict of arrays.
    start_params: the pretrained values of the transferred parameters, a
      nested dict holding a subset of ``params``' names with the same shapes
      (for instance the restored backbone, without the new head). Treated as
      a constant (no gradient flows into it).
    alpha: weight of the pull towards the starting point, >= 0.
    beta: weight of the ordinary L2 penalty on the new parameters, >= 0.

  Returns:
    The scalar ``Ω(w)`` (float32, or float64 for float64 parameters).

  Raises:
    ValueError: if ``start_params`` names a parameter that ``params`` lacks or
      whose shape differs (the message names the path), a leaf is not a
      real array or, when concrete, not finite, if ``alpha`` or ``beta`` is
      negative or not finite, or if the concrete penalty overflows.
  """
  check_non_negative(alpha, "alpha")
  check_non_negative(beta, "beta")
  for argument, tree in (("params", params), ("start_params", start_params)):
    if not isinstance(tree, Mapping):
      raise ValueError(
        f"{argument} must be a nested mapping of arrays, got {type(tree).__name__}."
      )
  flat_params = flatten_tree(params, "params")
  flat_start = flatten_tree(start_params, "start_params")
  for argument, flat in (("params", flat_params), ("start_params", flat_start)):
    for name, leaf in flat.items():
      _check_array(leaf, f"{argument} path {name!r}")
  unknown = sorted(set(flat_start) - set(flat_params))
  if unknown:
    raise ValueError(
      f"start_params has parameters that params lacks: {unknown}; start_params "
      "must hold a subset of params' names."
    )
  for name, start in flat_start.items():
    if jnp.shape(start) != jnp.shape(flat_params[name]):
      raise ValueError(
        f"start_params path {name!r} has shape {jnp.shape(start)}, params has "
        f"{jnp.shape(flat_params[name])}."
      )
  transferred, new = [], []
  for name, leaf in flat_params.items():
    leaf = _as_float(leaf)
    if name in flat_start:
      start = jax.lax.stop_gradient(_as_float(flat_start[name]))
      transferred.append(jnp.sum(jnp.square(leaf - start)))
    else:
      new.append(jnp.sum(jnp.square(leaf)))
  transferred_norm = sum(transferred, jnp.zeros((), jnp.float32))
  new_norm = sum(new, jnp.zeros((), jnp.float32))
  return _check_finite_result(
    0.5 * alpha * transferred_norm + 0.5 * beta * new_norm,
    "l2_sp overflows: the penalty of these params and start_params is not "
    "finite in float32 (values of order 1e19 or more); rescale them or "
    "reduce alpha and beta.",
  )


# --- DELTA -------------------------------------------------------------------


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
  feature_maps = _check_array(feature_maps, "feature_maps")
  shape = tuple(feature_maps.shape)
  if len(shape) != 4 or 0 in shape:
    raise ValueError(
      f"feature_maps must have shape (batch, height, width, channels) (NHWC) "
      f"with no empty axis, got shape {shape}."
    )
  if start_feature_maps is None or tuple(jnp.shape(start_feature_maps)) != shape:
    start_shape = None if start_feature_maps is None else jnp.shape(start_feature_maps)
    raise ValueError(
      f"start_feature_maps must have the shape of feature_maps {shape}, got "
      f"{start_shape}."
    )
  start_feature_maps = _check_array(start_feature_maps, "start_feature_maps")
  batch, height, width, channels = shape
  if channel_weights is None:
    weights = jnp.full((channels,), 1.0 / channels, jnp.float32)
  else:
    weights = _as_float(_check_array(channel_weights, "channel_weights"))
    if weights.shape not in ((channels,), (batch, channels)):
      raise ValueError(
        f"channel_weights must have shape ({channels},) or ({batch}, {channels}), "
        f"got shape {weights.shape}."
      )
    if not is_traced(weights) and bool(np.any(np.asarray(weights) < 0)):
      raise ValueError("channel_weights must be non-negative.")
  difference = _as_float(feature_maps) - jax.lax.stop_gradient(
    _as_float(start_feature_maps)
  )
  # (N, C): the mean over spatial positions of each channel's squared change.
  per_channel = jnp.sum(jnp.square(difference), axis=(1, 2)) / (height * width)
  return _check_finite_result(
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
  full_loss = _check_array(
    loss_fn(jnp.ones((num_channels,), jnp.float32)), "loss_fn's loss")
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
  losses = _check_array(losses, "loss_fn's losses with one channel removed")
  if losses.shape != (num_channels, *full_loss.shape):
    raise ValueError(
      f"loss_fn must return the same shape for every mask: {full_loss.shape} "
      f"for all channels kept, {losses.shape[1:]} with one removed."
    )
  # Channels last: (C,) or (N, C).
  drops = jnp.moveaxis(_as_float(losses) - _as_float(full_loss), 0, -1)
  _check_finite(drops, "loss_fn's loss increases (they overflow)")
  if standardize:
    centred = drops - jnp.mean(drops, axis=-1, keepdims=True)
    spread = jnp.std(drops, axis=-1, keepdims=True)
    drops = jnp.where(spread > 0, centred / jnp.where(spread > 0, spread, 1.0), 0.0)
  return jax.nn.softmax(drops / temperature, axis=-1)


# --- Batch Spectral Shrinkage ------------------------------------------------


def batch_spectral_shrinkage(
  features: jax.Array, *, k: int = 1, eta: float = 0.001
) -> jax.Array:
  r"""Batch Spectral Shrinkage (BSS): shrink the smallest singular values.

  Chen, Wang, Fu, Long and Wang, "Catastrophic forgetting meets negative
  transfer: batch spectral shrinkage for safe transfer learning",
  NeurIPS 2019::

    L_bss(F) = η Σ_{i=1}^{k} σ²_{−i}

  where ``σ_{−i}`` is the ``i``-th smallest singular value of the
  ``(batch, dim)`` feature matrix ``F`` of a mini-batch. Small singular
  values carry the spectral components that transfer worst; shrinking them
  limits negative transfer. Defaults ``k=1``, ``η=0.001`` as in the authors'
  code (thuml/Batch-Spectral-Shrinkage, ``BSS.py``: ``0.001*BSS`` with one
  singular value; also the Transfer-Learning-Library's defaults), which
  applies it to the pooled backbone features of each batch (in tljax,
  ``ModelOutput.backbone_features``).

  The singular values come from ``jnp.linalg.svd(..., compute_uv=False)``,
  whose derivative ``dσ_i = u_iᵀ dF v_i`` is well defined even when singular
  values repeat (the singular-vector derivatives, which are not, are not
  needed), and which keeps the small singular values accurate, which the
  eigenvalues of ``FᵀF`` would not in float32. ``F`` has
  ``min(batch, dim)`` singular values.

  Args:
    features: ``(batch, dim)`` features.
    k: how many of the smallest singular values to penalise,
      ``1 <= k <= min(batch, dim)``.
    eta: the trade-off weight, >= 0.

  Returns:
    The scalar penalty (float32 or wider).

  Raises:
    ValueError: if ``features`` is not a non-empty real matrix or, when
      concrete, not finite, ``k`` is out of range, ``eta`` negative, or the
      concrete penalty overflows.
  """
  features = _check_array(features, "features")
  shape = tuple(features.shape)
  if len(shape) != 2 or 0 in shape:
    raise ValueError(
      f"features must have shape (batch, dim) with both sizes positive, got "
      f"shape {shape}."
    )
  k = check_int(k, "k", minimum=1)
  if k > min(shape):
    raise ValueError(
      f"k must be at most min(batch, dim) = {min(shape)} (the number of "
      f"singular values of features with shape {shape}), got {k}."
    )
  check_non_negative(eta, "eta")
  singular_values = jnp.linalg.svd(_as_float(features), compute_uv=False)
  return _check_finite_result(
    eta * jnp.sum(jnp.square(singular_values[-k:])),  # sorted descending
    "batch_spectral_shrinkage overflows: the squared singular values of "
    "these features are not finite in float32 (features of order 1e19 or "
    "more); rescale them or reduce eta.",
  )


# --- Co-Tuning ---------------------------------------------------------------


def cotuning_relationship(
  source_probabilities: jax.Array,
  target_labels: jax.Array,
  *,
  num_target_classes: int,
) -> jax.Array:
  r"""Co-Tuning's category relationship ``p(y_s | y_t)``, direct approach.

  You, Kou, Long and Wang, "Co-Tuning for transfer learning", NeurIPS 2020.
  Co-Tuning keeps the pretrained source head and translates each target
  label into a distribution over source classes, ``p(y_s | y_t)``, learned
  from the pretrained model's predictions on the target training data. The
  direct approach averages those predictions per target class::

    p(y_s | y_t = c) = (1 / n_c) Σ_{i : y_t,i = c} p_s(y_s | x_i)

  Deviation: the authors' released code (thuml/CoTuning, ``train.py``) uses
  the paper's *reverse* approach, available as
  :func:`cotuning_reverse_relationship`; this direct one is what the
  Transfer-Learning-Library ships (``tllib``'s Co-Tuning
  ``get_category_relationship``), needs no validation split and is jittable.
  The paper learns the relationship from calibrated source predictions; the
  authors calibrate their ImageNet model by temperature scaling (logits
  times 0.884) before the softmax, so pass calibrated probabilities.

  Args:
    source_probabilities: ``(N, C_s)`` predicted source-class probabilities
      of the pretrained model (its source head, evaluation mode) on the
      target training examples; rows sum to one.
    target_labels: ``(N,)`` integer target labels in
      ``[0, num_target_classes)``.
    num_target_classes: ``C_t``; every class needs at least one example.

  Returns:
    ``(C_t, C_s)`` float32 matrix; row ``c`` is ``p(y_s | y_t = c)`` and sums
    to one. Pass it to :func:`cotuning_loss`.

  Raises:
    ValueError: on a shape mismatch, probability rows that are not
      distributions, labels out of range, or a target class without examples
      (value checks run on concrete arrays, not under ``jax.jit``).
  """
  num_target_classes = check_int(num_target_classes, "num_target_classes", minimum=1)
  source_probabilities = _check_probabilities(
    source_probabilities, "source_probabilities"
  )
  target_labels, _ = check_labels(
    target_labels,
    "target_labels",
    length=source_probabilities.shape[0],
    length_of="source_probabilities",
    num_classes=num_target_classes,
    num_classes_argument="num_target_classes",
  )
  _check_every_class_present(target_labels, num_target_classes)
  one_hot = jax.nn.one_hot(target_labels, num_target_classes, dtype=jnp.float32)
  sums = one_hot.T @ _as_float(source_probabilities)
  counts = jnp.sum(one_hot, axis=0)
  return sums / counts[:, None]


def _check_every_class_present(target_labels: jax.Array, num_target_classes: int):
  if is_traced(target_labels):
    return
  counts = np.bincount(np.asarray(target_labels), minlength=num_target_classes)
  empty = np.flatnonzero(counts == 0).tolist()
  if empty:
    raise ValueError(
      f"target_labels has no example of target classes {empty}; the "
      "relationship p(y_s | y_t) needs every class."
    )


def cotuning_reverse_relationship(
  source_probabilities: jax.Array,
  target_labels: jax.Array,
  validation_probabilities: jax.Array,
  validation_labels: jax.Array,
  *,
  num_target_classes: int,
  inverse_regularizations: Sequence[float] = COTUNING_INVERSE_REGULARIZATIONS,
  max_iterations: int = 500,
) -> jax.Array:
  r"""Co-Tuning's category relationship ``p(y_s | y_t)``, reverse approach.

  You et al., NeurIPS 2020 (see :func:`cotuning_relationship`). Instead of
  averaging source predictions, the reverse approach learns the easier
  direction ``p(y_t | y_s)`` with a classifier from source-class
  probabilities to target labels, then applies Bayes' rule with the source
  marginal ``p(y_s)``::

    p(y_s | y_t) ∝ p(y_t | y_s) p(y_s)

  Steps, as in the authors' code (thuml/CoTuning,
  ``module/relationship_learning.py``, ``relationship_learning``):

  1. fit a multinomial logistic regression without intercept, weights
     ``V`` of shape ``(C_s, C_t)``, on the training probabilities for each
     inverse regularisation strength ``c`` (minimising
     ``c Σ_i CE(p_i V, y_i) + ½ ‖V‖²``, scikit-learn's objective), and keep
     the one with the best validation accuracy (the first, on ties);
  2. calibrate it: the temperature ``s`` minimising the validation
     cross-entropy of ``s · p V``;
  3. ``p(y_t | y_s = i) = softmax(s V_i)``, the classifier's prediction for
     a one-hot source class ``i``;
  4. ``p(y_s)``: the mean source probabilities over training and validation
     examples; then normalise ``p(y_t | y_s) p(y_s)`` over source classes.

  Differences from that code: the regressions are solved with
  ``optax.lbfgs`` (run to a gradient tolerance or ``max_iterations``) rather
  than scikit-learn's L-BFGS, and the temperature by ``optax.lbfgs`` rather
  than PyTorch's; the code's fixed ImageNet temperature (logits times 0.884
  before the softmax) is the caller's to apply when computing
  ``source_probabilities``.

  Args:
    source_probabilities: ``(N, C_s)`` pretrained source-head probabilities
      on the target training examples (rows sum to one).
    target_labels: ``(N,)`` their target labels.
    validation_probabilities: ``(M, C_s)`` the same on held-out target
      examples, used to pick the regularisation and the temperature (a split
      of the target *training* data, never its test data).
    validation_labels: ``(M,)`` their labels.
    num_target_classes: ``C_t``; every class needs a training example.
    inverse_regularizations: candidate strengths ``c`` (> 0), searched in
      order; default: the authors' grid, ``1e4`` down to ``1e-4``.
    max_iterations: L-BFGS iteration cap per regression.

  Returns:
    ``(C_t, C_s)`` float32 matrix whose rows sum to one, for
    :func:`cotuning_loss`.

  Raises:
    ValueError: on shape mismatches, invalid probabilities or labels, an
      empty target class, or a non-positive regularisation strength.
  """
  num_target_classes = check_int(num_target_classes, "num_target_classes", minimum=1)
  max_iterations = check_int(max_iterations, "max_iterations", minimum=1)
  source_probabilities = _check_probabilities(
    source_probabilities, "source_probabilities"
  )
  validation_probabilities = _check_probabilities(
    validation_probabilities, "validation_probabilities"
  )
  num_source_classes = source_probabilities.shape[1]
  if validation_probabilities.shape[1] != num_source_classes:
    raise ValueError(
      f"validation_probabilities must have {num_source_classes} columns like "
      f"source_probabilities, got shape {validation_probabilities.shape}."
    )
  target_labels, _ = check_labels(
    target_labels,
    "target_labels",
    length=source_probabilities.shape[0],
    length_of="source_probabilities",
    num_classes=num_target_classes,
    num_classes_argument="num_target_classes",
  )
  validation_labels, _ = check_labels(
    validation_labels,
    "validation_labels",
    length=validation_probabilities.shape[0],
    length_of="validation_probabilities",
    num_classes=num_target_classes,
    num_classes_argument="num_target_classes",
  )
  _check_every_class_present(target_labels, num_target_classes)
  if (
    isinstance(inverse_regularizations, (str, bytes))
    or not isinstance(inverse_regularizations, Sequence)
    or not inverse_regularizations
  ):
    raise ValueError(
      "inverse_regularizations must be a non-empty sequence of positive numbers, "
      f"got {inverse_regularizations!r}."
    )
  for strength in inverse_regularizations:
    check_positive(strength, "inverse_regularizations")

  train = _as_float(source_probabilities)
  return _reverse_relationship(
    train,
    jax.nn.one_hot(target_labels, num_target_classes, dtype=train.dtype),
    _as_float(validation_probabilities),
    validation_labels,
    jnp.asarray(inverse_regularizations, train.dtype),
    max_iterations=max_iterations,
  )


@functools.partial(jax.jit, static_argnames="max_iterations")
def _reverse_relationship(
  train, train_targets, validation, validation_labels, strengths, *, max_iterations
):
  """The computation of :func:`cotuning_reverse_relationship`, compiled once."""
  validation_targets = jax.nn.one_hot(
    validation_labels, train_targets.shape[1], dtype=train.dtype
  )

  def fit(strength):
    return _fit_logistic_regression(
      train, train_targets, strength, max_iterations=max_iterations
    )

  coefficients = jax.vmap(fit)(strengths)  # (num_strengths, C_s, C_t)
  validation_logits = jnp.einsum("ms,kst->kmt", validation, coefficients)
  accuracies = jnp.mean(
    jnp.argmax(validation_logits, axis=-1) == validation_labels, axis=-1
  )
  best = jnp.argmax(accuracies)  # the first best, as numpy's argmax
  coefficient = coefficients[best]
  temperature = _calibrate_temperature(
    validation_logits[best], validation_targets, max_iterations=max_iterations
  )
  target_given_source = jax.nn.softmax(coefficient * temperature, axis=1)
  source_marginal = jnp.mean(jnp.concatenate([train, validation]), axis=0)
  joint = (target_given_source * source_marginal[:, None]).T  # (C_t, C_s)
  return joint / jnp.sum(joint, axis=1, keepdims=True)


def _fit_logistic_regression(inputs, targets, strength, *, max_iterations):
  """``argmin_V strength Σ_i CE(x_i V, t_i) + ½ ‖V‖²``, no intercept.

  The objective is divided by ``strength · N`` (same minimiser) so that the
  gradient tolerance does not depend on the data size or the strength.
  """
  num_examples = inputs.shape[0]

  def objective(coefficients):
    cross_entropy = jnp.mean(
      optax.softmax_cross_entropy(inputs @ coefficients, targets)
    )
    penalty = jnp.sum(jnp.square(coefficients)) / (2 * strength * num_examples)
    return cross_entropy + penalty

  initial = jnp.zeros((inputs.shape[1], targets.shape[1]), inputs.dtype)
  return minimize_lbfgs(objective, initial, max_iterations=max_iterations, tolerance=1e-6)


def _calibrate_temperature(logits, targets, *, max_iterations):
  """The scale ``s`` minimising the mean cross-entropy of ``s · logits``."""

  def objective(scale):
    return jnp.mean(optax.softmax_cross_entropy(logits * scale, targets))

  return minimize_lbfgs(
    objective, jnp.ones((), logits.dtype), max_iterations=max_iterations, tolerance=1e-7
  )


def cotuning_loss(
  source_logits: jax.Array,
  target_labels: jax.Array,
  relationship: jax.Array,
  *,
  trade_off: float = 2.3,
) -> jax.Array:
  r"""Co-Tuning's source-head loss: cross-entropy to translated source labels.

  You et al., NeurIPS 2020 (see :func:`cotuning_relationship`). The
  fine-tuned model keeps the pretrained source head next to its new target
  head; besides the target cross-entropy, the source head is trained on the
  soft source labels ``p(y_s | y_t)`` of each example's target label::

    λ · (1/N) Σ_n CE(relationship[y_t,n], softmax(source_logits_n))
      = −λ · (1/N) Σ_n Σ_s relationship[y_t,n, s] log softmax(source_logits_n)_s

  so the full objective is ``cross_entropy(target_logits, target_labels) +
  cotuning_loss(source_logits, target_labels, relationship)``. Default
  ``λ = 2.3``, the trade-off of the authors' code (thuml/CoTuning,
  ``train.py`` and its README) and of the Transfer-Learning-Library's
  example.

  Args:
    source_logits: ``(N, C_s)`` logits of the source head on the batch.
    target_labels: ``(N,)`` integer target labels. Checked to lie in
      ``[0, C_t)`` when concrete; under ``jax.jit`` an out-of-range label
      makes the loss NaN rather than silently reading another row.
    relationship: ``(C_t, C_s)`` matrix from :func:`cotuning_relationship` or
      :func:`cotuning_reverse_relationship`; a constant (no gradient).
    trade_off: ``λ``, >= 0.

  Returns:
    The scalar loss (float32 or wider).

  Raises:
    ValueError: on shape mismatches, labels out of range or a negative
      ``trade_off``; when concrete, non-finite logits or relationship, a
      relationship whose rows are not distributions, or a loss that
      overflows.
  """
  check_non_negative(trade_off, "trade_off")
  source_logits = _check_array(source_logits, "source_logits")
  logits_shape = tuple(source_logits.shape)
  if len(logits_shape) != 2 or 0 in logits_shape:
    raise ValueError(
      f"source_logits must have shape (batch, num_source_classes), got shape "
      f"{logits_shape}."
    )
  relationship = _check_array(relationship, "relationship")
  relationship_shape = tuple(relationship.shape)
  if (len(relationship_shape) != 2 or relationship_shape[1] != logits_shape[1]
      or relationship_shape[0] == 0):
    raise ValueError(
      f"relationship must have shape (num_target_classes, {logits_shape[1]}) to "
      f"match source_logits, got shape {relationship_shape}."
    )
  check_probability_rows(relationship, "relationship")
  target_labels, _ = check_labels(
    target_labels,
    "target_labels",
    length=logits_shape[0],
    length_of="source_logits",
    num_classes=relationship_shape[0],
    num_classes_argument="num_target_classes",
  )
  soft_labels = jnp.take(
    jax.lax.stop_gradient(_as_float(relationship)),
    target_labels,
    axis=0,
    mode="fill",
    fill_value=jnp.nan,
  )
  log_probabilities = jax.nn.log_softmax(_as_float(source_logits), axis=-1)
  # A source class with soft label 0 adds 0, never 0 · ∞ = NaN when its
  # log-probability underflows to -∞ (logits spread beyond the float range).
  terms = jnp.where(soft_labels == 0, 0.0, soft_labels * log_probabilities)
  return _check_finite_result(
    trade_off * -jnp.mean(jnp.sum(terms, axis=-1)),
    "cotuning_loss overflows: the cross-entropy of these source_logits "
    "against the relationship's soft labels is not finite in float32 "
    "(logits spread by 1e38 or more); rescale the source_logits.",
  )
