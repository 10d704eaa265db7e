"""Tests for tljax.select.validators against independent references.

References: each validator re-written here in float64 NumPy from its paper's
formula — entropies and the information-maximisation score from explicit
softmax probabilities, SND with loops over examples and their neighbours,
IWV and DEV with ``np.cov`` / ``np.var`` — and the density ratios against
scikit-learn's logistic regression with the same objective; plus closed
forms (the bounds of the entropy and IM scores, SND of identical rows, DEV of
constant losses or constant weights), a Monte Carlo check that DEV is
unbiased with a lower variance than IWV, and the ratios of Gaussians that
differ in their means, whose logarithm is linear.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from sklearn.linear_model import LogisticRegression

from tljax.select import validators


def f32(array):
  return np.asarray(array, np.float32)


def numpy_softmax(logits):
  logits = np.asarray(logits, np.float64)
  shifted = logits - logits.max(axis=1, keepdims=True)
  exponentials = np.exp(shifted)
  return exponentials / exponentials.sum(axis=1, keepdims=True)


def numpy_entropy(distribution):
  """``−Σ p log p`` of one distribution, with ``0 log 0 = 0``."""
  distribution = np.asarray(distribution, np.float64)
  positive = distribution[distribution > 0]
  return float(-np.sum(positive * np.log(positive)))


def random_logits(seed, num_examples=40, num_classes=5, scale=3.0):
  return f32(
      scale
      * np.random.default_rng(seed).normal(size=(num_examples, num_classes))
  )


# --- Prediction entropy and information maximisation ------------------------------


@pytest.mark.parametrize("seed, num_classes", [(0, 2), (1, 5), (2, 31)])
def test_prediction_entropy_matches_numpy(seed, num_classes):
  logits = random_logits(seed, num_classes=num_classes)
  probabilities = numpy_softmax(logits)
  expected = -np.mean([numpy_entropy(row) for row in probabilities])
  np.testing.assert_allclose(
      float(validators.prediction_entropy(logits)),
      expected,
      rtol=1e-5,
      atol=1e-6,
  )


def test_prediction_entropy_is_highest_for_one_hot_predictions():
  num_classes = 4
  one_hot = f32(60.0 * np.eye(num_classes)[np.arange(12) % num_classes])
  uniform = f32(np.zeros((12, num_classes)))
  confident = float(validators.prediction_entropy(one_hot))
  assert confident == pytest.approx(0.0, abs=1e-6)
  np.testing.assert_allclose(
      float(validators.prediction_entropy(uniform)),
      -np.log(num_classes),
      rtol=1e-6,
  )
  for seed in range(3):
    assert (
        float(validators.prediction_entropy(random_logits(seed, num_classes=4)))
        < confident
    )
  # Log-probabilities give the same score as the logits they came from.
  logits = random_logits(0)
  np.testing.assert_allclose(
      float(validators.prediction_entropy(jax.nn.log_softmax(logits))),
      float(validators.prediction_entropy(logits)),
      rtol=1e-5,
  )


@pytest.mark.parametrize("seed, num_classes", [(0, 2), (1, 5), (2, 31)])
def test_information_maximization_matches_numpy(seed, num_classes):
  logits = random_logits(seed, num_classes=num_classes)
  probabilities = numpy_softmax(logits)
  expected = numpy_entropy(probabilities.mean(axis=0)) - np.mean(
      [numpy_entropy(row) for row in probabilities]
  )
  np.testing.assert_allclose(
      float(validators.information_maximization(logits)),
      expected,
      rtol=1e-5,
      atol=1e-6,
  )


def test_information_maximization_closed_forms():
  num_classes = 5
  # Identical predictions: no information about the input, IM = 0.
  same = f32(
      np.tile(np.random.default_rng(0).normal(size=num_classes), (20, 1))
  )
  assert float(validators.information_maximization(same)) == pytest.approx(
      0.0, abs=1e-6
  )
  # Confident one-hot predictions spread equally over the classes: log C.
  balanced = f32(60.0 * np.eye(num_classes)[np.arange(20) % num_classes])
  np.testing.assert_allclose(
      float(validators.information_maximization(balanced)),
      np.log(num_classes),
      rtol=1e-6,
  )
  # Confident but all the same class: 0 (where the entropy score is maximal).
  collapsed = f32(60.0 * np.eye(num_classes)[np.zeros(20, int)])
  assert float(validators.information_maximization(collapsed)) == pytest.approx(
      0.0, abs=1e-6
  )
  assert float(validators.prediction_entropy(collapsed)) == pytest.approx(
      0.0, abs=1e-6
  )
  for seed in range(3):
    score = float(
        validators.information_maximization(random_logits(seed, num_classes=5))
    )
    assert 0.0 < score < np.log(num_classes)


# --- Soft neighbourhood density ---------------------------------------------------


def numpy_snd(features, temperature):
  """Saito et al. (2021): entropy of each row's softmax over the other rows."""
  features = np.asarray(features, np.float64)
  num_examples = features.shape[0]
  normalised = [row / max(np.linalg.norm(row), 1e-12) for row in features]
  entropies = []
  for i in range(num_examples):
    similarities = np.array(
        [
            normalised[i] @ normalised[j] / temperature
            for j in range(num_examples)
            if j != i
        ]
    )
    exponentials = np.exp(similarities - similarities.max())
    neighbours = exponentials / exponentials.sum()
    entropies.append(numpy_entropy(neighbours))
  return float(np.mean(entropies))


