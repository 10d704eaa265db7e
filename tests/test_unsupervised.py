"""Unsupervised transfer: clustering metrics, k-means, the DAE and SimCLR objectives and recipes."""

import dataclasses
import inspect
import itertools
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from sklearn import metrics as sklearn_metrics
from sklearn.cluster import KMeans
from sklearn.datasets import load_digits

from conftest import small_config
from tljax import unsupervised
from tljax.data import ArraySource
from tljax.methods import (
    TransferContext,
    available_methods,
    build_method,
    method_defaults,
)
from tljax.methods.unsupervised import (
    DECODER,
    PROJECTION_HEAD,
    make_dae,
    make_simclr,
)
from tljax.models import create_model
from tljax.train import create_train_state, make_train_step
from tljax.train.loop import training_batches

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def digits():
  inputs, labels = load_digits(return_X_y=True)
  return (inputs / 16).astype(np.float32), labels


# --- Clustering metrics --------------------------------------------------------


def test_metrics_match_scikit_learn_on_random_labelings():
  rng = np.random.default_rng(0)
  for num_examples, num_classes, num_clusters in [
      (30, 3, 3),
      (100, 10, 7),
      (57, 4, 9),
      (8, 2, 8),
  ]:
    labels_true = rng.integers(0, num_classes, num_examples)
    labels_pred = rng.integers(0, num_clusters, num_examples) * 3 + 5
    np.testing.assert_allclose(
        unsupervised.normalized_mutual_info(labels_true, labels_pred),
        sklearn_metrics.normalized_mutual_info_score(labels_true, labels_pred),
        atol=1e-12,
    )
    np.testing.assert_allclose(
        unsupervised.adjusted_rand_index(labels_true, labels_pred),
        sklearn_metrics.adjusted_rand_score(labels_true, labels_pred),
        atol=1e-12,
    )


def test_metrics_known_cases():
  labels = np.array([0, 0, 1, 1, 2, 2])
  renamed = np.array(["b", "b", "c", "c", "a", "a"])  # a permutation of ids
  for metric in (
      unsupervised.normalized_mutual_info,
      unsupervised.adjusted_rand_index,
      unsupervised.clustering_accuracy,
  ):
    assert metric(labels, renamed) == pytest.approx(1.0)
  constant, singletons = np.zeros(6, int), np.arange(6)
  # Degenerate labelings, as scikit-learn: both one cluster / both singletons.
  assert unsupervised.normalized_mutual_info(constant, constant) == 1.0
  assert unsupervised.adjusted_rand_index(constant, constant) == 1.0
  assert unsupervised.adjusted_rand_index(singletons, singletons) == 1.0
  assert unsupervised.normalized_mutual_info(labels, constant) == 0.0
  assert unsupervised.clustering_accuracy(labels, constant) == pytest.approx(
      2 / 6
  )
  # Closed form: ARI of {0,0,1,1} vs {0,0,0,1}: index 1, expected 2·3/6 = 1,
  # max (2 + 3)/2 = 2.5  ->  0.
  assert unsupervised.adjusted_rand_index([0, 0, 1, 1], [0, 0, 0, 1]) == 0.0
  # NMI of {0,0,1,1} vs {0,1,0,1}: independent, 0.
  assert unsupervised.normalized_mutual_info([0, 0, 1, 1], [0, 1, 0, 1]) == 0.0


def _brute_force_accuracy(labels_true, labels_pred):
  classes, clusters = np.unique(labels_true), np.unique(labels_pred)
  best = 0
  # Every injective map from the smaller side into the larger one.
  if len(clusters) <= len(classes):
    for image in itertools.permutations(classes, len(clusters)):
      mapping = dict(zip(clusters, image))
      best = max(
          best, sum(mapping[p] == t for t, p in zip(labels_true, labels_pred))
      )
  else:
    for image in itertools.permutations(clusters, len(classes)):
      mapping = dict(zip(image, classes))
      best = max(
          best,
          sum(mapping.get(p) == t for t, p in zip(labels_true, labels_pred)),
      )
  return best / len(labels_true)


def test_clustering_accuracy_matches_brute_force_over_matchings():
  rng = np.random.default_rng(1)
  for num_classes, num_clusters in [(3, 3), (4, 4), (2, 4), (5, 3), (4, 5)]:
    for _ in range(3):
      labels_true = rng.integers(0, num_classes, 25)
      labels_pred = rng.integers(0, num_clusters, 25)
      assert unsupervised.clustering_accuracy(labels_true, labels_pred) == (
          pytest.approx(_brute_force_accuracy(labels_true, labels_pred))
      )


