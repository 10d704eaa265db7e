"""Checks shared by :mod:`tljax.unsupervised`; each raises a ValueError naming the argument."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


def check_key(key: Any, argument: str = "key") -> jax.Array:
  """A single ``jax.random`` key (typed, or a legacy ``uint32[2]``), as a typed key."""
  if isinstance(key, jax.Array):
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key) and key.shape == ():
      return key
    if key.dtype == jnp.uint32 and key.shape == (2,):
      return jax.random.wrap_key_data(key)
  raise ValueError(f"{argument} must be a single jax.random key "
                   f"(jax.random.key(seed)), got {key!r}.")
