"""Tests for tljax.params.regularizers against independent references.

References: each penalty re-written here in NumPy from its paper's formula
and the normalisation of the authors' code (DELTA's per-channel reshape and
norm as in lixingjian/DELTA; BSS from ``numpy.linalg.svd``; the Co-Tuning
relationship as the per-class loop of the reference code, its reverse
approach with SciPy's L-BFGS-B and scalar minimiser), closed-form gradients,
and hand-made losses whose channel attention is known.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.optimize
import scipy.special

from tljax import models
from tljax.params import regularizers


def numpy_init(model, seed):
  """Random parameters from NumPy (skips compiling ``model.init`` on CPU)."""
  rng = np.random.default_rng(seed)
  params, model_state = jax.eval_shape(model.init, jax.random.key(0))

  def fill(leaf):
    scale = 1.0 / np.sqrt(np.prod(leaf.shape[:-1])) if leaf.ndim > 1 else 0.1
    return (rng.normal(size=leaf.shape) * scale).astype(np.float32)

  return jax.tree.map(fill, params), jax.tree.map(
      lambda leaf: np.ones(leaf.shape, np.float32), model_state
  )


def random_tree(rng):
  return {
      "backbone": {
          "conv": {
              "kernel": rng.normal(size=(3, 3, 2, 4)).astype(np.float32),
              "bias": rng.normal(size=(4,)).astype(np.float32),
          },
          "fc": {"kernel": rng.normal(size=(4, 5)).astype(np.float32)},
      },
      "head": {
          "kernel": rng.normal(size=(5, 3)).astype(np.float32),
          "bias": rng.normal(size=(3,)).astype(np.float32),
      },
  }


@pytest.fixture(scope="module")
def l2_sp_setup():
  rng = np.random.default_rng(0)
  params = random_tree(rng)
  pretrained = random_tree(rng)
  # Only the convolution and the fc kernel are transferred: a partial tree.
  start_params = {"backbone": pretrained["backbone"]}
  del start_params["backbone"]["conv"]["bias"]
  return params, start_params


def numpy_l2_sp(params, start_params, alpha, beta):
  transferred = [
      (
          params["backbone"]["conv"]["kernel"],
          start_params["backbone"]["conv"]["kernel"],
      ),
      (
          params["backbone"]["fc"]["kernel"],
          start_params["backbone"]["fc"]["kernel"],
      ),
  ]
  new = [
      params["backbone"]["conv"]["bias"],
      params["head"]["kernel"],
      params["head"]["bias"],
  ]
  value = (
      alpha
      / 2
      * sum(np.sum((w.astype(np.float64) - w0) ** 2) for w, w0 in transferred)
  )
  return value + beta / 2 * sum(np.sum(w.astype(np.float64) ** 2) for w in new)


# --- L2-SP -------------------------------------------------------------------


def test_l2_sp_matches_numpy_with_partial_start_tree(l2_sp_setup):
  params, start_params = l2_sp_setup
  np.testing.assert_allclose(
      regularizers.l2_sp(params, start_params),
      numpy_l2_sp(params, start_params, 0.1, 0.01),  # the defaults
      rtol=1e-6,
  )
  np.testing.assert_allclose(
      regularizers.l2_sp(params, start_params, alpha=0.7, beta=0.3),
      numpy_l2_sp(params, start_params, 0.7, 0.3),
      rtol=1e-6,
  )
  # With nothing transferred L2-SP is plain L2: β/2 ‖w‖².
  total = sum(
      np.sum(leaf.astype(np.float64) ** 2) for leaf in jax.tree.leaves(params)
  )
  np.testing.assert_allclose(
      regularizers.l2_sp(params, {}, alpha=5.0, beta=0.2),
      0.1 * total,
      rtol=1e-6,
  )


def test_l2_sp_gradient_pulls_only_transferred_weights_to_start(l2_sp_setup):
  params, start_params = l2_sp_setup
  alpha, beta = 0.7, 0.3
  grads, start_grads = jax.jit(
      jax.grad(
          functools.partial(regularizers.l2_sp, alpha=alpha, beta=beta),
          argnums=(0, 1),
      )
  )(params, start_params)
  backbone, start = params["backbone"], start_params["backbone"]
  np.testing.assert_allclose(
      grads["backbone"]["conv"]["kernel"],
      alpha * (backbone["conv"]["kernel"] - start["conv"]["kernel"]),
      rtol=1e-6,
      atol=1e-7,
  )
  np.testing.assert_allclose(
      grads["backbone"]["fc"]["kernel"],
      alpha * (backbone["fc"]["kernel"] - start["fc"]["kernel"]),
      rtol=1e-6,
      atol=1e-7,
  )
  np.testing.assert_allclose(
      grads["backbone"]["conv"]["bias"],
      beta * backbone["conv"]["bias"],
      rtol=1e-6,
  )
  np.testing.assert_allclose(
      grads["head"]["kernel"], beta * params["head"]["kernel"], rtol=1e-6
  )
  # The starting point is a constant.
  assert all(np.all(np.asarray(g) == 0) for g in jax.tree.leaves(start_grads))
  # At the starting point only the new parameters feel a force.
  at_start = jax.tree.map(lambda a: a, params)
  at_start["backbone"]["conv"]["kernel"] = start["conv"]["kernel"]
  at_start["backbone"]["fc"]["kernel"] = start["fc"]["kernel"]
  grads = jax.grad(regularizers.l2_sp)(at_start, start_params)
  assert np.all(np.asarray(grads["backbone"]["fc"]["kernel"]) == 0)
  assert np.any(np.asarray(grads["head"]["kernel"]) != 0)


def test_l2_sp_vmaps_over_hyper_parameters(l2_sp_setup):
  params, start_params = l2_sp_setup
  alphas = jnp.array([0.0, 0.1, 1.0])
  values = jax.vmap(
      lambda a: regularizers.l2_sp(params, start_params, alpha=a)
  )(alphas)
  expected = [numpy_l2_sp(params, start_params, float(a), 0.01) for a in alphas]
  np.testing.assert_allclose(values, expected, rtol=1e-6)


def test_l2_sp_bfloat16_params_reduce_in_float32(l2_sp_setup):
  params, start_params = l2_sp_setup
  low = jax.tree.map(lambda a: jnp.asarray(a, jnp.bfloat16), params)
  value = regularizers.l2_sp(low, start_params)
  assert value.dtype == jnp.float32
  reference = numpy_l2_sp(
      jax.tree.map(lambda a: np.asarray(a, np.float32), low),
      start_params,
      0.1,
      0.01,
  )
  np.testing.assert_allclose(value, reference, rtol=1e-5)


def test_l2_sp_errors(l2_sp_setup):
  params, start_params = l2_sp_setup
  with pytest.raises(ValueError, match=r"start_params.*\['head/extra'\]"):
    regularizers.l2_sp(params, {"head": {"extra": np.zeros(3)}})
  bad_shape = {"head": {"bias": np.zeros(4, np.float32)}}
  with pytest.raises(
      ValueError, match=r"start_params path 'head/bias'.*\(4,\).*\(3,\)"
  ):
    regularizers.l2_sp(params, bad_shape)
  with pytest.raises(ValueError, match="alpha"):
    regularizers.l2_sp(params, start_params, alpha=-0.1)
  with pytest.raises(ValueError, match="beta"):
    regularizers.l2_sp(params, start_params, beta=float("nan"))
  with pytest.raises(ValueError, match="beta"):
    regularizers.l2_sp(params, start_params, beta="0.1")
  with pytest.raises(ValueError, match="start_params"):
    regularizers.l2_sp(params, [np.zeros(3)])


# --- DELTA -------------------------------------------------------------------


def numpy_delta(feature_maps, start_feature_maps, channel_weights, alpha):
  """The reference's reg_att_fea_map, on NCHW maps as in PyTorch."""
  fm_tgt = np.transpose(np.asarray(feature_maps, np.float64), (0, 3, 1, 2))
  fm_src = np.transpose(
      np.asarray(start_feature_maps, np.float64), (0, 3, 1, 2)
  )
  b, c, h, w = fm_src.shape
  distance = np.linalg.norm(
      fm_tgt.reshape(b, c, h * w) - fm_src.reshape(b, c, h * w), 2, axis=2
  )
  distance = c * np.asarray(channel_weights, np.float64) * distance**2 / (h * w)
  return alpha * 0.5 * np.sum(distance)


