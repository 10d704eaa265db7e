"""Shared fixtures and helpers: one prepared data dir, small run configs."""

import pytest

from tljax.config import base_config


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
