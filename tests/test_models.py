"""Tests for tljax.models against independent references.

References: closed-form parameter counts written here (and torchvision's
published ResNet totals), NumPy re-implementations of the MLP, the LeNet
forward pass and its convolutions' gradients, BatchNorm's running-average
update, LeNet's two convolution implementations against each other, and
properties that hold by construction (dropout masks, identity residual
blocks). Heavy models are checked through ``jax.eval_shape`` (shapes and
dtypes without compiling), and the one real ResNet forward pass uses
NumPy-filled parameters to skip the slow CPU compilation of ``init``.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx, traverse_util

from tljax import models
from tljax.models import functional

EPSILON = 1e-5  # BatchNorm epsilon of every tljax model.
MOMENTUM = 0.9  # Default BatchNorm momentum, flax convention.


def flat(tree):
  return traverse_util.flatten_dict(tree, sep="/")


def count(tree):
  return sum(math.prod(np.shape(leaf)) for leaf in jax.tree.leaves(tree))


@functools.cache
def abstract_init(model):
  return jax.eval_shape(model.init, jax.random.key(0))


def abstract_apply(model, batch_size, *, train, dtype=jnp.float32):
  params, model_state = abstract_init(model)
  inputs = jax.ShapeDtypeStruct((batch_size, *model.input_shape), dtype)
  key = jax.ShapeDtypeStruct((), jax.random.key(0).dtype)
  return jax.eval_shape(
      lambda p, s, x, k: model.apply(p, s, x, train=train, key=k),
      params,
      model_state,
      inputs,
      key,
  )


def numpy_params(model, seed=0):
  """Random parameters and non-trivial BatchNorm statistics, from NumPy."""
  rng = np.random.default_rng(seed)
  params, model_state = abstract_init(model)

  def param(path, leaf):
    name = path[-1].key
    if name == "kernel":
      fan_in = math.prod(leaf.shape[:-1])
      return rng.normal(size=leaf.shape).astype(np.float32) * np.sqrt(
          2.0 / fan_in
      )
    if name == "scale":
      return rng.uniform(0.5, 1.5, size=leaf.shape).astype(np.float32)
    return rng.normal(scale=0.1, size=leaf.shape).astype(np.float32)

  def statistic(path, leaf):
    if path[-1].key == "mean":
      return rng.normal(scale=0.1, size=leaf.shape).astype(np.float32)
    return rng.uniform(0.5, 2.0, size=leaf.shape).astype(np.float32)

  return (
      jax.tree_util.tree_map_with_path(param, params),
      jax.tree_util.tree_map_with_path(statistic, model_state),
  )


# --- Closed-form parameter counts -------------------------------------------


def conv_count(kernel_size, in_channels, out_channels, bias):
  return kernel_size * kernel_size * in_channels * out_channels + (
      out_channels if bias else 0
  )


def dense_count(fan_in, fan_out):
  return fan_in * fan_out + fan_out


def batch_norm_count(channels):
  return 2 * channels  # scale and bias; mean and var are model state.


def resnet_backbone_count(in_channels, *, bottleneck_blocks, stage_sizes, stem):
  stem_kernel = 7 if stem == "imagenet" else 3
  total = conv_count(stem_kernel, in_channels, 64, False) + batch_norm_count(64)
  channels_in = 64
  expansion = 4 if bottleneck_blocks else 1
  for stage, (width, num_blocks) in enumerate(
      zip((64, 128, 256, 512), stage_sizes, strict=True)
  ):
    for index in range(num_blocks):
      stride = 2 if stage > 0 and index == 0 else 1
      out = width * expansion
      if bottleneck_blocks:
        total += conv_count(1, channels_in, width, False) + batch_norm_count(
            width
        )
        total += conv_count(3, width, width, False) + batch_norm_count(width)
        total += conv_count(1, width, out, False) + batch_norm_count(out)
      else:
        total += conv_count(3, channels_in, width, False) + batch_norm_count(
            width
        )
        total += conv_count(3, width, width, False) + batch_norm_count(width)
      if stride != 1 or channels_in != out:
        total += conv_count(1, channels_in, out, False) + batch_norm_count(out)
      channels_in = out
  return total


def subtree_count(params, prefix):
  return sum(
      math.prod(np.shape(leaf))
      for path, leaf in flat(params).items()
      if path.startswith(prefix)
  )


# torchvision.models.resnet18/50 totals minus their 1000-way fc layer.
TORCHVISION_RESNET18 = 11_689_512 - dense_count(512, 1000)
TORCHVISION_RESNET50 = 25_557_032 - dense_count(2048, 1000)


def test_resnet_closed_form_matches_torchvision():
  assert TORCHVISION_RESNET18 == 11_176_512
  assert TORCHVISION_RESNET50 == 23_508_032
  assert TORCHVISION_RESNET18 == resnet_backbone_count(
      3, bottleneck_blocks=False, stage_sizes=(2, 2, 2, 2), stem="imagenet"
  )
  assert TORCHVISION_RESNET50 == resnet_backbone_count(
      3, bottleneck_blocks=True, stage_sizes=(3, 4, 6, 3), stem="imagenet"
  )


@pytest.mark.parametrize(
    "name, input_shape, stem, bottleneck_blocks, stage_sizes",
    [
        ("resnet18", (224, 224, 3), "imagenet", False, (2, 2, 2, 2)),
        ("resnet50", (224, 224, 3), "imagenet", True, (3, 4, 6, 3)),
        ("resnet18", (8, 8, 1), "small", False, (2, 2, 2, 2)),
        ("resnet50", (8, 8, 1), "small", True, (3, 4, 6, 3)),
    ],
)
def test_resnet_param_counts(
    name, input_shape, stem, bottleneck_blocks, stage_sizes
):
  model = models.create_model(
      name,
      num_classes=10,
      input_shape=input_shape,
      stem=stem,
      bottleneck_dim=256,
  )
  params, model_state = abstract_init(model)
  backbone = resnet_backbone_count(
      input_shape[-1],
      bottleneck_blocks=bottleneck_blocks,
      stage_sizes=stage_sizes,
      stem=stem,
  )
  if stem == "imagenet":
    assert backbone == (
        TORCHVISION_RESNET18 if name == "resnet18" else TORCHVISION_RESNET50
    )
  features = 2048 if bottleneck_blocks else 512
  assert subtree_count(params, "backbone/") == backbone
  assert subtree_count(params, "bottleneck/") == (
      dense_count(features, 256) + batch_norm_count(256)
  )
  assert subtree_count(params, "head/") == dense_count(256, 10)
  assert model.param_count == count(params)
  # Running mean and variance for every BatchNorm scale/bias pair.
  batch_norm_params = sum(
      math.prod(leaf.shape)
      for path, leaf in flat(params).items()
      if path.endswith("/scale")
  )
  assert count(model_state) == 2 * batch_norm_params


@pytest.mark.parametrize(
    "input_shape, flat_features",
    [
        ((8, 8, 1), 2 * 2 * 50),
        ((28, 28, 1), 7 * 7 * 50),
        ((32, 32, 3), 8 * 8 * 50),
    ],
)
def test_lenet_param_counts(input_shape, flat_features):
  model = models.create_model("lenet", num_classes=10, input_shape=input_shape)
  params, model_state = abstract_init(model)
  backbone = (
      conv_count(5, input_shape[-1], 20, True)
      + conv_count(5, 20, 50, True)
      + dense_count(flat_features, 500)
  )
  assert subtree_count(params, "backbone/") == backbone
  assert subtree_count(params, "bottleneck/") == dense_count(
      500, 256
  ) + batch_norm_count(256)
  assert subtree_count(params, "head/") == dense_count(256, 10)
  assert count(model_state) == 2 * 256
  if input_shape == (8, 8, 1):
    # By hand: 520 + 25,050 + 100,500 + 128,256 + 512 + 2,570.
    assert count(params) == 257_408


def test_mlp_param_count_and_identity_bottleneck():
  model = models.create_model(
      "mlp", num_classes=3, input_shape=(2,), hidden_dims=(64, 32)
  )
  params, model_state = abstract_init(model)
  assert count(params) == dense_count(2, 64) + dense_count(
      64, 32
  ) + dense_count(32, 3)
  assert set(params) == {
      "backbone",
      "head",
  }  # identity bottleneck has no variables
  assert model_state == {}


# --- Structure and shapes ---------------------------------------------------

SHAPE_CASES = [
    ("mlp", (2,), {}, 64, 64),
    ("mlp", (8, 8, 1), {"bottleneck_dim": 16}, 64, 16),
    ("lenet", (8, 8, 1), {}, 500, 256),
    ("lenet", (28, 28, 1), {"bottleneck_dim": None}, 500, 500),
    ("lenet", (32, 32, 3), {}, 500, 256),
    ("resnet18", (8, 8, 1), {"stem": "small"}, 512, 256),
    (
        "resnet18",
        (32, 32, 3),
        {"stem": "imagenet", "bottleneck_dim": 128},
        512,
        128,
    ),
    ("resnet50", (8, 8, 1), {"stem": "small"}, 2048, 256),
]


@pytest.mark.parametrize(
    "name, input_shape, kwargs, backbone_dim, features_dim", SHAPE_CASES
)
@pytest.mark.parametrize("train", [False, True])
def test_output_shapes(
    name, input_shape, kwargs, backbone_dim, features_dim, train
):
  model = models.create_model(
      name, num_classes=7, input_shape=input_shape, **kwargs
  )
  outputs, model_state = abstract_apply(model, 5, train=train)
  assert isinstance(outputs, models.ModelOutput)
  assert outputs.backbone_features.shape == (5, backbone_dim)
  assert outputs.features.shape == (5, features_dim)
  assert outputs.logits.shape == (5, 7)
  assert jax.tree.structure(model_state) == jax.tree.structure(
      abstract_init(model)[1]
  )


@pytest.mark.parametrize(
    "name, input_shape, kwargs, feature_maps_shape",
    [
        (
            "lenet",
            (8, 8, 1),
            {},
            (5, 2, 2, 50),
        ),  # two 2x2 poolings: 8 -> 4 -> 2
        ("lenet", (28, 28, 1), {"bottleneck_dim": None}, (5, 7, 7, 50)),
        (
            "resnet18",
            (8, 8, 1),
            {"stem": "small"},
            (5, 1, 1, 512),
        ),  # 8 -> 8, 4, 2, 1
        ("resnet18", (32, 32, 3), {"stem": "small"}, (5, 4, 4, 512)),
        (
            "resnet18",
            (64, 64, 3),
            {"stem": "imagenet"},
            (5, 2, 2, 512),
        ),  # 64 / 32
        ("resnet50", (8, 8, 1), {"stem": "small"}, (5, 1, 1, 2048)),
        ("mlp", (8, 8, 1), {"bottleneck_dim": 16}, None),
    ],
)
@pytest.mark.parametrize("train", [False, True])
def test_feature_maps_shapes(
    name, input_shape, kwargs, feature_maps_shape, train
):
  model = models.create_model(
      name, num_classes=7, input_shape=input_shape, **kwargs
  )
  outputs, _ = abstract_apply(model, 5, train=train)
  if feature_maps_shape is None:
    assert outputs.feature_maps is None
  else:
    assert outputs.feature_maps.shape == feature_maps_shape
    assert outputs.feature_maps.dtype == outputs.backbone_features.dtype


def test_model_output_positional_fields():
  # feature_maps is appended with a default: three-field construction and
  # positional access keep working.
  outputs = models.ModelOutput("backbone", "features", "logits")
  assert outputs.feature_maps is None
  assert outputs[:3] == ("backbone", "features", "logits")
  assert models.ModelOutput._fields == (
      "backbone_features",
      "features",
      "logits",
      "feature_maps",
  )


@pytest.mark.parametrize(
    "name, input_shape, kwargs, backbone_dim, features_dim", SHAPE_CASES
)
def test_param_paths_start_with_backbone_bottleneck_head(
    name, input_shape, kwargs, backbone_dim, features_dim
):
  model = models.create_model(
      name, num_classes=7, input_shape=input_shape, **kwargs
  )
  params, model_state = abstract_init(model)
  paths = flat(params)
  assert all(
      path.split("/")[0] in ("backbone", "bottleneck", "head") for path in paths
  )
  assert paths["head/kernel"].shape == (features_dim, 7)
  assert paths["head/bias"].shape == (7,)
  if "bottleneck_dim" in kwargs and kwargs["bottleneck_dim"] is None:
    assert not any(path.startswith("bottleneck/") for path in paths)
  assert all(
      path.split("/")[-1] in ("mean", "var") for path in flat(model_state)
  )


def test_resnet_submodule_names():
  model = models.create_model(
      "resnet18", num_classes=10, input_shape=(32, 32, 3)
  )
  params, model_state = abstract_init(model)
  paths = flat(params)
  assert paths["backbone/conv1/kernel"].shape == (7, 7, 3, 64)
  assert paths["backbone/bn1/scale"].shape == (64,)
  assert paths["backbone/layer1_0/conv1/kernel"].shape == (3, 3, 64, 64)
  assert paths["backbone/layer2_0/downsample_conv/kernel"].shape == (
      1,
      1,
      64,
      128,
  )
  assert paths["backbone/layer4_1/bn2/bias"].shape == (512,)
  assert "backbone/layer1_0/downsample_conv/kernel" not in paths
  assert not any(
      path.endswith("conv1/bias") for path in paths
  )  # convs have no bias
  assert paths["bottleneck/linear/kernel"].shape == (512, 256)
  assert flat(model_state)["backbone/layer3_1/bn1/mean"].shape == (256,)

  resnet50 = models.create_model(
      "resnet50", num_classes=10, input_shape=(32, 32, 3)
  )
  paths = flat(abstract_init(resnet50)[0])
  assert paths["backbone/layer1_0/conv3/kernel"].shape == (1, 1, 64, 256)
  assert paths["backbone/layer1_0/downsample_conv/kernel"].shape == (
      1,
      1,
      64,
      256,
  )
  # Torchvision "v1.5": the stride sits on the 3x3 convolution.
  assert paths["backbone/layer3_5/conv2/kernel"].shape == (3, 3, 256, 256)


# --- Numerical references ---------------------------------------------------


def numpy_mlp(params, model_state, inputs, *, train):
  """MLP with bottleneck Linear → BatchNorm → ReLU, written from the params."""
  p = jax.tree.map(np.asarray, params)
  s = jax.tree.map(np.asarray, model_state)
  x = np.asarray(inputs, np.float64).reshape(len(inputs), -1)
  for name in sorted(p["backbone"]):
    x = np.maximum(
        x @ p["backbone"][name]["kernel"] + p["backbone"][name]["bias"], 0
    )
  backbone_features = x
  z = (
      x @ p["bottleneck"]["linear"]["kernel"]
      + p["bottleneck"]["linear"]["bias"]
  )
  running = s["bottleneck"]["batch_norm"]
  if train:
    mean, var = z.mean(axis=0), z.var(axis=0)  # biased batch variance
    new_running = {
        "mean": MOMENTUM * running["mean"] + (1 - MOMENTUM) * mean,
        "var": MOMENTUM * running["var"] + (1 - MOMENTUM) * var,
    }
  else:
    mean, var = running["mean"], running["var"]
    new_running = running
  norm = p["bottleneck"]["batch_norm"]
  z = (z - mean) / np.sqrt(var + EPSILON) * norm["scale"] + norm["bias"]
  features = np.maximum(z, 0)
  logits = features @ p["head"]["kernel"] + p["head"]["bias"]
  return backbone_features, features, logits, new_running


@pytest.fixture(scope="module")
def mlp_setup():
  model = models.create_model(
      "mlp",
      num_classes=3,
      input_shape=(8, 8, 1),
      hidden_dims=(16, 8),
      bottleneck_dim=4,
  )
  params, model_state = numpy_params(model, seed=1)
  inputs = (
      np.random.default_rng(2).uniform(size=(6, 8, 8, 1)).astype(np.float32)
  )
  apply = jax.jit(model.apply, static_argnames="train")
  return model, params, model_state, inputs, apply


@pytest.mark.parametrize("train", [False, True])
def test_mlp_matches_numpy(mlp_setup, train):
  model, params, model_state, inputs, apply = mlp_setup
  outputs, new_state = apply(params, model_state, inputs, train=train)
  backbone_features, features, logits, new_running = numpy_mlp(
      params, model_state, inputs, train=train
  )
  np.testing.assert_allclose(
      outputs.backbone_features, backbone_features, rtol=1e-5, atol=1e-5
  )
  np.testing.assert_allclose(outputs.features, features, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(outputs.logits, logits, rtol=1e-4, atol=1e-5)
  assert outputs.feature_maps is None  # no spatial map in an MLP
  for statistic in ("mean", "var"):
    np.testing.assert_allclose(
        new_state["bottleneck"]["batch_norm"][statistic],
        new_running[statistic],
        rtol=1e-5,
        atol=1e-6,
    )


def test_apply_does_not_mutate_numpy_inputs(mlp_setup):
  model, params, model_state, inputs, _ = mlp_setup
  numpy_state = jax.tree.map(np.array, model_state)
  before = jax.tree.map(np.copy, numpy_state)
  _, new_state = model.apply(params, numpy_state, inputs, train=True)
  jax.tree.map(np.testing.assert_array_equal, numpy_state, before)
  assert not np.allclose(
      new_state["bottleneck"]["batch_norm"]["mean"],
      before["bottleneck"]["batch_norm"]["mean"],
  )


def test_eval_mode_leaves_state_and_ignores_batch_composition(mlp_setup):
  model, params, model_state, inputs, apply = mlp_setup
  outputs, new_state = apply(params, model_state, inputs, train=False)
  jax.tree.map(np.testing.assert_array_equal, new_state, model_state)
  other = np.random.default_rng(3).normal(size=(9, 8, 8, 1)).astype(np.float32)
  mixed, _ = apply(
      params, model_state, np.concatenate([inputs, other]), train=False
  )
  np.testing.assert_allclose(
      mixed.logits[: len(inputs)], outputs.logits, rtol=1e-6, atol=1e-6
  )
  # In training mode the batch statistics make outputs depend on the batch.
  train_outputs, _ = apply(params, model_state, inputs, train=True)
  train_mixed, _ = apply(
      params, model_state, np.concatenate([inputs, other]), train=True
  )
  assert not np.allclose(
      train_mixed.logits[: len(inputs)], train_outputs.logits
  )


def numpy_conv_same(images, kernel, bias):
  """NHWC convolution with 'SAME' zero padding, stride 1 (cross-correlation)."""
  size = kernel.shape[0]
  pad = size // 2
  padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  height, width = images.shape[1:3]
  out = np.zeros((*images.shape[:3], kernel.shape[-1]))
  for dy in range(size):
    for dx in range(size):
      out += padded[:, dy : dy + height, dx : dx + width, :] @ kernel[dy, dx]
  return out + bias


def numpy_max_pool(images):
  batch, height, width, channels = images.shape
  crop = images[:, : height // 2 * 2, : width // 2 * 2]
  return crop.reshape(batch, height // 2, 2, width // 2, 2, channels).max(
      axis=(2, 4)
  )


@pytest.mark.parametrize(
    "input_shape, batch",
    [
        ((8, 8, 1), 3),  # both convolutions by their dense matrices
        ((28, 28, 1), 37),  # both blocked: 37 = 32 + 5 = 4 * 8 + 5 examples
        ((32, 32, 3), 11),
    ],
)
def test_lenet_matches_numpy(input_shape, batch):
  model = models.create_model(
      "lenet", num_classes=10, input_shape=input_shape, bottleneck_dim=None
  )
  params, model_state = numpy_params(model, seed=4)
  assert model_state == {}
  inputs = np.random.default_rng(5).uniform(size=(batch, *input_shape))
  inputs = inputs.astype(np.float32)
  outputs, _ = jax.jit(model.apply, static_argnames="train")(
      params, {}, inputs, train=False
  )
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params["backbone"])
  x = numpy_max_pool(
      np.maximum(
          numpy_conv_same(inputs, p["conv1"]["kernel"], p["conv1"]["bias"]), 0
      )
  )
  x = numpy_max_pool(
      np.maximum(
          numpy_conv_same(x, p["conv2"]["kernel"], p["conv2"]["bias"]), 0
      )
  )
  assert x.shape == (batch, input_shape[0] // 4, input_shape[1] // 4, 50)
  np.testing.assert_allclose(outputs.feature_maps, x, rtol=1e-4, atol=1e-4)
  features = np.maximum(
      x.reshape(batch, -1) @ p["fc"]["kernel"] + p["fc"]["bias"], 0
  )
  logits = features @ np.asarray(params["head"]["kernel"]) + np.asarray(
      params["head"]["bias"]
  )
  np.testing.assert_allclose(
      outputs.backbone_features, features, rtol=1e-4, atol=1e-4
  )
  np.testing.assert_allclose(outputs.features, features, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(outputs.logits, logits, rtol=1e-4, atol=1e-4)


def numpy_conv_same_vjp(images, kernel, output_grad):
  """Gradients of :func:`numpy_conv_same`: (images, kernel, bias)."""
  size = kernel.shape[0]
  pad = size // 2
  padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  padded_grad = np.zeros_like(padded)
  kernel_grad = np.zeros_like(kernel)
  height, width = images.shape[1:3]
  for dy in range(size):
    for dx in range(size):
      window = padded[:, dy : dy + height, dx : dx + width, :]
      kernel_grad[dy, dx] = np.einsum("bhwc,bhwo->co", window, output_grad)
      padded_grad[:, dy : dy + height, dx : dx + width, :] += (
          output_grad @ kernel[dy, dx].T
      )
  return (
      padded_grad[:, pad : pad + height, pad : pad + width],
      kernel_grad,
      output_grad.sum(axis=(0, 1, 2)),
  )


def numpy_relu_max_pool_vjp(pre_activations, pooled_grad):
  """Gradient of ``numpy_max_pool(relu(·))``, with ``jnp.max``'s rule for ties.

  The inputs of a block that tie for its maximum share its gradient equally;
  the ReLU passes none where its input is not positive.
  """
  batch, height, width, channels = pre_activations.shape
  blocks = np.maximum(pre_activations, 0)[
      :, : height // 2 * 2, : width // 2 * 2
  ]
  blocks = blocks.reshape(batch, height // 2, 2, width // 2, 2, channels)
  winners = blocks == blocks.max(axis=(2, 4), keepdims=True)
  share = pooled_grad[:, :, None, :, None, :] / winners.sum(
      axis=(2, 4), keepdims=True
  )
  grad = np.zeros(pre_activations.shape)
  grad[:, : height // 2 * 2, : width // 2 * 2] = (winners * share).reshape(
      batch, height // 2 * 2, width // 2 * 2, channels
  )
  return grad * (pre_activations > 0)


def positive_ties(pre_activations):
  """How many 2x2 pooling blocks have two or more inputs at a positive maximum."""
  batch, height, width, channels = pre_activations.shape
  blocks = pre_activations[:, : height // 2 * 2, : width // 2 * 2].reshape(
      batch, height // 2, 2, width // 2, 2, channels
  )
  peak = blocks.max(axis=(2, 4), keepdims=True)
  return int(
      np.sum(
          ((blocks == peak).sum(axis=(2, 4)) > 1) & (peak[:, :, 0, :, 0] > 0)
      )
  )


def integer_lenet(input_shape, batch, seed, conv_impl="matmul"):
  """A LeNet with small-integer parameters and inputs.

  Every convolution output is then an integer computed exactly in float32,
  whatever the order of summation, so all implementations (and NumPy) see
  the same values, and 2x2 pooling blocks often tie at a positive maximum.
  """
  model = models.create_model(
      "lenet",
      num_classes=4,
      input_shape=input_shape,
      bottleneck_dim=None,
      conv_impl=conv_impl,
  )
  rng = np.random.default_rng(seed)
  params = jax.tree.map(
      lambda leaf: rng.integers(-2, 3, size=leaf.shape).astype(np.float32),
      abstract_init(model)[0],
  )
  inputs = rng.integers(0, 3, size=(batch, *input_shape)).astype(np.float32)
  return model, params, inputs


@pytest.mark.parametrize(
    "input_shape, batch",
    [
        ((8, 8, 1), 3),  # dense matrices
        (
            (11, 9, 2),
            5,
        ),  # conv1 blocked (99 pixels), conv2 dense (5x4), odd sizes
        ((28, 28, 1), 11),  # both blocked, 11 = 8 + 3 examples
        ((32, 32, 3), 9),
    ],
)
def test_lenet_convolution_gradients_match_numpy(input_shape, batch):
  """Feature maps and their VJP (kernels, biases, images) against NumPy."""
  model, params, inputs = integer_lenet(input_shape, batch, seed=7)
  maps_shape = (batch, input_shape[0] // 4, input_shape[1] // 4, 50)
  maps_grad = (
      np.random.default_rng(8).normal(size=maps_shape).astype(np.float32)
  )

  def loss(params, inputs):
    outputs, _ = model.apply(params, {}, inputs, train=True)
    return jnp.sum(outputs.feature_maps * maps_grad), outputs.feature_maps

  (_, maps), (grads, input_grad) = jax.jit(
      jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)
  )(params, inputs)
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params["backbone"])
  x = inputs.astype(np.float64)
  z1 = numpy_conv_same(x, p["conv1"]["kernel"], p["conv1"]["bias"])
  a1 = numpy_max_pool(np.maximum(z1, 0))
  z2 = numpy_conv_same(a1, p["conv2"]["kernel"], p["conv2"]["bias"])
  np.testing.assert_array_equal(maps, numpy_max_pool(np.maximum(z2, 0)))
  assert positive_ties(z1) > 0 and positive_ties(z2) > 0
  grad_a1, grad_k2, grad_b2 = numpy_conv_same_vjp(
      a1, p["conv2"]["kernel"], numpy_relu_max_pool_vjp(z2, maps_grad)
  )
  grad_x, grad_k1, grad_b1 = numpy_conv_same_vjp(
      x, p["conv1"]["kernel"], numpy_relu_max_pool_vjp(z1, grad_a1)
  )
  expected = {
      "conv1": {"kernel": grad_k1, "bias": grad_b1},
      "conv2": {"kernel": grad_k2, "bias": grad_b2},
  }
  for layer in ("conv1", "conv2"):
    for name in ("kernel", "bias"):
      want = expected[layer][name]
      np.testing.assert_allclose(
          grads["backbone"][layer][name],
          want,
          rtol=1e-5,
          atol=1e-5 * np.abs(want).max(),
      )
  np.testing.assert_allclose(
      input_grad, grad_x, rtol=1e-5, atol=1e-5 * np.abs(grad_x).max()
  )


@pytest.mark.parametrize(
    "input_shape, batch",
    [
        ((8, 8, 1), 3),  # both convolutions by the dense matrix (8x8, then 4x4)
        (
            (11, 9, 2),
            3,
        ),  # conv1 blocked (99 pixels), conv2 dense (5x4), odd sizes
        ((28, 28, 1), 37),  # both blocked, 37 = 32 + 5 = 4 * 8 + 5 examples
        ((32, 32, 3), 9),
    ],
)
def test_lenet_matmul_convolutions_match_xla(input_shape, batch):
  """conv_impl="matmul" (the default) against lax.conv_general_dilated.

  Same parameters, so the outputs and every gradient must agree to float32
  rounding; the two differ only in the order of summation.
  """
  x = (
      np.random.default_rng(6)
      .uniform(size=(batch, *input_shape))
      .astype(np.float32)
  )
  results = {}
  for impl in ("matmul", "xla"):
    model = models.create_model(
        "lenet",
        num_classes=4,
        input_shape=input_shape,
        bottleneck_dim=None,
        conv_impl=impl,
    )
    params, _ = model.init(jax.random.key(2))

    def loss(params, model=model):
      outputs, _ = model.apply(params, {}, x, train=True)
      return jnp.sum(outputs.logits**2), outputs.feature_maps

    results[impl] = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
  (value, maps), grads = results["matmul"]
  (ref_value, ref_maps), ref_grads = results["xla"]
  np.testing.assert_allclose(maps, ref_maps, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(value, ref_value, rtol=1e-5)
  for got, want in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads)):
    scale = float(np.max(np.abs(want)))
    assert scale > 0
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-5 * scale)


def test_lenet_matmul_ties_match_xla():
  """With many tied pooling maxima both implementations route the gradient alike."""
  grads = {}
  for impl in ("matmul", "xla"):
    model, params, inputs = integer_lenet(
        (28, 28, 1), 10, seed=9, conv_impl=impl
    )

    def loss(params, inputs, model=model):
      outputs, _ = model.apply(params, {}, inputs, train=True)
      return jnp.sum(jnp.sin(outputs.logits))

    grads[impl] = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, inputs)
  for got, want in zip(
      jax.tree.leaves(grads["matmul"]), jax.tree.leaves(grads["xla"])
  ):
    scale = float(np.max(np.abs(want)))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * scale)


def test_resnet18_batch_norm_train_and_eval():
  model = models.create_model(
      "resnet18", num_classes=10, input_shape=(8, 8, 1), stem="small"
  )
  params, model_state = numpy_params(model, seed=6)
  apply = jax.jit(model.apply, static_argnames="train")
  inputs = (
      np.random.default_rng(7).uniform(size=(4, 8, 8, 1)).astype(np.float32)
  )

  outputs, new_state = apply(params, model_state, inputs, train=True)
  assert np.all(np.isfinite(outputs.logits))
  # Stem BatchNorm: running = momentum * running + (1 - momentum) * batch stat.
  conv1 = numpy_conv_same(
      inputs.astype(np.float64),
      np.asarray(params["backbone"]["conv1"]["kernel"], np.float64),
      0.0,
  )
  running = model_state["backbone"]["bn1"]
  np.testing.assert_allclose(
      new_state["backbone"]["bn1"]["mean"],
      MOMENTUM * running["mean"] + (1 - MOMENTUM) * conv1.mean(axis=(0, 1, 2)),
      rtol=1e-4,
      atol=1e-5,
  )
  np.testing.assert_allclose(
      new_state["backbone"]["bn1"]["var"],
      MOMENTUM * running["var"] + (1 - MOMENTUM) * conv1.var(axis=(0, 1, 2)),
      rtol=1e-4,
      atol=1e-5,
  )
  changed = jax.tree.map(
      lambda a, b: not np.allclose(a, b), model_state, new_state
  )
  assert all(jax.tree.leaves(changed))  # every BatchNorm saw a batch

  eval_outputs, eval_state = apply(params, new_state, inputs, train=False)
  jax.tree.map(np.testing.assert_array_equal, eval_state, new_state)
  eval_first, _ = apply(params, new_state, inputs[:1], train=False)
  np.testing.assert_allclose(
      eval_first.logits, eval_outputs.logits[:1], rtol=1e-4, atol=1e-4
  )


def test_resnet_feature_maps_pool_to_backbone_features():
  model = models.create_model(
      "resnet18", num_classes=10, input_shape=(16, 16, 1), stem="small"
  )
  params, model_state = numpy_params(model, seed=11)
  inputs = (
      np.random.default_rng(12).uniform(size=(2, 16, 16, 1)).astype(np.float32)
  )
  outputs, _ = jax.jit(model.apply, static_argnames="train")(
      params, model_state, inputs, train=False
  )
  assert outputs.feature_maps.shape == (2, 2, 2, 512)
  assert np.all(np.asarray(outputs.feature_maps) >= 0)  # after the last ReLU
  # The backbone features are the global average pool of the last stage.
  np.testing.assert_allclose(
      np.mean(np.asarray(outputs.feature_maps, np.float64), axis=(1, 2)),
      outputs.backbone_features,
      rtol=1e-5,
      atol=1e-5,
  )


def test_zero_init_residual_block_starts_as_identity():
  block = models.BasicBlock(
      8,
      8,
      1,
      batch_norm_momentum=MOMENTUM,
      zero_init_residual=True,
      dtype=jnp.float32,
      param_dtype=jnp.float32,
      rngs=nnx.Rngs(0),
  )
  assert block.downsample_conv is None
  np.testing.assert_array_equal(block.bn2.scale[...], np.zeros(8))
  inputs = np.random.default_rng(8).normal(size=(2, 4, 4, 8)).astype(np.float32)
  np.testing.assert_allclose(
      block(inputs, train=False), np.maximum(inputs, 0), atol=1e-6
  )


# --- Dropout and randomness -------------------------------------------------


def test_dropout():
  model = models.create_model(
      "mlp",
      num_classes=3,
      input_shape=(2,),
      hidden_dims=(32,),
      bottleneck_dim=64,
      bottleneck_batch_norm=False,
      bottleneck_dropout=0.5,
  )
  assert model.has_dropout
  params, model_state = model.init(jax.random.key(0))
  apply = jax.jit(model.apply, static_argnames="train")
  inputs = np.random.default_rng(9).normal(size=(8, 2)).astype(np.float32)
  eval_a, _ = apply(params, model_state, inputs, train=False)
  eval_b, _ = apply(
      params, model_state, inputs, train=False, key=jax.random.key(5)
  )
  np.testing.assert_array_equal(eval_a.features, eval_b.features)
  train_a, _ = apply(
      params, model_state, inputs, train=True, key=jax.random.key(1)
  )
  train_a_again, _ = apply(
      params, model_state, inputs, train=True, key=jax.random.key(1)
  )
  train_b, _ = apply(
      params, model_state, inputs, train=True, key=jax.random.key(2)
  )
  np.testing.assert_array_equal(train_a.features, train_a_again.features)
  assert not np.allclose(train_a.features, train_b.features)
  # Inverted dropout: each feature is dropped or scaled by 1 / (1 - rate).
  kept = np.asarray(train_a.features) != 0
  np.testing.assert_allclose(
      np.asarray(train_a.features)[kept],
      2 * np.asarray(eval_a.features)[kept],
      rtol=1e-5,
  )
  with pytest.raises(ValueError, match="key"):
    model.apply(params, model_state, inputs, train=True)


def test_init_jit_and_vmap_over_keys():
  model = models.create_model(
      "mlp", num_classes=3, input_shape=(2,), hidden_dims=(8,)
  )
  keys = jax.random.split(jax.random.key(0), 3)
  params, model_state = jax.jit(jax.vmap(model.init))(keys)
  assert params["head"]["kernel"].shape == (3, 8, 3)
  kernels = np.asarray(params["backbone"]["dense1"]["kernel"])
  assert not np.allclose(kernels[0], kernels[1])
  single, _ = jax.jit(model.init)(keys[1])
  np.testing.assert_array_equal(
      single["backbone"]["dense1"]["kernel"], kernels[1]
  )
  # Raw uint32 keys work as well.
  legacy, _ = model.init(jax.random.PRNGKey(0))
  assert legacy["head"]["kernel"].dtype == jnp.float32

  inputs = np.ones((4, 2), np.float32)
  outputs = jax.vmap(
      lambda p: model.apply(p, {}, inputs, train=False)[0].logits
  )(params)
  assert outputs.shape == (3, 4, 3)
  eager, _ = model.apply(single, {}, inputs, train=False)
  np.testing.assert_allclose(outputs[1], eager.logits, rtol=1e-6)


def test_apply_differentiable(mlp_setup):
  model, params, model_state, inputs, _ = mlp_setup

  def loss(p):
    outputs, new_state = model.apply(p, model_state, inputs, train=True)
    return jnp.mean(outputs.logits**2), new_state

  grads, new_state = jax.jit(jax.grad(loss, has_aux=True))(params)
  assert jax.tree.structure(grads) == jax.tree.structure(params)
  assert np.any(np.asarray(grads["backbone"]["dense1"]["kernel"]) != 0)
  assert jax.tree.structure(new_state) == jax.tree.structure(model_state)


# --- Mixed precision --------------------------------------------------------


@pytest.mark.parametrize(
    "name, input_shape, kwargs",
    [
        ("mlp", (8, 8, 1), {"bottleneck_dim": 16}),
        ("lenet", (8, 8, 1), {}),
        ("lenet", (28, 28, 1), {}),
    ],
)
def test_bfloat16_compute_float32_params(name, input_shape, kwargs):
  model = models.create_model(
      name, num_classes=5, input_shape=input_shape, dtype=jnp.bfloat16, **kwargs
  )
  params, model_state = jax.jit(model.init)(jax.random.key(0))
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(params))
  inputs = (
      np.random.default_rng(10)
      .uniform(size=(4, *input_shape))
      .astype(np.float32)
  )
  outputs, new_state = jax.jit(model.apply, static_argnames="train")(
      params, model_state, inputs, train=True
  )
  assert outputs.logits.dtype == jnp.bfloat16
  assert outputs.features.dtype == jnp.bfloat16
  assert np.all(np.isfinite(np.asarray(outputs.logits, np.float32)))
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(new_state))


def test_lenet_bfloat16_gradients():
  """bfloat16 compute at 28x28: float32 gradients, as accurate as XLA's.

  Both bfloat16 implementations are compared with the float32 gradient; the
  blocked one may not be further from it than XLA's convolution is.
  """
  x = np.random.default_rng(11).uniform(size=(10, 28, 28, 1)).astype(np.float32)
  grads = {}
  for impl, dtype in (
      ("matmul", jnp.bfloat16),
      ("xla", jnp.bfloat16),
      ("xla", jnp.float32),
  ):
    model = models.create_model(
        "lenet",
        num_classes=4,
        input_shape=(28, 28, 1),
        bottleneck_dim=None,
        dtype=dtype,
        conv_impl=impl,
    )
    params, _ = model.init(jax.random.key(3))

    def loss(params, model=model):
      outputs, _ = model.apply(params, {}, x, train=True)
      return jnp.sum(outputs.logits.astype(jnp.float32) ** 2)

    grads[impl, dtype] = jax.jit(jax.grad(loss))(params)
  for got, xla, exact in zip(
      jax.tree.leaves(grads["matmul", jnp.bfloat16]),
      jax.tree.leaves(grads["xla", jnp.bfloat16]),
      jax.tree.leaves(grads["xla", jnp.float32]),
  ):
    assert got.dtype == jnp.float32
    scale = float(np.max(np.abs(exact)))
    error, xla_error = (
        float(np.max(np.abs(a - exact))) / scale for a in (got, xla)
    )
    assert error < 0.15 and error <= 1.5 * xla_error + 0.01, (error, xla_error)


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_bfloat16_resnet_shapes(name):
  model = models.create_model(
      name,
      num_classes=5,
      input_shape=(8, 8, 1),
      stem="small",
      dtype=jnp.bfloat16,
  )
  params, _ = abstract_init(model)
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(params))
  outputs, new_state = abstract_apply(model, 2, train=True)
  assert outputs.logits.dtype == jnp.bfloat16
  assert outputs.backbone_features.dtype == jnp.bfloat16
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(new_state))


# --- Registry and errors ----------------------------------------------------


def test_registry(monkeypatch):
  monkeypatch.setattr(functional, "_REGISTRY", dict(functional._REGISTRY))
  assert models.available_models() == [
      "lenet",
      "mlp",
      "resnet",
      "resnet101",
      "resnet18",
      "resnet34",
      "resnet50",
      "vit",
      "vit_b16",
      "vit_b32",
      "vit_l16",
      "vit_l32",
      "vit_s16",
      "vit_s32",
      "vit_ti16",
      "vit_ti32",
  ]

  @models.register_model("wide_mlp")
  def wide_mlp(input_shape, num_classes, *, dtype, rngs, bottleneck_dim=None):
    return models.MLP(
        input_shape,
        num_classes,
        hidden_dims=(128,),
        bottleneck_dim=bottleneck_dim,
        dtype=dtype,
        rngs=rngs,
    )

  assert "wide_mlp" in models.available_models()
  model = models.create_model("wide_mlp", num_classes=2, input_shape=(3,))
  assert flat(abstract_init(model)[0])["backbone/dense1/kernel"].shape == (
      3,
      128,
  )
  with pytest.raises(ValueError, match="wide_mlp"):
    models.register_model("wide_mlp")(wide_mlp)
  with pytest.raises(ValueError, match="hidden_dims"):
    models.create_model(
        "wide_mlp", num_classes=2, input_shape=(3,), hidden_dims=(4,)
    )

  @models.register_model("headless")
  def headless(input_shape, num_classes, *, dtype, rngs):
    return models.MLPBackbone(
        math.prod(input_shape), (4,), dtype=dtype, rngs=rngs
    )

  with pytest.raises(ValueError, match="'bottleneck'"):
    models.create_model("headless", num_classes=2, input_shape=(3,))


def test_model_is_hashable_value():
  a = models.create_model(
      "mlp", num_classes=3, input_shape=[2], hidden_dims=[8]
  )
  b = models.create_model(
      "mlp", num_classes=3, input_shape=(2,), hidden_dims=(8,)
  )
  assert a == b and hash(a) == hash(b)
  assert a.input_shape == (2,)
  assert a != models.create_model(
      "mlp", num_classes=4, input_shape=(2,), hidden_dims=(8,)
  )


def test_unknown_model_name():
  with pytest.raises(
      ValueError, match=r"'resnet19'.*lenet.*mlp.*resnet18.*resnet50"
  ):
    models.create_model("resnet19", num_classes=10, input_shape=(8, 8, 1))


def test_unknown_keyword_arguments():
  with pytest.raises(ValueError, match=r"\['depth', 'width'\].*'resnet18'"):
    models.create_model(
        "resnet18", num_classes=10, input_shape=(8, 8, 1), width=2, depth=3
    )


@pytest.mark.parametrize(
    "name, input_shape, kwargs, match",
    [
        ("lenet", (64,), {}, "input_shape"),
        ("lenet", (2, 2, 1), {}, "input_shape"),
        ("lenet", (8, 8, 1), {"conv_impl": "cudnn"}, "conv_impl"),
        ("resnet18", (8, 8), {}, "input_shape"),
        ("resnet18", (8, 8, 1), {"stem": "cifar"}, "stem"),
        ("mlp", (0, 2), {}, "input_shape"),
        ("mlp", (2,), {"bottleneck_dim": 0}, "bottleneck_dim"),
        ("mlp", (2,), {"bottleneck_dim": True}, "bottleneck_dim"),
        ("mlp", (2,), {"bottleneck_dim": 2.5}, "bottleneck_dim"),
        (
            "mlp",
            (2,),
            {"bottleneck_dim": 4, "batch_norm_momentum": 1.5},
            "batch_norm_momentum",
        ),
        (
            "resnet18",
            (8, 8, 1),
            {"batch_norm_momentum": -0.1},
            "batch_norm_momentum",
        ),
        ("mlp", (2,), {"bottleneck_dropout": 0.5}, "bottleneck_dropout"),
        ("mlp", (2,), {"hidden_dims": (4, -1)}, "hidden_dims"),
    ],
)
def test_invalid_configuration(name, input_shape, kwargs, match):
  with pytest.raises(ValueError, match=match):
    models.create_model(name, num_classes=10, input_shape=input_shape, **kwargs)


def test_invalid_num_classes_and_dtype():
  with pytest.raises(ValueError, match="num_classes"):
    models.create_model("mlp", num_classes=0, input_shape=(2,))
  with pytest.raises(ValueError, match="dtype"):
    models.create_model("mlp", num_classes=2, input_shape=(2,), dtype=jnp.int32)


def test_wrong_input_shape(mlp_setup):
  model, params, model_state, _, apply = mlp_setup
  with pytest.raises(
      ValueError, match=r"inputs.*\(batch, 8, 8, 1\).*\(4, 8, 8\)"
  ):
    apply(params, model_state, np.zeros((4, 8, 8), np.float32), train=False)
  with pytest.raises(ValueError, match=r"inputs.*\(4, 8, 8, 3\)"):
    model.apply(
        params, model_state, np.zeros((4, 8, 8, 3), np.float32), train=False
    )


def test_mismatched_variables(mlp_setup):
  model, params, model_state, inputs, _ = mlp_setup
  incomplete = {k: v for k, v in params.items() if k != "head"}
  with pytest.raises(ValueError, match=r"params.*head/kernel"):
    model.apply(incomplete, model_state, inputs, train=False)
  reshaped = jax.tree.map(lambda a: a, params)
  reshaped["head"]["bias"] = np.zeros(4, np.float32)
  with pytest.raises(
      ValueError, match=r"params path 'head/bias'.*\(4,\).*\(3,\)"
  ):
    model.apply(reshaped, model_state, inputs, train=False)
  with pytest.raises(
      ValueError, match=r"model_state.*bottleneck/batch_norm/mean"
  ):
    model.apply(params, {}, inputs, train=False)


def test_input_convention_normalizes_per_channel_and_reads_uint8():
  mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
  plain = models.create_model(
      "lenet", num_classes=3, input_shape=(12, 12, 3), bottleneck_dim=8
  )
  convention = models.create_model(
      "lenet",
      num_classes=3,
      input_shape=(12, 12, 3),
      bottleneck_dim=8,
      input_mean=list(mean),
      input_std=std,
  )
  assert convention.input_mean == mean and convention != plain
  params, state = plain.init(jax.random.key(0))
  pixels = np.random.default_rng(0).integers(0, 256, (4, 12, 12, 3), np.uint8)
  unit = pixels.astype(np.float32) / 255
  # NumPy reference of the convention, fed to the model without one.
  reference = (unit - np.array(mean, np.float32)) / np.array(std, np.float32)
  expected, _ = plain.apply(params, state, reference, train=False)
  for inputs in (unit, pixels):
    outputs, _ = convention.apply(params, state, inputs, train=False)
    np.testing.assert_allclose(
        outputs.logits, expected.logits, rtol=1e-5, atol=1e-5
    )
  # uint8 without a convention is read as [0, 1].
  from_bytes, _ = plain.apply(params, state, pixels, train=False)
  from_floats, _ = plain.apply(params, state, unit, train=False)
  np.testing.assert_allclose(
      from_bytes.logits, from_floats.logits, rtol=1e-6, atol=1e-6
  )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(input_mean=(0.5, 0.5, 0.5)), "given together"),
        (dict(input_mean=(0.5, 0.5), input_std=(1, 1)), "1 or 3 finite"),
        (
            dict(input_mean=0.5, input_std=(1, 0, 1)),
            "input_std must be positive",
        ),
        (dict(input_mean=float("nan"), input_std=1), "input_mean must be"),
    ],
)
def test_input_convention_errors_name_the_argument(kwargs, message):
  with pytest.raises(ValueError, match=message):
    models.create_model(
        "lenet", num_classes=3, input_shape=(12, 12, 3), **kwargs
    )