@pytest.fixture(scope="module")
def feature_maps_setup():
  rng = np.random.default_rng(1)
  feature_maps = rng.normal(size=(3, 4, 5, 6)).astype(np.float32)
  start = rng.normal(size=(3, 4, 5, 6)).astype(np.float32)
  weights = rng.dirichlet(np.ones(6)).astype(np.float32)
  return feature_maps, start, weights


def test_delta_matches_reference_normalisation(feature_maps_setup):
  feature_maps, start, weights = feature_maps_setup
  np.testing.assert_allclose(
      regularizers.delta(feature_maps, start, channel_weights=weights),
      numpy_delta(feature_maps, start, weights, 0.01),
      rtol=1e-5,
  )
  np.testing.assert_allclose(
      regularizers.delta(
          feature_maps, start, channel_weights=weights, alpha=1.0
      ),
      numpy_delta(feature_maps, start, weights, 1.0),
      rtol=1e-5,
  )
  # Default: uniform weights 1/C.
  np.testing.assert_allclose(
      regularizers.delta(feature_maps, start, alpha=1.0),
      numpy_delta(feature_maps, start, np.full(6, 1 / 6), 1.0),
      rtol=1e-5,
  )
  # Per-example weights (N, C).
  per_example = (
      np.random.default_rng(2).dirichlet(np.ones(6), size=3).astype(np.float32)
  )
  expected = sum(
      numpy_delta(
          feature_maps[n : n + 1], start[n : n + 1], per_example[n], 1.0
      )
      for n in range(3)
  )
  np.testing.assert_allclose(
      regularizers.delta(
          feature_maps, start, channel_weights=per_example, alpha=1.0
      ),
      expected,
      rtol=1e-5,
  )