@pytest.mark.parametrize("temperature", [0.05, 0.2, 1.0])
def test_soft_neighborhood_density_matches_numpy_loop(temperature):
  probabilities = f32(
      numpy_softmax(random_logits(0, num_examples=30, num_classes=4))
  )
  np.testing.assert_allclose(
      float(
          validators.soft_neighborhood_density(
              probabilities, temperature=temperature
          )
      ),
      numpy_snd(probabilities, temperature),
      rtol=1e-4,
      atol=1e-5,
  )
  # Signed features (not only probabilities), float64.
  features = np.random.default_rng(1).normal(size=(25, 6))
  with jax.enable_x64(True):
    np.testing.assert_allclose(
        float(
            validators.soft_neighborhood_density(
                features, temperature=temperature
            )
        ),
        numpy_snd(features, temperature),
        rtol=1e-10,
    )


def test_soft_neighborhood_density_closed_forms_and_ordering():
  num_examples = 30
  # All rows point the same way: every neighbour is equally close, log(N − 1).
  same = f32(np.tile([0.7, 0.2, 0.1], (num_examples, 1)))
  np.testing.assert_allclose(
      float(validators.soft_neighborhood_density(same)),
      np.log(num_examples - 1),
      rtol=1e-5,
  )
  # Invariant to a positive scale of each row (rows are L2-normalised).
  probabilities = f32(
      numpy_softmax(random_logits(2, num_examples=num_examples))
  )
  scales = f32(
      np.random.default_rng(3).uniform(0.1, 10.0, size=(num_examples, 1))
  )
  np.testing.assert_allclose(
      float(validators.soft_neighborhood_density(probabilities * scales)),
      float(validators.soft_neighborhood_density(probabilities)),
      rtol=1e-4,
  )
  # Tight clusters are denser than the same number of scattered predictions.
  rng = np.random.default_rng(4)
  clustered = numpy_softmax(
      8.0 * np.eye(5)[np.arange(num_examples) % 5]
      + 0.1 * rng.normal(size=(num_examples, 5))
  )
  scattered = numpy_softmax(3.0 * rng.normal(size=(num_examples, 5)))
  assert float(validators.soft_neighborhood_density(f32(clustered))) > float(
      validators.soft_neighborhood_density(f32(scattered))
  )


