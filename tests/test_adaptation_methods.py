"""Domain-adaptation recipes: unlabeled target, the discriminator, the reversal warm-up."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tljax import align
from conftest import small_config
from tljax.methods import (
    TransferContext,
    build_method,
    method_defaults,
    method_settings,
)
from tljax import train
from tljax.methods.adaptation import (
    apply_discriminator,
    apply_mlp,
    init_discriminator,
)
from tljax.models import create_model
from tljax.params import read_checkpoint
from tljax.train import read_metrics
from tljax.train.experiment import run_experiment

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_config(data_dir, method, model="lenet"):
  model_fields = {"model__hidden_dims": (32,)} if model == "mlp" else {}
  config = small_config(
      data_dir,
      method=method,
      model__name=model,
      model__bottleneck_dim=16,
      steps=8,
      batch_size=16,
      log_every=4,
      checkpoint_every=8,
      **model_fields,
  )
  if "hidden_dim" in method_defaults(method):
    config.method_kwargs.hidden_dim = 32
  return config


@pytest.mark.parametrize(
    "method, term",
    [
        ("dan", "dan"),
        ("deep_coral", "deep_coral"),
        ("dann", "domain_loss"),
        ("cdan", "domain_loss"),
        ("cdan_e", "domain_loss"),
        ("jan", "jmmd"),
        ("afn", "feature_norm_loss"),
        ("mcc", "mcc"),
        ("mdd", "disparity"),
        ("mcd", "b/discrepancy"),
    ],
)
def test_adaptation_recipes_train_on_unlabeled_target(
    tmp_path, data_dir, method, term
):
  # An MLP backbone (with the BatchNorm bottleneck): what is checked is the
  # recipe, and an MLP compiles several times faster than LeNet.
  results = run_experiment(
      tiny_config(data_dir, method, model="mlp"), str(tmp_path)
  )
  summary = results["runs"][-1]
  assert summary["setting"] == "transductive" and summary["steps"] == 8
  records = [
      r for r in read_metrics(str(tmp_path / method / "seed_0")) if "loss" in r
  ]
  assert records and all(np.isfinite(r[term]) for r in records)
  if term == "domain_loss":
    # Warm-up of the reversal: 2/(1+exp(-10 p)) - 1 at the logged steps
    # (the batch of step s carries p = s / steps).
    for record in records:
      progress = (record["step"] - 1) / 8
      np.testing.assert_allclose(
          record["reversal_coefficient"],
          2 / (1 + np.exp(-10 * progress)) - 1,
          rtol=1e-5,
      )
    params, _ = read_checkpoint(str(tmp_path / method / "seed_0"))
    assert set(params["discriminator"]) == {"dense1", "dense2", "dense3"}
  if method == "mdd":
    # TLlib's warm start: 0.1 (2 / (1 + exp(-i / 1000)) - 1) at step i.
    for record in records:
      step = record["step"] - 1
      np.testing.assert_allclose(
          record["reversal_coefficient"],
          0.1 * (2 / (1 + np.exp(-step / 1000)) - 1),
          rtol=1e-4,
          atol=1e-8,
      )
  if method == "mcd":
    params, _ = read_checkpoint(str(tmp_path / method / "seed_0"))
    assert params["head2"]["kernel"].shape == params["head"]["kernel"].shape
    assert not np.allclose(params["head2"]["kernel"], params["head"]["kernel"])


# The alignment term of each discrepancy recipe, rebuilt from the model's
# outputs on the pooled batch with the tljax.align function the paper names
# (the align functions have their own NumPy references in test_align.py).
ALIGNMENT_TERMS = {
    "dan": ("dan", lambda fs, ft, ls, lt, c: align.mmd(fs, ft)),
    "deep_coral": ("deep_coral", lambda fs, ft, ls, lt, c: align.coral(fs, ft)),
    "jan": (
        "jmmd",
        lambda fs, ft, ls, lt, c: align.jmmd(
            [fs, jax.nn.softmax(ls)],
            [ft, jax.nn.softmax(lt)],
            kernel_bandwidths=[None, [0.92**2]],
        ),
    ),
    "afn": (
        "feature_norm_loss",
        lambda fs, ft, ls, lt, c: (
            align.stepwise_adaptive_feature_norm(
                fs, delta_r=method_defaults("afn")["delta_r"]
            )
            + align.stepwise_adaptive_feature_norm(
                ft, delta_r=method_defaults("afn")["delta_r"]
            )
        ),
    ),
    "mcc": (
        "mcc",
        lambda fs, ft, ls, lt, c: align.minimum_class_confusion(
            lt, temperature=method_defaults("mcc")["temperature"]
        ),
    ),
}


@pytest.mark.parametrize("method", sorted(ALIGNMENT_TERMS))
def test_discrepancy_recipes_add_their_weighted_term_to_the_source_loss(
    data_dir, method
):
  """loss = CE(source) + λ · term(source and target outputs), term logged."""
  config = tiny_config(data_dir, method)
  config.method_kwargs.trade_off = 0.7
  model = create_model(
      "mlp",
      num_classes=10,
      input_shape=(8, 8, 1),
      hidden_dims=(32,),
      bottleneck_dim=16,
  )
  recipe = build_method(method, config, model)
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
  assert recipe.hparams == {"trade_off": 0.7}
  loss, (_, metrics) = recipe.loss_fn(
      params, model_state, batch, key, {}, hparams=recipe.hparams
  )

  outputs, _ = model.apply(
      params, model_state, jnp.asarray(inputs), train=True, key=key
  )
  logits, features = outputs.logits, outputs.features
  cross_entropy = -np.mean(
      np.asarray(jax.nn.log_softmax(logits[:4]))[
          np.arange(4), np.asarray(labels)
      ]
  )
  name, term_fn = ALIGNMENT_TERMS[method]
  term = float(
      term_fn(features[:4], features[4:], logits[:4], logits[4:], config)
  )
  assert abs(term) > 1e-3  # the term is not trivially zero here
  np.testing.assert_allclose(float(metrics[name]), term, rtol=1e-4, atol=1e-7)
  np.testing.assert_allclose(
      float(loss), cross_entropy + 0.7 * term, rtol=1e-5, atol=1e-6
  )


def test_deep_coral_takes_tllibs_convention_from_the_config(data_dir):
  """method_kwargs.coral_convention='tllib': the term is TLlib's, 4x the paper's
  covariance term plus the mean term (checked in NumPy here)."""
  config = tiny_config(data_dir, "deep_coral")
  config.method_kwargs.coral_convention = "tllib"
  model = create_model(
      "mlp",
      num_classes=10,
      input_shape=(8, 8, 1),
      hidden_dims=(32,),
      bottleneck_dim=16,
  )
  recipe = build_method("deep_coral", config, model)
  params, model_state = model.init(jax.random.key(0))
  inputs = np.random.default_rng(6).random((8, 8, 8, 1)).astype(np.float32)
  inputs[4:] += 0.5
  batch = {
      "step": np.int32(0),
      "source": {"input": inputs[:4], "label": jnp.array([0, 1, 2, 3])},
      "target": {"input": inputs[4:]},
  }
  key = jax.random.key(1)
  _, (_, metrics) = recipe.loss_fn(
      params, model_state, batch, key, {}, hparams=recipe.hparams
  )
  outputs, _ = model.apply(
      params, model_state, jnp.asarray(inputs), train=True, key=key
  )
  features = np.asarray(outputs.features, np.float64)
  source, target = features[:4], features[4:]
  expected = np.mean((source.mean(0) - target.mean(0)) ** 2) + np.mean(
      (np.cov(source, rowvar=False) - np.cov(target, rowvar=False)) ** 2
  )
  np.testing.assert_allclose(float(metrics["deep_coral"]), expected, rtol=1e-4)
  config.method_kwargs.coral_convention = "tlib"
  with pytest.raises(ValueError, match="method_kwargs.coral_convention"):
    build_method("deep_coral", config, model)


def test_dann_trains_the_discriminator_and_reverses_the_features(data_dir):
  config = tiny_config(data_dir, "dann")
  model = create_model(
      "mlp",
      num_classes=10,
      input_shape=(8, 8, 1),
      hidden_dims=(32,),
      bottleneck_dim=16,
  )
  method = build_method("dann", config, model)
  params, model_state = model.init(jax.random.key(0))
  rng = np.random.default_rng(0)
  inputs = rng.random((4, 8, 8, 1)).astype(np.float32)

  class Train:  # what init_params reads from the data
    inputs = np.zeros((2, 8, 8, 1), np.float32)

  context = TransferContext(
      params=params,
      model_state=model_state,
      transferred=frozenset(),
      source_params=None,
      source_model_state=None,
      model=model,
      domains={"source": {"train": Train}},
      config=config,
      seed=0,
  )
  params = {**params, **method.init_params(context)}
  batch = {
      "step": np.int32(8),
      "source": {"input": inputs[:2], "label": np.array([1, 2])},
      "target": {"input": inputs[2:]},
  }
  # Reference gradients, each term computed on its own with the same forward.
  grads = jax.grad(
      lambda p: method.loss_fn(
          p, model_state, batch, jax.random.key(1), {}, hparams=method.hparams
      )[0]
  )(params)
  params_model = {k: v for k, v in params.items() if k != "discriminator"}
  labels = jnp.array([1, 2])

  def forward(model_params):
    outputs, _ = model.apply(
        model_params,
        model_state,
        jnp.asarray(inputs),
        train=True,
        key=jax.random.key(1),
    )
    return outputs

  def classification(model_params):
    logits = forward(model_params).logits[:2]
    return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(2), labels])

  def domain(model_params, discriminator):
    logits = apply_discriminator(discriminator, forward(model_params).features)
    return align.domain_adversarial_loss(logits[:2], logits[2:])

  coeff = 2 / (1 + np.exp(-10 * 1.0)) - 1  # step 8 of 8: progress 1
  domain_model, domain_discriminator = jax.grad(domain, argnums=(0, 1))(
      params_model, params["discriminator"]
  )
  classification_model = jax.grad(classification)(params_model)
  # The discriminator descends the domain loss ...
  for got, want in zip(
      jax.tree.leaves(grads["discriminator"]),
      jax.tree.leaves(domain_discriminator),
  ):
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=1e-6)
  # ... while the features ascend it, scaled by the reversal coefficient.
  kernel = ("backbone", "dense1", "kernel")
  got = grads[kernel[0]][kernel[1]][kernel[2]]
  want = (
      classification_model[kernel[0]][kernel[1]][kernel[2]]
      - coeff * domain_model[kernel[0]][kernel[1]][kernel[2]]
  )
  np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-6)


def test_discriminator_matches_a_numpy_mlp():
  params = init_discriminator(jax.random.key(0), 5, 7)
  inputs = np.random.default_rng(0).normal(size=(3, 5)).astype(np.float32)
  hidden = np.maximum(
      inputs @ params["dense1"]["kernel"] + params["dense1"]["bias"], 0
  )
  hidden = np.maximum(
      hidden @ params["dense2"]["kernel"] + params["dense2"]["bias"], 0
  )
  expected = (hidden @ params["dense3"]["kernel"] + params["dense3"]["bias"])[
      :, 0
  ]
  np.testing.assert_allclose(
      apply_discriminator(params, inputs), expected, rtol=1e-5, atol=1e-6
  )


def test_staged_step_matches_sequential_updates():
  """MCD's three stages in one jitted step = the updates done one by one."""
  rng = np.random.default_rng(0)
  params = {
      "generator": {"kernel": rng.normal(size=(3, 4)).astype(np.float32)},
      "head": {"kernel": rng.normal(size=(4, 2)).astype(np.float32)},
      "head2": {"kernel": rng.normal(size=(4, 2)).astype(np.float32)},
  }
  batch = {
      "x": rng.normal(size=(5, 3)).astype(np.float32),
      "t": rng.normal(size=(6, 3)).astype(np.float32),
  }

  def fit(p):
    features = jnp.tanh(batch["x"] @ p["generator"]["kernel"])
    return jnp.mean((features @ p["head"]["kernel"] - 1.0) ** 2) + jnp.mean(
        (features @ p["head2"]["kernel"] + 1.0) ** 2
    )

  def disagreement(p):
    features = jnp.tanh(batch["t"] @ p["generator"]["kernel"])
    return jnp.mean(
        jnp.abs(
            features @ p["head"]["kernel"] - features @ p["head2"]["kernel"]
        )
    )

  def as_loss(function):
    return lambda p, state, b, key, extras: (function(p), (state, {}))

  learning_rate, num_k = 0.1, 3
  stages = (
      train.Stage("a", as_loss(fit), ("generator", "classifiers")),
      train.Stage(
          "b", as_loss(lambda p: fit(p) - disagreement(p)), ("classifiers",)
      ),
      train.Stage("c", as_loss(disagreement), ("generator",), repeat=num_k),
  )
  rules = (("head.*", "classifiers"), (".*", "generator"))
  optimizer = train.GroupedOptimizer(
      {
          "generator": optax.sgd(learning_rate),
          "classifiers": optax.sgd(learning_rate),
      },
      rules,
  )
  state = train.create_train_state(params, {}, optimizer)
  step = train.make_staged_train_step(stages, optimizer)
  state, metrics = step(state, batch, jax.random.key(0))

  def descend(p, function, names):
    grads = jax.grad(function)(p)
    return {
        name: (
            jax.tree.map(
                lambda w, g: w - learning_rate * g, p[name], grads[name]
            )
            if name in names
            else p[name]
        )
        for name in p
    }

  want = descend(params, fit, ("generator", "head", "head2"))
  want = descend(want, lambda p: fit(p) - disagreement(p), ("head", "head2"))
  for _ in range(num_k):
    want = descend(want, disagreement, ("generator",))
  for name in params:
    np.testing.assert_allclose(
        state.trainable[name]["kernel"],
        want[name]["kernel"],
        rtol=1e-5,
        atol=1e-6,
    )
  np.testing.assert_allclose(metrics["loss"], fit(params), rtol=1e-6)
  assert int(state.step) == 1
  assert train.updates_per_step(stages, "generator") == 1 + num_k
  assert train.updates_per_step(stages, "classifiers") == 2