def test_delta_gradient(feature_maps_setup):
  feature_maps, start, weights = feature_maps_setup
  grad_maps, grad_start = jax.jit(
      jax.grad(functools.partial(regularizers.delta, alpha=0.5), argnums=(0, 1))
  )(feature_maps, start, channel_weights=weights)
  n, h, w, c = feature_maps.shape
  np.testing.assert_allclose(
      grad_maps,
      0.5 * c * weights * (feature_maps - start) / (h * w),
      rtol=1e-5,
      atol=1e-7,
  )
  assert np.all(np.asarray(grad_start) == 0)  # the pretrained maps are a target
  assert regularizers.delta(start, start, channel_weights=weights) == 0


def test_delta_on_model_feature_maps():
  model = models.create_model("lenet", num_classes=4, input_shape=(8, 8, 1))
  pretrained, model_state = numpy_init(model, 0)
  fine_tuned, _ = numpy_init(model, 1)
  images = (
      np.random.default_rng(3).uniform(size=(2, 8, 8, 1)).astype(np.float32)
  )

  def penalty(params):
    outputs, _ = model.apply(params, model_state, images, train=False)
    start_outputs, _ = model.apply(pretrained, model_state, images, train=False)
    return regularizers.delta(outputs.feature_maps, start_outputs.feature_maps)

  value, grads = jax.jit(jax.value_and_grad(penalty))(fine_tuned)
  assert value > 0 and np.isfinite(value)
  assert np.any(np.asarray(grads["backbone"]["conv2"]["kernel"]) != 0)
  assert np.all(np.asarray(grads["head"]["kernel"]) == 0)  # after the map
  assert jax.jit(penalty)(pretrained) < 1e-10  # zero up to XLA's fusion choices


def test_delta_errors(feature_maps_setup):
  feature_maps, start, weights = feature_maps_setup
  with pytest.raises(ValueError, match="feature_maps is None"):
    regularizers.delta(None, start)
  with pytest.raises(ValueError, match=r"feature_maps.*NHWC.*\(3, 4, 5\)"):
    regularizers.delta(feature_maps[..., 0], start[..., 0])
  with pytest.raises(ValueError, match="start_feature_maps"):
    regularizers.delta(feature_maps, start[:2])
  with pytest.raises(
      ValueError, match=r"channel_weights.*\(6,\) or \(3, 6\).*\(5,\)"
  ):
    regularizers.delta(feature_maps, start, channel_weights=weights[:5])
  with pytest.raises(ValueError, match="alpha"):
    regularizers.delta(feature_maps, start, alpha=-1.0)


# --- DELTA channel attention -------------------------------------------------


def numpy_softmax(x):
  return scipy.special.softmax(np.asarray(x, np.float64), axis=-1)


