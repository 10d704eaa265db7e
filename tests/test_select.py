"""Tests for tljax.select against independent references.

References: each score re-written here in NumPy from its paper's formula —
LogME as the paper's Algorithm 1 with the ``D × D`` matrix ``A = αI + βFᵀF``
(float64), LEEP and NCE as loops over examples and label pairs, the H-score
with ``np.cov`` and ``np.linalg.pinv``, the shrinkage H-score with
scikit-learn's ``ledoit_wolf``, GBC with the general Gaussian Bhattacharyya
distance on diagonal covariance matrices, TransRate with ``slogdet`` of
``D × D`` matrices — plus closed forms (NCE of identical and of independent
labels), invariances, and the ordering of informative against random
features.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sklearn.covariance

from tljax import select
from tljax.select import _checks as select_checks
from tljax.select.hscore import _ledoit_wolf_shrinkage


def class_data(seed, num_examples, dim, num_classes=3, separation=0.8):
  """Features whose class means differ, and integer labels."""
  rng = np.random.default_rng(seed)
  labels = rng.permutation(np.arange(num_examples) % num_classes)
  centres = rng.normal(size=(num_classes, dim))
  features = rng.normal(size=(num_examples, dim)) + separation * centres[labels]
  return features, labels


def f32(array):
  return np.asarray(array, np.float32)


# --- LogME -------------------------------------------------------------------


def numpy_logme(features, targets, *, tolerance=1e-9, max_iterations=1000):
  """Algorithm 1 of You et al. (2021), one target column at a time."""
  features = np.asarray(features, np.float64)
  num_examples, dim = features.shape
  gram = features.T @ features
  sigma = np.clip(np.linalg.eigvalsh(gram), 0, None)  # all D eigenvalues

  def evidence(alpha, beta, y):
    a = alpha * np.eye(dim) + beta * gram
    m = beta * np.linalg.solve(a, features.T @ y)
    gamma = np.sum(beta * sigma / (alpha + beta * sigma))
    # N − γ, summed so that it stays accurate as β grows.
    noise = num_examples - dim + np.sum(alpha / (alpha + beta * sigma))
    residual = np.sum((features @ m - y) ** 2)
    value = (
        dim / 2 * np.log(alpha)
        + num_examples / 2 * np.log(beta)
        - num_examples / 2 * np.log(2 * np.pi)
        - beta / 2 * residual
        - alpha / 2 * m @ m
        - 0.5 * np.linalg.slogdet(a)[1]
    )
    return value / num_examples, gamma, noise, m @ m, residual

  scores = []
  for y in np.asarray(targets, np.float64).T:
    alpha, beta, previous = 1.0, 1.0, np.inf
    for _ in range(max_iterations):
      value, gamma, noise, weight_norm, residual = evidence(alpha, beta, y)
      new_alpha, new_beta = gamma / weight_norm, noise / residual
      converged = (
          abs(new_alpha / new_beta - alpha / beta) <= tolerance * alpha / beta
          or abs(value - previous) <= tolerance
      )
      alpha, beta, previous = new_alpha, new_beta, value
      if converged:
        break
    scores.append(evidence(alpha, beta, y)[0])
  return float(np.mean(scores))


@pytest.mark.parametrize(
    "seed, num_examples, dim",
    [(0, 200, 10), (1, 60, 12), (0, 30, 40), (0, 20, 60)],
    ids=["N>D", "N>D-small", "N<D", "N<<D"],
)
def test_logme_matches_algorithm_1(seed, num_examples, dim):
  features, labels = class_data(seed, num_examples, dim)
  expected = numpy_logme(features, np.eye(3)[labels])
  assert np.isfinite(expected)
  np.testing.assert_allclose(
      float(select.logme(f32(features), labels)), expected, rtol=1e-4, atol=2e-5
  )


def test_logme_in_float64_matches_algorithm_1_closely():
  for num_examples, dim in ((200, 10), (30, 40)):
    features, labels = class_data(0, num_examples, dim)
    with jax.enable_x64(True):
      score = select.logme(
          features, labels, tolerance=1e-12, max_iterations=1000
      )
    assert score.dtype == np.float64
    np.testing.assert_allclose(
        float(score), numpy_logme(features, np.eye(3)[labels]), rtol=1e-7
    )


def test_logme_regression_and_rank_deficient_features_match_algorithm_1():
  rng = np.random.default_rng(5)
  features = rng.normal(size=(120, 6))
  target = features @ rng.normal(size=6) + 0.5 * rng.normal(size=120)
  np.testing.assert_allclose(
      float(select.logme(f32(features), f32(target), regression=True)),
      numpy_logme(features, target[:, None]),
      rtol=1e-4,
      atol=2e-5,
  )
  # Two duplicated columns: FᵀF has two zero eigenvalues.
  duplicated, labels = class_data(6, 120, 6)
  duplicated = np.concatenate([duplicated, duplicated[:, :2]], axis=1)
  np.testing.assert_allclose(
      float(select.logme(f32(duplicated), labels)),
      numpy_logme(duplicated, np.eye(3)[labels]),
      rtol=1e-4,
      atol=2e-5,
  )


@pytest.mark.parametrize("num_examples, dim", [(200, 10), (30, 40)])
def test_logme_is_invariant_to_feature_scale(num_examples, dim):
  features, labels = class_data(2, num_examples, dim)
  base = float(select.logme(f32(features), labels))
  for scale in (1e-3, 1e3):
    np.testing.assert_allclose(
        float(select.logme(f32(scale * features), labels)),
        base,
        rtol=1e-4,
        atol=1e-5,
    )


def test_logme_uses_one_eigendecomposition_for_all_classes():
  features, labels = class_data(0, 60, 8, num_classes=5)
  jaxpr = str(
      jax.make_jaxpr(functools.partial(select.logme, num_classes=5))(
          f32(features), labels
      )
  )
  assert jaxpr.count("eigh[") == 1


def test_logme_leaves_out_absent_classes():
  features, labels = class_data(0, 200, 10)
  gapped = np.where(labels == 2, 3, labels)  # class 2 absent
  np.testing.assert_allclose(
      float(select.logme(f32(features), gapped, num_classes=4)),
      float(select.logme(f32(features), labels)),
      rtol=1e-5,
      atol=1e-6,
  )


# --- LEEP and NCE --------------------------------------------------------------


def numpy_leep(probabilities, labels):
  num_examples, num_source = probabilities.shape
  num_target = labels.max() + 1
  joint = np.zeros((num_target, num_source))
  for theta, y in zip(probabilities, labels):
    joint[y] += theta / num_examples
  total = 0.0
  for theta, y in zip(probabilities, labels):
    expected = 0.0
    for z in range(num_source):
      if joint[:, z].sum() > 0:
        expected += joint[y, z] / joint[:, z].sum() * theta[z]
    total += np.log(expected)
  return total / num_examples


def test_leep_matches_numpy_loop():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 4, 50)
  logits = rng.normal(size=(50, 6)) + 2.0 * np.eye(6)[labels]
  probabilities = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
  np.testing.assert_allclose(
      float(select.leep(f32(probabilities), labels)),
      numpy_leep(probabilities, labels),
      rtol=1e-5,
  )
  # A source class that never receives probability mass is skipped.
  probabilities[:, 5] = 0.0
  probabilities /= probabilities.sum(1, keepdims=True)
  np.testing.assert_allclose(
      float(select.leep(f32(probabilities), labels)),
      numpy_leep(probabilities, labels),
      rtol=1e-5,
  )


def numpy_nce(source_labels, target_labels):
  num_examples = len(source_labels)
  total = 0.0
  for z in np.unique(source_labels):
    p_z = np.mean(source_labels == z)
    for y in np.unique(target_labels):
      p_yz = np.sum((source_labels == z) & (target_labels == y)) / num_examples
      if p_yz > 0:
        total += p_yz * np.log(p_yz / p_z)
  return total


def test_nce_matches_numpy_loop_and_closed_forms():
  rng = np.random.default_rng(1)
  source_labels = rng.integers(0, 5, 80)
  target_labels = (source_labels + rng.integers(0, 2, 80)) % 3
  np.testing.assert_allclose(
      float(select.nce(source_labels, target_labels)),
      numpy_nce(source_labels, target_labels),
      rtol=1e-5,
  )
  # Target determined by source: H(Y|Z) = 0.
  assert abs(float(select.nce(source_labels, source_labels % 3))) < 1e-6
  # Exactly independent: each (z, y) pair a_z · b_y times, so NCE = −H(Y).
  source_counts, target_counts = [1, 2, 3], [1, 1, 2, 4]
  pairs = [
      (z, y)
      for z, a in enumerate(source_counts)
      for y, b in enumerate(target_counts)
      for _ in range(a * b)
  ]
  source_labels, target_labels = map(np.array, zip(*pairs))
  p_y = np.array(target_counts) / sum(target_counts)
  np.testing.assert_allclose(
      float(select.nce(source_labels, target_labels)),
      np.sum(p_y * np.log(p_y)),
      rtol=1e-5,
  )


# --- H-score -------------------------------------------------------------------


def class_mean_features(features, labels):
  return np.stack([features[labels == label].mean(0) for label in labels])


def numpy_h_score(features, labels):
  covariance = np.cov(features, rowvar=False)
  between = np.cov(class_mean_features(features, labels), rowvar=False)
  return np.trace(np.linalg.pinv(covariance, rcond=1e-12) @ between)


def test_h_score_matches_numpy_and_is_affine_invariant():
  features, labels = class_data(0, 150, 6, num_classes=4)
  expected = numpy_h_score(features, labels)
  np.testing.assert_allclose(
      float(select.h_score(f32(features), labels)), expected, rtol=1e-4
  )
  rng = np.random.default_rng(1)
  transform = rng.normal(size=(6, 6)) + 3 * np.eye(6)
  moved = features @ transform + rng.normal(size=6)
  np.testing.assert_allclose(
      float(select.h_score(f32(moved), labels)), expected, rtol=1e-3
  )
  # A duplicated column adds nothing: the pseudo-inverse ignores the null space.
  duplicated = np.concatenate([features, features[:, :1]], axis=1)
  np.testing.assert_allclose(
      float(select.h_score(f32(duplicated), labels)), expected, rtol=1e-3
  )


@pytest.mark.parametrize("num_examples, dim", [(200, 5), (20, 30)])
def test_ledoit_wolf_shrinkage_matches_scikit_learn(num_examples, dim):
  rng = np.random.default_rng(dim)
  data = rng.normal(size=(num_examples, dim)) @ rng.normal(size=(dim, dim))
  centred = data - data.mean(0)
  shrinkage = _ledoit_wolf_shrinkage(
      jnp.asarray(centred), jnp.asarray(centred.T @ centred / num_examples)
  )
  np.testing.assert_allclose(
      float(shrinkage),
      sklearn.covariance.ledoit_wolf_shrinkage(data),
      rtol=1e-4,
  )


@pytest.mark.parametrize("num_examples, dim", [(150, 6), (30, 40)])
def test_shrinkage_h_score_matches_scikit_learn_reference(num_examples, dim):
  features, labels = class_data(3, num_examples, dim, num_classes=3)
  shrunk, shrinkage = sklearn.covariance.ledoit_wolf(features)
  class_means = class_mean_features(features, labels)
  class_means = class_means - class_means.mean(0)
  between = class_means.T @ class_means / num_examples
  expected = np.trace(np.linalg.pinv(shrunk) @ ((1 - shrinkage) * between))
  score = float(select.shrinkage_h_score(f32(features), labels))
  np.testing.assert_allclose(score, expected, rtol=1e-4)
  # thuml/Transfer-Learning-Library's normalisation: np.cov for the class means.
  library = np.trace(
      np.linalg.pinv(shrunk)
      @ (
          (1 - shrinkage)
          * np.cov(class_mean_features(features, labels), rowvar=False)
      )
  )
  np.testing.assert_allclose(
      score * num_examples / (num_examples - 1), library, rtol=1e-4
  )
  # Invariant to scaling and rotating the features.
  rotation, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(dim, dim)))
  np.testing.assert_allclose(
      float(select.shrinkage_h_score(f32(100.0 * features @ rotation), labels)),
      score,
      rtol=1e-3,
  )


# --- GBC -----------------------------------------------------------------------


def numpy_gbc(features, labels, *, spherical=False, floor=1e-4):
  gaussians = []
  for label in np.unique(labels):
    members = features[labels == label]
    variances = np.maximum(members.var(0), floor)
    if spherical:
      variances = np.full_like(variances, variances.mean())
    gaussians.append((members.mean(0), np.diag(variances)))
  total = 0.0
  for i, (mean_i, covariance_i) in enumerate(gaussians):
    for j, (mean_j, covariance_j) in enumerate(gaussians):
      if i == j:
        continue
      covariance = (covariance_i + covariance_j) / 2
      difference = mean_i - mean_j
      distance = difference @ np.linalg.solve(
          covariance, difference
      ) / 8 + 0.5 * (
          np.linalg.slogdet(covariance)[1]
          - 0.5 * np.linalg.slogdet(covariance_i)[1]
          - 0.5 * np.linalg.slogdet(covariance_j)[1]
      )
      total += np.exp(-distance)
  return -total


@pytest.mark.parametrize("covariance", ["diagonal", "spherical"])
def test_gbc_matches_numpy(covariance):
  features, labels = class_data(0, 120, 5, num_classes=4, separation=0.6)
  features[:, 4] = 1.0  # a constant feature: the variance floor applies
  spherical = covariance == "spherical"
  np.testing.assert_allclose(
      float(select.gbc(f32(features), labels, covariance=covariance)),
      numpy_gbc(features, labels, spherical=spherical),
      rtol=1e-4,
      atol=1e-6,
  )


def test_gbc_bounds():
  rng = np.random.default_rng(0)
  labels = np.arange(200) % 4
  # Identical class distributions overlap almost fully: BC ≈ 1 for 12 pairs.
  assert float(select.gbc(f32(rng.normal(size=(200, 3))), labels)) < -11.0
  separated = rng.normal(size=(200, 3)) + 100.0 * np.eye(4, 3)[labels]
  assert float(select.gbc(f32(separated), labels)) > -1e-6


# --- TransRate -----------------------------------------------------------------


def coding_rate(features, eps):
  num_examples, dim = features.shape
  return (
      0.5
      * np.linalg.slogdet(
          np.eye(dim) + features.T @ features / (num_examples * eps)
      )[1]
  )


def numpy_transrate(features, labels, eps=1e-4, *, uniform=False):
  centred = features - features.mean(0)
  classes = np.unique(labels)
  weights = [
      1 / len(classes) if uniform else np.mean(labels == label)
      for label in classes
  ]
  return coding_rate(centred, eps) - sum(
      weight * coding_rate(centred[labels == label], eps)
      for weight, label in zip(weights, classes)
  )


@pytest.mark.parametrize("num_examples, dim", [(120, 6), (24, 40)])
def test_transrate_matches_numpy(num_examples, dim):
  features, unbalanced = class_data(1, num_examples, dim)
  unbalanced = np.where(
      np.arange(num_examples) < num_examples // 2, 0, unbalanced
  )
  np.testing.assert_allclose(
      float(select.transrate(f32(features), unbalanced, eps=1e-2)),
      numpy_transrate(features, unbalanced, 1e-2),
      rtol=1e-4,
      atol=1e-4,
  )
  # On balanced classes n_c / n = 1 / C: the authors' uniform average.
  features, balanced = class_data(2, num_examples, dim)
  np.testing.assert_allclose(
      float(select.transrate(f32(features), balanced)),
      numpy_transrate(features, balanced, uniform=True),
      rtol=1e-4,
      atol=1e-4,
  )


# --- All label-based scores ----------------------------------------------------


@pytest.mark.parametrize(
    "name", ["logme", "h_score", "shrinkage_h_score", "gbc", "transrate"]
)
def test_informative_features_score_higher_than_random_ones(name):
  informative, labels = class_data(0, 200, 10, separation=1.5)
  random = np.random.default_rng(1).normal(size=informative.shape)
  score = getattr(select, name)
  assert float(score(f32(informative), labels)) > float(
      score(f32(random), labels)
  )


def test_source_scores_rank_informative_source_higher():
  rng = np.random.default_rng(0)
  labels = np.arange(150) % 3
  informative_logits = rng.normal(size=(150, 5)) + 3.0 * np.eye(5)[labels]
  random_logits = rng.normal(size=(150, 5))
  informative, random = (
      jax.nn.softmax(logits) for logits in (informative_logits, random_logits)
  )
  assert float(select.leep(informative, labels)) > float(
      select.leep(random, labels)
  )
  assert float(select.nce(np.argmax(informative, 1), labels)) > float(
      select.nce(np.argmax(random, 1), labels)
  )


def test_scores_are_jittable_with_num_classes():
  features, labels = class_data(0, 60, 4)
  jitted = jax.jit(functools.partial(select.logme, num_classes=3))
  np.testing.assert_allclose(
      float(jitted(f32(features), labels)),
      float(select.logme(f32(features), labels)),
      rtol=1e-5,
  )
  jitted = jax.jit(
      functools.partial(select.nce, num_source_classes=3, num_target_classes=3)
  )
  np.testing.assert_allclose(
      float(jitted(labels, (labels + 1) % 3)), 0.0, atol=1e-6
  )


def test_jitted_scores_are_nan_for_labels_out_of_range():
  # Outside jit such labels raise (test_bad_inputs_...); inside, their values
  # are unknown while tracing, so the score must not be a silently wrong
  # number (a one-hot of label 5 with 3 classes is a zero row).
  features, labels = class_data(0, 30, 4)
  features = f32(features)
  probabilities = jax.nn.softmax(features)
  calls = {
      "logme": lambda y: select.logme(features, y, num_classes=3),
      "leep": lambda y: select.leep(probabilities, y, num_target_classes=3),
      "nce": lambda y: select.nce(
          y % 2, y, num_source_classes=2, num_target_classes=3
      ),
      "h_score": lambda y: select.h_score(features, y, num_classes=3),
      "shrinkage_h_score": lambda y: select.shrinkage_h_score(
          features, y, num_classes=3
      ),
      "gbc": lambda y: select.gbc(features, y, num_classes=3),
      "transrate": lambda y: select.transrate(features, y, num_classes=3),
  }
  outside = np.asarray(labels).copy()
  outside[0] = 5
  negative = np.asarray(labels).copy()
  negative[1] = -1
  for name, call in calls.items():
    jitted = jax.jit(call)
    assert np.isfinite(float(jitted(labels))), name
    assert np.isnan(float(jitted(outside))), name
    assert np.isnan(float(jitted(negative))), name


# --- Proxy A-distance ----------------------------------------------------------


def test_proxy_a_distance_identical_and_separated():
  rng = np.random.default_rng(0)
  # Unequal sizes: the balanced error keeps identical distributions near 0.
  source = f32(rng.normal(size=(400, 5)))
  target = f32(rng.normal(size=(200, 5)))
  key = jax.random.key(0)
  same = float(select.proxy_a_distance(source, target, key=key))
  assert abs(same) <= 0.3
  shifted = target + f32(4.0 * np.ones(5))
  assert float(select.proxy_a_distance(source, shifted, key=key)) >= 1.9
  # The split is a function of the key alone.
  assert float(select.proxy_a_distance(source, target, key=key)) == same


# --- Bad inputs ----------------------------------------------------------------

FEATURES, LABELS = class_data(0, 12, 3)
FEATURES = f32(FEATURES)
PROBABILITIES = f32(np.full((12, 4), 0.25))
KEY = jax.random.key(0)
logme, leep, nce = select.logme, select.leep, select.nce
pad = select.proxy_a_distance


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: logme(FEATURES[0], LABELS), "features must have shape"),
        (
            lambda: logme(FEATURES, LABELS[:-1]),
            r"labels must have shape \(12,\)",
        ),
        (lambda: logme(FEATURES, f32(LABELS)), "labels must hold integers"),
        (lambda: logme(FEATURES, LABELS - 1), "labels must be >= 0"),
        (
            lambda: logme(FEATURES, LABELS, num_classes=2),
            r"labels must lie in \[0, 2\)",
        ),
        (
            lambda: logme(FEATURES, np.zeros(12, int)),
            "at least 2 distinct classes",
        ),
        (
            lambda: logme(np.where(FEATURES > 1, np.nan, FEATURES), LABELS),
            "features must be finite",
        ),
        (lambda: logme(0 * FEATURES, LABELS), "features must not be all zero"),
        (
            lambda: logme(FEATURES, np.zeros((12, 2)), regression=True),
            r"labels target columns \[0, 1\] are identically zero",
        ),
        (
            lambda: logme(FEATURES, np.ones((12, 2, 1)), regression=True),
            "labels must have shape",
        ),
        (
            lambda: logme(FEATURES, LABELS, regression=1),
            "regression must be a bool",
        ),
        (lambda: logme(FEATURES, LABELS, max_iterations=0), "max_iterations"),
        (lambda: logme(FEATURES, LABELS, tolerance=-1.0), "tolerance"),
        (lambda: jax.jit(logme)(FEATURES, LABELS), "num_classes must be given"),
        (
            lambda: leep(PROBABILITIES * 2, LABELS),
            "source_probabilities rows must sum to 1",
        ),
        (
            lambda: leep(PROBABILITIES + f32([-0.5, 0.5, 0, 0]), LABELS),
            "source_probabilities must be finite and non-negative",
        ),
        (
            lambda: leep(np.ones((12, 1), int), LABELS),
            "source_probabilities must hold floats",
        ),
        (
            lambda: leep(PROBABILITIES, LABELS[:5]),
            "target_labels must have shape",
        ),
        (
            lambda: leep(PROBABILITIES, LABELS, num_target_classes=0),
            "num_target_classes must be an int >= 1",
        ),
        (lambda: nce(LABELS[:, None], LABELS), "source_labels must have shape"),
        (lambda: nce(LABELS, LABELS[:-1]), "target_labels must have shape"),
        (
            lambda: nce(LABELS.astype(bool), LABELS),
            "source_labels must hold integers",
        ),
        (lambda: select.h_score(FEATURES[:1], LABELS[:1]), "at least 2 rows"),
        (
            lambda: select.shrinkage_h_score(FEATURES, LABELS, num_classes=1),
            "num_classes must be an int >= 2",
        ),
        (
            lambda: select.gbc(FEATURES, LABELS, covariance="full"),
            "covariance must be one of",
        ),
        (
            lambda: select.gbc(FEATURES, LABELS, variance_floor=-1.0),
            "variance_floor",
        ),
        (
            lambda: select.transrate(FEATURES, LABELS, eps=0.0),
            "eps must be a finite number > 0",
        ),
        (
            lambda: select.transrate(FEATURES > 0, LABELS),
            "features must hold real numbers",
        ),
        (
            lambda: pad(FEATURES, FEATURES[:, :2], key=KEY),
            "same feature dimension",
        ),
        (
            lambda: pad(FEATURES, FEATURES[:1], key=KEY),
            "target_features must have shape",
        ),
        (lambda: pad(FEATURES, FEATURES, key=0), "key must be"),
        (
            lambda: pad(FEATURES, FEATURES, key=KEY, l2_regularization=0.0),
            "l2_regularization",
        ),
    ],
)
def test_bad_inputs_raise_value_error_naming_the_argument(call, message):
  with pytest.raises(ValueError, match=message):
    call()


@pytest.mark.parametrize("shape", [(50, 3), (40, 64), (30, 129), (7, 200)])
def test_gram_equals_the_float64_product_and_is_exactly_symmetric(shape):
  matrix = np.random.default_rng(sum(shape)).standard_normal(shape)
  result = np.asarray(select_checks.gram(jnp.asarray(matrix, jnp.float32)))
  reference = matrix.T @ matrix
  assert result.shape == (shape[1], shape[1])
  np.testing.assert_array_equal(result, result.T)
  scale = np.sqrt(np.outer(np.diag(reference), np.diag(reference)))
  assert np.max(np.abs(result - reference) / scale) < 1e-5