def test_grouped_optimizer_rejects_unknown_groups():
  with pytest.raises(ValueError, match="no optimizer"):
    train.GroupedOptimizer({"a": optax.sgd(0.1)}, ((".*", "b"),))
  optimizer = train.GroupedOptimizer({"a": optax.sgd(0.1)}, ((".*", "a"),))
  with pytest.raises(ValueError, match="does not know"):
    train.make_staged_train_step(
        (train.Stage("x", lambda *args: None, ("b",)),), optimizer
    )
  with pytest.raises(ValueError, match="repeat"):
    train.Stage("x", lambda *args: None, ("a",), repeat=0)


def test_mdd_gradients_have_the_adversarial_signs(data_dir):
  """The adversarial head ascends D_γ; the features descend it (reversal)."""
  config = tiny_config(data_dir, "mdd")
  model = create_model(
      "mlp",
      num_classes=10,
      input_shape=(8, 8, 1),
      hidden_dims=(32,),
      bottleneck_dim=16,
  )
  method = build_method("mdd", config, model)
  params, model_state = model.init(jax.random.key(0))

  class Train:
    inputs = np.zeros((2, 8, 8, 1), np.float32)

  context = TransferContext(
      params=params,
      model_state=model_state,
      transferred=frozenset(),
      source_params=None,
      source_model_state=None,
      model=model,
      domains={"source": {"train": Train}},
      config=config,
      seed=0,
  )
  params = {**params, **method.init_params(context)}
  rng = np.random.default_rng(1)
  inputs = jnp.asarray(rng.random((6, 8, 8, 1)).astype(np.float32))
  labels = jnp.array([1, 2, 3])
  step = 500
  batch = {
      "step": np.int32(step),
      "source": {"input": inputs[:3], "label": labels},
      "target": {"input": inputs[3:]},
  }
  key = jax.random.key(2)
  grads = jax.grad(
      lambda p: method.loss_fn(
          p, model_state, batch, key, {}, hparams=method.hparams
      )[0]
  )(params)
  model_params = {k: v for k, v in params.items() if k != "adversarial_head"}

  def pieces(model_params, adversarial):
    outputs, _ = model.apply(
        model_params, model_state, inputs, train=True, key=key
    )
    logits = outputs.logits
    cross_entropy = -jnp.mean(
        jax.nn.log_softmax(logits[:3])[jnp.arange(3), labels]
    )
    adversarial_logits = apply_mlp(adversarial, outputs.features)
    disparity = align.margin_disparity_discrepancy(
        logits[:3], adversarial_logits[:3], logits[3:], adversarial_logits[3:]
    )
    return cross_entropy, disparity

  d_head = jax.grad(lambda a: pieces(model_params, a)[1])(
      params["adversarial_head"]
  )
  for got, want in zip(
      jax.tree.leaves(grads["adversarial_head"]), jax.tree.leaves(d_head)
  ):
    np.testing.assert_allclose(got, -np.asarray(want), rtol=2e-4, atol=1e-7)
  coeff = 0.1 * (2 / (1 + np.exp(-step / 1000)) - 1)
  d_ce = jax.grad(lambda m: pieces(m, params["adversarial_head"])[0])(
      model_params
  )
  d_disparity = jax.grad(lambda m: pieces(m, params["adversarial_head"])[1])(
      model_params
  )
  got = grads["backbone"]["dense1"]["kernel"]
  want = (
      d_ce["backbone"]["dense1"]["kernel"]
      + coeff * d_disparity["backbone"]["dense1"]["kernel"]
  )
  np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-6)
  # TLlib's warm start is unbounded in step / 1000: past step 1000 the eager
  # loss (jax.disable_jit, debugging) works as the jitted one does.
  _, (_, metrics) = method.loss_fn(
      params,
      model_state,
      dict(batch, step=np.int32(3000)),
      key,
      {},
      hparams=method.hparams,
  )
  np.testing.assert_allclose(
      metrics["reversal_coefficient"],
      0.1 * (2 / (1 + np.exp(-3.0)) - 1),
      rtol=1e-6,
  )


