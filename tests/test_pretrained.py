"""Converted timm checkpoints reproduce timm's own outputs.

The fixtures (tests/fixtures/pretrained/, written by
scripts/make_pretrained_fixtures.py with timm's constructors and random
weights) hold each model's ``model.safetensors`` and, for fixed uint8 images,
timm's pooled features and logits in eval mode. Each is converted by
:func:`tljax.models.load_timm` and run by tljax without torch; the outputs
must agree to 1e-5 relative (the largest absolute difference over the largest
absolute upstream value) in float32. The AugReg-layout ``.npz`` fixture is
read by :func:`tljax.models.load_big_vision` and compared with timm's outputs
after timm's own npz loader read it. tests/test_pretrained_live.py compares
full-size models with the live upstream forward where torch and timm are
installed.
"""

from __future__ import annotations

import os

import jax
import numpy as np
import pytest
from safetensors.numpy import load_file

from tljax import models
from tljax.params import flatten, merge_pretrained

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "pretrained")
RTOL = 1e-5
# name: (expected tljax model, options that must be there, num_heads)
CASES = {
    "resnet_basic": (
        "resnet",
        {
            "block": "basic",
            "stage_sizes": (1, 1, 1, 1),
            "stage_widths": (4, 8, 16, 32),
        },
        None,
    ),
    "resnet_bottleneck": (
        "resnet",
        {"block": "bottleneck", "stage_widths": (4, 8, 16, 32)},
        None,
    ),
    "vit_token": ("vit", {"pool_type": "tok", "width": 64, "depth": 2}, 4),
    "vit_gap": ("vit", {"pool_type": "gap", "mlp_dim": 128}, 4),
}


def relative_error(actual, expected) -> float:
  actual, expected = np.asarray(actual), np.asarray(expected)
  assert actual.shape == expected.shape
  return float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))


def fixture(name):
  reference = np.load(os.path.join(FIXTURES, f"{name}.npz"))
  path = os.path.join(FIXTURES, f"{name}.safetensors")
  return path, reference


def convert(name, **kwargs):
  path, reference = fixture(name)
  arguments = dict(
      image_size=32,
      num_heads=CASES[name][2],
      input_mean=tuple(reference["mean"]),
      input_std=tuple(reference["std"]),
  )
  converted = models.load_timm(path, **{**arguments, **kwargs})
  return converted, reference


@pytest.mark.parametrize("name", sorted(CASES))
def test_fixture_matches_upstream(name):
  converted, reference = convert(name)
  model_name, options, _ = CASES[name]
  assert converted.model_name == model_name
  assert options.items() <= converted.model_options.items()
  assert converted.model_options["bottleneck_dim"] is None
  assert converted.num_classes == 10
  assert converted.input_shape == (32, 32, 3)
  model = converted.create_model()
  images = reference["images"]
  assert images.dtype == np.uint8
  apply = jax.jit(model.apply, static_argnames="train")
  outputs, state = apply(
      converted.params, converted.model_state, images, train=False
  )
  assert relative_error(outputs.backbone_features, reference["features"]) <= (
      RTOL
  )
  assert relative_error(outputs.logits, reference["logits"]) <= RTOL
  # Eval mode: BatchNorm reads the converted running statistics, unchanged.
  for path, value in flatten(state).items():
    np.testing.assert_array_equal(
        value, flatten(converted.model_state)[path], err_msg=path
    )


def test_batch_norm_statistics_are_the_running_ones():
  converted, _ = convert("resnet_basic")
  arrays = load_file(fixture("resnet_basic")[0])
  state = flatten(converted.model_state)
  np.testing.assert_array_equal(
      state["backbone/layer2_0/downsample_bn/mean"],
      arrays["layer2.0.downsample.1.running_mean"],
  )
  np.testing.assert_array_equal(
      state["backbone/bn1/var"], arrays["bn1.running_var"]
  )
  kernel = flatten(converted.params)["backbone/conv1/kernel"]
  np.testing.assert_array_equal(
      kernel, arrays["conv1.weight"].transpose(2, 3, 1, 0)
  )