def test_channel_attention_softmax_of_known_drops():
  drops = np.array([0.5, 0.0, 2.0, 1.0, 0.25], np.float32)
  base = 1.3

  def loss_fn(mask):  # removing channel j adds drops[j] to the loss
    return base + jnp.sum((1.0 - mask) * drops)

  # The paper's formula: softmax of the drops.
  plain = regularizers.delta_channel_attention(
      loss_fn, 5, temperature=1.0, standardize=False
  )
  np.testing.assert_allclose(plain, numpy_softmax(drops), rtol=1e-5)
  # The reference: standardised drops, temperature 5.
  standardized = (drops - drops.mean()) / drops.std()
  np.testing.assert_allclose(
      regularizers.delta_channel_attention(loss_fn, 5),
      numpy_softmax(standardized / 5),
      rtol=1e-5,
  )
  chunked = regularizers.delta_channel_attention(loss_fn, 5, batch_size=2)
  np.testing.assert_allclose(
      chunked, numpy_softmax(standardized / 5), rtol=1e-5
  )
  # Equal drops carry no information: uniform weights, not NaN.
  flat = regularizers.delta_channel_attention(lambda m: jnp.sum(1.0 - m), 4)
  np.testing.assert_allclose(flat, np.full(4, 0.25), rtol=1e-6)


def test_channel_attention_per_example_losses():
  drops = np.random.default_rng(4).uniform(size=(3, 6)).astype(np.float32)

  def loss_fn(mask):  # (N,) losses
    return 0.7 + (1.0 - mask) @ drops.T

  weights = regularizers.delta_channel_attention(loss_fn, 6, temperature=2.0)
  standardized = (drops - drops.mean(1, keepdims=True)) / drops.std(
      1, keepdims=True
  )
  assert weights.shape == (3, 6)
  np.testing.assert_allclose(
      weights, numpy_softmax(standardized / 2.0), rtol=1e-5
  )


def test_channel_attention_on_lenet_matches_a_loop_over_channels():
  model = models.create_model(
      "lenet", num_classes=3, input_shape=(8, 8, 1), bottleneck_dim=None
  )
  params, model_state = numpy_init(model, 2)
  rng = np.random.default_rng(5)
  images = rng.uniform(size=(6, 8, 8, 1)).astype(np.float32)
  labels = rng.integers(0, 3, size=6)

  def masked(mask):
    conv2 = params["backbone"]["conv2"]
    backbone = dict(
        params["backbone"],
        conv2={"kernel": conv2["kernel"] * mask, "bias": conv2["bias"] * mask},
    )
    return dict(params, backbone=backbone)

  def loss_fn(mask):
    outputs, _ = model.apply(masked(mask), model_state, images, train=False)
    return jnp.mean(
        optax.softmax_cross_entropy_with_integer_labels(outputs.logits, labels)
    )

  # Zeroing conv2's filter j zeroes channel j of the feature maps.
  mask = np.ones(50, np.float32)
  mask[7] = 0.0
  outputs, _ = model.apply(masked(mask), model_state, images, train=False)
  assert np.all(np.asarray(outputs.feature_maps)[..., 7] == 0)

  weights = jax.jit(
      lambda: regularizers.delta_channel_attention(
          loss_fn, 50, temperature=1.0, standardize=False
      )
  )()
  base = float(loss_fn(np.ones(50, np.float32)))
  drops = []
  for channel in range(50):
    mask = np.ones(50, np.float32)
    mask[channel] = 0.0
    drops.append(float(loss_fn(mask)) - base)
  np.testing.assert_allclose(
      weights, numpy_softmax(drops), rtol=1e-4, atol=1e-6
  )
  np.testing.assert_allclose(np.sum(weights), 1.0, rtol=1e-6)


def test_channel_attention_errors():
  with pytest.raises(ValueError, match="loss_fn"):
    regularizers.delta_channel_attention("loss", 3)
  with pytest.raises(ValueError, match="loss_fn.*scalar.*\\(2, 3\\)"):
    regularizers.delta_channel_attention(lambda m: jnp.ones((2, 3)), 3)
  with pytest.raises(ValueError, match="num_channels"):
    regularizers.delta_channel_attention(jnp.sum, 0)
  with pytest.raises(ValueError, match="temperature"):
    regularizers.delta_channel_attention(jnp.sum, 3, temperature=0.0)
  with pytest.raises(ValueError, match="batch_size"):
    regularizers.delta_channel_attention(jnp.sum, 3, batch_size=0)


