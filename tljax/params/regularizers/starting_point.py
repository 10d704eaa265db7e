r"""L2-SP: an L2 penalty that keeps fine-tuned weights near their pretrained values.

Li, Grandvalet and Davoine, ICML 2018: see :func:`l2_sp`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from tljax.checks import check_non_negative
from tljax.params.regularizers._checks import (
    as_float,
    check_array,
    check_finite_result,
)
from tljax.params.tree import flatten_tree

__all__ = ["l2_sp"]


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
      check_array(leaf, f"{argument} path {name!r}")
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
    leaf = as_float(leaf)
    if name in flat_start:
      start = jax.lax.stop_gradient(as_float(flat_start[name]))
      transferred.append(jnp.sum(jnp.square(leaf - start)))
    else:
      new.append(jnp.sum(jnp.square(leaf)))
  transferred_norm = sum(transferred, jnp.zeros((), jnp.float32))
  new_norm = sum(new, jnp.zeros((), jnp.float32))
  return check_finite_result(
      0.5 * alpha * transferred_norm + 0.5 * beta * new_norm,
      "l2_sp overflows: the penalty of these params and start_params is not "
      "finite in float32 (values of order 1e19 or more); rescale them or "
      "reduce alpha and beta.",
  )