def test_qkv_split_and_class_token_folding():
  converted, _ = convert("vit_token")
  arrays = load_file(fixture("vit_token")[0])
  params = flatten(converted.params)
  attention = (
      "backbone/Transformer/encoderblock_1/MultiHeadDotProductAttention_0"
  )
  qkv = arrays["blocks.1.attn.qkv.weight"]
  for part, name in enumerate(("query", "key", "value")):
    kernel = params[f"{attention}/{name}/kernel"]
    assert kernel.shape == (64, 4, 16)
    np.testing.assert_array_equal(
        kernel.reshape(64, 64), qkv[64 * part : 64 * (part + 1)].T
    )
  pos = arrays["pos_embed"]
  np.testing.assert_array_equal(
      params["backbone/cls"], arrays["cls_token"] + pos[:, :1]
  )
  np.testing.assert_array_equal(params["backbone/pos_embedding"], pos[:, 1:])


def test_new_head_and_bottleneck_keep_the_upstream_backbone():
  converted, reference = convert("resnet_bottleneck")
  model = converted.create_model(num_classes=3, bottleneck_dim=16)
  # Zeros shaped as the model's initialisation (initialising a ResNet takes
  # seconds to compile here, and the values of the new layers do not matter).
  init_params, init_state = jax.tree.map(
      lambda leaf: np.zeros(leaf.shape, leaf.dtype),
      jax.eval_shape(model.init, jax.random.key(0)),
  )
  params, state = merge_pretrained(
      init_params,
      converted.params,
      dont_load=("head/.*", "bottleneck/.*"),
      init_model_state=init_state,
      loaded_model_state=converted.model_state,
  )
  apply = jax.jit(model.apply, static_argnames="train")
  outputs, _ = apply(params, state, reference["images"], train=False)
  assert outputs.logits.shape == (2, 3)
  assert relative_error(outputs.backbone_features, reference["features"]) <= (
      RTOL
  )


def test_resample_posemb_is_bilinear_with_corners_aligned():
  # A linear function of the grid position is reproduced exactly by
  # bilinear resampling with aligned corners (big_vision's scipy zoom).
  rows, cols = np.meshgrid(np.arange(4.0), np.arange(4.0), indexing="ij")
  old = np.stack([rows, cols, 2 * rows - cols + 1], -1).reshape(1, 16, 3)
  new = models.resample_posemb(old, (7, 7))
  scale = 3.0 / 6.0
  rows, cols = np.meshgrid(np.arange(7.0), np.arange(7.0), indexing="ij")
  rows, cols = rows * scale, cols * scale
  expected = np.stack([rows, cols, 2 * rows - cols + 1], -1).reshape(1, 49, 3)
  np.testing.assert_allclose(new, expected, atol=1e-5)
  np.testing.assert_array_equal(models.resample_posemb(old, (4, 4)), old)
  with pytest.raises(ValueError, match="posemb"):
    models.resample_posemb(old[:, :15], (4, 4))


def test_vit_at_a_new_resolution():
  converted, reference = convert("vit_token")
  larger, _ = convert("vit_token", image_size=48)
  assert larger.input_shape == (48, 48, 3)
  pos = flatten(larger.params)["backbone/pos_embedding"]
  assert pos.shape == (1, 36, 64)
  # The corners of the grid keep their embeddings (aligned corners).
  old = flatten(converted.params)["backbone/pos_embedding"].reshape(4, 4, 64)
  new = pos.reshape(6, 6, 64)
  np.testing.assert_allclose(new[0, 0], old[0, 0], rtol=1e-6)
  np.testing.assert_allclose(new[-1, -1], old[-1, -1], rtol=1e-6)
  images = np.zeros((1, 48, 48, 3), np.uint8)
  apply = jax.jit(larger.create_model().apply, static_argnames="train")
  outputs, _ = apply(larger.params, larger.model_state, images, train=False)
  assert outputs.logits.shape == (1, 10)
  with pytest.raises(ValueError, match="image_size"):
    convert("vit_token", image_size=36)