def test_adaptation_trade_off_defaults_and_errors(data_dir):
  config = tiny_config(data_dir, "afn")
  assert method_defaults("afn")["trade_off"] == 0.05
  assert method_defaults("dann")["trade_off"] == 1.0
  config.method_kwargs.trade_off = 0.3
  assert method_settings("afn", config.method_kwargs)["trade_off"] == 0.3
  config.method, config.method_kwargs.trade_off = "dan", -1.0
  with pytest.raises(ValueError, match="method_kwargs.trade_off"):
    build_method("dan", config, None)
  config = tiny_config(data_dir, "mcd")
  config.method_kwargs.num_k = 0
  with pytest.raises(ValueError, match=r"method_kwargs\.num_k"):
    build_method("mcd", config, None)


def test_dann_beats_source_only_on_moons_rotated_by_30_degrees(
    tmp_path, data_dir
):
  """The classic toy check (Ganin et al. 2016, Fig. 2): configs/moons.py."""
  import sys

  sys.path.insert(0, os.path.join(REPO, "configs"))
  import moons

  config = moons.get_config("method=dann,rotation=30,seeds=3")
  config.baselines = ("source_only",)
  config.data_dir = data_dir
  config.progress_bar = False
  results = run_experiment(config, str(tmp_path))
  accuracy = {
      (run["method"], run["seed"]): run["target_test"]["accuracy"]
      for run in results["runs"]
  }
  dann = np.array([accuracy[("dann", seed)] for seed in range(3)])
  source_only = np.array([accuracy[("source_only", seed)] for seed in range(3)])
  # Adversarial training is noisy per seed (here 0.90/0.84/0.96 against
  # 0.88/0.85/0.90 with scikit-learn 1.9's moons): better on most seeds and
  # on average.
  assert np.sum(dann > source_only) >= 2, (dann, source_only)
  assert dann.mean() > source_only.mean() + 0.015, (dann, source_only)
