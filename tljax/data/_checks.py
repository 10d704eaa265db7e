"""Argument checks shared by the data modules."""

from __future__ import annotations

from typing import Any

import numpy as np


def check_int(value: Any, argument: str, *, minimum: int) -> int:
  """``int(value)`` if ``value`` is an integer ``>= minimum`` (bools are not).

  Raises:
    ValueError: naming ``argument``.
  """
  if (
      isinstance(value, bool)
      or not isinstance(value, (int, np.integer))
      or value < minimum
  ):
    raise ValueError(f"{argument} must be an int >= {minimum}, got {value!r}.")
  return int(value)
