"""The ``sinkhorn`` recipe: source cross-entropy + λ · Sinkhorn divergence of the features."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import small_config
from tljax import transport
from tljax.methods import build_method, method_settings
from tljax.models import create_model
from tljax.train import read_metrics
from tljax.train.experiment import run_experiment


def _config(data_dir, **kwargs):
  config = small_config(
      data_dir,
      method="sinkhorn",
      model__name="mlp",
      model__hidden_dims=(32,),
      steps=6,
      batch_size=16,
      log_every=3,
      checkpoint_every=6,
  )
  config.baselines = ()
  config.method_kwargs.update(kwargs)
  return config


@pytest.mark.parametrize(
    "epsilon, normalize", [(0.0, True), (0.5, True), (0.5, False)]
)
def test_the_loss_is_cross_entropy_plus_the_weighted_divergence(
    data_dir, epsilon, normalize
):
  config = _config(
      data_dir, trade_off=0.7, epsilon=epsilon, normalize=normalize
  )
  model = create_model(
      "mlp",
      num_classes=10,
      input_shape=(8, 8, 1),
      hidden_dims=(32,),
      bottleneck_dim=16,
  )
  recipe = build_method("sinkhorn", config, model)
  params, model_state = model.init(jax.random.key(0))
  rng = np.random.default_rng(5)
  inputs = rng.random((8, 8, 8, 1)).astype(np.float32)
  inputs[4:] += 0.5  # a shifted target
  labels = jnp.array([0, 3, 3, 7])
  batch = {
      "step": np.int32(3),
      "source": {"input": inputs[:4], "label": labels},
      "target": {"input": inputs[4:]},
  }
  key = jax.random.key(1)
  loss, (_, metrics) = recipe.loss_fn(
      params, model_state, batch, key, {}, hparams=recipe.hparams
  )
  outputs, _ = model.apply(
      params, model_state, jnp.asarray(inputs), train=True, key=key
  )
  cross_entropy = -np.mean(
      np.asarray(jax.nn.log_softmax(outputs.logits[:4]))[
          np.arange(4), np.asarray(labels)
      ]
  )
  source = np.asarray(outputs.features[:4], np.float64)
  target = np.asarray(outputs.features[4:], np.float64)
  # The recipe's scale: the mean of ||x_i - y_j||^2 over all pairs.
  mean_squared = np.mean(
      np.sum((source[:, None, :] - target[None, :, :]) ** 2, axis=-1)
  )
  term = float(
      transport.sinkhorn_divergence(
          outputs.features[:4],
          outputs.features[4:],
          epsilon=epsilon or 0.05 * mean_squared,
      )
  ) / (mean_squared if normalize else 1.0)
  assert term > 1e-4  # shifted domains: a positive divergence
  np.testing.assert_allclose(float(metrics["sinkhorn"]), term, rtol=1e-4)
  np.testing.assert_allclose(
      float(loss), cross_entropy + 0.7 * term, rtol=1e-5, atol=1e-6
  )


def test_sinkhorn_trains_and_logs_its_term(tmp_path, data_dir):
  results = run_experiment(_config(data_dir), str(tmp_path))
  (summary,) = results["runs"]
  assert summary["setting"] == "transductive" and summary["steps"] == 6
  records = [
      r
      for r in read_metrics(str(tmp_path / "sinkhorn" / "seed_0"))
      if "loss" in r
  ]
  assert records and all(np.isfinite(r["sinkhorn"]) for r in records)


def test_a_negative_epsilon_names_the_key():
  with pytest.raises(ValueError, match="method_kwargs.epsilon"):
    method_settings("sinkhorn", {"epsilon": -1.0})


def test_a_non_boolean_normalize_names_the_key():
  with pytest.raises(ValueError, match="method_kwargs.normalize"):
    method_settings("sinkhorn", {"normalize": "yes"})