@pytest.mark.parametrize(
    "labels_true, labels_pred, argument",
    [
        ([0, 1, 1], [0, 1], "labels_pred"),
        ([], [], "labels_true"),
        ([0, 1], [[0, 1]], "labels_pred"),
        ([0.0, np.nan], [0, 1], "labels_true"),
    ],
)
def test_metrics_reject_bad_labelings(labels_true, labels_pred, argument):
  for metric in (
      unsupervised.normalized_mutual_info,
      unsupervised.adjusted_rand_index,
      unsupervised.clustering_accuracy,
  ):
    with pytest.raises(ValueError, match=argument):
      metric(labels_true, labels_pred)


# --- k-means -------------------------------------------------------------------


def test_kmeans_recovers_well_separated_blobs_and_handles_duplicates():
  rng = np.random.default_rng(2)
  centres = np.eye(4, 5) * 20.0
  labels = np.repeat(np.arange(4), 50)
  blobs = (centres[labels] + rng.normal(0, 0.1, (200, 5))).astype(np.float32)
  result = unsupervised.kmeans(blobs, 4, key=jax.random.key(0))
  assignments = np.asarray(result.assignments)
  assert unsupervised.adjusted_rand_index(labels, assignments) == 1.0
  assert sklearn_metrics.adjusted_rand_score(labels, assignments) == 1.0
  # Lloyd's fixed point: every centroid is the mean of its points, and the
  # inertia is the sum of squared distances to them.
  for cluster in range(4):
    np.testing.assert_allclose(
        result.centroids[cluster],
        blobs[assignments == cluster].mean(0),
        atol=1e-4,
    )
  np.testing.assert_allclose(
      result.inertia,
      np.sum((blobs - np.asarray(result.centroids)[assignments]) ** 2),
      rtol=1e-4,
  )
  # Three distinct points, four clusters: no NaN, zero inertia.
  duplicates = np.repeat(centres[:3], [70, 70, 60], axis=0).astype(np.float32)
  result = unsupervised.kmeans(duplicates, 4, key=jax.random.key(1))
  assert np.all(np.isfinite(result.centroids))
  assert float(result.inertia) == pytest.approx(0.0, abs=1e-6)
  # A large offset shared by all points (float32): distances are taken after
  # centring, so every point still sits with its nearest centroid and the
  # inertia is scikit-learn's (float64).
  offset = (1000 + 0.01 * rng.normal(size=(40, 2))).astype(np.float32)
  result = unsupervised.kmeans(offset, 4, key=jax.random.key(0))
  nearest = (
      ((offset[:, None] - np.asarray(result.centroids)[None]) ** 2)
      .sum(-1)
      .argmin(1)
  )
  assert np.array_equal(nearest, np.asarray(result.assignments))
  reference = KMeans(4, n_init=10, random_state=0).fit(
      offset.astype(np.float64)
  )
  assert float(result.inertia) == pytest.approx(reference.inertia_, rel=1e-2)


def test_kmeans_inertia_matches_scikit_learn(digits):
  inputs, _ = digits
  result = unsupervised.kmeans(inputs, 10, key=jax.random.key(0))
  reference = KMeans(n_clusters=10, n_init=10, random_state=0).fit(inputs)
  assert float(result.inertia) <= reference.inertia_ * 1.005
  assert 1 <= int(result.num_iters) <= 300


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"num_clusters": 0}, "num_clusters"),
        ({"num_clusters": 7}, "num_clusters"),
        ({"features": np.full((6, 2), np.nan)}, "features"),
        ({"features": np.zeros((0, 2))}, "features"),
        ({"key": 0}, "key"),
        ({"tol": -1.0}, "tol"),
        ({"num_init": 0}, "num_init"),
    ],
)
def test_kmeans_rejects_bad_input(kwargs, argument):
  arguments = {
      "features": np.zeros((6, 2)),
      "num_clusters": 2,
      "key": jax.random.key(0),
      **kwargs,
  }
  features = arguments.pop("features")
  num_clusters = arguments.pop("num_clusters")
  with pytest.raises(ValueError, match=argument):
    unsupervised.kmeans(features, num_clusters, **arguments)


# --- Objectives ----------------------------------------------------------------


