"""The ``deepjdot`` recipe: source cross-entropy + λ · DeepJDOT's mini-batch transport term.

References: the term written here in NumPy from the same features and
logits, with POT's ``ot.emd`` for the plan; the gradient of the term with
the plan held constant, written by hand (``2α Σ_j γ_ij (g_i − h_j)`` for a
source feature, ``λ_t Σ_i γ_ij (softmax_j − e_{y_i})`` for a target logit).
One model and one compiled loss serve the module.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from conftest import small_config
from tljax import transport
from tljax.methods import build_method, method_defaults, method_settings
from tljax.models import create_model
from tljax.train import read_metrics
from tljax.train.experiment import run_experiment

ALPHA = 0.5
TARGET_WEIGHT = 2.0
TRADE_OFF = 0.7
BATCH = 6


def _config(data_dir, **kwargs):
  config = small_config(
      data_dir,
      method="deepjdot",
      model__name="mlp",
      model__hidden_dims=(32,),
      steps=4,
      batch_size=16,
      log_every=2,
      checkpoint_every=4,
  )
  config.method_kwargs.update(kwargs)
  return config


@pytest.fixture(scope="module")
def setup(data_dir):
  model = create_model(
      "mlp",
      num_classes=10,
      input_shape=(8, 8, 1),
      hidden_dims=(32,),
      bottleneck_dim=16,
  )
  config = _config(
      data_dir,
      trade_off=TRADE_OFF,
      alpha=ALPHA,
      target_weight=TARGET_WEIGHT,
  )
  recipe = build_method("deepjdot", config, model)
  params, model_state = model.init(jax.random.key(0))
  rng = np.random.default_rng(5)
  inputs = rng.random((2 * BATCH, 8, 8, 1)).astype(np.float32)
  inputs[BATCH:] += 0.5  # a shifted target
  batch = {
      "step": np.int32(3),
      "source": {
          "input": inputs[:BATCH],
          "label": jnp.array([0, 3, 3, 7, 1, 0]),
      },
      "target": {"input": inputs[BATCH:]},
  }

  @jax.jit
  def loss_and_grad(params):
    return jax.value_and_grad(
        lambda p: recipe.loss_fn(
            p,
            model_state,
            batch,
            jax.random.key(1),
            {},
            hparams=recipe.hparams,
        ),
        has_aux=True,
    )(params)

  return model, params, model_state, batch, loss_and_grad


def numpy_term(source, target, labels, logits, ot):
  log_probabilities = logits - np.log(np.sum(np.exp(logits), 1, keepdims=True))
  cost = ALPHA * ot.dist(source, target) - TARGET_WEIGHT * (
      log_probabilities[:, labels].T
  )
  plan = ot.emd(
      np.ones(len(source)) / len(source),
      np.ones(len(target)) / len(target),
      cost,
  )
  return np.sum(plan * cost), plan


def test_the_loss_is_cross_entropy_plus_the_weighted_term(setup):
  ot = pytest.importorskip("ot")
  model, params, model_state, batch, loss_and_grad = setup
  (loss, (_, metrics)), _ = loss_and_grad(params)
  inputs = jnp.concatenate([batch["source"]["input"], batch["target"]["input"]])
  outputs, _ = jax.jit(
      functools.partial(model.apply, train=True, key=jax.random.key(1))
  )(params, model_state, inputs)
  features = np.asarray(outputs.features, np.float64)
  logits = np.asarray(outputs.logits, np.float64)
  labels = np.asarray(batch["source"]["label"])
  log_probabilities = logits - np.log(np.sum(np.exp(logits), 1, keepdims=True))
  cross_entropy = -np.mean(log_probabilities[np.arange(BATCH), labels])
  term, plan = numpy_term(
      features[:BATCH], features[BATCH:], labels, logits[BATCH:], ot
  )
  assert term > 1e-3
  np.testing.assert_allclose(float(metrics["deepjdot"]), term, rtol=1e-5)
  np.testing.assert_allclose(
      float(loss), cross_entropy + TRADE_OFF * term, rtol=1e-5
  )
  _, own_plan = transport.deepjdot_loss(
      features[:BATCH],
      features[BATCH:],
      labels,
      logits[BATCH:],
      alpha=ALPHA,
      target_weight=TARGET_WEIGHT,
  )
  np.testing.assert_array_equal(np.asarray(own_plan), plan.astype(np.float32))


def test_no_gradient_flows_through_the_plan():
  rng = np.random.default_rng(2)
  source = rng.normal(size=(5, 3)).astype(np.float32)
  target = rng.normal(size=(5, 3)).astype(np.float32) + 1.0
  labels = np.array([0, 1, 2, 1, 0])
  logits = rng.normal(size=(5, 3)).astype(np.float32)
  term = functools.partial(
      transport.deepjdot_loss, alpha=ALPHA, target_weight=TARGET_WEIGHT
  )
  (_, plan), gradients = jax.value_and_grad(
      lambda s, t, z: term(s, t, labels, z), argnums=(0, 1, 2), has_aux=True
  )(source, target, logits)
  plan = np.asarray(plan, np.float64)
  difference = source[:, None, :] - target[None, :, :]
  np.testing.assert_allclose(
      gradients[0],
      2 * ALPHA * np.einsum("ij,ijd->id", plan, difference),
      rtol=1e-5,
      atol=1e-6,
  )
  np.testing.assert_allclose(
      gradients[1],
      -2 * ALPHA * np.einsum("ij,ijd->jd", plan, difference),
      rtol=1e-5,
      atol=1e-6,
  )
  softmax = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
  one_hot = np.eye(3)[labels]
  expected = TARGET_WEIGHT * (plan.sum(0)[:, None] * softmax - plan.T @ one_hot)
  np.testing.assert_allclose(gradients[2], expected, rtol=1e-5, atol=1e-6)


def test_gradient_steps_reduce_the_term(setup):
  _, params, _, _, loss_and_grad = setup
  optimizer = optax.sgd(0.05)
  state = optimizer.init(params)
  terms = []
  for _ in range(6):
    (_, (_, metrics)), gradients = loss_and_grad(params)
    terms.append(float(metrics["deepjdot"]))
    updates, state = optimizer.update(gradients, state)
    params = optax.apply_updates(params, updates)
  assert terms[-1] < 0.8 * terms[0]


def test_deepjdot_trains_and_logs_its_term(tmp_path, data_dir):
  config = _config(data_dir)
  config.baselines = ()
  results = run_experiment(config, str(tmp_path))
  (summary,) = results["runs"]
  assert summary["setting"] == "transductive" and summary["steps"] == 4
  records = [
      r
      for r in read_metrics(str(tmp_path / "deepjdot" / "seed_0"))
      if "loss" in r
  ]
  assert records and all(np.isfinite(r["deepjdot"]) for r in records)


def test_the_defaults_are_the_papers_and_bad_values_name_the_key():
  assert method_defaults("deepjdot") == {
      "trade_off": 1.0,
      "alpha": 0.001,
      "target_weight": 0.0001,
  }
  for key in ("alpha", "target_weight", "trade_off"):
    with pytest.raises(ValueError, match=f"method_kwargs.{key}"):
      method_settings("deepjdot", {key: -1.0})


@pytest.mark.parametrize(
    "arguments, match",
    [
        (
            (
                np.ones((4, 2)),
                np.ones((3, 5)),
                np.zeros(4, int),
                np.ones((3, 2)),
            ),
            "target_features",
        ),
        (
            (
                np.ones((4, 2)),
                np.ones((3, 2)),
                np.zeros(4, int),
                np.ones((2, 2)),
            ),
            "target_logits",
        ),
        (
            (
                np.ones((4, 2)),
                np.ones((3, 2)),
                np.array([0, 1, 2, 0]),
                np.ones((3, 2)),
            ),
            "source_labels must lie in",
        ),
        (
            (
                np.ones((4, 2)),
                np.ones((3, 2)),
                np.zeros(3, int),
                np.ones((3, 2)),
            ),
            "source_labels must have shape",
        ),
        (
            (
                np.full((4, 2), np.nan),
                np.ones((3, 2)),
                np.zeros(4, int),
                np.ones((3, 2)),
            ),
            "source_features",
        ),
        (
            (
                np.ones((4, 2)),
                np.ones((3, 2)),
                np.zeros(4, int),
                np.full((3, 2), np.inf),
            ),
            "target_logits",
        ),
    ],
)
def test_the_term_checks_its_input(arguments, match):
  with pytest.raises(ValueError, match=match):
    transport.deepjdot_loss(*arguments)
  with pytest.raises(ValueError, match="alpha"):
    transport.deepjdot_loss(
        np.ones((4, 2)),
        np.ones((3, 2)),
        np.zeros(4, int),
        np.ones((3, 2)),
        alpha=-1.0,
    )
