"""The ViT of tljax.models: sizes, shapes, pooling and argument errors.

The parameter counts are checked against the closed form of the architecture
(Dosovitskiy et al., 2021, Table 1: ViT-B/16 has 86M parameters with its
1000-way head; 85.8M without it) and the published sizes of big_vision's
``decode_variant``. That the computation is ViT's, to the last bit of
float32, is tested against timm's own forward by tests/test_pretrained.py.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tljax import models
from tljax.params import flatten

TINY = dict(patch_size=8, width=32, depth=2, mlp_dim=64, num_heads=4)


def backbone_count(
    width, depth, mlp_dim, patch, image=224, channels=3, tok=True
):
  """Closed-form backbone parameter count of a ViT (big_vision's layout)."""
  tokens = (image // patch) ** 2
  embedding = patch * patch * channels * width + width
  block = (
      2 * 2 * width  # two LayerNorms
      + 4 * (width * width + width)  # query, key, value, out
      + width * mlp_dim
      + mlp_dim
      + mlp_dim * width
      + width
  )
  return (
      embedding
      + tokens * width
      + (width if tok else 0)
      + depth * block
      + 2 * width
  )


def init(model):
  """Random variables of the model's shapes, drawn with NumPy.

  (Compiling the model's own initialisers takes seconds on a small CPU and is
  not what these tests are about.)
  """
  rng = np.random.RandomState(0)
  params, state = jax.eval_shape(model.init, jax.random.key(0))
  params = jax.tree.map(
      lambda s: rng.normal(0, 0.2, s.shape).astype(s.dtype), params
  )
  state = jax.tree_util.tree_map_with_path(
      lambda path, s: np.full(
          s.shape, 1.0 if "var" in str(path) else 0.0, s.dtype
      ),
      state,
  )
  return params, state


def apply(model, params, state, images):
  return jax.jit(model.apply, static_argnames="train")(
      params, state, images, train=False
  )[0]


def test_vit_b16_has_the_published_parameter_count():
  model = models.create_model(
      "vit_b16",
      num_classes=1000,
      input_shape=(224, 224, 3),
      bottleneck_dim=None,
  )
  shapes = flatten(jax.eval_shape(model.init, jax.random.key(0))[0])
  backbone = sum(
      math.prod(s.shape) for k, s in shapes.items() if k.startswith("backbone/")
  )
  assert backbone == 85_797_888  # 85.8M
  assert model.param_count == backbone + 768 * 1000 + 1000
  assert 86e6 < model.param_count < 87e6  # the paper's "86M"


@pytest.mark.parametrize(
    "variant, patch", [("ti", 16), ("s", 32), ("s", 16), ("b", 32), ("l", 32)]
)
def test_standard_sizes(variant, patch):
  width, depth, mlp_dim, _ = models.VIT_VARIANTS[
      {"ti": "Ti", "s": "S", "b": "B", "l": "L"}[variant]
  ]
  model = models.create_model(
      f"vit_{variant}{patch}",
      num_classes=10,
      input_shape=(224, 224, 3),
      bottleneck_dim=None,
  )
  head = width * 10 + 10
  assert model.param_count - head == backbone_count(
      width, depth, mlp_dim, patch
  )


@pytest.mark.parametrize("pool_type", ["tok", "gap"])
def test_shapes_and_pooling(pool_type):
  model = models.create_model(
      "vit",
      num_classes=5,
      input_shape=(32, 24, 3),
      pool_type=pool_type,
      bottleneck_dim=16,
      **TINY,
  )
  params, state = init(model)
  flat = flatten(params)
  assert flat["backbone/pos_embedding"].shape == (1, 4 * 3, 32)
  assert ("backbone/cls" in flat) == (pool_type == "tok")
  assert flat[
      "backbone/Transformer/encoderblock_1/MultiHeadDotProductAttention_0/"
      "query/kernel"
  ].shape == (32, 4, 8)
  images = jax.random.uniform(jax.random.key(1), (2, 32, 24, 3))
  outputs = apply(model, params, state, images)
  assert outputs.backbone_features.shape == (2, 32)
  assert outputs.features.shape == (2, 16)
  assert outputs.logits.shape == (2, 5)
  assert outputs.feature_maps.shape == (2, 4, 3, 32)
  pooled = jnp.mean(outputs.feature_maps, axis=(1, 2))
  if pool_type == "gap":
    np.testing.assert_allclose(outputs.backbone_features, pooled, atol=1e-5)
  else:
    assert not np.allclose(outputs.backbone_features, pooled, atol=1e-3)


def test_class_token_sees_the_last_patch():
  model = models.create_model(
      "vit", num_classes=3, input_shape=(16, 16, 3), bottleneck_dim=None, **TINY
  )
  params, state = init(model)
  images = jax.random.uniform(jax.random.key(1), (1, 16, 16, 3))
  base = apply(model, params, state, images)
  changed = images.at[:, 8:, 8:].set(0.0)  # only the last patch
  other = apply(model, params, state, changed)
  assert not np.allclose(base.backbone_features, other.backbone_features)


def test_approximate_gelu_changes_the_function():
  kwargs = dict(num_classes=3, input_shape=(16, 16, 3), **TINY)
  exact = models.create_model("vit", **kwargs)
  tanh = models.create_model("vit", approximate_gelu=True, **kwargs)
  params, state = init(exact)
  images = jax.random.uniform(jax.random.key(1), (2, 16, 16, 3))
  a = apply(exact, params, state, images)
  b = apply(tanh, params, state, images)
  np.testing.assert_allclose(
      a.backbone_features, b.backbone_features, atol=1e-2
  )
  assert not np.array_equal(a.backbone_features, b.backbone_features)


@pytest.mark.parametrize(
    "overrides, input_shape, argument",
    [
        ({"pool_type": "map"}, (16, 16, 3), "pool_type"),
        ({"num_heads": 5}, (16, 16, 3), "num_heads"),
        ({"width": 0}, (16, 16, 3), "width"),
        ({"depth": 1.5}, (16, 16, 3), "depth"),
        ({"layer_norm_epsilon": 0.0}, (16, 16, 3), "layer_norm_epsilon"),
        ({}, (20, 16, 3), "patch_size"),
        ({}, (16, 16), "input_shape"),
    ],
)
def test_errors_name_the_argument(overrides, input_shape, argument):
  with pytest.raises(ValueError, match=argument):
    models.create_model(
        "vit",
        num_classes=3,
        input_shape=input_shape,
        **{**TINY, **overrides},
    )


def test_generic_resnet_with_narrow_stages():
  model = models.create_model(
      "resnet",
      num_classes=3,
      input_shape=(32, 32, 3),
      block="bottleneck",
      stage_sizes=(1, 1, 1, 1),
      stage_widths=(4, 8, 16, 32),
      stem_width=8,
  )
  shapes = flatten(jax.eval_shape(model.init, jax.random.key(0))[0])
  assert shapes["backbone/conv1/kernel"].shape == (7, 7, 3, 8)
  assert shapes["backbone/layer4_0/conv3/kernel"].shape == (1, 1, 32, 128)
  assert shapes["bottleneck/linear/kernel"].shape == (128, 256)
  with pytest.raises(ValueError, match="stage_widths"):
    models.create_model(
        "resnet",
        num_classes=3,
        input_shape=(32, 32, 3),
        block="basic",
        stage_sizes=(1, 1, 1, 1),
        stage_widths=(4, 8, 16),
    )
  with pytest.raises(ValueError, match="block"):
    models.create_model(
        "resnet",
        num_classes=3,
        input_shape=(32, 32, 3),
        block="wide",
        stage_sizes=(1, 1, 1, 1),
    )


def test_clip_options():
  model = models.create_model(
      "vit",
      num_classes=3,
      input_shape=(16, 16, 3),
      quick_gelu=True,
      pre_norm=True,
      patch_bias=False,
      bottleneck_dim=None,
      **TINY,
  )
  params, state = init(model)
  flat = flatten(params)
  assert "backbone/norm_pre/scale" in flat
  assert "backbone/embedding/bias" not in flat
  images = jax.random.uniform(jax.random.key(1), (2, 16, 16, 3))
  plain = models.create_model(
      "vit", num_classes=3, input_shape=(16, 16, 3), bottleneck_dim=None, **TINY
  )
  plain_params = dict(params, backbone=dict(params["backbone"]))
  del plain_params["backbone"]["norm_pre"]
  plain_params["backbone"]["embedding"] = dict(
      params["backbone"]["embedding"], bias=np.zeros(32, np.float32)
  )
  a = apply(model, params, state, images)
  b = apply(plain, plain_params, state, images)
  assert not np.allclose(a.logits, b.logits)
