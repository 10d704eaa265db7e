"""The denoising autoencoder's objective: corrupt the input, reconstruct it clean.

Vincent, Larochelle, Bengio and Manzagol, "Extracting and composing robust
features with denoising autoencoders", ICML 2008. An input ``x`` is
corrupted into ``x̃ ~ q(x̃ | x)``, encoded, decoded into ``z``, and the loss
compares ``z`` with the *clean* ``x``, so the representation has to capture
the dependencies between input components that let it undo the corruption.

Corruptions (:func:`corrupt`):

* ``"masking"`` (the paper's): for each example, a fixed number ``⌊ν d⌉`` of
  its ``d`` components, chosen at random, are set to 0 (``level`` is ν);
* ``"gaussian"`` (additive isotropic noise, Vincent et al., JMLR 2010):
  ``x̃ = x + σ ε``, ``ε ~ N(0, I)`` (``level`` is σ).

Reconstruction losses (:func:`denoising_autoencoder_loss`), summed over the
input components and averaged over the batch:

* ``"cross_entropy"`` (the paper's, for inputs in [0, 1]):
  ``−Σ_k [x_k log z_k + (1 − x_k) log(1 − z_k)]`` with ``z = sigmoid(r)``
  for the decoder's outputs ``r`` (computed from ``r`` directly, stably);
* ``"squared_error"``: ``Σ_k (x_k − r_k)²`` with the decoder's outputs taken
  as the reconstruction (an affine decoder, for real-valued inputs).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from tljax.align._arrays import as_float, check_choice, check_same_shape
from tljax.checks import check_key, check_non_negative, is_traced

__all__ = [
    "CORRUPTIONS",
    "RECONSTRUCTION_LOSSES",
    "corrupt",
    "denoising_autoencoder_loss",
]

CORRUPTIONS = ("masking", "gaussian")
RECONSTRUCTION_LOSSES = ("cross_entropy", "squared_error")


def _check_batch(array: Any, argument: str) -> jax.Array:
  try:
    array = jnp.asarray(array)
  except TypeError as error:
    raise ValueError(
        f"{argument} must be an array of numbers: {error}"
    ) from None
  if not (
      jnp.issubdtype(array.dtype, jnp.floating)
      or jnp.issubdtype(array.dtype, jnp.integer)
  ):
    raise ValueError(
        f"{argument} must hold real numbers, got dtype " f"{array.dtype}."
    )
  if array.ndim < 2 or 0 in array.shape:
    raise ValueError(
        f"{argument} must have shape (batch, ...) with at least "
        f"one example and one component, got {array.shape}."
    )
  return as_float(array)


def corrupt(
    inputs: Any,
    key: jax.Array,
    *,
    corruption: str = "masking",
    level: float = 0.25,
) -> jax.Array:
  """The corrupted inputs ``x̃ ~ q(x̃ | x)`` (see the module docstring).

  Args:
    inputs: ``(batch, ...)`` clean inputs; each example's components are all
      its trailing axes (pixels and channels of an image).
    key: a ``jax.random`` key.
    corruption: ``"masking"`` or ``"gaussian"``.
    level: the destroyed fraction ν in [0, 1] for masking (0.25, one of the
      destruction levels the paper reports), the noise standard deviation σ
      >= 0 for Gaussian noise.

  Returns:
    Corrupted inputs, same shape and float dtype as ``inputs``.

  Raises:
    ValueError: naming the argument, for non-array or empty inputs, a bad
      key, an unknown corruption or a level out of range.
  """
  inputs = _check_batch(inputs, "inputs")
  key = check_key(key)
  check_choice(corruption, "corruption", CORRUPTIONS)
  check_non_negative(level, "level")
  if corruption == "gaussian":
    return inputs + level * jax.random.normal(key, inputs.shape, inputs.dtype)
  if not is_traced(level) and float(level) > 1:
    raise ValueError(
        f"level must be a fraction in [0, 1] for masking "
        f"corruption, got {level}."
    )
  batch, components = inputs.shape[0], int(np.prod(inputs.shape[1:]))
  # A random rank per component; the ⌊ν d⌉ lowest ranked are destroyed.
  ranks = jnp.argsort(
      jnp.argsort(jax.random.uniform(key, (batch, components)), axis=1), axis=1
  )
  # ⌊ν d⌉ rounds halves up (jnp.round would round them to even).
  destroyed = ranks < jnp.floor(level * components + 0.5)
  return jnp.where(destroyed.reshape(inputs.shape), 0.0, inputs)


def denoising_autoencoder_loss(
    reconstructions: Any,
    clean_inputs: Any,
    *,
    reconstruction_loss: str = "cross_entropy",
) -> jax.Array:
  """Mean over the batch of the summed reconstruction loss against the clean inputs.

  Args:
    reconstructions: ``(batch, ...)`` decoder outputs of the corrupted
      inputs: logits for ``"cross_entropy"``, the reconstruction itself for
      ``"squared_error"``.
    clean_inputs: the uncorrupted inputs, same shape; in [0, 1] for
      ``"cross_entropy"`` (checked when concrete).
    reconstruction_loss: ``"cross_entropy"`` or ``"squared_error"``.

  Returns:
    The scalar loss (see the module docstring).

  Raises:
    ValueError: naming the argument, for empty inputs, mismatched shapes, an
      unknown loss, or (concrete) clean inputs outside [0, 1] for
      cross-entropy.
  """
  reconstructions = _check_batch(reconstructions, "reconstructions")
  clean_inputs = _check_batch(clean_inputs, "clean_inputs")
  check_same_shape(
      reconstructions, clean_inputs, "reconstructions", "clean_inputs"
  )
  check_choice(
      reconstruction_loss, "reconstruction_loss", RECONSTRUCTION_LOSSES
  )
  if reconstruction_loss == "squared_error":
    losses = jnp.square(clean_inputs - reconstructions)
  else:
    if not is_traced(clean_inputs):
      values = np.asarray(clean_inputs)
      if not np.all((values >= 0) & (values <= 1)):
        raise ValueError(
            "clean_inputs must be in [0, 1] for the cross-entropy "
            "reconstruction loss (use 'squared_error' otherwise)."
        )
    losses = optax.sigmoid_binary_cross_entropy(reconstructions, clean_inputs)
  return jnp.mean(jnp.sum(losses.reshape(losses.shape[0], -1), axis=1))