def test_missing_unexpected_and_misshapen_keys_are_listed():
  path, _ = fixture("resnet_basic")
  arrays = load_file(path)
  broken = dict(arrays)
  del broken["layer3.0.bn2.running_var"]
  broken["layer3.0.extra.weight"] = np.zeros(3, np.float32)
  with pytest.raises(ValueError) as error:
    models.convert_timm(broken)
  assert "layer3.0.bn2.running_var" in str(error.value)
  assert "layer3.0.extra.weight" in str(error.value)
  misshapen = dict(arrays)
  misshapen["layer2.0.conv2.weight"] = np.zeros((8, 8, 1, 3), np.float32)
  with pytest.raises(ValueError, match=r"layer2\.0\.conv2\.weight.*conv2"):
    models.convert_timm(misshapen)
  vit = load_file(fixture("vit_token")[0])
  with pytest.raises(ValueError, match="num_heads"):
    models.convert_timm(vit)
  with pytest.raises(ValueError, match="num_heads"):
    models.convert_timm(vit, num_heads=5)
  with pytest.raises(ValueError, match="fc_norm"):
    models.convert_timm(
        {**vit, "fc_norm.weight": np.ones(64, np.float32)}, num_heads=4
    )
  with pytest.raises(ValueError, match="layer1.0.conv1.weight"):
    models.convert_timm({"weight": np.zeros(3, np.float32)})
  with pytest.raises(ValueError, match="image_size"):
    models.convert_timm(arrays, image_size=0)
  with pytest.raises(FileNotFoundError, match="path"):
    models.load_timm(os.path.join(FIXTURES, "absent.safetensors"))


def test_headless_checkpoint():
  arrays = load_file(fixture("resnet_basic")[0])
  del arrays["fc.weight"], arrays["fc.bias"]
  converted = models.convert_timm(arrays, image_size=32)
  assert converted.num_classes is None and "head" not in converted.params
  with pytest.raises(ValueError, match="num_classes"):
    converted.create_model()
  assert converted.create_model(num_classes=4).num_classes == 4


def augreg():
  with np.load(
      os.path.join(FIXTURES, "vit_augreg.checkpoint.npz"), allow_pickle=False
  ) as data:
    arrays = {key: data[key] for key in data.files}
  return arrays, np.load(os.path.join(FIXTURES, "vit_augreg.npz"))


def run(converted, images):
  model = converted.create_model()
  apply = jax.jit(model.apply, static_argnames="train")
  return apply(converted.params, converted.model_state, images, train=False)[0]


def test_augreg_npz_matches_timms_loading_of_it():
  _, reference = augreg()
  converted = models.load_big_vision(
      os.path.join(FIXTURES, "vit_augreg.checkpoint.npz"),
      approximate_gelu=False,  # timm runs these weights with the exact GELU
  )
  assert converted.model_name == "vit"
  assert {
      "num_heads": 2,
      "width": 32,
      "mlp_dim": 64,
      "pool_type": "tok",
  }.items() <= (converted.model_options.items())
  outputs = run(converted, reference["images"])
  assert relative_error(outputs.backbone_features, reference["features"]) <= (
      RTOL
  )
  assert relative_error(outputs.logits, reference["logits"]) <= RTOL
  # big_vision's own GELU (tanh) is the default: close, not equal.
  tanh = run(
      models.load_big_vision(
          os.path.join(FIXTURES, "vit_augreg.checkpoint.npz")
      ),
      reference["images"],
  )
  assert 0 < relative_error(tanh.logits, reference["logits"]) < 1e-2


def test_big_vision_scan_layout_matches_too():
  arrays, reference = augreg()
  renames = {
      "MultiHeadDotProductAttention_1": "MultiHeadDotProductAttention_0",
      "LayerNorm_2": "LayerNorm_1",
      "MlpBlock_3": "MlpBlock_0",
  }
  pos = arrays.pop("Transformer/posembed_input/pos_embedding")
  scan = {
      "params/pos_embedding": pos[:, 1:],
      "params/cls": arrays.pop("cls") + pos[:, :1],
  }
  blocks = {}
  for key, value in arrays.items():
    parts = key.split("/")
    if parts[1:2] and parts[1].startswith("encoderblock_"):
      index = int(parts[1].split("_")[1])
      rest = "/".join([renames.get(parts[2], parts[2])] + parts[3:])
      blocks.setdefault(rest, {})[index] = value
    else:
      scan[f"params/{key}"] = value
  for rest, by_index in blocks.items():
    scan[f"params/Transformer/encoderblock/{rest}"] = np.stack(
        [by_index[i] for i in sorted(by_index)]
    )
  converted = models.convert_big_vision(scan, approximate_gelu=False)
  outputs = run(converted, reference["images"])
  assert relative_error(outputs.logits, reference["logits"]) <= RTOL