# --- Batch Spectral Shrinkage ------------------------------------------------


@pytest.mark.parametrize(
    "shape", [(8, 5), (4, 10)]
)  # batch > dim and batch < dim
@pytest.mark.parametrize("k", [1, 3])
def test_bss_matches_numpy_svd(shape, k):
  features = np.random.default_rng(6).normal(size=shape).astype(np.float32)
  singular_values = np.linalg.svd(features.astype(np.float64), compute_uv=False)
  expected = np.sum(np.sort(singular_values)[:k] ** 2)
  np.testing.assert_allclose(
      regularizers.batch_spectral_shrinkage(features, k=k),
      0.001 * expected,
      rtol=1e-4,
  )
  np.testing.assert_allclose(
      jax.jit(
          functools.partial(regularizers.batch_spectral_shrinkage, k=k, eta=1.0)
      )(features),
      expected,
      rtol=1e-4,
  )


def test_bss_gradient_shrinks_the_smallest_singular_value():
  features = np.random.default_rng(7).normal(size=(16, 6)).astype(np.float32)
  grad = jax.jit(
      jax.grad(
          functools.partial(regularizers.batch_spectral_shrinkage, eta=1.0)
      )
  )(features)
  assert np.all(np.isfinite(grad))
  # d σ²_min / dF = 2 σ_min u vᵀ.
  u, s, vt = np.linalg.svd(features.astype(np.float64), full_matrices=False)
  np.testing.assert_allclose(
      grad, 2 * s[-1] * np.outer(u[:, -1], vt[-1]), atol=1e-5
  )
  stepped = features - 0.1 * np.asarray(grad)
  before = np.linalg.svd(features, compute_uv=False)
  after = np.linalg.svd(stepped, compute_uv=False)
  assert after[-1] < before[-1]
  np.testing.assert_allclose(
      after[:-1], before[:-1], rtol=1e-5
  )  # the rest untouched


def test_bss_gradient_finite_with_repeated_singular_values():
  # Orthonormal columns scaled by 2: every singular value equals 2.
  q, _ = np.linalg.qr(np.random.default_rng(8).normal(size=(6, 3)))
  features = (2 * q).astype(np.float32)
  value, grad = jax.value_and_grad(regularizers.batch_spectral_shrinkage)(
      features, k=2
  )
  np.testing.assert_allclose(value, 0.001 * 2 * 4.0, rtol=1e-5)
  assert np.all(np.isfinite(grad))


def test_bss_errors():
  features = np.zeros((4, 3), np.float32)
  with pytest.raises(
      ValueError, match=r"k must be at most min\(batch, dim\) = 3"
  ):
    regularizers.batch_spectral_shrinkage(features, k=4)
  with pytest.raises(ValueError, match="k must be an int >= 1"):
    regularizers.batch_spectral_shrinkage(features, k=0)
  with pytest.raises(ValueError, match=r"features.*\(batch, dim\).*\(4,\)"):
    regularizers.batch_spectral_shrinkage(np.zeros(4, np.float32))
  with pytest.raises(ValueError, match="eta"):
    regularizers.batch_spectral_shrinkage(features, eta=-0.001)


# --- Co-Tuning ---------------------------------------------------------------


@pytest.fixture(scope="module")
def cotuning_setup():
  rng = np.random.default_rng(9)
  logits = rng.normal(size=(30, 7)) * 2
  probabilities = scipy.special.softmax(logits, axis=1).astype(np.float32)
  labels = np.concatenate([np.arange(4), rng.integers(0, 4, size=26)])
  return probabilities, labels


def test_cotuning_relationship_matches_per_class_loop(cotuning_setup):
  probabilities, labels = cotuning_setup
  relationship = regularizers.cotuning_relationship(
      probabilities, labels, num_target_classes=4
  )
  expected = np.stack(
      [
          probabilities[labels == c].astype(np.float64).mean(axis=0)
          for c in range(4)
      ]
  )
  assert relationship.shape == (4, 7)
  np.testing.assert_allclose(relationship, expected, rtol=1e-5)
  np.testing.assert_allclose(np.sum(relationship, axis=1), 1.0, rtol=1e-5)
  jitted = jax.jit(
      functools.partial(
          regularizers.cotuning_relationship, num_target_classes=4
      )
  )(probabilities, labels)
  np.testing.assert_allclose(jitted, expected, rtol=1e-5)