def test_soft_neighborhood_density_sweeps_temperature_under_vmap():
  probabilities = f32(numpy_softmax(random_logits(5, num_examples=20)))
  temperatures = f32([0.05, 0.1, 0.5])
  swept = jax.vmap(
      lambda t: validators.soft_neighborhood_density(
          probabilities, temperature=t
      )
  )(temperatures)
  np.testing.assert_allclose(
      np.asarray(swept),
      [numpy_snd(probabilities, t) for t in temperatures.tolist()],
      rtol=1e-4,
      atol=1e-5,
  )


# --- IWV and DEV ------------------------------------------------------------------


def numpy_dev(losses, weights):
  """You et al. (2019), Algorithm 1: the control-variate corrected weighted loss."""
  losses = np.asarray(losses, np.float64)
  weights = np.asarray(weights, np.float64)
  weighted = weights * losses
  eta = -np.cov(weighted, weights)[0, 1] / np.var(weights, ddof=1)
  return float(np.mean(weighted) + eta * np.mean(weights) - eta)


def losses_and_weights(seed, num_examples=50):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=num_examples)
  weights = np.exp(x - 0.5)
  losses = rng.uniform(size=num_examples) + (x > 0)
  return f32(losses), f32(weights)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_iwv_and_dev_match_numpy(seed):
  losses, weights = losses_and_weights(seed)
  np.testing.assert_allclose(
      float(validators.importance_weighted_validation(losses, weights)),
      np.mean(np.float64(weights) * losses),
      rtol=1e-5,
  )
  np.testing.assert_allclose(
      float(validators.deep_embedded_validation(losses, weights)),
      numpy_dev(losses, weights),
      rtol=1e-4,
  )


def test_dev_closed_forms():
  losses, weights = losses_and_weights(0)
  # Equal weights: Var(w) = 0, η is taken as 0 and DEV is the weighted loss.
  for value in (1.0, 1.7, 0.1):
    constant = np.full_like(weights, value)
    dev = float(validators.deep_embedded_validation(losses, constant))
    assert np.isfinite(dev)
    np.testing.assert_allclose(
        dev,
        float(validators.importance_weighted_validation(losses, constant)),
        rtol=1e-6,
    )
  # Constant losses c: L = c w is perfectly correlated with w, so η = −c and
  # DEV = c exactly, whatever the weights' mean.
  for scale in (1.0, 2.5):
    dev = float(
        validators.deep_embedded_validation(
            np.full_like(losses, 0.3), scale * weights
        )
    )
    np.testing.assert_allclose(dev, 0.3, rtol=1e-5)


def test_dev_is_unbiased_with_lower_variance_than_iwv():
  """Source N(0, 1), target N(1, 1): w(x) = exp(x − 1/2), loss 1[x > 1/2]."""
  num_repeats, num_examples = 2000, 200
  x = np.random.default_rng(0).normal(size=(num_repeats, num_examples))
  weights = f32(np.exp(x - 0.5))
  losses = f32(x > 0.5)
  target_risk = stats.norm.cdf(0.5)  # P(x > 1/2) for x ~ N(1, 1)
  iwv = np.asarray(
      jax.vmap(validators.importance_weighted_validation)(losses, weights)
  )
  dev = np.asarray(
      jax.vmap(validators.deep_embedded_validation)(losses, weights)
  )
  np.testing.assert_allclose(
      dev[:5],
      [numpy_dev(l, w) for l, w in zip(losses[:5], weights[:5])],
      rtol=1e-4,
  )
  standard_error = iwv.std() / np.sqrt(num_repeats)
  assert abs(iwv.mean() - target_risk) < 4 * standard_error
  assert abs(dev.mean() - target_risk) < 4 * standard_error
  assert dev.var() < 0.5 * iwv.var()


# --- Density ratios ---------------------------------------------------------------


def gaussian_domains(seed, shift, num_source=600, num_target=300, dim=2):
  rng = np.random.default_rng(seed)
  source = rng.normal(size=(num_source, dim))
  target = rng.normal(size=(num_target, dim)) + shift
  return f32(source), f32(target)