def _nt_xent_reference(first, second, temperature):
  views = np.concatenate([first, second]).astype(np.float64)
  count = len(views)

  def similarity(i, k):
    return (
        views[i]
        @ views[k]
        / (np.linalg.norm(views[i]) * np.linalg.norm(views[k]))
    )

  total = 0.0
  for i in range(count):
    partner = (i + count // 2) % count
    denominator = sum(
        np.exp(similarity(i, k) / temperature) for k in range(count) if k != i
    )
    total += -np.log(np.exp(similarity(i, partner) / temperature) / denominator)
  return total / count


def test_nt_xent_matches_a_loop_reference_and_rejects_bad_input():
  rng = np.random.default_rng(3)
  first, second = rng.normal(size=(2, 6, 4)).astype(np.float32)
  # One compiled program for every temperature (τ may be traced).
  loss = jax.jit(
      lambda first, second, temperature: unsupervised.nt_xent_loss(
          first, second, temperature=temperature
      )
  )
  for temperature in (0.5, 0.1, 2.0):
    np.testing.assert_allclose(
        loss(first, second, temperature),
        _nt_xent_reference(first, second, temperature),
        rtol=1e-5,
    )
  # Aligned views of orthogonal examples score lower than random pairs.
  orthogonal = np.eye(6, 4, dtype=np.float32)
  orthogonal[4:] = -orthogonal[:2]
  assert loss(orthogonal, orthogonal, 0.5) < loss(first, second, 0.5)
  # Cosine similarities: invariant to the embeddings' scale, tiny or huge.
  for scale in (1e-13, 1e-25, 1e20):
    np.testing.assert_allclose(
        loss(scale * first, scale * second, 0.5),
        loss(first, second, 0.5),
        rtol=1e-5,
    )
  grads = jax.jit(jax.grad(unsupervised.nt_xent_loss))(
      jnp.zeros((6, 4)), jnp.ones((6, 4))
  )
  assert np.all(np.isfinite(grads))
  with pytest.raises(ValueError, match="first_embeddings"):
    unsupervised.nt_xent_loss(first[:1], second[:1])
  with pytest.raises(ValueError, match="second_embeddings"):
    unsupervised.nt_xent_loss(first, second[:4])
  for temperature in (0.0, -0.5):
    with pytest.raises(ValueError, match="temperature"):
      unsupervised.nt_xent_loss(first, second, temperature=temperature)


def test_denoising_loss_matches_numpy_and_corruption_destroys_fixed_counts():
  rng = np.random.default_rng(4)
  clean = rng.random((5, 4, 4, 1)).astype(np.float32)
  outputs = rng.normal(size=(5, 4, 4, 1)).astype(np.float32)
  probabilities = 1 / (1 + np.exp(-outputs.astype(np.float64)))
  cross_entropy = -(
      clean * np.log(probabilities) + (1 - clean) * np.log(1 - probabilities)
  )
  loss = jax.jit(
      unsupervised.denoising_autoencoder_loss,
      static_argnames="reconstruction_loss",
  )
  np.testing.assert_allclose(
      loss(outputs, clean),
      cross_entropy.reshape(5, -1).sum(1).mean(),
      rtol=1e-5,
  )
  np.testing.assert_allclose(
      loss(outputs, clean, reconstruction_loss="squared_error"),
      ((clean - outputs) ** 2).reshape(5, -1).sum(1).mean(),
      rtol=1e-5,
  )

  ones = np.ones((6, 8, 8, 1), np.float32)
  corrupt = jax.jit(unsupervised.corrupt, static_argnames="corruption")
  masked = np.asarray(corrupt(ones, jax.random.key(0)))
  assert np.all((masked == 0).reshape(6, -1).sum(1) == 16)  # 25 % of 64
  # ⌊ν d⌉ rounds a half up: ν = 0.5 of 5 components destroys 3, not 2.
  halves = np.asarray(
      corrupt(np.ones((4, 5), np.float32), jax.random.key(2), level=0.5)
  )
  assert np.all((halves == 0).sum(1) == 3)
  assert len({tuple(row) for row in (masked == 0).reshape(6, -1)}) == 6
  assert np.array_equal(corrupt(ones, jax.random.key(0), level=0.0), ones)
  noisy = corrupt(
      np.zeros((400, 50)), jax.random.key(1), corruption="gaussian", level=0.3
  )
  assert float(jnp.std(noisy)) == pytest.approx(0.3, rel=0.02)

  with pytest.raises(ValueError, match="clean_inputs"):
    unsupervised.denoising_autoencoder_loss(outputs, clean + 1.0)
  with pytest.raises(ValueError, match="clean_inputs"):
    unsupervised.denoising_autoencoder_loss(outputs, clean[:4])
  with pytest.raises(ValueError, match="reconstruction_loss"):
    unsupervised.denoising_autoencoder_loss(
        outputs, clean, reconstruction_loss="l1"
    )
  with pytest.raises(ValueError, match="level"):
    unsupervised.corrupt(ones, jax.random.key(0), level=1.5)
  with pytest.raises(ValueError, match="corruption"):
    unsupervised.corrupt(ones, jax.random.key(0), corruption="salt")
  with pytest.raises(ValueError, match="inputs"):
    unsupervised.corrupt(np.zeros((0, 3)), jax.random.key(0))


def test_augment_digits_views(digits):
  images = jnp.asarray(digits[0][:8].reshape(8, 8, 8, 1))
  # One compiled program for both settings (hyper-parameters may be traced).
  augment = jax.jit(
      lambda images, key, settings: unsupervised.augment_digits(
          images, key, **settings
      )
  )
  strong = {
      "min_area": 0.5,
      "aspect_ratio": (3 / 4, 4 / 3),
      "max_rotation_degrees": 10.0,
      "noise_std": 0.05,
  }
  no_change = {
      "min_area": 1.0,
      "aspect_ratio": (1.0, 1.0),
      "max_rotation_degrees": 0.0,
      "noise_std": 0.0,
  }
  np.testing.assert_allclose(
      augment(images, jax.random.key(0), no_change), images, atol=1e-6
  )
  views = augment(images, jax.random.key(0), strong)
  assert views.shape == images.shape
  assert float(views.min()) >= 0.0 and float(views.max()) <= 1.0
  np.testing.assert_array_equal(
      views, augment(images, jax.random.key(0), strong)
  )
  assert not np.allclose(views, augment(images, jax.random.key(1), strong))
  with pytest.raises(ValueError, match="images"):
    unsupervised.augment_digits(images[0], jax.random.key(0))
  with pytest.raises(ValueError, match="min_area"):
    unsupervised.augment_digits(images, jax.random.key(0), min_area=1.5)
  with pytest.raises(ValueError, match="aspect_ratio"):
    unsupervised.augment_digits(images, jax.random.key(0), aspect_ratio=(2, 1))


# --- Recipes ---------------------------------------------------------------------


def test_recipes_are_registered_unsupervised_and_check_their_arguments(
    data_dir,
):
  config = small_config(data_dir)
  model = create_model(
      "lenet", num_classes=10, input_shape=(8, 8, 1), bottleneck_dim=16
  )
  for name in ("dae", "simclr"):
    assert name in available_methods()
    method = build_method(name, config, model)
    assert (method.setting, method.labeled, method.domains) == (
        "unsupervised",
        (),
        ("source",),
    )
  with pytest.raises(ValueError, match="corruption"):
    make_dae(config, model, corruption="salt")
  with pytest.raises(ValueError, match="corruption_level"):
    make_dae(config, model, corruption_level=1.5)
  with pytest.raises(ValueError, match="temperature"):
    make_simclr(config, model, temperature=0.0)


@pytest.mark.parametrize(
    "name, make", [("dae", make_dae), ("simclr", make_simclr)]
)
def test_recipe_settings_come_from_method_kwargs(data_dir, name, make):
  # The registered defaults are the make_* keyword defaults (None → 0).
  expected = {
      key: 0 if parameter.default is None else parameter.default
      for key, parameter in inspect.signature(make).parameters.items()
      if parameter.kind is inspect.Parameter.KEYWORD_ONLY and key != "name"
  }
  assert method_defaults(name) == expected
  model = create_model(
      "lenet", num_classes=10, input_shape=(8, 8, 1), bottleneck_dim=16
  )
  config = small_config(data_dir)
  config.method = name
  config.method_kwargs = {"hidden_dim": -1}
  with pytest.raises(ValueError, match="hidden_dim"):
    build_method(name, config, model)
  config.method_kwargs = {"no_such_setting": 1}
  with pytest.raises(ValueError, match="no_such_setting"):
    build_method(name, config, model)


@pytest.mark.parametrize(
    "name, added", [("dae", DECODER), ("simclr", PROJECTION_HEAD)]
)
def test_recipes_learn_without_labels(digits, data_dir, name, added):
  inputs, labels = digits
  source = ArraySource(
      inputs[:64].reshape(64, 8, 8, 1), labels[:64], num_classes=10
  )
  domains = {
      "source": {"train": source, "test": source},
      "target": {"train": source, "test": source},
  }
  config = small_config(data_dir)
  model = create_model(
      "lenet", num_classes=10, input_shape=(8, 8, 1), bottleneck_dim=16
  )
  method = build_method(name, config, model)
  params, model_state = jax.jit(model.init)(jax.random.key(0))
  context = TransferContext(
      params=params,
      model_state=model_state,
      transferred=frozenset(),
      source_params=None,
      source_model_state=None,
      model=model,
      domains=domains,
      config=config,
      seed=0,
  )
  params = {**params, **method.init_params(context)}
  seen = []

  def spy(params, model_state, batch, key, extras):
    seen.append(
        {domain: sorted(batch[domain]) for domain in batch if domain != "step"}
    )
    return method.loss_fn(params, model_state, batch, key, extras)

  optimizer = optax.adam(3e-3)
  state = create_train_state(
      params, model_state, optimizer, rules=method.trainable_rules
  )
  assert "head" in state.frozen and added in state.trainable
  step = make_train_step(spy, optimizer)
  batches = training_batches(
      dataclasses.replace(method, loss_fn=spy),
      domains,
      batch_size=16,
      seed=0,
      start_step=0,
  )
  # The step reports the loss before its update: on one fixed batch and key,
  # the first and a last extra step give the loss before and after training.
  fixed_batch, fixed_key = next(batches), jax.random.key(7)
  state, metrics = step(state, fixed_batch, fixed_key)
  loss_before = float(metrics["loss"])
  for index in range(25):
    batch = next(batches)
    assert sorted(batch) == ["source", "step"]
    assert sorted(batch["source"]) == ["input"]  # labels stripped
    state, metrics = step(state, batch, jax.random.key(index))
  _, metrics = step(state, fixed_batch, fixed_key)
  assert seen and all(record == {"source": ["input"]} for record in seen)
  assert np.isfinite(float(metrics["loss"]))
  assert float(metrics["loss"]) < loss_before


# --- The script ------------------------------------------------------------------


def test_unsupervised_script_table_matches_its_json(tmp_path, data_dir):
  output = tmp_path / "report.md"
  completed = subprocess.run(
      [
          sys.executable,
          os.path.join(REPO, "scripts", "unsupervised.py"),
          "--methods",
          "dae",
          "--seeds",
          "1",
          "--steps",
          "3",
          "--batch_size",
          "8",
          "--kmeans_init",
          "1",
          "--workdir",
          str(tmp_path / "runs"),
          "--data_dir",
          data_dir,
          "--output",
          str(output),
      ],
      capture_output=True,
      text=True,
      timeout=600,
      check=False,
      # A compilation cache lets the second run reuse the first's programs.
      env={
          **os.environ,
          "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "jax_cache"),
          "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
          "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
      },
  )
  assert completed.returncode == 0, completed.stderr[-3000:]
  results = json.loads((tmp_path / "report.json").read_text())
  assert results == json.loads((tmp_path / "runs" / "results.json").read_text())
  rows = results["rows"]
  assert [(row["features"], row["learned_on"].split()[0]) for row in rows] == [
      ("raw pixels", "—"),
      ("random LeNet", "—"),
      ("dae", "target"),
      ("dae", "source"),
  ]
  assert results["clustered"] == {
      "dataset": "uci_digits",
      "split": "test",
      "num_examples": 450,
  }
  report = output.read_text()
  for row in rows:
    line = next(
        line
        for line in report.splitlines()
        if line.startswith(f"| {row['features']} | {row['learned_on']} |")
    )
    for metric in ("nmi", "ari"):
      assert f"{row[metric]['mean']:.3f} ± {row[metric]['std']:.3f}" in line
      assert 0 <= row[metric]["mean"] <= 1
    accuracy = row["accuracy"]
    assert f"{100 * accuracy['mean']:.1f} ± {100 * accuracy['std']:.1f}" in line
    assert 0.1 <= accuracy["mean"] <= 1
  source, target = rows[3], rows[2]
  np.testing.assert_allclose(
      source["gap_vs_target"]["mean"],
      source["accuracy"]["mean"] - target["accuracy"]["mean"],
  )
  for domain in ("source", "target"):
    summary = json.loads(
        (
            tmp_path / "runs" / domain / "dae" / "seed_0" / "summary.json"
        ).read_text()
    )
    assert summary["setting"] == "unsupervised" and summary["steps"] == 3