def test_cotuning_relationship_errors(cotuning_setup):
  probabilities, labels = cotuning_setup
  with pytest.raises(
      ValueError, match=r"target_labels must lie in \[0, 4\).*\[4\]"
  ):
    regularizers.cotuning_relationship(
        probabilities, np.where(labels == 3, 4, labels), num_target_classes=4
    )
  with pytest.raises(
      ValueError, match=r"target_labels has no example of target classes \[2\]"
  ):
    regularizers.cotuning_relationship(
        probabilities, np.where(labels == 2, 1, labels), num_target_classes=4
    )
  with pytest.raises(
      ValueError, match=r"target_labels must have shape \(30,\)"
  ):
    regularizers.cotuning_relationship(
        probabilities, labels[:-1], num_target_classes=4
    )
  with pytest.raises(
      ValueError, match="source_probabilities rows must sum to 1"
  ):
    regularizers.cotuning_relationship(
        3 * probabilities, labels, num_target_classes=4
    )
  with pytest.raises(
      ValueError, match="source_probabilities must be finite and non-negative"
  ):
    regularizers.cotuning_relationship(
        np.log(probabilities), labels, num_target_classes=4
    )
  with pytest.raises(ValueError, match="num_target_classes"):
    regularizers.cotuning_relationship(
        probabilities, labels, num_target_classes=0
    )
  with pytest.raises(ValueError, match="target_labels must hold integers"):
    regularizers.cotuning_relationship(
        probabilities, labels.astype(np.float32), num_target_classes=4
    )


def numpy_reverse_relationship(
    train, train_labels, validation, validation_labels, num_classes, strengths
):
  """The reverse approach of the Co-Tuning code, solved with SciPy."""
  train, validation = train.astype(np.float64), validation.astype(np.float64)
  num_source = train.shape[1]
  targets = np.eye(num_classes)[train_labels]

  def objective(flat, strength):
    coefficients = flat.reshape(num_source, num_classes)
    logits = train @ coefficients
    log_p = logits - scipy.special.logsumexp(logits, axis=1, keepdims=True)
    value = -strength * np.sum(targets * log_p) + 0.5 * np.sum(coefficients**2)
    grad = strength * train.T @ (np.exp(log_p) - targets) + coefficients
    return value, grad.ravel()

  best, best_accuracy = None, -1.0
  for strength in strengths:
    solution = scipy.optimize.minimize(
        objective,
        np.zeros(num_source * num_classes),
        args=(strength,),
        jac=True,
        method="L-BFGS-B",
        options={"gtol": 1e-10, "ftol": 1e-14, "maxiter": 10_000},
    )
    coefficients = solution.x.reshape(num_source, num_classes)
    accuracy = np.mean(
        np.argmax(validation @ coefficients, 1) == validation_labels
    )
    if accuracy > best_accuracy:
      best, best_accuracy = coefficients, accuracy
  validation_logits = validation @ best

  def calibration(scale):
    logits = validation_logits * scale
    log_p = logits - scipy.special.logsumexp(logits, axis=1, keepdims=True)
    return -np.mean(log_p[np.arange(len(validation_labels)), validation_labels])

  scale = scipy.optimize.minimize_scalar(
      calibration,
      bounds=(1e-3, 1e3),
      method="bounded",
      options={"xatol": 1e-10},
  ).x
  target_given_source = scipy.special.softmax(best * scale, axis=1)
  marginal = np.concatenate([train, validation]).mean(axis=0)
  joint = (target_given_source * marginal[:, None]).T
  return joint / joint.sum(axis=1, keepdims=True)


def test_cotuning_reverse_relationship_matches_scipy():
  rng = np.random.default_rng(10)
  # Target class c is made of source classes 2c and 2c + 1.
  source_classes = rng.integers(0, 6, size=60)
  logits = rng.normal(size=(60, 6)) + 3 * np.eye(6)[source_classes]
  probabilities = scipy.special.softmax(logits, axis=1).astype(np.float32)
  labels = source_classes // 2
  train, validation = probabilities[:40], probabilities[40:]
  train_labels, validation_labels = labels[:40], labels[40:]
  strengths = (10.0, 1.0, 0.1)
  relationship = regularizers.cotuning_reverse_relationship(
      train,
      train_labels,
      validation,
      validation_labels,
      num_target_classes=3,
      inverse_regularizations=strengths,
  )
  expected = numpy_reverse_relationship(
      train, train_labels, validation, validation_labels, 3, strengths
  )
  assert relationship.shape == (3, 6)
  np.testing.assert_allclose(relationship, expected, atol=2e-4)
  np.testing.assert_allclose(np.sum(relationship, axis=1), 1.0, rtol=1e-5)
  # Each target class puts most of its mass on its own two source classes.
  own = np.asarray(relationship).reshape(3, 3, 2).sum(-1)
  assert np.all(np.argmax(own, axis=1) == np.arange(3))