def test_density_ratios_match_scikit_learn_logistic_regression():
  source, target = gaussian_domains(0, np.array([1.0, -0.5]))
  # (All ratio tests share shapes, so that the solver compiles few times.)
  evaluation = f32(np.random.default_rng(1).normal(size=source.shape))
  l2_regularization = 1e-2
  ratios = validators.domain_density_ratios(
      source,
      target,
      evaluation_features=evaluation,
      l2_regularization=l2_regularization,
  )
  # Same objective: mean BCE + λ/2 ‖v‖² = (Σ BCE + (n λ)/2 ‖v‖²) / n, so C = 1/(n λ);
  # scikit-learn's lbfgs does not penalise the intercept either.
  inputs = np.concatenate([source, target]).astype(np.float64)
  domains = np.r_[np.zeros(len(source)), np.ones(len(target))]
  mean, scale = inputs.mean(axis=0), inputs.std(axis=0)
  classifier = LogisticRegression(
      C=1 / (l2_regularization * len(inputs)), tol=1e-10, max_iter=1000
  )
  classifier.fit((inputs - mean) / scale, domains)
  expected = (
      len(source)
      / len(target)
      * np.exp(classifier.decision_function((evaluation - mean) / scale))
  )
  np.testing.assert_allclose(np.asarray(ratios), expected, rtol=1e-3)


def test_density_ratios_are_near_one_for_identical_distributions():
  source, target = gaussian_domains(2, np.zeros(2))
  ratios = np.asarray(validators.domain_density_ratios(source, target))
  assert ratios.shape == (len(source),)
  # Only sampling noise in the fitted classifier: ratios spread a little about 1.
  assert abs(ratios.mean() - 1) < 0.02
  assert np.median(np.abs(np.log(ratios))) < 0.15
  assert 0.5 < ratios.min() and ratios.max() < 2.0


def test_density_ratios_of_shifted_gaussians_follow_the_true_ratio():
  shift = np.array([1.0, -0.5])
  source, target = gaussian_domains(3, shift, num_source=2000, num_target=1000)
  ratios = np.asarray(validators.domain_density_ratios(source, target))
  # p_t(x) / p_s(x) = exp(μᵀx − ‖μ‖²/2): linear in log, so logistic regression fits it.
  true_log_ratios = source @ shift - shift @ shift / 2
  central = np.abs(true_log_ratios) < 2
  np.testing.assert_allclose(
      np.log(ratios[central]), true_log_ratios[central], atol=0.2
  )
  assert np.corrcoef(np.log(ratios), true_log_ratios)[0, 1] > 0.99
  # Target-like source points weigh more than source-like ones.
  towards_target = ratios[source @ shift > 1].mean()
  away_from_target = ratios[source @ shift < -1].mean()
  assert towards_target > 1 > away_from_target
  # Evaluating elsewhere uses the same fitted classifier.
  held_out = validators.domain_density_ratios(
      source, target, evaluation_features=source[::-1]
  )
  np.testing.assert_allclose(np.asarray(held_out), ratios[::-1], rtol=1e-6)


def test_validators_are_jittable():
  logits = random_logits(0)
  probabilities = f32(numpy_softmax(logits))
  losses, weights = losses_and_weights(0)
  for function, arguments in [
      (validators.prediction_entropy, (logits,)),
      (validators.information_maximization, (logits,)),
      (validators.soft_neighborhood_density, (probabilities,)),
      (validators.importance_weighted_validation, (losses, weights)),
      (validators.deep_embedded_validation, (losses, weights)),
  ]:
    np.testing.assert_allclose(
        float(jax.jit(function)(*arguments)),
        float(function(*arguments)),
        rtol=1e-5,
    )
  source, target = gaussian_domains(0, np.ones(2))
  ratios = validators.domain_density_ratios
  np.testing.assert_allclose(
      np.asarray(jax.jit(ratios)(source, target)),
      np.asarray(ratios(source, target)),
      rtol=1e-4,
  )


# --- Bad inputs -------------------------------------------------------------------

