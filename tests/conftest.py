"""Shared fixtures and helpers: one prepared data dir, small run configs."""

import os
import tempfile

import hypothesis
import jax
import pytest

from tljax.config import base_config


def pytest_configure(config):
  """One persistent XLA compilation cache for the session and its subprocesses.

  Many tests train the same small models; each run builds new jitted
  closures, so without it identical programs would compile again and again.
  """
  del config
  cache = os.environ.setdefault(
      "JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="tljax-xla-cache-")
  )
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
  jax.config.update("jax_compilation_cache_dir", cache)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)


# Property-based tests: a fixed example budget and a derandomized search, so
# the suite is reproducible and its cost bounded (each new shape compiles).
hypothesis.settings.register_profile(
    "tljax",
    max_examples=20,
    deadline=None,
    derandomize=True,
    suppress_health_check=[
        hypothesis.HealthCheck.too_slow,
        hypothesis.HealthCheck.data_too_large,
    ],
)
hypothesis.settings.load_profile(
    os.environ.get("TLJAX_HYPOTHESIS_PROFILE", "tljax")
)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
  """A TFDS data dir shared by the whole session (digits prepared once)."""
  return str(tmp_path_factory.mktemp("tfds"))


def small_config(data_dir, **overrides):
  """A fast run config: one seed, no baselines, no progress bar.

  ``overrides`` are dotted config keys with ``__`` for the dots, e.g.
  ``model__name="lenet"``.
  """
  config = base_config()
  config.data_dir = data_dir
  config.progress_bar = False
  config.seeds = (0,)
  config.baselines = ()
  config.eval_every = 0
  for key, value in overrides.items():
    *parents, last = key.split("__")
    node = config
    for parent in parents:
      node = node[parent]
    node[last] = value
  return config
