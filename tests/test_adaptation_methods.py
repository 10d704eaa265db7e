"""Domain-adaptation recipes: unlabeled target, the discriminator, the reversal warm-up."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tljax import align
from conftest import small_config
from tljax.methods import TransferContext, build_method
from tljax.methods.adaptation import apply_discriminator, init_discriminator
from tljax.models import create_model
from tljax.params import read_checkpoint
from tljax.train import read_metrics
from tljax.train.experiment import run_experiment


def tiny_config(data_dir, method):
  return small_config(data_dir, method=method, model__name="lenet",
                      model__bottleneck_dim=16, steps=8, batch_size=16,
                      log_every=4, checkpoint_every=8,
                      adaptation__hidden_dim=32)


@pytest.mark.parametrize("method, term", [
    ("dan", "dan"), ("deep_coral", "deep_coral"), ("dann", "domain_loss"),
    ("cdan", "domain_loss"), ("cdan_e", "domain_loss")])
def test_adaptation_recipes_train_on_unlabeled_target(tmp_path, data_dir,
                                                      method, term):
  results = run_experiment(tiny_config(data_dir, method), str(tmp_path))
  summary = results["runs"][-1]
  assert summary["setting"] == "transductive" and summary["steps"] == 8
  records = [r for r in read_metrics(str(tmp_path / method / "seed_0"))
             if "loss" in r]
  assert all(np.isfinite(r[term]) for r in records)
  if term == "domain_loss":
    # Warm-up of the reversal: 2/(1+exp(-10 p)) - 1 at the logged steps
    # (the batch of step s carries p = s / steps).
    for record in records:
      progress = (record["step"] - 1) / 8
      np.testing.assert_allclose(record["reversal_coefficient"],
                                 2 / (1 + np.exp(-10 * progress)) - 1,
                                 rtol=1e-5)
    params, _ = read_checkpoint(str(tmp_path / method / "seed_0"))
    assert set(params["discriminator"]) == {"dense1", "dense2", "dense3"}


def test_dann_trains_the_discriminator_and_reverses_the_features(data_dir):
  config = tiny_config(data_dir, "dann")
  model = create_model("lenet", num_classes=10, input_shape=(8, 8, 1),
                       bottleneck_dim=16)
  method = build_method("dann", config, model)
  params, model_state = model.init(jax.random.key(0))
  rng = np.random.default_rng(0)
  inputs = rng.random((4, 8, 8, 1)).astype(np.float32)

  class Train:  # what init_params reads from the data
    inputs = np.zeros((2, 8, 8, 1), np.float32)

  context = TransferContext(params=params, model_state=model_state,
                            transferred=frozenset(), source_params=None,
                            source_model_state=None, model=model,
                            domains={"source": {"train": Train}},
                            config=config, seed=0)
  params = {**params, **method.init_params(context)}
  batch = {"step": np.int32(8), "source": {"input": inputs[:2],
                                           "label": np.array([1, 2])},
           "target": {"input": inputs[2:]}}
  # Reference gradients, each term computed on its own with the same forward.
  grads = jax.grad(lambda p: method.loss_fn(p, model_state, batch,
                                            jax.random.key(1), {})[0])(params)
  params_model = {k: v for k, v in params.items() if k != "discriminator"}
  labels = jnp.array([1, 2])

  def forward(model_params):
    outputs, _ = model.apply(model_params, model_state, jnp.asarray(inputs),
                             train=True, key=jax.random.key(1))
    return outputs

  def classification(model_params):
    logits = forward(model_params).logits[:2]
    return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(2), labels])

  def domain(model_params, discriminator):
    logits = apply_discriminator(discriminator, forward(model_params).features)
    return align.domain_adversarial_loss(logits[:2], logits[2:])

  coeff = 2 / (1 + np.exp(-10 * 1.0)) - 1  # step 8 of 8: progress 1
  domain_model, domain_discriminator = jax.grad(domain, argnums=(0, 1))(
      params_model, params["discriminator"])
  classification_model = jax.grad(classification)(params_model)
  # The discriminator descends the domain loss ...
  for got, want in zip(jax.tree.leaves(grads["discriminator"]),
                       jax.tree.leaves(domain_discriminator)):
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=1e-6)
  # ... while the features ascend it, scaled by the reversal coefficient.
  kernel = ("backbone", "conv1", "kernel")
  got = grads[kernel[0]][kernel[1]][kernel[2]]
  want = (classification_model[kernel[0]][kernel[1]][kernel[2]]
          - coeff * domain_model[kernel[0]][kernel[1]][kernel[2]])
  np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-6)


def test_discriminator_matches_a_numpy_mlp():
  params = init_discriminator(jax.random.key(0), 5, 7)
  inputs = np.random.default_rng(0).normal(size=(3, 5)).astype(np.float32)
  hidden = np.maximum(inputs @ params["dense1"]["kernel"] + params["dense1"]["bias"], 0)
  hidden = np.maximum(hidden @ params["dense2"]["kernel"] + params["dense2"]["bias"], 0)
  expected = (hidden @ params["dense3"]["kernel"] + params["dense3"]["bias"])[:, 0]
  np.testing.assert_allclose(apply_discriminator(params, inputs), expected,
                             rtol=1e-5, atol=1e-6)