LOGITS = random_logits(0, num_examples=8, num_classes=3)
LOSSES, WEIGHTS = losses_and_weights(0, num_examples=8)
FEATURES = f32(np.random.default_rng(0).normal(size=(8, 3)))
entropy, im = validators.prediction_entropy, validators.information_maximization
snd = validators.soft_neighborhood_density
iwv, dev = (
    validators.importance_weighted_validation,
    validators.deep_embedded_validation,
)
ratios = validators.domain_density_ratios


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: entropy(LOGITS[0]), "target_logits must have shape"),
        (
            lambda: entropy(LOGITS[:1]),
            "target_logits must have shape .* at least 2 rows",
        ),
        (
            lambda: entropy(np.where(LOGITS > 1, np.inf, LOGITS)),
            "target_logits must be finite",
        ),
        (lambda: im(LOGITS > 0), "target_logits must hold real numbers"),
        (
            lambda: im(np.where(LOGITS > 1, np.nan, LOGITS)),
            "target_logits must be finite",
        ),
        (
            lambda: snd(FEATURES, temperature=0.0),
            "temperature must be a finite number > 0",
        ),
        (lambda: snd(FEATURES, temperature=-0.05), "temperature"),
        (
            lambda: snd(FEATURES[:1]),
            "target_features_or_probabilities must have shape",
        ),
        (
            lambda: snd(np.where(FEATURES > 1, np.nan, FEATURES)),
            "target_features_or_probabilities must be finite",
        ),
        (lambda: iwv(LOSSES, WEIGHTS[:-1]), "must have the same length"),
        (
            lambda: iwv(LOSSES[:1], WEIGHTS[:1]),
            "source_val_losses must have shape",
        ),
        (
            lambda: iwv(LOSSES[:, None], WEIGHTS),
            "source_val_losses must have shape",
        ),
        (lambda: iwv(LOSSES, -WEIGHTS), "density_ratios must be >= 0"),
        (
            lambda: iwv(LOSSES, 0 * WEIGHTS),
            "density_ratios must not be all zero",
        ),
        (
            lambda: dev(np.where(LOSSES > 1, np.nan, LOSSES), WEIGHTS),
            "source_val_losses must be finite",
        ),
        (
            lambda: dev(LOSSES, np.where(WEIGHTS > 1, np.inf, WEIGHTS)),
            "density_ratios must be finite",
        ),
        (
            lambda: dev(LOSSES, WEIGHTS - WEIGHTS.mean()),
            "density_ratios must be >= 0",
        ),
        (
            lambda: dev(LOSSES, WEIGHTS.astype(bool)),
            "density_ratios must hold real numbers",
        ),
        (lambda: dev(LOSSES, WEIGHTS[:1]), "density_ratios must have shape"),
        (
            lambda: ratios(FEATURES, FEATURES[:, :2]),
            "target_features must have the feature",
        ),
        (
            lambda: ratios(
                FEATURES, FEATURES, evaluation_features=FEATURES[:, :2]
            ),
            "evaluation_features must have the feature",
        ),
        (
            lambda: ratios(FEATURES, FEATURES, evaluation_features=FEATURES[0]),
            "evaluation_features must have shape",
        ),
        (
            lambda: ratios(FEATURES[:1], FEATURES),
            "source_features must have shape",
        ),
        (
            lambda: ratios(FEATURES, np.where(FEATURES > 1, np.nan, FEATURES)),
            "target_features must be finite",
        ),
        (
            lambda: ratios(FEATURES, FEATURES, l2_regularization=0.0),
            "l2_regularization",
        ),
        (
            lambda: ratios(FEATURES, FEATURES, max_iterations=0),
            "max_iterations",
        ),
    ],
)
def test_bad_inputs_raise_value_error_naming_the_argument(call, message):
  with pytest.raises(ValueError, match=message):
    call()


def test_traced_inputs_skip_value_checks_but_not_shape_checks():
  with pytest.raises(ValueError, match="must have the same length"):
    jax.jit(dev)(LOSSES, WEIGHTS[:-1])
  # Values cannot be checked under jit; the result then just propagates NaN.
  assert np.isnan(float(jax.jit(iwv)(jnp.full(8, jnp.nan), WEIGHTS)))
