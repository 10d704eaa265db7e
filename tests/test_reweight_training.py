"""Training with importance weights: the scikit-learn facade and the deep recipe."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.linear_model import Ridge

from conftest import small_config
from tljax import reweight
from tljax.methods import build_method
from tljax.models import create_model
from tljax.reweight import facade
from tljax.train.experiment import run_experiment


def shifted_regression(seed=0, n=120):
  rng = np.random.default_rng(seed)
  source = rng.normal(0.0, 0.5, size=(n, 1))
  target = rng.uniform(-1.5, 1.5, size=(n, 1))
  labels = source[:, 0] ** 2 + 0.1 * rng.normal(size=n)
  return source, labels, target


def test_facade_fits_the_learner_on_the_estimated_weights():
  source, labels, target = shifted_regression()
  model = facade.ImportanceWeightedRegressor("kmm").fit(source, labels, target)
  np.testing.assert_allclose(
      model.weights_, reweight.kmm(source, target).weights, rtol=1e-6
  )
  # Weighted ridge on mean-1 weights = scikit-learn's Ridge(alpha=λ Σ s).
  weights = model.weights_ / model.weights_.mean()
  reference = Ridge(alpha=1e-3 * weights.sum()).fit(
      source, labels, sample_weight=weights
  )
  np.testing.assert_allclose(
      model.predict(target), reference.predict(target), rtol=1e-4, atol=1e-4
  )
  # The unweighted fit differs from the weighted one under this shift.
  uniform = facade.ImportanceWeightedRegressor("uniform").fit(
      source, labels, target
  )
  np.testing.assert_array_equal(uniform.weights_, np.ones(len(source)))
  assert not np.allclose(
      uniform.predict(target), model.predict(target), atol=1e-3
  )


def test_facade_weighting_lowers_the_target_error_of_a_misspecified_line():
  errors = {"uniform": [], "kliep": []}
  for seed in range(3):
    source, labels, target = shifted_regression(seed)
    target_labels = target[:, 0] ** 2
    for name in errors:
      model = facade.ImportanceWeightedRegressor(name).fit(
          source, labels, target
      )
      errors[name].append(model.score(target, target_labels))
  assert np.mean(errors["kliep"]) < 0.9 * np.mean(errors["uniform"])


def test_facade_accepts_a_scikit_learn_learner_and_checks_its_input():
  from sklearn.linear_model import LogisticRegression

  rng = np.random.default_rng(0)
  source = rng.normal(size=(60, 2))
  labels = (source[:, 0] > 0).astype(int)
  target = rng.normal(0.5, 1.0, size=(50, 2))
  learner = LogisticRegression()
  model = facade.ImportanceWeightedClassifier(
      "nearest_neighbors_weighting", learner=learner
  ).fit(source, labels, target)
  assert not hasattr(learner, "coef_")  # cloned, not fitted in place
  assert model.score(source, labels) > 0.9
  with pytest.raises(ValueError, match="estimator"):
    facade.ImportanceWeightedClassifier("kmn")
  with pytest.raises(ValueError, match="source_labels"):
    facade.ImportanceWeightedClassifier("uniform").fit(
        source, labels[:-1], target
    )
  with pytest.raises(ValueError, match="before predict"):
    facade.ImportanceWeightedClassifier("uniform").predict(source)


def test_importance_weighting_recipe_weights_each_example(data_dir):
  config = small_config(
      data_dir,
      method="importance_weighting",
      model__name="mlp",
      model__bottleneck_dim=8,
  )
  model = create_model("mlp", num_classes=3, input_shape=(4,), bottleneck_dim=8)
  method = build_method("importance_weighting", config, model)
  assert method.example_indices == ("source",)
  params, model_state = model.init(jax.random.key(0))
  rng = np.random.default_rng(0)
  weights = rng.uniform(0.1, 3.0, size=10).astype(np.float32)
  index = np.array([3, 7, 0, 9, 3])
  batch = {
      "step": np.int32(0),
      "source": {
          "input": rng.normal(size=(5, 4)).astype(np.float32),
          "label": np.array([0, 2, 1, 1, 0]),
          "index": index,
      },
  }
  loss, (_, metrics) = method.loss_fn(
      params,
      model_state,
      batch,
      jax.random.key(1),
      {"weights": jnp.asarray(weights)},
  )
  outputs, _ = model.apply(
      params,
      model_state,
      batch["source"]["input"],
      train=True,
      key=jax.random.key(1),
  )
  logits = np.asarray(outputs.logits, np.float64)
  log_probabilities = logits - np.log(np.exp(logits).sum(1, keepdims=True))
  expected = np.mean(
      weights[index]
      * -log_probabilities[np.arange(5), batch["source"]["label"]]
  )
  np.testing.assert_allclose(loss, expected, rtol=1e-5)
  np.testing.assert_allclose(
      metrics["batch_weight_mean"], weights[index].mean(), rtol=1e-6
  )
  config.method = "importance_weighting"
  config.method_kwargs.estimator = "kmn"
  with pytest.raises(ValueError, match="method_kwargs.estimator"):
    build_method("importance_weighting", config, model)


def test_importance_weighting_trains_end_to_end(tmp_path, data_dir):
  config = small_config(
      data_dir,
      method="importance_weighting",
      model__name="lenet",
      model__bottleneck_dim=16,
      steps=6,
      batch_size=16,
      log_every=3,
      checkpoint_every=6,
      method_kwargs__estimator="nearest_neighbors_weighting",
  )
  results = run_experiment(config, str(tmp_path))
  summary = results["runs"][-1]
  assert summary["method"] == "importance_weighting"
  assert summary["setting"] == "transductive" and summary["steps"] == 6
  assert 0.0 <= summary["target_test"]["accuracy"] <= 1.0
