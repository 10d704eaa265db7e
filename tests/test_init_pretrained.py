"""Runs that start from a converted checkpoint: ``config.init_from.pretrained``.

The checkpoints are the committed upstream fixtures (tests/fixtures/pretrained,
made by scripts/make_pretrained_fixtures.py with timm and big_vision's
layout); the data two small image folders made here.
"""

from __future__ import annotations

import importlib.util
import os
import re

import numpy as np
import pytest
from PIL import Image

from tljax import config as config_lib
from tljax import models
from tljax.models.convert import spec as spec_lib
from tljax.params import flatten
from tljax.train import domains as domains_lib
from tljax.train import experiment
from tljax.train.run_setup import setup_run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "pretrained")
RESNET = os.path.join(FIXTURES, "resnet_basic.safetensors")
RESNET_SPEC = f"timm={RESNET}"
CLASSES = ("cat", "dog", "owl")
# Every parameter-transfer recipe of the issue and the domain-adaptation ones.
PARAMETER_RECIPES = (
    "finetune",
    "linear_probe",
    "lp_ft",
    "surgical",
    "l2_sp",
    "delta",
    "bss",
    "co_tuning",
)
ADAPTATION_RECIPES = (
    "source_only",
    "target_only",
    "dann",
    "cdan",
    "cdan_e",
    "dan",
    "jan",
    "deep_coral",
    "mcc",
    "afn",
    "mcd",
    "mdd",
    "sinkhorn",
    "importance_weighting",  # its weights read the image files in chunks
)


def _folder(root, seed, shift):
  rng = np.random.default_rng(seed)
  for label, name in enumerate(CLASSES):
    os.makedirs(os.path.join(root, name))
    for i in range(4):
      pixels = rng.integers(0, 80, (20, 20, 3)).astype(np.uint8)
      pixels[:, :, label] += 100 + shift
      Image.fromarray(pixels).save(os.path.join(root, name, f"{i}.png"))
  return str(root)


def _images_module():
  spec = importlib.util.spec_from_file_location(
      "images_config", os.path.join(ROOT, "configs", "images.py")
  )
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
  base = tmp_path_factory.mktemp("init_pretrained")
  return (
      _folder(base / "a", 0, 0),
      _folder(base / "b", 1, 40),
      str(base / "data"),
  )


def _config(folders, method="finetune", pretrained=RESNET_SPEC, **overrides):
  source, target, data_dir = folders
  config = _images_module().get_config(
      f"source={source},target={target},image_size=16,method={method},steps=2"
  )
  config.data_dir = data_dir
  config.init_from.pretrained = pretrained
  config.batch_size = 4
  config.eval_every = 0
  config.log_every = 1
  config.checkpoint_every = 2
  config.progress_bar = False
  config.baselines = ()
  config.update(overrides)
  return config


@pytest.fixture(scope="module")
def domains(folders):
  return domains_lib.load_domains(_config(folders))


@pytest.fixture(scope="module")
def converted():
  return models.load_timm(RESNET, image_size=16)


# --- The spec ------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec, error, message",
    [
        ("resnet50", ValueError, "'<format>[:<arch>]=<path>'"),
        ("timx=x.safetensors", ValueError, "unknown checkpoint format 'timx'"),
        (
            "timm=/nonexistent/model.safetensors",
            FileNotFoundError,
            "no checkpoint",
        ),
        ("", ValueError, "must be a string"),
    ],
)
def test_a_bad_spec_names_the_problem(spec, error, message):
  with pytest.raises(error, match=re.escape(message)):
    spec_lib.parse_pretrained(spec, "config key 'init_from.pretrained'")


def test_the_arch_is_checked_against_what_the_file_holds():
  with pytest.raises(ValueError, match="holds a 'resnet'.*not 'resnet50'"):
    models.load_converted(f"timm:resnet50={RESNET}")
  assert models.load_converted(f"timm:resnet={RESNET}").model_name == "resnet"
  with pytest.raises(ValueError, match=r"unknown option\(s\) \['heads'\]"):
    models.load_converted(RESNET_SPEC, heads=2)


@pytest.mark.parametrize(
    "upstream, name",
    [
        ("resnet50.a1_in1k", "resnet50"),
        ("resnet101.tv_in1k", "resnet101"),
        ("vit_base_patch16_224.augreg_in21k", "vit_b16"),
        ("vit_small_patch32_384", "vit_s32"),
        ("google/vit-large-patch16-224-in21k", "vit_l16"),
        ("openai/clip-vit-base-patch32", "vit_b32"),
        ("vit_ti16", "vit_ti16"),
    ],
)
def test_upstream_names_map_to_tljax_models(upstream, name):
  assert spec_lib.tljax_model_name(upstream) == name
  assert name in models.available_models()