def test_big_vision_errors(tmp_path):
  arrays, _ = augreg()
  with pytest.raises(ValueError, match="pre_logits"):
    models.convert_big_vision(
        {**arrays, "pre_logits/kernel": np.zeros((32, 32), np.float32)}
    )
  with pytest.raises(ValueError, match="MAPHead_0"):
    models.convert_big_vision(
        {**arrays, "MAPHead_0/probe": np.zeros((1, 1, 32), np.float32)}
    )
  with pytest.raises(ValueError, match="embedding/kernel"):
    models.convert_big_vision({"head/kernel": np.zeros((2, 2), np.float32)})
  extra = {
      **arrays,
      "Transformer/encoderblock_1/Extra_0/kernel": np.zeros(3, np.float32),
  }
  with pytest.raises(ValueError, match="Extra_0"):
    models.convert_big_vision(extra)
  with pytest.raises(ValueError, match="image_size"):
    models.convert_big_vision(arrays, image_size=30)
  np.savez(tmp_path / "objects.npz", kernel=np.array([{"a": 1}], dtype=object))
  with pytest.raises(ValueError, match="npz"):
    models.load_big_vision(tmp_path / "objects.npz")


def test_hugging_face_vit_matches_transformers():
  path, reference = fixture("hf_vit")
  converted = models.load_hugging_face(path, num_heads=2)
  assert converted.model_options["layer_norm_epsilon"] == float(
      reference["layer_norm_eps"]
  )
  assert not converted.model_options["approximate_gelu"]
  outputs = run(converted, reference["images"])
  assert relative_error(outputs.backbone_features, reference["features"]) <= (
      RTOL
  )
  assert relative_error(outputs.logits, reference["logits"]) <= RTOL
  arrays = load_file(path)
  query = arrays.pop("vit.encoder.layer.1.attention.attention.query.weight")
  # ViTModel: no classifier, a pooler that is not part of the features.
  headless = {
      k: v for k, v in arrays.items() if not k.startswith("classifier.")
  }
  headless["vit.pooler.dense.weight"] = np.zeros((32, 32), np.float32)
  headless["vit.encoder.layer.1.attention.attention.query.weight"] = query
  converted = models.convert_hugging_face(headless, num_heads=2)
  assert converted.num_classes is None
  # A missing query projection: its key and value are reported, not guessed.
  with pytest.raises(ValueError) as error:
    models.convert_hugging_face(arrays, num_heads=2)
  assert "vit.encoder.layer.1.attention.attention.key.weight" in str(
      error.value
  )
  assert "blocks.1.attn.qkv.weight" in str(error.value)
  with pytest.raises(ValueError, match="layer_norm_epsilon"):
    models.convert_hugging_face(headless, num_heads=2, layer_norm_epsilon=0)


def test_clip_image_tower_matches_transformers():
  path, reference = fixture("clip_vision")
  converted = models.load_clip_vision(
      path,
      num_heads=2,
      input_mean=tuple(reference["mean"]),
      input_std=tuple(reference["std"]),
  )
  assert converted.num_classes is None and "head" not in converted.params
  assert str(reference["hidden_act"]) == "quick_gelu"
  assert converted.model_options["quick_gelu"]
  assert converted.model_options["layer_norm_epsilon"] == float(
      reference["layer_norm_eps"]
  )
  model = converted.create_model(num_classes=3)
  params, _ = jax.tree.map(
      lambda leaf: np.zeros(leaf.shape, leaf.dtype),
      jax.eval_shape(model.init, jax.random.key(0)),
  )
  params, state = (
      merge_pretrained(params, converted.params, dont_load=("head/.*",)),
      {},
  )
  apply = jax.jit(model.apply, static_argnames="train")
  outputs, _ = apply(params, state, reference["images"], train=False)
  # backbone_features are CLIP's pooler_output; its projection the embeds.
  assert relative_error(outputs.backbone_features, reference["features"]) <= (
      RTOL
  )
  projection = load_file(path)["visual_projection.weight"]
  embeds = np.asarray(outputs.backbone_features) @ projection.T
  assert relative_error(embeds, reference["image_embeds"]) <= RTOL
  arrays = load_file(path)
  del arrays["vision_model.pre_layrnorm.bias"]
  with pytest.raises(ValueError, match="pre_layrnorm.bias"):
    models.convert_clip_vision(arrays, num_heads=2)
