"""tljax train's compilation cache: the seeds of a recipe compile once."""

import os
import subprocess
import sys

import jax

from tljax.cli import commands

PROGRAM = """
import sys
import jax
import jax.numpy as jnp
from tljax.cli import commands

directory = commands.compilation_cache(sys.argv[1])
print(directory)
for scale in (2.0, 2.0):  # two closures, one program: the second is a hit
  jax.jit(lambda x: jnp.sin(x) * scale)(jnp.ones(3)).block_until_ready()
"""


def test_without_a_cache_set_the_work_dir_gets_one(tmp_path):
  env = {
      key: value
      for key, value in os.environ.items()
      if not key.startswith("JAX_")  # no cache chosen by the user
  }
  completed = subprocess.run(
      [sys.executable, "-c", PROGRAM, str(tmp_path / "work")],
      env={**env, "JAX_PLATFORMS": "cpu"},
      capture_output=True,
      text=True,
      timeout=120,
      check=False,
  )
  assert completed.returncode == 0, completed.stderr[-2000:]
  cache = str(tmp_path / "work" / "jax_cache")
  assert completed.stdout.strip() == cache
  # Even a program that compiles in milliseconds is kept (the evaluation's).
  assert os.listdir(cache)


def test_a_cache_the_user_chose_is_kept(tmp_path):
  # conftest chooses one for the test session (JAX_COMPILATION_CACHE_DIR).
  chosen = jax.config.jax_compilation_cache_dir
  assert chosen
  assert commands.compilation_cache(str(tmp_path)) == chosen
  assert jax.config.jax_compilation_cache_dir == chosen
  assert not os.path.exists(tmp_path / "jax_cache")