def test_a_clip_tower_is_named_by_its_standard_size():
  # The fixture's tower is a tiny one (width 32): it has no standard name.
  clip = models.load_converted(
      f"clip={os.path.join(FIXTURES, 'clip_vision.safetensors')}", num_heads=2
  )
  assert spec_lib.architecture(clip) == "vit"
  base = {"width": 768, "depth": 12, "mlp_dim": 3072, "num_heads": 12}
  standard = clip.__class__(
      **{
          **clip.__dict__,
          "model_options": {**clip.model_options, **base, "patch_size": 32},
      }
  )
  assert spec_lib.architecture(standard) == "vit_b32"


# --- Config errors, before anything trains -----------------------------------


def test_config_errors_name_the_key(folders, tmp_path):
  config = _config(folders)
  config.init_from.workdir = str(tmp_path)
  with pytest.raises(
      ValueError, match="'init_from.workdir' and 'init_from.pretrained'"
  ):
    config_lib.check_config(config)
  config = _config(folders, pretrained=f"timm={tmp_path}/absent.safetensors")
  with pytest.raises(FileNotFoundError, match="init_from.pretrained"):
    experiment.check_experiment_config(config)
  config = _config(folders)
  config.init_from.pretrained_options.heads = 2
  with pytest.raises(ValueError, match=r"pretrained_options.*\['heads'\]"):
    experiment.check_experiment_config(config)
  assert not os.listdir(tmp_path)


def test_grey_inputs_for_an_rgb_checkpoint_are_refused(domains, folders):
  config = _config(folders)
  grey = {
      domain: {
          split: source.to_array_source()
          if hasattr(source, "to_array_source")
          else source
          for split, source in splits.items()
      }
      for domain, splits in domains.items()
  }
  train = grey["source"]["train"]
  grey["source"]["train"] = train.__class__(
      np.asarray(train.inputs)[..., :1],
      train.labels,
      num_classes=train.num_classes,
  )
  with pytest.raises(ValueError, match="3-channel images.*\\(16, 16, 1\\)"):
    setup_run(config, "finetune", 0, domains=grey)


# --- Every recipe starts from the checkpoint -----------------------------------


# Every parameter-transfer recipe, and the domain-adaptation recipes of each
# kind (a plain discrepancy, the adversarial, two-head, OT and reweighting
# ones): each builds its own extras from the converted checkpoint.
SET_UP = PARAMETER_RECIPES + (
    "source_only",
    "dann",
    "jan",
    "mcd",
    "sinkhorn",
    "importance_weighting",
)


@pytest.mark.parametrize("recipe", SET_UP)
def test_every_recipe_starts_from_the_converted_weights(
    recipe, folders, domains, converted
):
  config = _config(folders, method=recipe)
  if recipe == "delta":  # the ResNet's last convolution
    config.method_kwargs.layer = "backbone/layer4_0/conv2"
  run = setup_run(config, recipe, 0, domains=domains)
  assert run.init_from["pretrained"] == RESNET_SPEC
  model = run.model
  # The checkpoint's architecture and input convention, the data's classes,
  # the config's bottleneck.
  assert model.name == converted.model_name == "resnet"
  assert dict(model.options)["stage_widths"] == (4, 8, 16, 32)
  assert model.num_classes == len(CLASSES)
  assert dict(model.options)["bottleneck_dim"] == 256
  params = {**flatten(run.state.trainable), **flatten(run.state.frozen)}
  loaded = flatten(converted.params)
  backbone = [name for name in loaded if name.startswith("backbone/")]
  assert backbone
  for name in backbone:
    np.testing.assert_array_equal(np.asarray(params[name]), loaded[name])
  state = flatten(run.state.model_state)
  for name, value in flatten(converted.model_state).items():
    np.testing.assert_array_equal(np.asarray(state[name]), value)
  assert "bottleneck/linear/kernel" in params
  assert params["head/kernel"].shape == (256, len(CLASSES))
  if recipe == "l2_sp":  # regularised towards the converted weights
    start = flatten(run.state.extras["start"])
    assert sorted(start) == sorted(backbone)
    for name in backbone:
      np.testing.assert_array_equal(np.asarray(start[name]), loaded[name])
  if recipe == "co_tuning":  # the upstream head, on the backbone features
    source_head = flatten(params_subtree(run.state, "source_head"))
    np.testing.assert_array_equal(
        np.asarray(source_head["kernel"]), loaded["head/kernel"]
    )
    relationship = np.asarray(run.state.extras["relationship"])
    assert relationship.shape == (len(CLASSES), converted.num_classes)
    np.testing.assert_allclose(relationship.sum(axis=1), 1.0, rtol=1e-5)


def params_subtree(state, name):
  return {**state.trainable, **state.frozen}[name]


def test_co_tuning_needs_the_checkpoint_head(folders, domains):
  config = _config(
      folders,
      method="co_tuning",
      pretrained=f"clip={os.path.join(FIXTURES, 'clip_vision.safetensors')}",
  )
  config.init_from.pretrained_options.num_heads = 2
  with pytest.raises(ValueError, match="no head"):
    setup_run(config, "co_tuning", 0, domains=domains)
