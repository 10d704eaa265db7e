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


# The files whose tests take longest, run first (in this order; the rest
# keep their order after them): pytest-xdist hands tests out in collection
# order, and a long test handed out last would leave the other worker idle
# for its whole length at the end of the run.
LONGEST_FIRST = (
    "test_quickstart.py",
    "test_tutorial_pretrained.py",
    "test_tutorials.py",
    "test_multiprocess.py",
    "test_reliability.py",
    "test_install.py",
    "test_transfer_methods.py",
    "test_newcomer_tutorials.py",
    "test_adaptation_script.py",
)


def pytest_collection_modifyitems(session, config, items):
  del session, config
  rank = {name: index for index, name in enumerate(LONGEST_FIRST)}
  items.sort(
      key=lambda item: rank.get(
          os.path.basename(str(item.fspath)), len(LONGEST_FIRST)
      )
  )


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
