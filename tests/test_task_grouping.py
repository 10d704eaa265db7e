"""Tests for tljax.select.task_grouping (TAG, Fifty et al., NeurIPS 2021).

References written independently of the library: the lookahead affinity of a
two-layer linear model with squared losses, its gradients written by hand in
NumPy (float64); the grouping objective as explicit loops, and the best
grouping by brute force over every collection of distinct groups
(``itertools.combinations`` of subsets) or over every set partition (a
recursive generator), instead of the library's dynamic programme.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tljax.select import task_grouping
from tljax.select.task_grouping import (
    group_tasks,
    lookahead_affinity,
    multitask_losses,
    score_grouping,
    train_with_affinities,
)

# --- Lookahead affinity --------------------------------------------------------


def linear_problem(seed, batch=12, dim=5, hidden=4, num_tasks=3):
  """A shared linear map ``h = x W + b`` and one linear regression head per task."""
  rng = np.random.default_rng(seed)
  shared = {
      "kernel": rng.normal(size=(dim, hidden)) / np.sqrt(dim),
      "bias": 0.1 * rng.normal(size=(hidden,)),
  }
  heads = rng.normal(size=(num_tasks, hidden))  # row t: task t's head
  batch = {
      "x": rng.normal(size=(batch, dim)),
      "y": rng.normal(size=(batch, num_tasks)),
  }
  return shared, heads, batch


def jax_losses(shared, heads, batch):
  hidden = batch["x"] @ shared["kernel"] + shared["bias"]
  predictions = hidden @ heads.T  # (B, T)
  return jnp.mean(jnp.square(predictions - batch["y"]), axis=0)


def numpy_affinity(shared, heads, batch, learning_rate):
  """Z[i, j] = 1 − L_j(θ_s − η ∇L_i) / L_j(θ_s), gradients by hand."""
  x, y = batch["x"], batch["y"]
  kernel, bias = shared["kernel"], shared["bias"]
  num_tasks = heads.shape[0]

  def loss(kernel, bias, task):
    residual = x @ kernel @ heads[task] + bias @ heads[task] - y[:, task]
    return np.mean(residual**2)

  z = np.zeros((num_tasks, num_tasks))
  for i in range(num_tasks):
    # L_i = mean_b (x_b W v_i + b·v_i − y_bi)²:
    # ∂/∂W = (2/B) xᵀ r vᵢᵀ,  ∂/∂b = (2/B) Σ_b r_b vᵢ.
    residual = x @ kernel @ heads[i] + bias @ heads[i] - y[:, i]
    grad_kernel = 2 / len(x) * np.outer(x.T @ residual, heads[i])
    grad_bias = 2 / len(x) * residual.sum() * heads[i]
    for j in range(num_tasks):
      after = loss(
          kernel - learning_rate * grad_kernel,
          bias - learning_rate * grad_bias,
          j,
      )
      z[i, j] = 1 - after / loss(kernel, bias, j)
  return z


def f32(tree):
  return jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), tree)


@pytest.mark.parametrize(
    "seed, learning_rate", [(0, 0.05), (1, 0.2), (2, 0.01)]
)
def test_lookahead_affinity_matches_hand_written_gradients(seed, learning_rate):
  shared, heads, batch = linear_problem(seed)
  got = lookahead_affinity(
      jax_losses,
      f32(shared),
      f32(heads),
      f32(batch),
      learning_rate=learning_rate,
  )
  want = numpy_affinity(shared, heads, batch, learning_rate)
  assert got.shape == (3, 3)
  np.testing.assert_allclose(np.asarray(got), want, atol=2e-5, rtol=1e-4)
  assert (
      np.abs(want - np.diag(np.diag(want))).max() > 1e-3
  )  # not a trivial check


def test_self_affinity_is_positive_for_a_small_step():
  # Each L_j is convex in the shared parameters, and a small enough step
  # along its own gradient lowers it: Z_{j→j} ≈ η ‖∇L_j‖² / L_j > 0.
  learning_rate = 1e-3
  for seed in range(5):
    shared, heads, batch = linear_problem(seed, num_tasks=4)
    z = np.asarray(
        lookahead_affinity(
            jax_losses,
            f32(shared),
            f32(heads),
            f32(batch),
            learning_rate=learning_rate,
        )
    )
    assert np.all(np.diag(z) > 0)
    # First order in η: Z_{i→j} ≈ η ⟨∇L_i, ∇L_j⟩ / L_j (at a smaller η, where
    # the second-order term is below 1%).
    z = np.asarray(
        lookahead_affinity(
            jax_losses,
            f32(shared),
            f32(heads),
            f32(batch),
            learning_rate=learning_rate / 10,
        )
    )
    grads = jax.jacrev(jax_losses)(f32(shared), f32(heads), f32(batch))
    flat = np.concatenate(
        [np.asarray(g).reshape(4, -1) for g in jax.tree.leaves(grads)], axis=1
    )
    losses = np.asarray(jax_losses(f32(shared), f32(heads), f32(batch)))
    np.testing.assert_allclose(
        z,
        learning_rate / 10 * flat @ flat.T / losses[None, :],
        rtol=0.02,
        atol=1e-6,
    )


def test_lookahead_affinity_under_jit_and_vmap():
  shared, heads, batch = f32(linear_problem(3))
  rates = jnp.array([0.01, 0.05, 0.1])
  jitted = jax.jit(
      lambda lr: lookahead_affinity(
          jax_losses, shared, heads, batch, learning_rate=lr
      )
  )
  swept = jax.vmap(jitted)(rates)
  for rate, z in zip(rates, swept):
    eager = lookahead_affinity(
        jax_losses, shared, heads, batch, learning_rate=float(rate)
    )
    np.testing.assert_allclose(np.asarray(z), np.asarray(eager), atol=1e-6)
  # Batches of tasks' data swept under vmap too.
  batches = jax.tree.map(lambda a: jnp.stack([a, 2 * a]), batch)
  per_batch = jax.vmap(
      lambda b: lookahead_affinity(
          jax_losses, shared, heads, b, learning_rate=0.05
      )
  )(batches)
  assert per_batch.shape == (2, 3, 3)


def test_lookahead_affinity_rejects_bad_input():
  shared, heads, batch = f32(linear_problem(0))
  with pytest.raises(ValueError, match="learning_rate"):
    lookahead_affinity(jax_losses, shared, heads, batch, learning_rate=-0.1)
  with pytest.raises(ValueError, match="task_losses"):
    lookahead_affinity(
        lambda s, h, b: jnp.sum(jax_losses(s, h, b)),
        shared,
        heads,
        batch,
        learning_rate=0.1,
    )
  with pytest.raises(ValueError, match="task_losses"):
    lookahead_affinity(
        lambda s, h, b: jax_losses(s, h, b) - 100.0,
        shared,
        heads,
        batch,
        learning_rate=0.1,
    )
  with pytest.raises(ValueError, match="task_losses"):
    lookahead_affinity(
        "not a function", shared, heads, batch, learning_rate=0.1
    )


# --- Training with affinities -----------------------------------------------------


def test_first_recorded_affinity_is_the_lookahead_at_initialisation():
  rng = np.random.default_rng(0)
  inputs = rng.normal(size=(40, 3, 2)).astype(np.float32)
  labels = np.stack(
      [inputs[:, 0, 0] > 0, inputs[:, 1, 1] > 0, inputs.sum(axis=(1, 2)) > 0],
      axis=1,
  ).astype(np.int32)
  run = train_with_affinities(
      inputs,
      labels,
      hidden_dims=(8,),
      steps=1,
      batch_size=40,
      learning_rate=0.3,
      affinity_every=1,
      seed=4,
  )
  params = task_grouping._init_params(jax.random.key(4), 6, (8,), (2, 2, 2))
  batch = {
      "inputs": jnp.asarray(inputs.reshape(40, 6)),
      "labels": jnp.asarray(labels),
  }
  want = lookahead_affinity(
      multitask_losses,
      params["shared"],
      params["heads"],
      batch,
      learning_rate=0.3,
  )
  np.testing.assert_allclose(run.affinity, np.asarray(want), atol=1e-5)
  np.testing.assert_allclose(run.affinity_history[0], run.affinity)
  # One SGD step on the summed task losses.
  grads = jax.grad(
      lambda p: jnp.sum(multitask_losses(p["shared"], p["heads"], batch))
  )(params)
  stepped = jax.tree.map(lambda p, g: p - 0.3 * g, params, grads)
  for got, expected in zip(
      jax.tree.leaves(run.params), jax.tree.leaves(stepped)
  ):
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), atol=1e-5)


def test_training_recovers_planted_task_blocks():
  # Tasks 0–2 are the sign of one input coordinate, tasks 3–5 of another
  # (each with its own head): the trunk gradients align within a block only.
  # (With label noise independent across tasks, or different thresholds,
  # the within-block affinities shrink or turn negative late in training,
  # and the planted blocks are not always recovered.)
  rng = np.random.default_rng(0)
  inputs = rng.normal(size=(400, 10)).astype(np.float32)
  labels = np.repeat(inputs[:, :2] > 0, 3, axis=1).astype(np.int32)
  run = train_with_affinities(
      inputs,
      labels,
      hidden_dims=(16,),
      steps=150,
      batch_size=50,
      learning_rate=0.1,
      affinity_every=5,
      seed=0,
  )
  assert run.affinity.shape == (6, 6)
  assert run.affinity_history.shape == (30, 6, 6)
  np.testing.assert_array_equal(run.affinity_steps, np.arange(0, 150, 5))
  blocks = ((0, 1, 2), (3, 4, 5))
  within = np.mean(
      [run.affinity[i, j] for b in blocks for i in b for j in b if i != j]
  )
  across = np.mean(
      [run.affinity[i, j] for i in blocks[0] for j in blocks[1]]
      + [run.affinity[i, j] for i in blocks[1] for j in blocks[0]]
  )
  assert within > 3 * abs(across)
  assert group_tasks(run.affinity, 2, overlap=False).groups == blocks
  assert group_tasks(run.affinity, 2).groups == blocks
  assert run.losses.shape == (150, 6)
  assert run.losses[-20:].mean() < 0.5 * run.losses[:5].mean()


def test_training_without_affinities_and_bad_input():
  rng = np.random.default_rng(1)
  inputs = rng.normal(size=(30, 4)).astype(np.float32)
  labels = (inputs[:, :2] > 0).astype(np.int32)
  run = train_with_affinities(
      inputs, labels, hidden_dims=(4,), steps=3, batch_size=10, affinity_every=0
  )
  assert run.affinity is None and run.affinity_history.shape == (0, 2, 2)
  for kwargs, argument in [
      ({"labels": labels[:-1]}, "labels"),
      ({"labels": labels.astype(np.float32)}, "labels"),
      ({"batch_size": 31}, "batch_size"),
      ({"affinity_every": -1}, "affinity_every"),
      ({"learning_rate": 0.0}, "learning_rate"),
      ({"hidden_dims": ()}, "hidden_dims"),
      ({"num_classes": (2,)}, "num_classes"),
      ({"inputs": np.full((30, 4), np.nan)}, "inputs"),
  ]:
    arguments = {
        "inputs": inputs,
        "labels": labels,
        "steps": 2,
        "batch_size": 10,
        **kwargs,
    }
    with pytest.raises(ValueError, match=argument):
      train_with_affinities(**arguments)


# --- Grouping -----------------------------------------------------------------------


def reference_score(affinity, groups):
  """Σ_j max over groups holding j of the mean Z_{i→j} from its other members."""
  total = 0.0
  for j in range(len(affinity)):
    options = []
    for group in groups:
      if j in group:
        others = [affinity[i][j] for i in group if i != j]
        options.append(sum(others) / len(others) if others else 0.0)
    if not options:
      return None  # task j uncovered
    total += max(options)
  return total


def brute_force_overlapping(affinity, num_groups):
  """Best score over every collection of at most num_groups distinct groups."""
  tasks = range(len(affinity))
  subsets = [
      s
      for size in range(1, len(affinity) + 1)
      for s in itertools.combinations(tasks, size)
  ]
  best = -np.inf
  for count in range(1, num_groups + 1):
    for collection in itertools.combinations(subsets, count):
      score = reference_score(affinity, collection)
      if score is not None:
        best = max(best, score)
  return best


def set_partitions(items):
  if not items:
    yield []
    return
  first, rest = items[0], items[1:]
  for partition in set_partitions(rest):
    yield [[first]] + partition
    for index in range(len(partition)):
      yield partition[:index] + [[first] + partition[index]] + partition[
          index + 1 :
      ]


def brute_force_partition(affinity, num_groups):
  return max(
      reference_score(affinity, partition)
      for partition in set_partitions(list(range(len(affinity))))
      if len(partition) <= num_groups
  )


@pytest.mark.parametrize(
    "seed, num_tasks, max_groups", [(0, 4, 4), (1, 5, 3), (2, 5, 2)]
)
def test_group_tasks_matches_brute_force(seed, num_tasks, max_groups):
  affinity = np.random.default_rng(seed).normal(size=(num_tasks, num_tasks))
  for num_groups in range(1, max_groups + 1):
    for overlap, reference in (
        (True, brute_force_overlapping),
        (False, brute_force_partition),
    ):
      result = group_tasks(affinity, num_groups, overlap=overlap)
      want = reference(affinity.tolist(), num_groups)
      assert result.score == pytest.approx(want, abs=1e-9)
      assert reference_score(affinity.tolist(), result.groups) == pytest.approx(
          want, abs=1e-9
      )
      assert 1 <= len(result.groups) <= num_groups
      assert sorted({t for g in result.groups for t in g}) == list(
          range(num_tasks)
      )
      if not overlap:
        assert sum(len(g) for g in result.groups) == num_tasks
      for task, serving in enumerate(result.serving):
        assert task in result.groups[serving]
      assert result.task_scores.sum() == pytest.approx(result.score)


def test_group_tasks_recovers_planted_blocks():
  rng = np.random.default_rng(0)
  blocks = ((0, 2, 5), (1, 3, 4))
  affinity = -0.3 + 0.05 * rng.normal(size=(6, 6))
  for block in blocks:
    affinity[np.ix_(block, block)] = 0.5 + 0.05 * rng.normal(size=(3, 3))
  for overlap in (True, False):
    result = group_tasks(affinity, 2, overlap=overlap)
    assert result.groups == blocks
    assert result.serving == (0, 1, 0, 1, 1, 0)
  # One group must hold everything: cross-block harm is the price.
  assert group_tasks(affinity, 1).groups == ((0, 1, 2, 3, 4, 5),)


def test_group_tasks_leaves_a_harmed_task_alone_and_uses_fewer_groups_on_ties():
  # Task 2 is hurt by everyone; tasks 0 and 1 help each other.
  affinity = np.array([[0.0, 0.4, -0.5], [0.4, 0.0, -0.5], [-0.5, -0.5, 0.0]])
  result = group_tasks(affinity, 2)
  assert result.groups == ((0, 1), (2,))
  assert result.score == pytest.approx(0.8)
  # A third group cannot raise the score, so only two come back.
  assert group_tasks(affinity, 3).groups == ((0, 1), (2,))
  # All zero: one group (all tasks together) is as good as any.
  assert group_tasks(np.zeros((4, 4)), 3).groups == ((0, 1, 2, 3),)


def test_group_tasks_is_fast_at_nine_tasks():
  affinity = np.random.default_rng(3).normal(size=(9, 9))
  result = group_tasks(affinity, 3)
  assert len(result.groups) <= 3
  assert reference_score(affinity.tolist(), result.groups) == pytest.approx(
      result.score
  )


def test_score_grouping():
  affinity = np.arange(16.0).reshape(4, 4)
  result = score_grouping(affinity, [(3, 1), (0, 1, 2), (1, 3)])
  assert result.groups == ((0, 1, 2), (1, 3))
  assert result.score == pytest.approx(
      reference_score(affinity.tolist(), result.groups)
  )
  with pytest.raises(ValueError, match="cover"):
    score_grouping(affinity, [(0, 1)])
  with pytest.raises(ValueError, match="groups"):
    score_grouping(affinity, [(0, 1, 2, 4)])
  with pytest.raises(ValueError, match="groups"):
    score_grouping(affinity, [(), (0, 1, 2, 3)])


@pytest.mark.parametrize(
    "affinity, num_groups, argument",
    [
        (np.zeros((3, 4)), 1, "affinity"),
        (np.zeros((3,)), 1, "affinity"),
        (np.array([[0.0, np.nan], [0.0, 0.0]]), 1, "affinity"),
        (np.zeros((2, 2), bool), 1, "affinity"),
        (np.zeros((10, 10)), 2, "at most 9 tasks"),
        (np.zeros((3, 3)), 0, "num_groups"),
        (np.zeros((3, 3)), 4, "num_groups"),
        (np.zeros((3, 3)), 2.0, "num_groups"),
        (np.zeros((3, 3)), True, "num_groups"),
    ],
)
def test_group_tasks_rejects_bad_input(affinity, num_groups, argument):
  with pytest.raises(ValueError, match=argument):
    group_tasks(affinity, num_groups)


def test_group_tasks_rejects_traced_affinity():
  with pytest.raises(ValueError, match="affinity"):
    jax.jit(lambda a: group_tasks(a, 1).score)(jnp.zeros((2, 2)))
