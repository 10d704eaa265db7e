"""The train state, the shared step, optimizers and checkpoints, on a linear model."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tljax.checkpoint import Checkpointer
from tljax.train.optim import make_optimizer, make_schedule
from tljax.train.state import create_train_state
from tljax.train.step import keyed_by_step, make_train_step

RULES = [("backbone/.*", None), (".*", 1.0)]


def init_params():
  rng = np.random.default_rng(0)
  return {
      "backbone": {
          "kernel": jnp.asarray(rng.normal(size=(3, 4)), jnp.float32),
          "bias": jnp.asarray(rng.normal(size=4), jnp.float32),
      },
      "head": {
          "kernel": jnp.asarray(rng.normal(size=(4, 2)), jnp.float32),
          "bias": jnp.zeros(2, jnp.float32),
      },
  }


def squared_error_loss(params, model_state, batch, key, extras=None):
  del key, extras
  hidden = jnp.tanh(
      batch["x"] @ params["backbone"]["kernel"] + params["backbone"]["bias"]
  )
  prediction = hidden @ params["head"]["kernel"] + params["head"]["bias"]
  loss = 0.5 * jnp.mean(jnp.sum((prediction - batch["y"]) ** 2, axis=-1))
  return loss, (model_state, {"mse": loss})


def make_batch(seed):
  rng = np.random.default_rng(seed)
  return {
      "x": jnp.asarray(rng.normal(size=(8, 3)), jnp.float32),
      "y": jnp.asarray(rng.normal(size=(8, 2)), jnp.float32),
  }


def test_frozen_leaves_stay_bit_identical_and_have_no_optimizer_state():
  optimizer = optax.adam(1e-2)
  state = create_train_state(init_params(), {}, optimizer, RULES)
  frozen_before = jax.tree.map(np.array, state.frozen)
  trainable_before = jax.tree.map(np.array, state.trainable)
  step = make_train_step(squared_error_loss, optimizer)
  for index in range(5):
    state, metrics = step(state, make_batch(index), jax.random.key(index))
  for before, after in zip(
      jax.tree.leaves(frozen_before), jax.tree.leaves(state.frozen)
  ):
    np.testing.assert_array_equal(before, after)  # bit-identical
  for before, after in zip(
      jax.tree.leaves(trainable_before), jax.tree.leaves(state.trainable)
  ):
    assert not np.array_equal(before, after)
  # Adam keeps mu and nu for every trainable leaf and nothing for frozen ones.
  trainable_shapes = sorted(
      leaf.shape for leaf in jax.tree.leaves(state.trainable)
  )
  moment_shapes = sorted(
      leaf.shape for leaf in jax.tree.leaves(state.opt_state) if leaf.ndim > 0
  )
  assert moment_shapes == sorted(trainable_shapes * 2)
  assert set(metrics) >= {"loss", "mse", "grad_norm", "update_norm"}
  assert int(state.step) == 5


def test_sgd_step_matches_hand_computed_gradient():
  learning_rate = 0.1
  optimizer = optax.sgd(learning_rate)
  params = jax.tree.map(np.array, init_params())  # host copy: the step donates
  state = create_train_state(init_params(), {}, optimizer, RULES)
  step = make_train_step(squared_error_loss, optimizer)
  batch = make_batch(1)
  state, metrics = step(state, batch, jax.random.key(0))
  # NumPy reference: gradient of 0.5 * mean ||tanh(xW+b)V + c - y||^2 w.r.t. V, c.
  x, y = np.asarray(batch["x"], np.float64), np.asarray(batch["y"], np.float64)
  hidden = np.tanh(
      x @ np.asarray(params["backbone"]["kernel"], np.float64)
      + np.asarray(params["backbone"]["bias"], np.float64)
  )
  kernel = np.asarray(params["head"]["kernel"], np.float64)
  residual = hidden @ kernel - y
  grad_kernel = hidden.T @ residual / len(x)
  grad_bias = residual.mean(0)
  np.testing.assert_allclose(
      state.trainable["head"]["kernel"],
      kernel - learning_rate * grad_kernel,
      rtol=1e-5,
      atol=1e-6,
  )
  np.testing.assert_allclose(
      state.trainable["head"]["bias"],
      -learning_rate * grad_bias,
      rtol=1e-5,
      atol=1e-6,
  )
  np.testing.assert_allclose(
      metrics["loss"], 0.5 * np.mean(np.sum(residual**2, -1)), rtol=1e-5
  )
  np.testing.assert_allclose(
      metrics["grad_norm"],
      np.sqrt(np.sum(grad_kernel**2) + np.sum(grad_bias**2)),
      rtol=1e-5,
  )


def test_step_is_traced_once_over_many_calls():
  optimizer = optax.sgd(0.1, momentum=0.9)
  counted_loss = chex.assert_max_traces(squared_error_loss, n=1)
  step = make_train_step(counted_loss, optimizer)
  state = create_train_state(init_params(), {}, optimizer, RULES)
  for index in range(10):
    state, _ = step(state, make_batch(index), jax.random.key(index))
  chex.clear_trace_counter()


def test_keyed_by_step_folds_the_batch_step_into_the_key_inside_the_step():
  # The loop's step makes fold_in(train_key, step) itself; the dropout-like
  # noise a loss draws must be the one the host-side key would give.
  def noisy_loss(params, model_state, batch, key, extras=None):
    loss, aux = squared_error_loss(params, model_state, batch, key, extras)
    noise = jax.random.uniform(key, (3,))
    return loss + 1e-3 * jnp.sum(noise), (aux[0], {"noise": noise})

  optimizer = optax.sgd(0.1)
  keyed = jax.jit(
      keyed_by_step(make_train_step(noisy_loss, optimizer, jit=False))
  )
  plain = make_train_step(noisy_loss, optimizer)
  train_key = jax.random.key(7)
  state_keyed = create_train_state(init_params(), {}, optimizer, RULES)
  state_plain = create_train_state(init_params(), {}, optimizer, RULES)
  for index in (0, 1, 5):
    batch = dict(make_batch(index), step=np.int32(index))
    state_keyed, got = keyed(state_keyed, batch, train_key)
    state_plain, want = plain(
        state_plain, batch, jax.random.fold_in(train_key, index)
    )
    np.testing.assert_array_equal(got["noise"], want["noise"])
  chex.assert_trees_all_equal(state_keyed.trainable, state_plain.trainable)
  assert not np.array_equal(got["noise"], jax.random.uniform(train_key, (3,)))


def test_step_donates_the_state():
  optimizer = optax.sgd(0.1)
  step = make_train_step(squared_error_loss, optimizer)
  state = create_train_state(init_params(), {}, optimizer, RULES)
  old_kernel = state.trainable["head"]["kernel"]
  step(state, make_batch(0), jax.random.key(0))
  assert old_kernel.is_deleted()


def test_freezing_everything_is_an_error():
  with pytest.raises(ValueError, match="freeze every parameter"):
    create_train_state(init_params(), {}, optax.sgd(0.1), [(".*", None)])


def test_schedules_match_their_formulas():
  inv = make_schedule({"learning_rate": 0.01, "schedule": "inv"}, 1000)
  for count in (0, 250, 1000):
    np.testing.assert_allclose(
        inv(count), 0.01 / (1 + 10 * count / 1000) ** 0.75, rtol=1e-6
    )
  cosine = make_schedule(
      {"learning_rate": 0.1, "schedule": "cosine", "warmup_steps": 100}, 1100
  )
  np.testing.assert_allclose(cosine(50), 0.05, rtol=1e-6)
  for count in (100, 600, 1100):
    progress = (count - 100) / 1000
    np.testing.assert_allclose(
        cosine(count),
        0.1 * 0.5 * (1 + np.cos(np.pi * progress)),
        rtol=1e-5,
        atol=1e-8,
    )


def test_optimizer_config_errors_name_the_field():
  with pytest.raises(ValueError, match="optimizer.name 'rmsprop'.*sgd"):
    make_optimizer({"name": "rmsprop", "learning_rate": 0.1}, 10)
  with pytest.raises(ValueError, match="optimizer.schedule 'step'"):
    make_optimizer(
        {"name": "sgd", "learning_rate": 0.1, "schedule": "step"}, 10
    )
  with pytest.raises(ValueError, match="optimizer.learning_rate"):
    make_optimizer({"name": "sgd", "learning_rate": -1.0}, 10)
  with pytest.raises(ValueError, match="optimizer.momentum"):
    make_optimizer({"name": "sgd", "learning_rate": 0.1, "momentum": 1.5}, 10)
  with pytest.raises(ValueError, match="optimizer.learning_rate"):
    make_optimizer({"name": "sgd", "learning_rate": float("nan")}, 10)
  # inv's lr / (1 + α p)^β: a negative α gives NaN mid-run, a negative β a
  # growing rate; a fractional warm-up was silently truncated.
  for key, value in (
      ("inv_alpha", -2.0),
      ("inv_beta", -1.0),
      ("inv_alpha", float("inf")),
  ):
    with pytest.raises(ValueError, match=f"optimizer.{key}"):
      make_schedule({"learning_rate": 0.1, "schedule": "inv", key: value}, 10)
  with pytest.raises(
      ValueError, match="optimizer.warmup_steps must be a whole"
  ):
    make_schedule({"learning_rate": 0.1, "warmup_steps": 2.7}, 10)
  assert float(
      make_schedule({"learning_rate": 0.1, "warmup_steps": 2.0}, 10)(2)
  ) == pytest.approx(0.1)


def test_weight_decay_never_touches_frozen_parameters():
  optimizer = make_optimizer(
      {
          "name": "sgd",
          "learning_rate": 0.1,
          "weight_decay": 0.5,
          "momentum": 0.0,
      },
      10,
  )

  def zero_loss(params, model_state, batch, key, extras):
    return 0.0 * squared_error_loss(params, model_state, batch, key)[0], (
        model_state,
        {},
    )

  state = create_train_state(init_params(), {}, optimizer, RULES)
  frozen = jax.tree.map(np.array, state.frozen)
  head_kernel = np.array(state.trainable["head"]["kernel"])
  state, _ = make_train_step(zero_loss, optimizer)(
      state, make_batch(0), jax.random.key(0)
  )
  # With a zero loss, coupled decay gives w <- w - lr * wd * w.
  np.testing.assert_allclose(
      state.trainable["head"]["kernel"],
      head_kernel * (1 - 0.1 * 0.5),
      rtol=1e-6,
  )
  chex.assert_trees_all_equal(state.frozen, frozen)


def test_checkpoint_roundtrip_and_resume_continue_identically(tmp_path):
  optimizer = optax.adam(1e-2)
  step = make_train_step(squared_error_loss, optimizer)
  state = create_train_state(init_params(), {}, optimizer, RULES)
  for index in range(3):
    state, _ = step(state, make_batch(index), jax.random.key(index))
  with Checkpointer(tmp_path, max_to_keep=2) as checkpointer:
    assert checkpointer.save(3, state)
    saved = jax.tree.map(np.array, state)
    # Keep training (donating the saved state's buffers) after the save.
    for index in range(3, 5):
      state, _ = step(state, make_batch(index), jax.random.key(index))
  uninterrupted = jax.tree.map(np.array, state)

  fresh = create_train_state(init_params(), {}, optimizer, RULES)
  checkpointer = Checkpointer(tmp_path)
  assert checkpointer.latest_step() == 3
  restored = checkpointer.restore(fresh)
  checkpointer.close()
  chex.assert_trees_all_equal(jax.tree.map(np.array, restored), saved)
  assert int(restored.step) == 3
  for index in range(int(restored.step), 5):
    restored, _ = step(restored, make_batch(index), jax.random.key(index))
  chex.assert_trees_all_equal(jax.tree.map(np.array, restored), uninterrupted)


def test_checkpointer_keeps_the_newest_n(tmp_path):
  optimizer = optax.sgd(0.1)
  state = create_train_state(init_params(), {}, optimizer)
  with Checkpointer(tmp_path, max_to_keep=2, save_every=2) as checkpointer:
    saved = [checkpointer.save(step, state) for step in range(1, 8)]
    assert saved == [False, True, False, True, False, True, False]
    assert checkpointer.save(7, state, force=True)
    checkpointer.wait()
    assert checkpointer.all_steps() == [6, 7]
  with pytest.raises(FileNotFoundError):
    Checkpointer(tmp_path / "empty").restore(state)


def test_extras_reach_the_loss_and_stay_constant():
  optimizer = optax.sgd(0.5)

  def pull_to_anchor(params, model_state, batch, key, extras):
    del batch, key
    loss = 0.5 * jnp.sum((params["head"]["bias"] - extras["anchor"]) ** 2)
    return loss, (model_state, {})

  anchor = jnp.array([1.0, -2.0])
  state = create_train_state(
      init_params(), {}, optimizer, RULES, extras={"anchor": anchor}
  )
  step = make_train_step(pull_to_anchor, optimizer)
  state, _ = step(state, make_batch(0), jax.random.key(0))
  # bias starts at 0: one SGD step of lr 0.5 on 0.5||b - a||^2 gives 0.5 a.
  np.testing.assert_allclose(state.trainable["head"]["bias"], [0.5, -1.0])
  np.testing.assert_array_equal(state.extras["anchor"], [1.0, -2.0])
