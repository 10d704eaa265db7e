"""config.model.dtype = "bfloat16": bf16 compute, float32 parameters and optimizer state."""

import jax
import jax.numpy as jnp
import numpy as np

from configs import moons
from tljax.params import flatten, read_checkpoint
from tljax.train.loop import build_model, load_domains, train_and_evaluate


def test_bf16_compute_f32_parameters(tmp_path):
  config = moons.get_config("method=dann,seeds=1")
  config.steps, config.batch_size, config.progress_bar = 10, 64, False
  config.model.dtype = "bfloat16"
  model = build_model(config, load_domains(config))
  params, state = model.init(jax.random.key(0))
  outputs, _ = model.apply(params, state, jnp.ones((4, 2)), train=False)
  assert outputs.features.dtype == jnp.bfloat16
  assert {leaf.dtype for leaf in jax.tree.leaves(params)} == {
      jnp.dtype("float32")
  }
  summary = train_and_evaluate(config, str(tmp_path), seed=0)
  saved, _ = read_checkpoint(str(tmp_path))
  assert {np.asarray(leaf).dtype for leaf in flatten(saved).values()} == {
      np.dtype("float32")
  }
  assert np.isfinite(summary["target_test"]["loss"])
