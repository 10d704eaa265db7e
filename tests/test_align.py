"""Tests for tljax.align against independent references.

References: each loss re-written here in NumPy (float64) from its paper's
formula, with explicit double loops for the MMD estimators; the reference
code's own operations where the library follows it (the
Transfer-Learning-Library's MCC normalisation, MDD's shifted log); SciPy's
``sqrtm`` and generalised ``eigh`` for CORAL re-colouring and TCA; closed-form
gradients (gradient reversal, AFN); and invariants (the null distribution
of MMD², covariance matching, subspace alignment of a rotated copy, the MMD
reduction of TCA).
"""

import importlib
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
import scipy.spatial.distance
import scipy.special

from tljax import align

# The module (tljax.align.mmd is also the name of its function).
mmd_lib = importlib.import_module("tljax.align.mmd")

MULTIPLIERS = (0.25, 0.5, 1.0, 2.0, 4.0)


# --- NumPy references --------------------------------------------------------


def numpy_heuristic(source, target, kind="median"):
  pooled = np.concatenate([source, target]).astype(np.float64)
  distances = [
      np.sum((pooled[i] - pooled[j]) ** 2)
      for i in range(len(pooled))
      for j in range(i + 1, len(pooled))
  ]
  return np.median(distances) if kind == "median" else np.mean(distances)


def numpy_joint_mmd(source_layers, target_layers, layer_bandwidths, estimator):
  """MMD² with the product over layers of Gaussian kernel sums, by double loops."""
  source_layers = [np.asarray(layer, np.float64) for layer in source_layers]
  target_layers = [np.asarray(layer, np.float64) for layer in target_layers]

  def kernel(first, i, second, j):
    value = 1.0
    for layer_first, layer_second, bandwidths in zip(
        first, second, layer_bandwidths
    ):
      distance = np.sum((layer_first[i] - layer_second[j]) ** 2)
      value *= sum(math.exp(-distance / (2 * b)) for b in bandwidths)
    return value

  m, n = len(source_layers[0]), len(target_layers[0])
  if estimator == "linear":
    pairs = m // 2
    total = 0.0
    for i in range(pairs):
      a, b = 2 * i, 2 * i + 1
      total += (
          kernel(source_layers, a, source_layers, b)
          + kernel(target_layers, a, target_layers, b)
          - kernel(source_layers, a, target_layers, b)
          - kernel(source_layers, b, target_layers, a)
      )
    return total / pairs
  same = estimator == "biased"
  source_sum = sum(
      kernel(source_layers, i, source_layers, j)
      for i in range(m)
      for j in range(m)
      if same or i != j
  )
  target_sum = sum(
      kernel(target_layers, i, target_layers, j)
      for i in range(n)
      for j in range(n)
      if same or i != j
  )
  cross_sum = sum(
      kernel(source_layers, i, target_layers, j)
      for i in range(m)
      for j in range(n)
  )
  if same:
    return source_sum / m**2 + target_sum / n**2 - 2 * cross_sum / (m * n)
  return (
      source_sum / (m * (m - 1))
      + target_sum / (n * (n - 1))
      - 2 * cross_sum / (m * n)
  )


def numpy_softmax(logits):
  return scipy.special.softmax(np.asarray(logits, np.float64), axis=1)


def numpy_entropy_weights(probabilities):
  entropies = -np.sum(scipy.special.xlogy(probabilities, probabilities), axis=1)
  weights = 1.0 + np.exp(-entropies)
  return len(weights) * weights / weights.sum()


def numpy_pca_basis(features, dim):
  eigenvalues, eigenvectors = np.linalg.eigh(np.cov(features.T))
  return eigenvectors[:, np.argsort(eigenvalues)[::-1][:dim]]


@pytest.fixture(scope="module")
def domains():
  rng = np.random.default_rng(0)
  source = rng.normal(size=(7, 3)).astype(np.float32)
  target = (rng.normal(size=(5, 3)) * 1.5 + 0.7).astype(np.float32)
  return source, target


# --- MMD and JMMD ------------------------------------------------------------


@pytest.mark.parametrize("estimator", ["unbiased", "biased", "linear"])
def test_mmd_matches_numpy_double_loop(estimator):
  rng = np.random.default_rng(1)
  if (
      estimator == "linear"
  ):  # paired batches; odd, so the last example is left out
    source, target = rng.normal(size=(9, 3)), rng.normal(size=(9, 3)) + 0.5
  else:
    source, target = rng.normal(size=(7, 3)), rng.normal(size=(5, 3)) + 0.5
  source, target = source.astype(np.float32), target.astype(np.float32)
  variance = numpy_heuristic(source, target)
  expected = numpy_joint_mmd(
      [source], [target], [[m * variance for m in MULTIPLIERS]], estimator
  )
  value = align.mmd(source, target, estimator=estimator)
  np.testing.assert_allclose(value, expected, rtol=1e-4, atol=1e-5)


def test_mmd_mean_heuristic_multipliers_and_explicit_bandwidths(domains):
  source, target = domains
  mean = numpy_heuristic(source, target, "mean")
  np.testing.assert_allclose(
      align.mmd(
          source,
          target,
          bandwidth_heuristic="mean",
          bandwidth_multipliers=(0.5, 3.0),
      ),
      numpy_joint_mmd(
          [source], [target], [[0.5 * mean, 3.0 * mean]], "unbiased"
      ),
      rtol=1e-4,
      atol=1e-5,
  )
  np.testing.assert_allclose(
      align.mmd(
          source, target, kernel_bandwidths=[0.3, 2.0], estimator="biased"
      ),
      numpy_joint_mmd([source], [target], [[0.3, 2.0]], "biased"),
      rtol=1e-4,
      atol=1e-5,
  )


def test_mmd_null_distribution_and_shift():
  """Same distribution: biased >= 0, unbiased and linear average ~0; shifted: large."""
  rng = np.random.default_rng(2)
  draws, batch = 400, 10
  source = rng.normal(size=(draws, batch, 3)).astype(np.float32)
  target = rng.normal(size=(draws, batch, 3)).astype(np.float32)
  null = dict(
      zip(
          ("unbiased", "linear", "biased"),
          np.asarray(
              jax.jit(
                  jax.vmap(
                      lambda s, t: jnp.stack(
                          [
                              align.mmd(s, t, estimator=estimator)
                              for estimator in ("unbiased", "linear", "biased")
                          ]
                      )
                  )
              )(source, target)
          ).T,
      )
  )
  for estimator in ("unbiased", "linear"):
    standard_error = null[estimator].std() / np.sqrt(draws)
    assert abs(null[estimator].mean()) < 4 * standard_error, estimator
  assert null["biased"].min() >= -1e-6
  # Identical samples: the V-statistic is exactly zero.
  assert abs(float(align.mmd(source[0], source[0], estimator="biased"))) < 1e-5
  # Shifted by 2 in every coordinate: beyond every one of the 400 null draws.
  shifted = float(align.mmd(source[0], target[0] + 2.0))
  assert shifted > 0.5 and shifted > null["unbiased"].max()


