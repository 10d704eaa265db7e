"""Per-group learning-rate multipliers and layer-wise decay from rules."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import moons
from tljax import params as params_lib
from tljax.train.state import create_train_state
from tljax.train.step import make_train_step


def init_params():
  rng = np.random.default_rng(0)
  return {
      "backbone": {
          "conv1": {
              "kernel": jnp.asarray(rng.normal(size=(3, 4)), jnp.float32)
          },
          "conv2": {
              "kernel": jnp.asarray(rng.normal(size=(4, 4)), jnp.float32)
          },
      },
      "head": {"kernel": jnp.asarray(rng.normal(size=(4, 2)), jnp.float32)},
  }


def linear_loss(params, model_state, batch, key, extras=None):
  del key, extras
  hidden = batch["x"] @ params["backbone"]["conv1"]["kernel"]
  hidden = jnp.tanh(hidden @ params["backbone"]["conv2"]["kernel"])
  loss = jnp.mean((hidden @ params["head"]["kernel"] - batch["y"]) ** 2)
  return loss, (model_state, {})


def batch():
  rng = np.random.default_rng(1)
  return {
      "x": jnp.asarray(rng.normal(size=(6, 3)), jnp.float32),
      "y": jnp.asarray(rng.normal(size=(6, 2)), jnp.float32),
  }


def test_multipliers_scale_the_sgd_update_exactly():
  rules = [("backbone/conv1/.*", None), ("backbone/.*", 0.1), ("head/.*", 10.0)]
  learning_rate = 0.05
  start = jax.tree.map(np.array, init_params())
  trainable, _ = params_lib.split(init_params(), rules)
  optimizer = params_lib.with_learning_rate_multipliers(
      optax.sgd(learning_rate), trainable, rules
  )
  state = create_train_state(init_params(), {}, optimizer, rules)
  grads = jax.grad(lambda p: linear_loss(p, {}, batch(), None)[0])(
      jax.tree.map(jnp.asarray, start)
  )
  state, _ = make_train_step(linear_loss, optimizer)(
      state, batch(), jax.random.key(0)
  )
  # Hand-computed SGD step with per-group learning rates lr * multiplier.
  np.testing.assert_allclose(
      state.trainable["backbone"]["conv2"]["kernel"],
      start["backbone"]["conv2"]["kernel"]
      - learning_rate * 0.1 * np.asarray(grads["backbone"]["conv2"]["kernel"]),
      rtol=1e-6,
      atol=1e-7,
  )
  np.testing.assert_allclose(
      state.trainable["head"]["kernel"],
      start["head"]["kernel"]
      - learning_rate * 10.0 * np.asarray(grads["head"]["kernel"]),
      rtol=1e-6,
      atol=1e-7,
  )
  np.testing.assert_array_equal(
      state.frozen["backbone"]["conv1"]["kernel"],
      start["backbone"]["conv1"]["kernel"],
  )
  # No optimizer state for the frozen leaf: SGD with momentum would hold one
  # trace per trainable leaf only.
  assert "conv1" not in str(jax.tree_util.tree_structure(state.opt_state))


def test_layer_wise_decay_follows_depth_rules():
  depth_rules = [
      ("backbone/conv1/.*", 0),
      ("backbone/conv2/.*", 1),
      ("head/.*", 2),
  ]
  multipliers = params_lib.learning_rate_multipliers(
      init_params(), [(".*", 2.0)], layer_decay=0.5, depth_rules=depth_rules
  )
  flat = params_lib.flatten(multipliers)
  assert flat == {
      "backbone/conv1/kernel": 2.0 * 0.25,
      "backbone/conv2/kernel": 2.0 * 0.5,
      "head/kernel": 2.0,
  }

  # One part of the model (a staged recipe's parameter group) decays from
  # the whole model's top when given its max_depth, not from its own.
  backbone = {"backbone": init_params()["backbone"]}
  part = params_lib.flatten(
      params_lib.learning_rate_multipliers(
          backbone,
          [(".*", 2.0)],
          layer_decay=0.5,
          depth_rules=depth_rules,
          max_depth=2,
      )
  )
  assert part == {
      "backbone/conv1/kernel": 2.0 * 0.25,
      "backbone/conv2/kernel": 2.0 * 0.5,
  }
  alone = params_lib.flatten(
      params_lib.learning_rate_multipliers(
          backbone, [(".*", 2.0)], layer_decay=0.5, depth_rules=depth_rules
      )
  )
  assert alone["backbone/conv2/kernel"] == 2.0
  with pytest.raises(ValueError, match="max_depth must be an integer >= "):
    params_lib.learning_rate_multipliers(
        init_params(),
        [(".*", 2.0)],
        layer_decay=0.5,
        depth_rules=depth_rules,
        max_depth=1,
    )


def test_staged_recipe_groups_decay_like_the_whole_model():
  # MCD splits the model into a generator and a classifiers group, each with
  # its own optimizer; layer-wise decay must still count from the model's top.
  from tljax.train.loop import setup_run

  depth_rules = [
      ("backbone/dense1/.*", 0),
      ("backbone/dense2/.*", 1),
      ("bottleneck/.*", 2),
      ("head2?/.*", 3),
  ]
  rates = {}
  for method in ("source_only", "mcd"):
    config = moons.get_config(f"method={method},seeds=1")
    config.optimizer.update(
        name="sgd",
        momentum=0.0,
        learning_rate=1.0,
        schedule="constant",
        weight_decay=0.0,
        layer_decay=0.5,
        depth_rules=depth_rules,
    )
    run = setup_run(config, method, 0)
    optimizer, trainable = run.optimizer, run.state.trainable
    ones = jax.tree.map(jnp.ones_like, trainable)
    if hasattr(optimizer, "optimizers"):
      parts = [
          optimizer.optimizers[group].update(
              subtree, optimizer.optimizers[group].init(subtree), subtree
          )[0]
          for group, subtree in optimizer.split(ones).items()
      ]
    else:
      parts = [optimizer.update(ones, optimizer.init(trainable), trainable)[0]]
    rates[method] = {
        name: -float(np.ravel(value)[0])
        for part in parts
        for name, value in params_lib.flatten(part).items()
        if name.endswith("kernel") and name != "head2/kernel"
    }
  assert rates["mcd"] == rates["source_only"]
  assert rates["mcd"]["backbone/dense1/kernel"] == 0.125


def test_config_rules_reach_lp_ft_but_not_linear_probe():
  from tljax.train.loop import setup_run

  rules = (("head/.*", None), (".*", 0.1))
  for method in ("lp_ft", "linear_probe"):
    config = moons.get_config(f"method={method},seeds=1")
    config.trainable_rules = rules
    run = setup_run(config, method, 0)
    names = set(params_lib.flatten(run.state.params))
    trainable = set(params_lib.flatten(run.state.trainable))
    head = {name for name in names if name.startswith("head/")}
    assert head and head != names
    if method == "lp_ft":  # its fine-tuning phase follows the config
      assert trainable == names - head
    else:  # a linear probe trains the head, whatever the config says
      assert trainable == head


def test_layer_wise_decay_from_a_depth_function():
  def depth(name):  # stem 0, later blocks deeper, head deepest
    return {"conv1": 0, "conv2": 1}.get(name.split("/")[1], 2)

  multipliers = params_lib.learning_rate_multipliers(
      init_params(), [(".*", 1.0)], layer_decay=0.1, depth_rules=depth
  )
  np.testing.assert_allclose(
      [
          params_lib.flatten(multipliers)[name]
          for name in (
              "backbone/conv1/kernel",
              "backbone/conv2/kernel",
              "head/kernel",
          )
      ],
      [0.01, 0.1, 1.0],
      rtol=1e-12,
  )


def test_all_ones_leaves_the_optimizer_unchanged():
  optimizer = optax.sgd(0.1)
  assert (
      params_lib.with_learning_rate_multipliers(
          optimizer, init_params(), [(".*", 1.0)]
      )
      is optimizer
  )


@pytest.mark.parametrize(
    "rules, layer_decay, depth_rules, message",
    [
        ([(".*", "fast")], None, (), "multiplier, a positive number"),
        ([(".*", -1.0)], None, (), "must be a positive number"),
        ([(".*", 1.0)], 1.5, [(".*", 0)], "layer_decay must be in"),
        ([(".*", 1.0)], 0.5, (), "layer_decay needs depth_rules"),
        ([(".*", 1.0)], 0.5, [(".*", -1)], "depths are non-negative"),
        ([("head/.*", 1.0)], None, (), "match no rule"),
    ],
)
def test_bad_rules_are_named(rules, layer_decay, depth_rules, message):
  with pytest.raises(ValueError, match=message):
    params_lib.learning_rate_multipliers(
        init_params(), rules, layer_decay=layer_decay, depth_rules=depth_rules
    )