def test_cotuning_reverse_relationship_errors(cotuning_setup):
  probabilities, labels = cotuning_setup
  six_classes = probabilities[:, :6] / probabilities[:, :6].sum(
      1, keepdims=True
  )
  with pytest.raises(
      ValueError, match="validation_probabilities must have 7 columns"
  ):
    regularizers.cotuning_reverse_relationship(
        probabilities, labels, six_classes, labels, num_target_classes=4
    )
  with pytest.raises(
      ValueError, match=r"validation_labels must lie in \[0, 4\)"
  ):
    regularizers.cotuning_reverse_relationship(
        probabilities, labels, probabilities, labels + 1, num_target_classes=4
    )
  with pytest.raises(ValueError, match="inverse_regularizations"):
    regularizers.cotuning_reverse_relationship(
        probabilities,
        labels,
        probabilities,
        labels,
        num_target_classes=4,
        inverse_regularizations=(1.0, -1.0),
    )
  with pytest.raises(ValueError, match="target_labels has no example"):
    regularizers.cotuning_reverse_relationship(
        probabilities,
        np.minimum(labels, 2),
        probabilities,
        labels,
        num_target_classes=4,
    )


def test_cotuning_loss_matches_numpy(cotuning_setup):
  probabilities, labels = cotuning_setup
  relationship = np.asarray(
      regularizers.cotuning_relationship(
          probabilities, labels, num_target_classes=4
      )
  )
  rng = np.random.default_rng(11)
  source_logits = rng.normal(size=(5, 7)).astype(np.float32)
  batch_labels = np.array([0, 3, 3, 1, 2])
  log_p = scipy.special.log_softmax(source_logits.astype(np.float64), axis=1)
  cross_entropy = -np.mean(np.sum(relationship[batch_labels] * log_p, axis=1))
  np.testing.assert_allclose(
      regularizers.cotuning_loss(source_logits, batch_labels, relationship),
      2.3 * cross_entropy,  # the default trade-off
      rtol=1e-5,
  )
  loss = jax.jit(functools.partial(regularizers.cotuning_loss, trade_off=1.0))
  np.testing.assert_allclose(
      loss(source_logits, batch_labels, relationship), cross_entropy, rtol=1e-5
  )
  # Gradient: (softmax − soft label) / N per example.
  grad = jax.grad(loss)(source_logits, batch_labels, relationship)
  expected = (np.exp(log_p) - relationship[batch_labels]) / 5
  np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-6)


def test_cotuning_loss_errors_and_traced_out_of_range_labels(cotuning_setup):
  probabilities, labels = cotuning_setup
  relationship = regularizers.cotuning_relationship(
      probabilities, labels, num_target_classes=4
  )
  source_logits = np.zeros((3, 7), np.float32)
  with pytest.raises(
      ValueError, match=r"target_labels must lie in \[0, 4\).*\[-1, 4\]"
  ):
    regularizers.cotuning_loss(
        source_logits, np.array([0, 4, -1]), relationship
    )
  with pytest.raises(
      ValueError, match=r"relationship.*\(num_target_classes, 7\)"
  ):
    regularizers.cotuning_loss(
        source_logits, np.array([0, 1, 2]), relationship[:, :6]
    )
  with pytest.raises(
      ValueError, match=r"source_logits.*\(batch, num_source_classes\)"
  ):
    regularizers.cotuning_loss(source_logits[0], np.array([0]), relationship)
  with pytest.raises(ValueError, match="trade_off"):
    regularizers.cotuning_loss(
        source_logits, np.array([0, 1, 2]), relationship, trade_off=-2.3
    )
  # Under jit the values are unknown: an out-of-range label gives NaN, loudly.
  value = jax.jit(regularizers.cotuning_loss)(
      source_logits, np.array([0, 4, 1]), relationship
  )
  assert np.isnan(value)