def test_mmd_gradient_finite_and_heuristic_is_constant():
  rng = np.random.default_rng(3)
  source = rng.normal(size=(6, 4)).astype(np.float32)
  target = rng.normal(size=(6, 4)).astype(np.float32)
  source[1] = source[0]  # a zero distance
  target[2] = source[3]
  fixed = [m * numpy_heuristic(source, target) for m in MULTIPLIERS]

  def values(source):
    return jnp.stack(
        [
            align.mmd(source, target, estimator="unbiased"),
            align.mmd(source, target, estimator="biased"),
            align.mmd(source, target, estimator="linear"),
            align.mmd(
                source, target, estimator="unbiased", kernel_bandwidths=fixed
            ),
        ]
    )

  gradients = np.asarray(jax.jit(jax.jacrev(values))(source))
  assert np.all(np.isfinite(gradients))
  assert np.all(np.any(gradients != 0, axis=(1, 2)))
  # The heuristic bandwidth has its gradient stopped: the same as fixed bandwidths.
  np.testing.assert_allclose(gradients[0], gradients[3], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("estimator", ["unbiased", "linear"])
def test_jmmd_matches_numpy_product_kernel(estimator):
  rng = np.random.default_rng(4)
  features = [rng.normal(size=(8, 3)), rng.normal(size=(8, 3)) + 0.4]
  logits = [rng.normal(size=(8, 4)), rng.normal(size=(8, 4))]
  source = [
      features[0].astype(np.float32),
      numpy_softmax(logits[0]).astype(np.float32),
  ]
  target = [
      features[1].astype(np.float32),
      numpy_softmax(logits[1]).astype(np.float32),
  ]
  variance = numpy_heuristic(source[0], target[0])
  expected = numpy_joint_mmd(
      source,
      target,
      [[m * variance for m in MULTIPLIERS], [0.92**2]],
      estimator,
  )
  value = align.jmmd(
      source, target, kernel_bandwidths=[None, [0.92**2]], estimator=estimator
  )
  np.testing.assert_allclose(value, expected, rtol=1e-4, atol=1e-5)
  # One layer is plain MMD.
  np.testing.assert_allclose(
      align.jmmd(source[:1], target[:1], estimator=estimator),
      align.mmd(source[0], target[0], estimator=estimator),
      rtol=1e-6,
  )


# --- CORAL -------------------------------------------------------------------


def test_coral_matches_numpy_cov(domains):
  source, target = domains
  difference = np.cov(source.T.astype(np.float64)) - np.cov(
      target.T.astype(np.float64)
  )
  expected = np.sum(difference**2) / (4 * 3**2)
  np.testing.assert_allclose(align.coral(source, target), expected, rtol=1e-5)
  gradient = jax.grad(align.coral)(source, target)
  assert np.all(np.isfinite(gradient))


def numpy_tllib_coral(source, target):
  """TLlib's ``CorrelationAlignmentLoss.forward`` (tllib/alignment/coral.py),
  in NumPy float64: the mean squared entry of the mean difference plus that of
  the covariance difference (covariances normalised by n − 1)."""
  source, target = np.asarray(source, np.float64), np.asarray(
      target, np.float64
  )
  mean_s, mean_t = source.mean(0, keepdims=True), target.mean(0, keepdims=True)
  cent_s, cent_t = source - mean_s, target - mean_t
  cov_s = cent_s.T @ cent_s / (len(source) - 1)
  cov_t = cent_t.T @ cent_t / (len(target) - 1)
  return np.mean((mean_s - mean_t) ** 2) + np.mean((cov_s - cov_t) ** 2)


@pytest.mark.parametrize("sizes", [(16, 16, 8), (40, 25, 3)])
def test_coral_tllib_convention_matches_tllib_formula(sizes):
  num_source, num_target, dim = sizes
  rng = np.random.default_rng(11)
  source = rng.normal(size=(num_source, dim)).astype(np.float32)
  target = (1.5 * rng.normal(size=(num_target, dim)) + 0.3).astype(np.float32)
  tllib = numpy_tllib_coral(source, target)
  np.testing.assert_allclose(
      align.coral(source, target, convention="tllib"), tllib, rtol=1e-5
  )
  # The paper's loss is (TLlib's − its mean term) / 4.
  mean_term = np.mean(
      (source.astype(np.float64).mean(0) - target.astype(np.float64).mean(0))
      ** 2
  )
  np.testing.assert_allclose(
      align.coral(source, target), (tllib - mean_term) / 4, rtol=1e-5
  )
  np.testing.assert_allclose(
      align.coral(source, target, convention="paper"),
      align.coral(source, target),
      rtol=0,
  )
  gradient = jax.grad(lambda s: align.coral(s, target, convention="tllib"))(
      source
  )
  assert np.all(np.isfinite(gradient))


def test_coral_tllib_convention_at_extreme_scales():
  rng = np.random.default_rng(12)
  source = rng.normal(size=(10, 4))
  target = 0.7 * rng.normal(size=(12, 4)) + 0.5
  for scale in (2.0**-60, 2.0**30):
    value = align.coral(
        (source * scale).astype(np.float32),
        (target * scale).astype(np.float32),
        convention="tllib",
    )
    # The covariance term scales as scale⁴, the mean term as scale².
    source32 = (source * scale).astype(np.float32).astype(np.float64)
    target32 = (target * scale).astype(np.float32).astype(np.float64)
    np.testing.assert_allclose(
        value, numpy_tllib_coral(source32, target32), rtol=1e-4
    )


def test_coral_recolor_matches_target_covariance():
  rng = np.random.default_rng(5)
  mixing = rng.normal(size=(3, 3))
  source = (rng.normal(size=(40, 3)) @ mixing + 1.0).astype(np.float32)
  target = (rng.normal(size=(30, 3)) * [3.0, 1.0, 0.5] - 2.0).astype(np.float32)
  source_cov, target_cov = np.cov(source.T), np.cov(target.T)

  # eps = 0: the re-coloured source has exactly the target covariance.
  recoloured = np.asarray(
      align.coral_recolor(source, target, eps=0.0), np.float64
  )
  np.testing.assert_allclose(
      np.cov(recoloured.T), target_cov, rtol=1e-3, atol=1e-3
  )

  # eps = 1 (the paper's): the map of Algorithm 1, via SciPy's sqrtm, and the
  # covariance C_T' − C_T'^{1/2} C_S'^{−1} C_T'^{1/2} with C' = C + I.
  source_reg, target_reg = source_cov + np.eye(3), target_cov + np.eye(3)
  target_root = np.real(scipy.linalg.sqrtm(target_reg))
  source_root = np.real(scipy.linalg.sqrtm(source_reg))
  expected = source @ np.linalg.inv(source_root) @ target_root
  recoloured = np.asarray(align.coral_recolor(source, target), np.float64)
  np.testing.assert_allclose(recoloured, expected, rtol=1e-3, atol=1e-3)
  np.testing.assert_allclose(
      np.cov(recoloured.T),
      target_reg - target_root @ np.linalg.inv(source_reg) @ target_root,
      rtol=1e-3,
      atol=1e-3,
  )


# --- Gradient reversal and DANN ----------------------------------------------


def test_gradient_reversal_negates_and_scales_the_gradient():
  x = jnp.array([0.3, -1.2, 2.0])

  def loss(x):
    return jnp.sum(jnp.sin(x) * x**2)

  ordinary = jax.grad(loss)(x)
  for coeff in (0.0, 0.5, 2.0):
    reversed_gradient = jax.grad(
        lambda x: loss(align.gradient_reversal(x, coeff))
    )(x)
    np.testing.assert_allclose(reversed_gradient, -coeff * ordinary, rtol=1e-6)
  np.testing.assert_array_equal(align.gradient_reversal(x, 0.7), x)

  # A traced coefficient inside jit (from the schedule) and a pytree input.
  @jax.jit
  def step_gradient(tree, progress):
    coeff = align.dann_coefficient(progress)
    return jax.grad(lambda t: loss(align.gradient_reversal(t, coeff)["a"]))(
        tree
    )

  gradient = step_gradient({"a": x}, 0.3)["a"]
  coeff = 2 / (1 + np.exp(-10 * 0.3)) - 1
  np.testing.assert_allclose(gradient, -coeff * ordinary, rtol=1e-5)
  # The coefficient itself gets no gradient.
  assert (
      float(jax.grad(lambda c: loss(align.gradient_reversal(x, c)))(0.5)) == 0.0
  )


def test_dann_coefficient_values():
  def formula(p, gamma=10.0, high=1.0, low=0.0):
    return low + (high - low) * (2 / (1 + np.exp(-gamma * p)) - 1)

  assert float(align.dann_coefficient(0.0)) == 0.0
  np.testing.assert_allclose(align.dann_coefficient(1.0), 0.9999092, rtol=1e-6)
  for progress in (0.05, 0.25, 0.5):
    np.testing.assert_allclose(
        align.dann_coefficient(progress), formula(progress), rtol=1e-6
    )
  np.testing.assert_allclose(
      align.dann_coefficient(0.1, gamma=1.0, high=0.1, low=0.02),
      formula(0.1, 1.0, 0.1, 0.02),
      rtol=1e-6,
  )
  # TLlib's unbounded warm start (p = step / 1000).
  np.testing.assert_allclose(
      align.dann_coefficient(3.0, gamma=1.0, high=0.1, max_progress=None),
      formula(3.0, 1.0, 0.1),
      rtol=1e-6,
  )
  progress = jnp.linspace(0.0, 1.0, 5)
  np.testing.assert_allclose(
      jax.vmap(align.dann_coefficient)(progress),
      formula(np.asarray(progress)),
      rtol=1e-5,
      atol=1e-7,
  )


def test_domain_adversarial_loss_matches_numpy_bce():
  rng = np.random.default_rng(6)
  source_logits = rng.normal(size=6).astype(np.float32) * 3
  target_logits = rng.normal(size=4).astype(np.float32) * 3
  source_weights = rng.uniform(size=6).astype(np.float32)
  target_weights = rng.uniform(size=4).astype(np.float32)
  source_probabilities = 1 / (1 + np.exp(-source_logits.astype(np.float64)))
  target_probabilities = 1 / (1 + np.exp(-target_logits.astype(np.float64)))
  source_bce = -np.log(source_probabilities)
  target_bce = -np.log(1 - target_probabilities)
  np.testing.assert_allclose(
      align.domain_adversarial_loss(source_logits, target_logits[:, None]),
      0.5 * (source_bce.mean() + target_bce.mean()),
      rtol=1e-5,
  )
  np.testing.assert_allclose(
      align.domain_adversarial_loss(
          source_logits,
          target_logits,
          source_weights=source_weights,
          target_weights=target_weights,
      ),
      0.5
      * (
          (source_weights * source_bce).mean()
          + (target_weights * target_bce).mean()
      ),
      rtol=1e-5,
  )
  np.testing.assert_allclose(
      align.domain_adversarial_loss(np.zeros(3), np.zeros(2)),
      np.log(2),
      rtol=1e-6,
  )


# --- CDAN --------------------------------------------------------------------


def test_multilinear_maps_match_numpy():
  rng = np.random.default_rng(7)
  features = rng.normal(size=(5, 4)).astype(np.float32)
  predictions = numpy_softmax(rng.normal(size=(5, 3))).astype(np.float32)
  expected = np.stack(
      [np.outer(p, f).ravel() for f, p in zip(features, predictions)]
  )
  np.testing.assert_allclose(
      align.multilinear_map(features, predictions), expected, rtol=1e-6
  )

  matrices = align.random_multilinear_matrices(
      jax.random.key(0), 4, 3, output_dim=40000
  )
  assert matrices[0].shape == (4, 40000) and matrices[1].shape == (3, 40000)
  np.testing.assert_array_equal(
      matrices[1],
      align.random_multilinear_matrices(
          jax.random.key(0), 4, 3, output_dim=40000
      )[1],
  )
  features_matrix, predictions_matrix = (
      np.asarray(m, np.float64) for m in matrices
  )
  expected = (
      (features @ features_matrix) * (predictions @ predictions_matrix) / 200.0
  )
  randomized = np.asarray(
      align.randomized_multilinear_map(features, predictions, matrices),
      np.float64,
  )
  np.testing.assert_allclose(randomized, expected, rtol=1e-4, atol=1e-5)
  # Inner products of the randomized map estimate those of the full one.
  full = np.asarray(align.multilinear_map(features, predictions), np.float64)
  np.testing.assert_allclose(randomized @ randomized.T, full @ full.T, atol=0.1)


def test_entropy_weights_match_numpy_and_are_constant():
  rng = np.random.default_rng(8)
  predictions = numpy_softmax(rng.normal(size=(6, 4)) * 2)
  predictions[0] = [1.0, 0.0, 0.0, 0.0]  # 0 log 0 = 0
  weights = align.entropy_weights(predictions.astype(np.float32))
  np.testing.assert_allclose(
      weights, numpy_entropy_weights(predictions), rtol=1e-5
  )
  np.testing.assert_allclose(np.mean(weights), 1.0, rtol=1e-6)
  gradient = jax.grad(
      lambda p: jnp.sum(align.entropy_weights(p) * jnp.arange(6.0))
  )(jnp.asarray(predictions, jnp.float32))
  np.testing.assert_array_equal(gradient, 0.0)


def numpy_cdan(
    weight,
    bias,
    source_features,
    source_logits,
    target_features,
    target_logits,
    entropy_conditioning,
    matrices=None,
):
  features = np.concatenate([source_features, target_features]).astype(
      np.float64
  )
  predictions = numpy_softmax(np.concatenate([source_logits, target_logits]))
  if matrices is None:
    mapped = np.einsum("nc,nd->ncd", predictions, features).reshape(
        len(features), -1
    )
  else:
    features_matrix, predictions_matrix = map(np.asarray, matrices)
    mapped = (
        (features @ features_matrix)
        * (predictions @ predictions_matrix)
        / np.sqrt(features_matrix.shape[1])
    )
  probabilities = 1 / (1 + np.exp(-(mapped @ weight + bias)))
  labels = np.r_[np.ones(len(source_features)), np.zeros(len(target_features))]
  bce = -(
      labels * np.log(probabilities) + (1 - labels) * np.log(1 - probabilities)
  )
  weights = numpy_entropy_weights(predictions) if entropy_conditioning else 1.0
  return np.mean(weights * bce)


@pytest.fixture(scope="module")
def cdan_inputs():
  rng = np.random.default_rng(9)
  return (
      dict(
          source_features=rng.normal(size=(5, 4)).astype(np.float32),
          source_logits=(rng.normal(size=(5, 3)) * 2).astype(np.float32),
          target_features=rng.normal(size=(4, 4)).astype(np.float32),
          target_logits=(rng.normal(size=(4, 3)) * 2).astype(np.float32),
      ),
      rng.normal(size=12).astype(np.float32) * 0.3,
  )


@pytest.mark.parametrize("entropy_conditioning", [False, True])
def test_conditional_adversarial_loss_matches_numpy(
    cdan_inputs, entropy_conditioning
):
  inputs, weight = cdan_inputs
  value = align.conditional_adversarial_loss(
      lambda h: h @ weight + 0.1,
      **inputs,
      entropy_conditioning=entropy_conditioning,
  )
  expected = numpy_cdan(weight, 0.1, *inputs.values(), entropy_conditioning)
  np.testing.assert_allclose(value, expected, rtol=1e-5)

  matrices = align.random_multilinear_matrices(
      jax.random.key(2), 4, 3, output_dim=12
  )
  value = align.conditional_adversarial_loss(
      lambda h: (h @ weight)[:, None],
      **inputs,
      entropy_conditioning=entropy_conditioning,
      random_matrices=matrices,
  )
  expected = numpy_cdan(
      weight, 0.0, *inputs.values(), entropy_conditioning, matrices
  )
  np.testing.assert_allclose(value, expected, rtol=1e-5)


def test_conditional_adversarial_gradients(cdan_inputs):
  """Features get −coeff times the plain gradient, the discriminator the plain one,
  the classifier logits none (closed-form gradients of the plain loss in NumPy).
  """
  inputs, weight = cdan_inputs
  source_features, source_logits, target_features, target_logits = (
      inputs.values()
  )

  def adversarial(weight, source_features, source_logits, target_features):
    return align.conditional_adversarial_loss(
        lambda h: h @ weight,
        source_features,
        source_logits,
        target_features,
        target_logits,
        coeff=0.4,
    )

  got = jax.grad(adversarial, argnums=(0, 1, 2, 3))(
      weight, source_features, source_logits, target_features
  )

  features = np.concatenate([source_features, target_features]).astype(
      np.float64
  )
  predictions = numpy_softmax(np.concatenate([source_logits, target_logits]))
  mapped = np.einsum("nc,nd->ncd", predictions, features).reshape(9, -1)
  labels = np.r_[np.ones(5), np.zeros(4)]
  logit_gradient = (1 / (1 + np.exp(-mapped @ weight)) - labels) / 9
  mapped_gradient = np.outer(logit_gradient, weight).reshape(9, 3, 4)
  features_gradient = np.einsum("nc,ncd->nd", predictions, mapped_gradient)
  np.testing.assert_allclose(
      got[0], mapped.T @ logit_gradient, rtol=1e-4, atol=1e-7
  )
  np.testing.assert_allclose(
      got[1], -0.4 * features_gradient[:5], rtol=1e-4, atol=1e-7
  )
  np.testing.assert_allclose(
      got[3], -0.4 * features_gradient[5:], rtol=1e-4, atol=1e-7
  )
  np.testing.assert_array_equal(got[2], 0.0)


# --- MCD, MDD ----------------------------------------------------------------


def test_classifier_discrepancy_matches_numpy():
  rng = np.random.default_rng(10)
  first = numpy_softmax(rng.normal(size=(6, 5)))
  second = numpy_softmax(rng.normal(size=(6, 5)))
  expected = np.mean([np.sum(np.abs(p - q)) / 5 for p, q in zip(first, second)])
  np.testing.assert_allclose(
      align.classifier_discrepancy(
          first.astype(np.float32), second.astype(np.float32)
      ),
      expected,
      rtol=1e-5,
  )


def numpy_mdd(
    source,
    source_adversarial,
    target,
    target_adversarial,
    margin,
    source_weights=None,
    target_weights=None,
):
  source_labels, target_labels = source.argmax(1), target.argmax(1)
  source_p = numpy_softmax(source_adversarial)[
      np.arange(len(source)), source_labels
  ]
  target_p = numpy_softmax(target_adversarial)[
      np.arange(len(target)), target_labels
  ]
  source_terms = np.log(source_p) * (
      1 if source_weights is None else source_weights
  )
  target_terms = np.log1p(-target_p) * (
      1 if target_weights is None else target_weights
  )
  return margin * source_terms.mean() + target_terms.mean()


def test_margin_disparity_discrepancy_matches_numpy():
  rng = np.random.default_rng(11)
  logits = [
      (rng.normal(size=(6 if i < 2 else 4, 5)) * 2).astype(np.float32)
      for i in range(4)
  ]
  np.testing.assert_allclose(
      align.margin_disparity_discrepancy(*logits),
      numpy_mdd(*logits, 4.0),
      rtol=1e-5,
  )
  source_weights = rng.uniform(size=6).astype(np.float32)
  target_weights = rng.uniform(size=4).astype(np.float32)
  np.testing.assert_allclose(
      align.margin_disparity_discrepancy(
          *logits,
          margin=2.0,
          source_weights=source_weights,
          target_weights=target_weights,
      ),
      numpy_mdd(*logits, 2.0, source_weights, target_weights),
      rtol=1e-5,
  )

  # The Transfer-Learning-Library's form, −γ CE + log(clamp(1 − p + 1e-6, max=1)),
  # on equal batch sizes.
  source, source_adversarial = logits[0][:4], logits[1][:4]
  target, target_adversarial = logits[2], logits[3]
  cross_entropy = -np.log(
      numpy_softmax(source_adversarial)[np.arange(4), source.argmax(1)]
  )
  target_p = numpy_softmax(target_adversarial)[np.arange(4), target.argmax(1)]
  library = np.mean(
      -4.0 * cross_entropy + np.log(np.minimum(1 - target_p + 1e-6, 1.0))
  )
  np.testing.assert_allclose(
      align.margin_disparity_discrepancy(
          source, source_adversarial, target, target_adversarial
      ),
      library,
      rtol=1e-4,
  )


def test_margin_disparity_discrepancy_saturated_target_is_finite():
  target = np.eye(4, dtype=np.float32)
  target_adversarial = (
      np.eye(4, dtype=np.float32) * 60.0
  )  # p'[ĥ] = 1 in float32
  source = np.zeros((2, 4), np.float32)

  def value(target_adversarial):
    return align.margin_disparity_discrepancy(
        source, source, target, target_adversarial
    )

  np.testing.assert_allclose(
      value(target_adversarial),
      4.0 * np.log(0.25) + np.log(3.0) - 60.0,
      rtol=1e-5,
  )
  gradient = jax.grad(value)(target_adversarial)
  assert np.all(np.isfinite(gradient))


# --- AFN, BSP, MCC, entropy --------------------------------------------------


def test_stepwise_adaptive_feature_norm_value_and_gradient():
  rng = np.random.default_rng(12)
  features = rng.normal(size=(5, 3)).astype(np.float32)
  features[4] = 0.0  # a zero row has norm 0 and gradient 0
  np.testing.assert_allclose(
      align.stepwise_adaptive_feature_norm(features, delta_r=0.7),
      0.7**2,
      rtol=1e-6,
  )
  gradient = jax.grad(
      lambda f: align.stepwise_adaptive_feature_norm(f, delta_r=0.7)
  )(features)
  norms = np.linalg.norm(features, axis=1, keepdims=True)
  expected = (
      -2
      * 0.7
      / 5
      * np.divide(features, norms, out=np.zeros_like(features), where=norms > 0)
  )
  np.testing.assert_allclose(gradient, expected, rtol=1e-5, atol=1e-7)


def test_adaptive_feature_norm_matches_numpy():
  rng = np.random.default_rng(13)
  features = rng.normal(size=(6, 4)).astype(np.float32)
  mean_norm = np.linalg.norm(features.astype(np.float64), axis=1).mean()
  np.testing.assert_allclose(
      align.adaptive_feature_norm(features, radius=5.0),
      (mean_norm - 5.0) ** 2,
      rtol=1e-5,
  )


@pytest.mark.parametrize("k", [1, 2])
def test_batch_spectral_penalization_matches_numpy_svd(k):
  rng = np.random.default_rng(14)
  source = rng.normal(size=(6, 4)).astype(np.float32)
  target = rng.normal(size=(5, 4)).astype(np.float32)
  expected = np.sum(np.linalg.svd(source, compute_uv=False)[:k] ** 2) + np.sum(
      np.linalg.svd(target, compute_uv=False)[:k] ** 2
  )
  np.testing.assert_allclose(
      align.batch_spectral_penalization(source, target, k=k),
      expected,
      rtol=1e-5,
  )
  assert np.all(
      np.isfinite(
          jax.grad(lambda s: align.batch_spectral_penalization(s, target, k=k))(
              source
          )
      )
  )


def test_minimum_class_confusion_matches_library_operations():
  rng = np.random.default_rng(15)
  logits = (rng.normal(size=(8, 4)) * 3).astype(np.float32)
  # The Transfer-Learning-Library's steps, including its division of the
  # confusion matrix by row sums broadcast along the last axis.
  predictions = numpy_softmax(logits / 2.5)
  weights = numpy_entropy_weights(predictions)[:, None]
  confusion = (predictions * weights).T @ predictions
  confusion = confusion / np.sum(confusion, axis=1)
  expected = (np.sum(confusion) - np.trace(confusion)) / 4
  np.testing.assert_allclose(
      align.minimum_class_confusion(logits), expected, rtol=1e-5
  )
  assert np.all(np.isfinite(jax.grad(align.minimum_class_confusion)(logits)))


def test_entropy_matches_numpy():
  rng = np.random.default_rng(16)
  logits = (rng.normal(size=(5, 6)) * 3).astype(np.float32)
  probabilities = numpy_softmax(logits)
  expected = -np.mean(np.sum(probabilities * np.log(probabilities), axis=1))
  np.testing.assert_allclose(align.entropy(logits), expected, rtol=1e-5)
  np.testing.assert_allclose(
      align.entropy(np.zeros((2, 6))), np.log(6), rtol=1e-6
  )


def test_losses_trace_under_jit(domains, cdan_inputs):
  source, target = domains
  logits = jnp.asarray(cdan_inputs[0]["source_logits"])

  def losses(source, target, logits):
    return jnp.stack(
        [
            align.mmd(source, target),
            align.jmmd(
                [source, source[:, :2]],
                [target, target[:, :2]],
                estimator="biased",
            ),
            align.coral(source, target),
            align.batch_spectral_penalization(source, target),
            align.minimum_class_confusion(logits),
            align.entropy(logits),
            align.margin_disparity_discrepancy(
                logits, logits * 0.5, logits, -logits
            ),
            align.classifier_discrepancy(
                jax.nn.softmax(logits), jax.nn.softmax(-logits)
            ),
            align.stepwise_adaptive_feature_norm(source),
            align.adaptive_feature_norm(source, radius=2.0),
        ]
    )

  # Every check passes on tracers, and every loss is a scalar.
  shapes = jax.eval_shape(losses, source, target, logits)
  assert shapes.shape == (10,)
  np.testing.assert_allclose(
      jax.jit(lambda s, t: align.coral(s, t) + align.mmd(s, t))(source, target),
      align.coral(source, target) + align.mmd(source, target),
      rtol=1e-5,
  )


# --- Shallow methods: SA, TCA ------------------------------------------------


def test_subspace_alignment_matches_numpy():
  rng = np.random.default_rng(17)
  source = (rng.normal(size=(30, 5)) * [3, 2, 1, 0.5, 0.2]).astype(np.float32)
  target = (rng.normal(size=(25, 5)) @ rng.normal(size=(5, 5)) + 1).astype(
      np.float32
  )
  aligned, projected = map(
      np.asarray, align.subspace_alignment(source, target, dim=2)
  )
  source_basis = numpy_pca_basis(source, 2)
  target_basis = numpy_pca_basis(target, 2)
  alignment = source_basis.T @ target_basis
  expected_aligned = (source - source.mean(0)) @ source_basis @ alignment
  expected_projected = (target - target.mean(0)) @ target_basis
  # Eigenvector signs are arbitrary; these products do not depend on them.
  for got, expected in (
      (aligned @ projected.T, expected_aligned @ expected_projected.T),
      (aligned @ aligned.T, expected_aligned @ expected_aligned.T),
      (projected @ projected.T, expected_projected @ expected_projected.T),
  ):
    np.testing.assert_allclose(
        got, expected, rtol=1e-3, atol=1e-3 * np.abs(expected).max()
    )


def test_subspace_alignment_recovers_a_rotated_basis():
  """Both domains lie in one plane of R⁵, the target rotated within it: their PCA
  bases differ by the rotation (and signs). After SA the source coordinates are in
  the target basis: source–target inner products are those of the original space,
  which the unaligned PCA coordinates get wrong."""
  rng = np.random.default_rng(18)
  plane = np.linalg.qr(rng.normal(size=(5, 2)))[0]
  angle = 0.6
  rotation = np.array(
      [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
  )
  source = (rng.normal(size=(60, 2)) * [3.0, 1.0]) @ plane.T + 2.0
  target = (rng.normal(size=(50, 2)) * [3.0, 1.0]) @ rotation @ plane.T - 1.0
  source, target = source.astype(np.float32), target.astype(np.float32)
  aligned, projected = map(
      np.asarray, align.subspace_alignment(source, target, dim=2)
  )
  centred_source = source - source.mean(0)
  centred_target = target - target.mean(0)
  ambient = centred_source @ centred_target.T
  scale = np.abs(ambient).max()
  np.testing.assert_allclose(aligned @ projected.T, ambient, atol=1e-3 * scale)
  np.testing.assert_allclose(
      aligned @ aligned.T, centred_source @ centred_source.T, atol=1e-3 * scale
  )
  unaligned = centred_source @ numpy_pca_basis(source, 2)
  assert np.abs(unaligned @ projected.T - ambient).max() > 0.1 * scale


def numpy_tca(source, target, dim, mu, kernel_matrix):
  num_source, total = len(source), len(source) + len(target)
  e = np.r_[
      np.full(num_source, 1 / num_source),
      np.full(total - num_source, -1 / (total - num_source)),
  ]
  centring = np.eye(total) - np.ones((total, total)) / total
  scatter = kernel_matrix @ centring @ kernel_matrix
  constraint = kernel_matrix @ np.outer(e, e) @ kernel_matrix + mu * np.eye(
      total
  )
  _, vectors = scipy.linalg.eigh(scatter, constraint)
  embedding = kernel_matrix @ vectors[:, ::-1][:, :dim]
  return embedding[:num_source], embedding[num_source:]


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
def test_tca_matches_scipy_generalized_eigh(kernel):
  rng = np.random.default_rng(19)
  source = rng.normal(size=(15, 4)).astype(np.float32)
  target = rng.normal(size=(12, 4)) * [2, 1, 1, 0.5] + [1.5, 0, 0, 0]
  target = target.astype(np.float32)
  pooled = np.concatenate([source, target]).astype(np.float64)
  distances = scipy.spatial.distance.cdist(pooled, pooled, "sqeuclidean")
  median = np.median(distances[np.triu_indices(len(pooled), 1)])
  cases = {  # kernel: [(gamma passed, kernel matrix, dim)]
      "linear": [(None, pooled @ pooled.T, 2)],
      # An explicit width, and the default 1 / (2 · median squared distance).
      "rbf": [
          (0.3, np.exp(-0.3 * distances), 3),
          (None, np.exp(-distances / (2 * median)), 3),
      ],
  }[kernel]
  for gamma, kernel_matrix, dim in cases:
    expected = np.concatenate(
        numpy_tca(source, target, dim, 1.0, kernel_matrix)
    )
    got = np.concatenate(
        align.tca(source, target, dim=dim, kernel=kernel, gamma=gamma)
    )
    # Eigenvector signs are arbitrary; the Gram matrix of the embedding is not.
    expected_gram = expected @ expected.T
    np.testing.assert_allclose(
        got @ got.T, expected_gram, atol=2e-3 * np.abs(expected_gram).max()
    )


def test_tca_reduces_mmd_on_a_shifted_toy_problem():
  rng = np.random.default_rng(20)
  source = rng.normal(size=(40, 5)).astype(np.float32)
  target = (rng.normal(size=(40, 5)) + [3.0, 0, 0, 0, 0]).astype(np.float32)

  def numpy_mmd(source, target):
    variance = numpy_heuristic(source, target)
    return numpy_joint_mmd([source], [target], [[variance]], "biased")

  source_embedding, target_embedding = map(
      np.asarray, align.tca(source, target, dim=2)
  )
  raw, embedded = numpy_mmd(source, target), numpy_mmd(
      source_embedding, target_embedding
  )
  assert embedded < 0.2 * raw, (raw, embedded)


# --- Bad inputs --------------------------------------------------------------


FEATURES = 1 + np.arange(12, dtype=np.float32).reshape(4, 3) ** 0.5
PROBABILITIES = np.full((4, 3), 1 / 3, np.float32)
DOMAIN_LOGITS = np.zeros(4, np.float32)


def discriminator(h):
  return jnp.sum(h, axis=1)


BAD_CALLS = [
    (
        lambda: align.mmd(FEATURES, FEATURES[:, :2]),
        "target_features must have the same feature dimension as source_features",
    ),
    (
        lambda: align.mmd(np.zeros((0, 3)), FEATURES),
        "source_features must have shape",
    ),
    (
        lambda: align.mmd(FEATURES, np.zeros(3)),
        "target_features must have shape",
    ),
    (
        lambda: align.mmd(FEATURES, FEATURES, estimator="quadratic"),
        "estimator must be one of 'unbiased', 'biased', 'linear'",
    ),
    (
        lambda: align.mmd(FEATURES[:1], FEATURES),
        "source_features must have at least 2 rows",
    ),
    (
        lambda: align.mmd(FEATURES, FEATURES[:3], estimator="linear"),
        "target_features must have the batch size of source_features",
    ),
    (
        lambda: align.mmd(FEATURES, FEATURES, kernel_bandwidths=[1.0, -1.0]),
        "kernel_bandwidths must be finite and > 0",
    ),
    (
        lambda: align.mmd(
            FEATURES,
            FEATURES,
            kernel_bandwidths=[1.0],
            bandwidth_multipliers=[1.0],
        ),
        "pass one of the two",
    ),
    (
        lambda: align.mmd(FEATURES, FEATURES, bandwidth_heuristic="max"),
        "bandwidth_heuristic must be one of 'median', 'mean'",
    ),
    (
        lambda: align.jmmd([FEATURES], [FEATURES, FEATURES]),
        "target_list must have one array per layer",
    ),
    (
        lambda: align.jmmd([FEATURES, FEATURES[:3]], [FEATURES, FEATURES]),
        r"source_list\[1\] must have the batch size of source_list\[0\]",
    ),
    (
        lambda: align.jmmd([FEATURES], [FEATURES[:, :2]]),
        r"target_list\[0\] must have the same feature dimension",
    ),
    (
        lambda: align.jmmd(
            [FEATURES], [FEATURES], kernel_bandwidths=[None, None]
        ),
        "kernel_bandwidths must be None or a list with one entry",
    ),
    (
        lambda: align.jmmd(FEATURES, [FEATURES]),
        "source_list must be a non-empty list",
    ),
    (
        lambda: align.coral(FEATURES[:1], FEATURES),
        "source_features must have at least 2 rows",
    ),
    (lambda: align.coral(FEATURES, FEATURES[:, :2]), "same feature dimension"),
    (
        lambda: align.coral(FEATURES, FEATURES, convention="TLlib"),
        "convention must be one of 'paper', 'tllib'",
    ),
    (
        lambda: align.coral_recolor(FEATURES, FEATURES, eps=-1.0),
        "eps must be a finite number >= 0",
    ),
    (
        lambda: align.coral_recolor(FEATURES * np.nan, FEATURES),
        "source must be finite",
    ),
    (
        lambda: align.gradient_reversal(FEATURES, -1.0),
        "coeff must be a finite number >= 0",
    ),
    (lambda: align.dann_coefficient(1.5), r"progress must lie in \[0, 1\]"),
    (
        lambda: align.dann_coefficient(-0.1),
        "progress must be a finite number >= 0",
    ),
    (
        lambda: align.dann_coefficient(0.5, gamma=-1.0),
        "gamma must be a finite number >= 0",
    ),
    (
        lambda: align.dann_coefficient(0.5, high=-1.0),
        "high must be a finite number >= 0",
    ),
    (
        lambda: align.domain_adversarial_loss(np.zeros((4, 2)), DOMAIN_LOGITS),
        "source_domain_logits must have shape",
    ),
    (
        lambda: align.domain_adversarial_loss(DOMAIN_LOGITS, np.zeros(0)),
        "target_domain_logits must have shape",
    ),
    (
        lambda: align.domain_adversarial_loss(
            DOMAIN_LOGITS, DOMAIN_LOGITS, source_weights=-np.ones(4)
        ),
        "source_weights must be finite and non-negative",
    ),
    (
        lambda: align.domain_adversarial_loss(
            DOMAIN_LOGITS, DOMAIN_LOGITS, target_weights=np.ones(3)
        ),
        r"target_weights must have shape \(4,\)",
    ),
    (
        lambda: align.multilinear_map(FEATURES, PROBABILITIES[:3]),
        "predictions must have one row per row of features",
    ),
    (
        lambda: align.randomized_multilinear_map(
            FEATURES, PROBABILITIES, (np.ones((2, 8)), np.ones((3, 8)))
        ),
        r"random_matrices\[0\] must have one row per feature",
    ),
    (
        lambda: align.randomized_multilinear_map(
            FEATURES, PROBABILITIES, (np.ones((3, 8)), np.ones((3, 4)))
        ),
        "same output dimension",
    ),
    (
        lambda: align.random_multilinear_matrices(jax.random.key(0), 0, 3),
        "features_dim must be an int >= 1",
    ),
    (
        lambda: align.conditional_adversarial_loss(
            lambda h: h[:, :2], FEATURES, PROBABILITIES, FEATURES, PROBABILITIES
        ),
        "discriminator must return one logit per example",
    ),
    (
        lambda: align.conditional_adversarial_loss(
            discriminator,
            FEATURES,
            PROBABILITIES,
            FEATURES,
            PROBABILITIES[:, :2],
        ),
        "target_logits must have the same number of classes as source_logits",
    ),
    (
        lambda: align.conditional_adversarial_loss(
            discriminator, FEATURES, PROBABILITIES[:3], FEATURES, PROBABILITIES
        ),
        "source_logits must have one row per row of source_features",
    ),
    (
        lambda: align.conditional_adversarial_loss(
            discriminator,
            FEATURES,
            PROBABILITIES,
            FEATURES,
            PROBABILITIES,
            coeff=-0.5,
        ),
        "coeff must be a finite number >= 0",
    ),
    (
        lambda: align.conditional_adversarial_loss(
            discriminator,
            FEATURES,
            PROBABILITIES,
            FEATURES,
            PROBABILITIES,
            entropy_conditioning="yes",
        ),
        "entropy_conditioning must be True or False",
    ),
    (
        lambda: align.classifier_discrepancy(
            PROBABILITIES, PROBABILITIES[:, :2]
        ),
        "probabilities_2 must have the same shape as probabilities_1",
    ),
    (
        lambda: align.classifier_discrepancy(FEATURES, PROBABILITIES),
        "probabilities_1 rows must sum to 1",
    ),
    (
        lambda: align.margin_disparity_discrepancy(
            FEATURES, FEATURES, FEATURES, FEATURES, margin=-1.0
        ),
        "margin must be a finite number >= 0",
    ),
    (
        lambda: align.margin_disparity_discrepancy(
            FEATURES, FEATURES[:3], FEATURES, FEATURES
        ),
        "source_adversarial_logits must have the same shape as source_logits",
    ),
    (
        lambda: align.margin_disparity_discrepancy(
            FEATURES[:, :1], FEATURES[:, :1], FEATURES[:, :1], FEATURES[:, :1]
        ),
        "source_logits must have at least 2 classes",
    ),
    (
        lambda: align.stepwise_adaptive_feature_norm(FEATURES, delta_r=-1.0),
        "delta_r must be a finite number >= 0",
    ),
    (
        lambda: align.adaptive_feature_norm(FEATURES, radius=-1.0),
        "radius must be a finite number >= 0",
    ),
    (
        lambda: align.adaptive_feature_norm(np.zeros((0, 3)), radius=1.0),
        "features must have shape",
    ),
    (
        lambda: align.batch_spectral_penalization(FEATURES, FEATURES, k=0),
        "k must be an int >= 1",
    ),
    (
        lambda: align.batch_spectral_penalization(FEATURES, FEATURES, k=4),
        "k must be at most 3",
    ),
    (
        lambda: align.batch_spectral_penalization(FEATURES, FEATURES[:, :2]),
        "same feature dimension",
    ),
    (
        lambda: align.minimum_class_confusion(FEATURES, temperature=0.0),
        "temperature must be a finite number > 0",
    ),
    (lambda: align.entropy(np.zeros(3)), "logits must have shape"),
    (lambda: align.entropy_weights(FEATURES), "predictions rows must sum to 1"),
    (
        lambda: align.subspace_alignment(FEATURES, FEATURES, dim=4),
        "dim must be at most the feature dimension 3",
    ),
    (
        lambda: align.subspace_alignment(FEATURES, FEATURES[:, :2], dim=1),
        "target must have the same feature dimension as source",
    ),
    (
        lambda: align.tca(FEATURES, FEATURES, dim=2, kernel="poly"),
        "kernel must be one of 'linear', 'rbf'",
    ),
    (
        lambda: align.tca(FEATURES, FEATURES, dim=2, gamma=1.0),
        "gamma is the width",
    ),
    (
        lambda: align.tca(FEATURES, FEATURES, dim=2, kernel="rbf", gamma=0.0),
        "gamma must be a finite number > 0",
    ),
    (
        lambda: align.tca(FEATURES, FEATURES, dim=2, mu=0.0),
        "mu must be a finite number > 0",
    ),
    (
        lambda: align.tca(FEATURES, FEATURES, dim=9),
        "dim must be at most the number of examples",
    ),
    (lambda: align.tca(FEATURES, FEATURES, dim=0), "dim must be an int >= 1"),
]


@pytest.mark.parametrize(
    "call, message", BAD_CALLS, ids=[f"bad{i}" for i in range(len(BAD_CALLS))]
)
def test_bad_inputs_raise_value_error_naming_the_argument(call, message):
  with pytest.raises(ValueError, match=message):
    call()


# --- The median heuristic by selection -----------------------------------------


@pytest.mark.parametrize(
    "num_source, num_target, duplicates",
    [
        (5, 5, 0),  # 45 pairs: odd count
        (6, 4, 0),  # 45 pairs, unequal batches
        (7, 5, 0),  # 66 pairs: even count
        (16, 9, 6),  # many ties at 0 (repeated rows) and between equal gaps
        (64, 40, 0),
    ],
)
def test_median_bandwidth_is_the_exact_median_of_the_pooled_pairs(
    num_source, num_target, duplicates
):
  """The bisection on the distances' bit patterns gives np.median's value."""
  rng = np.random.default_rng(num_source * 100 + num_target)
  source = rng.standard_normal((num_source, 3)).astype(np.float32)
  target = (rng.standard_normal((num_target, 3)) + 0.5).astype(np.float32)
  if duplicates:
    source[:duplicates] = source[0]
    target[:duplicates] = source[0]
  source, target = mmd_lib._layer_scale(
      jnp.asarray(source), jnp.asarray(target)
  )[:2]
  distances = mmd_lib._pooled_distances(source, target)
  pooled_pairs = np.concatenate(
      [
          np.asarray(distances[0])[np.triu_indices(num_source, 1)],
          np.asarray(distances[1])[np.triu_indices(num_target, 1)],
          np.asarray(distances[2]).ravel(),
      ]
  )
  found = mmd_lib._heuristic_variance(*distances, "median")
  # The two middle order statistics, exactly; their mean in float32.
  ordered = np.sort(pooled_pairs)
  middle = ordered[(len(ordered) - 1) // 2], ordered[len(ordered) // 2]
  assert float(found) == float(np.float32(0.5) * (middle[0] + middle[1]))
  np.testing.assert_allclose(
      float(found), np.median(pooled_pairs.astype(np.float64)), rtol=1e-6
  )
  found = mmd_lib._heuristic_variance(*distances, "mean")
  np.testing.assert_allclose(
      float(found), pooled_pairs.astype(np.float64).mean(), rtol=1e-6
  )


def test_median_bandwidth_in_float64_matches_numpy():
  rng = np.random.default_rng(7)
  source, target = rng.standard_normal((9, 4)), rng.standard_normal((6, 4)) + 1
  with jax.enable_x64(True):
    value = mmd_lib._heuristic_variance(
        *mmd_lib._pooled_distances(jnp.asarray(source), jnp.asarray(target)),
        "median",
    )
    assert value.dtype == jnp.float64
    np.testing.assert_allclose(
        float(value), numpy_heuristic(source, target), rtol=1e-12
    )
