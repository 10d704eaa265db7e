"""Parameter naming, rule matching, the trainable/frozen split and partial restore."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tljax import params as params_lib
from tljax.checkpoint import Checkpointer
from tljax.train.state import create_train_state


def make_params():
  return {
      "backbone": {
          "conv1": {
              "kernel": jnp.arange(6.0).reshape(2, 3),
              "bias": jnp.ones(3),
          },
          "bn1": {"scale": jnp.full(3, 2.0)},
      },
      "bottleneck": {"kernel": jnp.ones((3, 4))},
      "head": {"kernel": jnp.zeros((4, 5)), "bias": jnp.zeros(5)},
  }


def test_flatten_names_and_roundtrip():
  flat = params_lib.flatten(make_params())
  assert set(flat) == {
      "backbone/conv1/kernel",
      "backbone/conv1/bias",
      "backbone/bn1/scale",
      "bottleneck/kernel",
      "head/kernel",
      "head/bias",
  }
  rebuilt = params_lib.unflatten(flat)
  assert jax.tree.structure(rebuilt) == jax.tree.structure(make_params())
  for a, b in zip(jax.tree.leaves(rebuilt), jax.tree.leaves(make_params())):
    np.testing.assert_array_equal(a, b)


def test_first_matching_rule_wins_with_full_match():
  rules = [
      ("backbone/bn.*", "bn"),
      ("backbone/.*", None),
      ("head/.*", 10.0),
      (".*", 1.0),
  ]
  values = params_lib.match_rules(make_params(), rules)
  # Reference: first rule whose regex fully matches, written out independently.
  for name, value in values.items():
    expected = next(v for pattern, v in rules if re.fullmatch(pattern, name))
    assert value == expected, name
  assert values["backbone/bn1/scale"] == "bn"
  # "head" alone must not match "head/.*"-style partial prefixes like "he".
  assert (
      params_lib.match_rules(make_params(), [("he", 1), (".*", 2)])[
          "head/kernel"
      ]
      == 2
  )


def test_unmatched_parameters_are_listed():
  with pytest.raises(ValueError, match=r"head/bias.*head/kernel|head/kernel"):
    params_lib.match_rules(
        make_params(), [("backbone/.*", None), ("bottleneck/.*", 1.0)]
    )
  with pytest.raises(ValueError, match="rules\\[0\\]"):
    params_lib.split(make_params(), [("(", 1.0)])
  with pytest.raises(ValueError, match="rules"):
    params_lib.split(make_params(), ".*")


def test_split_is_disjoint_and_merge_inverts_it():
  rules = [("backbone/.*", None), ("bottleneck/.*", "frozen"), (".*", 1.0)]
  trainable, frozen = params_lib.split(make_params(), rules)
  assert set(params_lib.flatten(trainable)) == {"head/kernel", "head/bias"}
  assert set(params_lib.flatten(frozen)) == {
      "backbone/conv1/kernel",
      "backbone/conv1/bias",
      "backbone/bn1/scale",
      "bottleneck/kernel",
  }
  merged = params_lib.merge(trainable, frozen)
  assert (
      params_lib.flatten(merged).keys()
      == params_lib.flatten(make_params()).keys()
  )
  with pytest.raises(ValueError, match="head/bias"):
    params_lib.merge(trainable, {"head": {"bias": jnp.zeros(5)}})


def _save_run(directory, params, model_state=None):
  optimizer = optax.sgd(0.1)
  state = create_train_state(params, model_state or {}, optimizer)
  with Checkpointer(directory) as checkpointer:
    checkpointer.save(7, state, force=True)


def test_load_pretrained_keeps_new_head_and_loads_the_rest(tmp_path):
  source = make_params()
  _save_run(
      tmp_path / "checkpoints",
      source,
      model_state={"backbone": {"bn1": {"mean": jnp.full(3, 0.5)}}},
  )
  target_init = jax.tree.map(lambda x: x + 100.0, make_params())
  target_init["head"] = {"kernel": jnp.full((4, 7), 3.0), "bias": jnp.ones(7)}
  init_state = {"backbone": {"bn1": {"mean": jnp.zeros(3)}}}
  params, model_state = params_lib.load_pretrained(
      target_init, tmp_path, dont_load=("head/.*",), init_model_state=init_state
  )
  np.testing.assert_array_equal(
      params["backbone"]["conv1"]["kernel"],
      source["backbone"]["conv1"]["kernel"],
  )
  np.testing.assert_array_equal(
      params["bottleneck"]["kernel"], source["bottleneck"]["kernel"]
  )
  np.testing.assert_array_equal(params["head"]["kernel"], np.full((4, 7), 3.0))
  np.testing.assert_array_equal(
      model_state["backbone"]["bn1"]["mean"], np.full(3, 0.5)
  )
  zeroed = params_lib.load_pretrained(
      target_init, tmp_path, zero_init=("head/.*",)
  )
  np.testing.assert_array_equal(zeroed["head"]["kernel"], np.zeros((4, 7)))


def test_load_pretrained_names_every_kind_of_mismatch(tmp_path):
  _save_run(tmp_path, make_params())
  wrong_head = make_params()
  wrong_head["head"]["kernel"] = jnp.zeros((4, 7))
  with pytest.raises(ValueError, match="'head/kernel' has shape"):
    params_lib.load_pretrained(wrong_head, tmp_path, dont_load=())
  extra = make_params()
  extra["backbone"]["conv2"] = {"kernel": jnp.zeros(2)}
  with pytest.raises(ValueError, match="'backbone/conv2/kernel' is missing"):
    params_lib.load_pretrained(extra, tmp_path)
  fewer = make_params()
  del fewer["bottleneck"]
  with pytest.raises(ValueError, match="unexpected.*bottleneck/kernel"):
    params_lib.load_pretrained(fewer, tmp_path)
  wrong_dtype = make_params()
  wrong_dtype["bottleneck"]["kernel"] = jnp.ones((3, 4), jnp.bfloat16)
  with pytest.raises(ValueError, match="'bottleneck/kernel' has dtype"):
    params_lib.load_pretrained(wrong_dtype, tmp_path)
  with pytest.raises(FileNotFoundError):
    params_lib.load_pretrained(make_params(), tmp_path / "absent")


def test_dont_load_patterns_must_match_something(tmp_path):
  _save_run(tmp_path, make_params())
  with pytest.raises(ValueError, match=r"dont_load patterns \['haed/.\*'\]"):
    params_lib.load_pretrained(make_params(), tmp_path, dont_load=("haed/.*",))


def test_transferred_names_are_those_outside_dont_load():
  assert params_lib.transferred_names(make_params(), ("head/.*",)) == {
      "backbone/conv1/kernel",
      "backbone/conv1/bias",
      "backbone/bn1/scale",
      "bottleneck/kernel",
  }
