"""Negative transfer: does transferring make the target worse than not transferring?

Following Wang et al. (CVPR 2019, "Characterizing and avoiding negative
transfer"), the negative-transfer gap of a transfer method is

    gap = ε(transfer) − ε(target only)

the target test error of the transferred model minus that of the same model
trained on the target data alone; a positive gap is negative transfer. Over
seeds (paired: the same seed draws the same labeled target examples and
initialisation for both), the mean gap comes with a Student-t confidence
interval on the paired differences; an interval entirely above zero is
evidence of negative transfer, one entirely below zero of positive transfer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from scipy import stats


class _TransferGapFields(NamedTuple):
  gap: float
  low: float
  high: float
  num_seeds: int


class TransferGap(_TransferGapFields):
  """``gap`` = mean ε(transfer) − ε(target only), with its confidence interval.

  Constructing one checks its fields: finite numbers with ``low <= gap <=
  high`` and ``gap`` in ``[-1, 1]`` (a difference of error rates; the
  interval may reach beyond), and ``num_seeds`` an int >= 1; a ValueError
  names the field otherwise.
  """

  __slots__ = ()

  def __new__(
      cls, gap: float, low: float, high: float, num_seeds: int
  ) -> "TransferGap":
    values = {}
    for name, value in (("gap", gap), ("low", low), ("high", high)):
      if (
          isinstance(value, bool)
          or not isinstance(value, (int, float, np.integer, np.floating))
          or not math.isfinite(value)
      ):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
      values[name] = float(value)
    if not -1 <= values["gap"] <= 1:
      raise ValueError(
          f"gap must lie in [-1, 1] (a difference of error rates), got {gap}"
      )
    if not values["low"] <= values["gap"] <= values["high"]:
      raise ValueError(
          f"low <= gap <= high must hold, got low={low}, gap={gap}, "
          f"high={high}"
      )
    if (
        isinstance(num_seeds, bool)
        or not isinstance(num_seeds, (int, np.integer))
        or num_seeds < 1
    ):
      raise ValueError(f"num_seeds must be an int >= 1, got {num_seeds!r}")
    return super().__new__(
        cls, values["gap"], values["low"], values["high"], int(num_seeds)
    )

  @property
  def verdict(self) -> str:
    """``"negative transfer"``, ``"positive transfer"`` or ``"inconclusive"``.

    A single seed is always ``"inconclusive"``: its interval is the point
    (there is no spread to estimate), which is no evidence either way.
    """
    if self.num_seeds < 2:
      return "inconclusive"
    if self.low > 0:
      return "negative transfer"
    if self.high < 0:
      return "positive transfer"
    return "inconclusive"


def negative_transfer_gap(
    transfer_errors: Sequence[float],
    target_only_errors: Sequence[float],
    *,
    confidence: float = 0.95,
) -> TransferGap:
  """The gap ε(transfer) − ε(target only) over paired seeds, with a t interval.

  Args:
    transfer_errors: target test errors of the transfer method, one per seed.
    target_only_errors: target test errors of target-only training for the
      same seeds, in the same order.
    confidence: the interval's coverage, in (0, 1).

  Returns:
    A :class:`TransferGap`; with a single seed the interval is the point
    and the verdict ``"inconclusive"``.

  Raises:
    ValueError: on a malformed argument (not a non-empty 1-D sequence of
      error rates in ``[0, 1]``, unpaired, ``confidence`` not a number in
      ``(0, 1)``); the message names it.
  """
  transfer = _as_errors(transfer_errors, "transfer_errors")
  reference = _as_errors(target_only_errors, "target_only_errors")
  if transfer.ndim != 1 or transfer.size == 0:
    raise ValueError(
        f"transfer_errors must be a non-empty 1-D sequence, got "
        f"shape {transfer.shape}"
    )
  if reference.shape != transfer.shape:
    raise ValueError(
        f"target_only_errors must pair with transfer_errors "
        f"(shape {transfer.shape}), got shape {reference.shape}"
    )
  for name, values in (
      ("transfer_errors", transfer),
      ("target_only_errors", reference),
  ):
    if not np.all(np.isfinite(values)) or np.any((values < 0) | (values > 1)):
      raise ValueError(f"{name} must be error rates in [0, 1], got {values}")
  if (
      isinstance(confidence, bool)
      or not isinstance(confidence, (int, float, np.integer, np.floating))
      or not 0 < confidence < 1
  ):
    raise ValueError(
        f"confidence must be in (0, 1) (a number), got {confidence!r}"
    )
  differences = transfer - reference
  gap = float(differences.mean())
  if differences.size == 1:
    return TransferGap(gap, gap, gap, 1)
  half_width = float(
      stats.t.ppf(0.5 + confidence / 2, differences.size - 1)
      * differences.std(ddof=1)
      / np.sqrt(differences.size)
  )
  return TransferGap(gap, gap - half_width, gap + half_width, differences.size)


def _as_errors(values: Sequence[float], argument: str) -> np.ndarray:
  """``values`` as a float64 array; a ValueError naming ``argument`` if not numbers."""
  try:
    array = np.asarray(values)
  except (TypeError, ValueError) as error:
    raise ValueError(
        f"{argument} must be a 1-D sequence of error rates ({error})"
    ) from None
  if array.dtype.kind not in "iuf":
    raise ValueError(
        f"{argument} must hold real numbers (error rates in [0, 1]), got "
        f"dtype {array.dtype}"
    )
  return array.astype(np.float64)
