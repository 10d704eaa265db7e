"""Reliability of tljax.select on any input: a finite result or a ValueError.

Two parts:

* Hypothesis property tests. Every public function of :mod:`tljax.select`
  gets random values — including degenerate ones: two samples, one class
  present, constant features or columns, duplicated rows, all zeros, huge
  (1e30) and tiny (1e-30) scales, raw float32 values over the whole range —
  and must either return a finite result or raise a ValueError whose message
  names one of its arguments. Inputs that are valid by construction must not
  raise. Shapes come from small fixed sets, since each new shape compiles.
* A table of bad inputs, one ``pytest.param`` per case: each must raise a
  ValueError whose message names the offending argument.

Plus the exact rescalings behind the robustness fixes: the scale-invariant
scores give the same value on features scaled by 1e30 or 1e-30.
"""

import functools
import importlib
import inspect
import re

import hypothesis
import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tljax import select
from tljax.select import task_grouping

KEY = jax.random.key(0)


# --- Helpers ---------------------------------------------------------------------


def argument_names(function):
  """The parameter names of a public function (or the fields of a class)."""
  return list(inspect.signature(function).parameters)


def names_an_argument(function, message):
  return any(
      re.search(rf"\b{name}\b", message) for name in argument_names(function)
  )


def numeric_leaves(result):
  """The numbers in a result: an array, a NamedTuple of arrays and floats, ..."""
  leaves = []
  for leaf in jax.tree.leaves(
      tuple(result) if isinstance(result, tuple) else result
  ):
    if isinstance(leaf, (bool, str)) or leaf is None:
      continue
    leaves.append(np.asarray(leaf, np.float64))
  return leaves


def finite_or_value_error(function, *args, must_succeed, **kwargs):
  """Calls ``function``; a ValueError must name an argument, a result be finite.

  ``must_succeed``: the inputs are valid, so a ValueError is a failure too.
  Returns the result, or None after a ValueError.
  """
  try:
    result = function(*args, **kwargs)
  except ValueError as error:
    assert (
        not must_succeed
    ), f"{function.__name__} rejected valid input: {error}"
    assert names_an_argument(function, str(error)), (
        f"{function.__name__}'s ValueError names none of {argument_names(function)}: "
        f"{error}"
    )
    return None
  leaves = numeric_leaves(result)
  assert leaves, f"{function.__name__} returned no numbers: {result!r}"
  for leaf in leaves:
    assert np.all(np.isfinite(leaf)), f"{function.__name__} returned {result!r}"
  return result


# --- Random inputs -------------------------------------------------------------------

# Degenerate shapes of the features: which rows and columns repeat.
FEATURE_KINDS = (
    "normal",
    "constant",
    "constant_column",
    "duplicated_rows",
    "integer",
    "outlier",
    "zeros",
    "raw",
)
SCALES = (1e-30, 1e-3, 1.0, 1e3, 1e30)
RAW_FLOATS = st.floats(
    width=32, allow_nan=False, allow_infinity=False, allow_subnormal=False
)


@st.composite
def feature_matrices(draw, shape):
  """A float32 ``shape`` matrix of one degenerate kind and scale; and the kind."""
  kind = draw(st.sampled_from(FEATURE_KINDS))
  num_rows, num_columns = shape
  if kind == "raw":
    return draw(hnp.arrays(np.float32, shape, elements=RAW_FLOATS)), kind
  rng = np.random.default_rng(draw(st.integers(0, 2**16)))
  values = rng.normal(size=shape)
  if kind == "constant":
    values = np.broadcast_to(values[:1], shape).copy()
  elif kind == "constant_column":
    values[:, 0] = values[0, 0]
  elif kind == "duplicated_rows":
    values = values[np.arange(num_rows) % max(1, num_rows // 2)]
  elif kind == "integer":
    values = np.round(3 * values)
  elif kind == "outlier":
    values[0, 0] *= 1e6
  elif kind == "zeros":
    values = np.zeros(shape)
  return (values * draw(st.sampled_from(SCALES))).astype(np.float32), kind


@st.composite
def class_labels(draw, num_examples, num_classes):
  """``(num_examples,)`` labels in ``[0, num_classes)``; and whether >= 2 classes occur."""
  kind = draw(st.sampled_from(("balanced", "random", "one_class")))
  if kind == "balanced":
    labels = np.arange(num_examples) % num_classes
    labels = labels[
        np.random.default_rng(draw(st.integers(0, 99))).permutation(
            num_examples
        )
    ]
  elif kind == "random":
    labels = np.asarray(
        draw(
            st.lists(
                st.integers(0, num_classes - 1),
                min_size=num_examples,
                max_size=num_examples,
            )
        )
    )
  else:
    labels = np.full(num_examples, draw(st.integers(0, num_classes - 1)))
  return labels.astype(np.int32), np.unique(labels).size >= 2


# (num_examples, feature_dim, num_classes): fewer examples than features and more.
SHAPES = ((2, 3, 2), (6, 3, 3))


@st.composite
def feature_label_problems(draw):
  num_examples, dim, num_classes = draw(st.sampled_from(SHAPES))
  features, kind = draw(feature_matrices((num_examples, dim)))
  labels, two_classes = draw(class_labels(num_examples, num_classes))
  return features, kind, labels, num_classes, two_classes


# --- Properties: transferability scores ---------------------------------------------


SCORES = {
    "logme": select.logme,
    "h_score": select.h_score,
    "shrinkage_h_score": select.shrinkage_h_score,
    "gbc": select.gbc,
    "transrate": select.transrate,
}


@pytest.mark.parametrize("name", list(SCORES))
@given(problem=feature_label_problems())
def test_scores_are_finite_or_raise_value_error(name, problem):
  features, kind, labels, num_classes, two_classes = problem
  # Invalid: one class only (all need two); all-zero features for LogME,
  # whose evidence then has no maximum. Everything else must give a number.
  valid = two_classes and not (name == "logme" and kind == "zeros")
  finite_or_value_error(
      SCORES[name],
      features,
      labels,
      num_classes=num_classes,
      must_succeed=valid,
  )


@given(
    features=feature_matrices((6, 3)),
    scale=st.sampled_from(SCALES),
    column=st.integers(0, 2),
)
def test_logme_regression_is_finite_or_raises(features, scale, column):
  features, kind = features
  # A feature column (in [-1, 1]) plus noise, at its own scale.
  base = features[:, column].astype(np.float64) / max(
      float(np.abs(features).max()), 1e-300
  )
  noise = np.random.default_rng(column).normal(size=6)
  targets = ((base + 0.1 * noise) * scale).astype(np.float32)
  valid = kind != "zeros"
  finite_or_value_error(
      select.logme, features, targets, regression=True, must_succeed=valid
  )


@st.composite
def probability_problems(draw):
  num_examples, num_source, num_classes = draw(
      st.sampled_from(((2, 3, 2), (6, 4, 3)))
  )
  kind = draw(
      st.sampled_from(("softmax", "one_hot", "uniform", "tiny", "dead_class"))
  )
  rng = np.random.default_rng(draw(st.integers(0, 2**16)))
  logits = rng.normal(size=(num_examples, num_source)) * draw(
      st.sampled_from(SCALES)
  )
  if kind == "one_hot":
    probabilities = np.eye(num_source)[
        rng.integers(0, num_source, num_examples)
    ]
  elif kind == "uniform":
    probabilities = np.full((num_examples, num_source), 1 / num_source)
  elif kind == "tiny":  # entries of 1e-30 next to a dominant class
    probabilities = np.full((num_examples, num_source), 1e-30)
    probabilities[:, 0] = 1 - (num_source - 1) * 1e-30
  else:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities = shifted / shifted.sum(axis=1, keepdims=True)
    if kind == "dead_class":  # a source class that receives no mass
      probabilities[:, 0] = 0
      # A row whose softmax was all on class 0 (large logits) goes to class 1.
      probabilities[probabilities.sum(axis=1) == 0, 1] = 1
      probabilities /= probabilities.sum(axis=1, keepdims=True)
  labels, _ = draw(class_labels(num_examples, num_classes))
  return probabilities.astype(np.float32), labels, num_classes


@given(problem=probability_problems())
def test_leep_is_finite(problem):
  probabilities, labels, num_classes = problem
  score = finite_or_value_error(
      select.leep,
      probabilities,
      labels,
      num_target_classes=num_classes,
      must_succeed=True,
  )
  assert float(score) <= 1e-6  # a mean log-likelihood


@given(data=st.data(), num_examples=st.sampled_from((1, 2, 7)))
def test_nce_is_finite_and_at_most_zero(data, num_examples):
  source, _ = data.draw(class_labels(num_examples, 3))
  target, _ = data.draw(class_labels(num_examples, 2))
  score = finite_or_value_error(
      select.nce,
      source,
      target,
      num_source_classes=3,
      num_target_classes=2,
      must_succeed=True,
  )
  assert float(score) <= 1e-6


# --- Properties: validators ----------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["prediction_entropy", "information_maximization"]
)
@given(logits=feature_matrices((6, 3)))
def test_prediction_scores_are_finite_and_bounded(name, logits):
  logits, _ = logits
  score = finite_or_value_error(
      getattr(select, name), logits, must_succeed=True
  )
  bound = np.log(3) + 1e-5
  assert -bound <= float(score) <= bound


@given(
    features=feature_matrices((6, 3)),
    temperature=st.sampled_from((1e-30, 1e-3, 0.05, 1.0, 1e30)),
)
def test_soft_neighborhood_density_is_finite_and_bounded(features, temperature):
  features, _ = features
  score = finite_or_value_error(
      select.soft_neighborhood_density,
      features,
      temperature=temperature,
      must_succeed=True,
  )
  assert -1e-5 <= float(score) <= np.log(5) + 1e-5


@st.composite
def losses_and_ratios(draw):
  losses, _ = draw(feature_matrices((6, 1)))
  ratios, ratio_kind = draw(feature_matrices((6, 1)))
  ratios = np.abs(ratios[:, 0])
  if draw(st.booleans()):
    losses = np.abs(losses)
  # Valid unless the weights are all zero; magnitudes whose product leaves
  # float32 may overflow (a ValueError then).
  valid = (
      np.any(ratios > 0)
      and float(np.max(np.abs(losses))) * float(np.max(ratios)) < 1e36
  )
  return losses[:, 0], ratios, valid


@pytest.mark.parametrize(
    "name", ["importance_weighted_validation", "deep_embedded_validation"]
)
@given(problem=losses_and_ratios())
def test_validation_risks_are_finite_or_raise(name, problem):
  losses, ratios, valid = problem
  finite_or_value_error(
      getattr(select, name), losses, ratios, must_succeed=valid
  )


@st.composite
def two_domains(draw):
  source, source_kind = draw(feature_matrices((6, 3)))
  target, target_kind = draw(feature_matrices((6, 3)))
  return source, target, "raw" not in (source_kind, target_kind)


@hypothesis.settings(max_examples=10)
@given(domains=two_domains())
def test_proxy_a_distance_is_finite_and_in_range(domains):
  source, target, _ = domains
  distance = finite_or_value_error(
      select.proxy_a_distance, source, target, key=KEY, must_succeed=True
  )
  assert -2 <= float(distance) <= 2


@hypothesis.settings(max_examples=10)
@given(domains=two_domains())
def test_domain_density_ratios_are_finite_or_raise(domains):
  source, target, moderate = domains
  # Raw float32 values may make the domains separable by huge margins; the
  # ratios then overflow and a ValueError says so.
  ratios = finite_or_value_error(
      select.domain_density_ratios, source, target, must_succeed=moderate
  )
  if ratios is not None:
    assert ratios.shape == (6,) and np.all(np.asarray(ratios) >= 0)


# --- Properties: negative transfer and task grouping -------------------------------


@given(
    pairs=st.lists(
        st.tuples(st.floats(0, 1), st.floats(0, 1)), min_size=1, max_size=6
    ),
    confidence=st.floats(1e-6, 1 - 1e-6),
)
def test_negative_transfer_gap_is_finite(pairs, confidence):
  transfer, reference = zip(*pairs)
  gap = finite_or_value_error(
      select.negative_transfer_gap,
      list(transfer),
      list(reference),
      confidence=confidence,
      must_succeed=True,
  )
  assert gap.low <= gap.gap <= gap.high and gap.num_seeds == len(pairs)
  assert select.TransferGap(*gap) == gap


@given(
    pairs=st.lists(
        st.tuples(st.floats(allow_nan=True), st.floats(-2, 2)),
        min_size=0,
        max_size=4,
    ),
    confidence=st.one_of(
        st.floats(allow_nan=True), st.booleans(), st.text(max_size=2)
    ),
)
def test_negative_transfer_gap_on_any_numbers(pairs, confidence):
  transfer = [pair[0] for pair in pairs]
  reference = [pair[1] for pair in pairs]
  valid = (
      bool(pairs)
      and all(0 <= value <= 1 for value in transfer + reference)
      and isinstance(confidence, float)
      and 0 < confidence < 1
  )
  finite_or_value_error(
      select.negative_transfer_gap,
      transfer,
      reference,
      confidence=confidence,
      must_succeed=valid,
  )


@st.composite
def affinities(draw):
  num_tasks = draw(st.integers(1, 4))
  affinity, _ = draw(feature_matrices((num_tasks, num_tasks)))
  return affinity.astype(np.float64), draw(st.integers(0, num_tasks + 1))


@given(problem=affinities(), overlap=st.booleans())
def test_group_tasks_is_finite_and_consistent(problem, overlap):
  affinity, num_groups = problem
  num_tasks = affinity.shape[0]
  result = finite_or_value_error(
      select.group_tasks,
      affinity,
      num_groups,
      overlap=overlap,
      must_succeed=1 <= num_groups <= num_tasks,
  )
  if result is not None:
    assert 1 <= len(result.groups) <= num_groups
    rescored = finite_or_value_error(
        select.score_grouping, affinity, result.groups, must_succeed=True
    )
    assert rescored.score == result.score
    # Every task alone is a feasible grouping (score 0) when enough groups are allowed.
    if num_groups == num_tasks:
      assert result.score >= -1e-9 * (1 + np.abs(affinity).sum())


def squared_task_losses(shared, heads, batch):
  hidden = batch["x"] @ shared["kernel"]
  return jnp.mean(jnp.square(hidden @ heads.T - batch["y"]), axis=0) + 1e-3


@hypothesis.settings(max_examples=10)
@given(
    scale=st.sampled_from((1e-3, 1.0, 1e3)),
    learning_rate=st.sampled_from((1e-30, 1e-3, 0.1, 10.0, 1e30)),
)
def test_lookahead_affinity_is_finite_or_raises(scale, learning_rate):
  rng = np.random.default_rng(0)
  shared = {"kernel": np.float32(scale * rng.normal(size=(3, 2)))}
  heads = np.float32(rng.normal(size=(2, 2)))
  batch = {
      "x": np.float32(rng.normal(size=(4, 3))),
      "y": np.float32(rng.normal(size=(4, 2))),
  }
  # A large step may overshoot past the float range: a ValueError then.
  affinity = finite_or_value_error(
      select.lookahead_affinity,
      squared_task_losses,
      shared,
      heads,
      batch,
      learning_rate=learning_rate,
      must_succeed=learning_rate * scale**2 <= 1,
  )
  if affinity is not None:
    assert affinity.shape == (2, 2)


# --- Exact rescalings: the robustness fixes keep the scores' values ------------------


def well_conditioned(seed=0, shape=(6, 3), num_classes=3):
  rng = np.random.default_rng(seed)
  labels = np.arange(shape[0]) % num_classes
  features = (
      rng.normal(size=shape)
      + 2 * rng.normal(size=(num_classes, shape[1]))[labels]
  )
  return features.astype(np.float32), labels


INVARIANT = {  # name -> score(features, labels, scale)
    "logme": lambda f, y, s: select.logme(f * s, y, num_classes=3),
    "logme_n_below_d": lambda f, y, s: select.logme(
        f[:2] * s, y[:2] % 2, num_classes=2
    ),
    "h_score": lambda f, y, s: select.h_score(f * s, y, num_classes=3),
    "shrinkage_h_score": lambda f, y, s: select.shrinkage_h_score(
        f * s, y, num_classes=3
    ),
    # GBC and TransRate measure in feature units: their floor / ε scale along.
    "gbc": lambda f, y, s: select.gbc(
        f * s, y, variance_floor=0.5 * s**2, num_classes=3
    ),
    "transrate": lambda f, y, s: select.transrate(
        f * s, y, eps=0.5 * s**2, num_classes=3
    ),
    "proxy_a_distance": lambda f, y, s: select.proxy_a_distance(
        f * s, (f + 1) * s, key=KEY
    ),
    "soft_neighborhood_density": lambda f, y, s: select.soft_neighborhood_density(
        f * s
    ),
    "domain_density_ratios": lambda f, y, s: select.domain_density_ratios(
        f * s, (f + 0.5) * s
    ),
}


@pytest.mark.parametrize("scale", [1e-30, 1e30])
@pytest.mark.parametrize("name", list(INVARIANT))
def test_scale_invariant_scores_keep_their_value_at_extreme_scales(name, scale):
  features, labels = well_conditioned()
  if name in ("gbc", "transrate"):
    scale = np.sqrt(scale)  # the floor / ε scale with its square
  reference = np.asarray(INVARIANT[name](features, labels, np.float32(1)))
  scaled = np.asarray(INVARIANT[name](features, labels, np.float32(scale)))
  assert np.all(np.isfinite(scaled))
  np.testing.assert_allclose(scaled, reference, rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("scale", [1e-30, 1e30])
def test_logme_regression_shifts_by_the_log_of_the_target_scale(scale):
  features, _ = well_conditioned()
  targets = features[:, 0] - 2 * features[:, 1] + 0.3
  reference = float(select.logme(features, targets, regression=True))
  scaled = float(
      select.logme(features, np.float32(scale) * targets, regression=True)
  )
  # p(s y) = p(y) / s^N: the per-example log evidence drops by log s.
  assert scaled == pytest.approx(reference - np.log(scale), abs=2e-3)


def test_degenerate_inputs_have_the_documented_limits():
  features, labels = well_conditioned()
  constant = np.ones((6, 3), np.float32)
  # Constant features explain nothing: H-scores 0, TransRate 0, every pair of
  # classes fully overlapping in GBC (also without a variance floor).
  assert float(select.h_score(constant, labels)) == 0
  assert float(select.shrinkage_h_score(constant, labels)) == 0
  assert float(select.transrate(constant, labels)) == 0
  assert float(select.gbc(constant, labels)) == -6
  assert float(select.gbc(constant, labels, variance_floor=0.0)) == -6
  # Classes that are distinct points (zero variance, no floor) do not overlap.
  points = np.float32(np.eye(3)[labels])
  assert float(select.gbc(points, labels, variance_floor=0.0)) == 0
  # y orthogonal to the features: LogME's α → ∞ limit, -(1 + log(2π ‖y‖²/N)) / 2.
  alternating = np.float32([[1], [-1], [1], [-1]])
  expected = -0.5 * (1 + np.log(2 * np.pi * 0.5))
  assert float(
      select.logme(alternating, np.array([0, 0, 1, 1]))
  ) == pytest.approx(expected, abs=1e-4)
  # Logits beyond the float range of each other: a one-hot prediction, entropy 0.
  assert float(
      select.prediction_entropy(np.float32([[3e38, -3e38], [0, 0]]))
  ) == pytest.approx(-np.log(2) / 2)
  # A tiny temperature: every example's nearest neighbour takes all the mass.
  assert float(
      select.soft_neighborhood_density(features, temperature=1e-30)
  ) == pytest.approx(0, abs=1e-6)


# --- Results that are not finite are reported -------------------------------------


def test_logme_reports_a_non_finite_evidence(monkeypatch):
  logme_module = importlib.import_module("tljax.select.logme")
  monkeypatch.setattr(
      logme_module, "_logme", lambda *args, **kwargs: jnp.float32(jnp.nan)
  )
  features, labels = well_conditioned()
  with pytest.raises(ValueError, match="labels"):
    select.logme(features, labels)


def test_train_with_affinities_reports_divergence(monkeypatch):
  def diverged(params, inputs, labels, indices, learning_rate, **kwargs):
    losses = jnp.full((indices.shape[0], labels.shape[1]), jnp.inf)
    return params, losses, jnp.zeros((indices.shape[0], 0, 0))

  monkeypatch.setattr(task_grouping, "_train", diverged)
  inputs = np.float32(np.random.default_rng(0).normal(size=(8, 2)))
  with pytest.raises(ValueError, match="learning_rate"):
    select.train_with_affinities(
        inputs, np.arange(8) % 2, steps=2, batch_size=4, affinity_every=0
    )


# --- Bad inputs: one case per pytest.param ------------------------------------------


F, Y = well_conditioned()  # (6, 3) float32, labels in [0, 3)
P = np.full((6, 4), 0.25, np.float32)
LOSSES = np.float32([0.5, 1.0, 0.2, 0.7, 0.1, 0.9])
RATIOS = np.float32([1.0, 0.5, 2.0, 1.5, 0.8, 1.2])
AFFINITY = np.arange(9.0).reshape(3, 3)
NAN_F = np.where(F > 0.5, np.nan, F)
INF_F = np.where(F > 0.5, np.inf, F)
HUGE_F = F.astype(np.float64) * 1e300  # finite in float64, not in float32
RAGGED = [[1.0, 2.0], [3.0]]
STRINGS = np.array([["a", "b"], ["c", "d"]])
TRAIN_INPUTS = np.float32(np.random.default_rng(0).normal(size=(8, 2)))
TRAIN_LABELS = np.arange(8) % 2
logme, leep, nce = select.logme, select.leep, select.nce
h, sh, gbc, transrate = (
    select.h_score,
    select.shrinkage_h_score,
    select.gbc,
    select.transrate,
)
pad, ddr = select.proxy_a_distance, select.domain_density_ratios
entropy, im = select.prediction_entropy, select.information_maximization
snd = select.soft_neighborhood_density
iwv, dev = (
    select.importance_weighted_validation,
    select.deep_embedded_validation,
)
gap, group, score = (
    select.negative_transfer_gap,
    select.group_tasks,
    select.score_grouping,
)


def lookahead(**overrides):
  rng = np.random.default_rng(0)
  arguments = {
      "task_losses": squared_task_losses,
      "shared_params": {"kernel": np.float32(rng.normal(size=(3, 2)))},
      "task_params": np.float32(rng.normal(size=(2, 2))),
      "batch": {
          "x": np.float32(rng.normal(size=(4, 3))),
          "y": np.float32(rng.normal(size=(4, 2))),
      },
      "learning_rate": 0.1,
  }
  arguments.update(overrides)
  return select.lookahead_affinity(**arguments)


def train(**overrides):
  arguments = {
      "inputs": TRAIN_INPUTS,
      "labels": TRAIN_LABELS,
      "steps": 1,
      "batch_size": 4,
      "affinity_every": 0,
      **overrides,
  }
  return select.train_with_affinities(**arguments)


def case(call, argument, id):
  return pytest.param(call, argument, id=id)


BAD_INPUTS = [
    # logme
    case(lambda: logme(F[None], Y), "features", "logme-features-3d"),
    case(lambda: logme(F[:0], Y[:0]), "features", "logme-features-empty"),
    case(lambda: logme(F[:1], Y[:1]), "features", "logme-features-one-sample"),
    case(lambda: logme(F + 1j, Y), "features", "logme-features-complex"),
    case(lambda: logme(STRINGS, Y[:2]), "features", "logme-features-strings"),
    case(lambda: logme(RAGGED, Y[:2]), "features", "logme-features-ragged"),
    case(lambda: logme(INF_F, Y), "features", "logme-features-inf"),
    case(
        lambda: logme(HUGE_F, Y),
        "features must be finite, but overflows",
        "logme-features-overflow-float32",
    ),
    case(
        lambda: logme(F, Y.astype(np.float32)), "labels", "logme-labels-float"
    ),
    case(lambda: logme(F, np.full(6, np.nan)), "labels", "logme-labels-nan"),
    case(lambda: logme(F, Y.astype(bool)), "labels", "logme-labels-bool"),
    case(lambda: logme(F, Y * 2**40), "labels", "logme-labels-huge"),
    case(
        lambda: logme(F, Y, num_classes=3.0),
        "num_classes",
        "logme-num-classes-float",
    ),
    case(
        lambda: logme(F, Y, num_classes=True),
        "num_classes",
        "logme-num-classes-bool",
    ),
    case(
        lambda: logme(F, Y, tolerance=np.nan),
        "tolerance",
        "logme-tolerance-nan",
    ),
    case(
        lambda: logme(F, Y, tolerance=1e-60),
        "tolerance",
        "logme-tolerance-underflow",
    ),
    case(
        lambda: logme(F, Y, tolerance="small"),
        "tolerance",
        "logme-tolerance-string",
    ),
    case(
        lambda: logme(F, Y, max_iterations=1.5),
        "max_iterations",
        "logme-max-iterations-float",
    ),
    case(
        lambda: logme(F, np.full(6, np.inf), regression=True),
        "labels",
        "logme-regression-inf",
    ),
    case(
        lambda: logme(F, np.ones(5), regression=True),
        "labels",
        "logme-regression-length",
    ),
    case(
        lambda: logme(F, np.full(6, 1e300), regression=True),
        "labels",
        "logme-regression-overflow-float32",
    ),
    case(
        lambda: logme(F, np.ones(6) * 1j, regression=True),
        "labels",
        "logme-regression-complex",
    ),
    # leep
    case(
        lambda: leep(P[0], Y[:1]),
        "source_probabilities",
        "leep-probabilities-1d",
    ),
    case(
        lambda: leep(P[:0], Y[:0]),
        "source_probabilities",
        "leep-probabilities-empty",
    ),
    case(
        lambda: leep(np.where(P > 0, np.nan, P), Y),
        "source_probabilities",
        "leep-probabilities-nan",
    ),
    case(
        lambda: leep(P / 2, Y),
        "source_probabilities rows must sum to 1",
        "leep-probabilities-sum-half",
    ),
    case(
        lambda: leep(STRINGS, Y[:2]),
        "source_probabilities",
        "leep-probabilities-strings",
    ),
    case(
        lambda: leep(P, Y, num_target_classes=2),
        "target_labels",
        "leep-labels-out-of-range",
    ),
    case(lambda: leep(P, Y - 1), "target_labels", "leep-labels-negative"),
    case(lambda: leep(P, Y + 0.5), "target_labels", "leep-labels-non-integer"),
    case(
        lambda: leep(P, Y, num_target_classes=True),
        "num_target_classes",
        "leep-num-target-classes-bool",
    ),
    # nce
    case(lambda: nce(Y[:0], Y[:0]), "source_labels", "nce-empty"),
    case(lambda: nce(Y - 1, Y), "source_labels", "nce-source-negative"),
    case(
        lambda: nce(Y, Y, num_target_classes=2),
        "target_labels",
        "nce-target-out-of-range",
    ),
    case(lambda: nce(Y, Y + 0.5), "target_labels", "nce-target-non-integer"),
    case(
        lambda: nce(Y, Y, num_source_classes=0),
        "num_source_classes",
        "nce-num-source-classes-zero",
    ),
    case(
        lambda: nce(Y, Y, num_source_classes=3.0),
        "num_source_classes",
        "nce-num-source-classes-float",
    ),
    case(lambda: nce(["a"] * 6, Y), "source_labels", "nce-source-strings"),
    # h_score and shrinkage_h_score
    case(lambda: h(NAN_F, Y), "features", "h-features-nan"),
    case(lambda: h(F[:, 0], Y), "features", "h-features-1d"),
    case(lambda: h(F, np.zeros(6, int)), "labels", "h-labels-one-class"),
    case(lambda: h(F, Y[:-1]), "labels", "h-labels-length"),
    case(lambda: h(F, Y, num_classes=1), "num_classes", "h-num-classes-one"),
    case(lambda: sh(F + 1j, Y), "features", "shrinkage-features-complex"),
    case(lambda: sh(INF_F, Y), "features", "shrinkage-features-inf"),
    case(
        lambda: sh(F, np.ones(6, int)), "labels", "shrinkage-labels-one-class"
    ),
    case(lambda: sh(F, Y[:, None]), "labels", "shrinkage-labels-2d"),
    case(
        lambda: sh(F, Y + 3, num_classes=3),
        "labels",
        "shrinkage-labels-out-of-range",
    ),
    # gbc
    case(
        lambda: gbc(F, Y, covariance=["diagonal"]),
        "covariance",
        "gbc-covariance-list",
    ),
    case(
        lambda: gbc(F, Y, covariance="full"),
        "covariance",
        "gbc-covariance-unknown",
    ),
    case(
        lambda: gbc(F, Y, variance_floor=np.nan),
        "variance_floor",
        "gbc-floor-nan",
    ),
    case(
        lambda: gbc(F, Y, variance_floor=np.inf),
        "variance_floor",
        "gbc-floor-inf",
    ),
    case(
        lambda: gbc(F, Y, variance_floor=True),
        "variance_floor",
        "gbc-floor-bool",
    ),
    case(
        lambda: gbc(F, Y, variance_floor=1e300),
        "variance_floor",
        "gbc-floor-overflow",
    ),
    case(lambda: gbc(NAN_F, Y), "features", "gbc-features-nan"),
    case(lambda: gbc(F, np.zeros(6, int)), "labels", "gbc-labels-one-class"),
    # transrate
    case(lambda: transrate(F, Y, eps=-1e-4), "eps", "transrate-eps-negative"),
    case(lambda: transrate(F, Y, eps=np.inf), "eps", "transrate-eps-inf"),
    case(lambda: transrate(F, Y, eps=1e-60), "eps", "transrate-eps-underflow"),
    case(lambda: transrate(F, Y, eps="1e-4"), "eps", "transrate-eps-string"),
    case(lambda: transrate(F[None], Y), "features", "transrate-features-3d"),
    case(lambda: transrate(INF_F, Y), "features", "transrate-features-inf"),
    case(
        lambda: transrate(F, np.full(6, 2)),
        "labels",
        "transrate-labels-one-class",
    ),
    # proxy_a_distance
    case(
        lambda: pad(F[:1], F, key=KEY),
        "source_features",
        "pad-source-one-sample",
    ),
    case(lambda: pad(NAN_F, F, key=KEY), "source_features", "pad-source-nan"),
    case(lambda: pad(F, F[None], key=KEY), "target_features", "pad-target-3d"),
    case(
        lambda: pad(F, F + 1j, key=KEY), "target_features", "pad-target-complex"
    ),
    case(
        lambda: pad(F, F, key=jnp.zeros(3, jnp.uint32)), "key", "pad-key-shape"
    ),
    case(lambda: pad(F, F, key=jax.random.split(KEY)), "key", "pad-key-batch"),
    case(
        lambda: pad(F, F, key=KEY, l2_regularization=-1.0),
        "l2_regularization",
        "pad-l2-negative",
    ),
    case(
        lambda: pad(F, F, key=KEY, l2_regularization=1e-60),
        "l2_regularization",
        "pad-l2-underflow",
    ),
    case(
        lambda: pad(F, F, key=KEY, max_iterations=0),
        "max_iterations",
        "pad-max-iterations-zero",
    ),
    case(
        lambda: pad(F, F, key=KEY, max_iterations=10.0),
        "max_iterations",
        "pad-max-iterations-float",
    ),
    # prediction_entropy and information_maximization
    case(lambda: entropy(F[:, 0]), "target_logits", "entropy-1d"),
    case(lambda: entropy(F[:0]), "target_logits", "entropy-empty"),
    case(lambda: entropy(NAN_F), "target_logits", "entropy-nan"),
    case(lambda: entropy(F + 1j), "target_logits", "entropy-complex"),
    case(
        lambda: entropy(HUGE_F),
        "target_logits must be finite, but overflows",
        "entropy-overflow-float32",
    ),
    case(lambda: im(F[:1]), "target_logits", "im-one-sample"),
    case(lambda: im(F[None]), "target_logits", "im-3d"),
    case(lambda: im(STRINGS), "target_logits", "im-strings"),
    case(lambda: im(INF_F), "target_logits", "im-inf"),
    # soft_neighborhood_density
    case(
        lambda: snd(F, temperature=np.nan), "temperature", "snd-temperature-nan"
    ),
    case(
        lambda: snd(F, temperature=np.inf), "temperature", "snd-temperature-inf"
    ),
    case(
        lambda: snd(F, temperature="0.05"),
        "temperature",
        "snd-temperature-string",
    ),
    case(
        lambda: snd(F, temperature=1e-60),
        "temperature",
        "snd-temperature-underflow",
    ),
    case(lambda: snd(F[None]), "target_features_or_probabilities", "snd-3d"),
    case(lambda: snd(INF_F), "target_features_or_probabilities", "snd-inf"),
    # importance_weighted_validation and deep_embedded_validation
    case(
        lambda: iwv(np.where(LOSSES > 0.5, np.nan, LOSSES), RATIOS),
        "source_val_losses",
        "iwv-losses-nan",
    ),
    case(
        lambda: iwv(LOSSES, np.where(RATIOS > 1, np.inf, RATIOS)),
        "density_ratios",
        "iwv-ratios-inf",
    ),
    case(
        lambda: iwv(LOSSES, RATIOS - 1), "density_ratios", "iwv-ratios-negative"
    ),
    case(
        lambda: iwv(LOSSES, RATIOS[:-1]),
        "density_ratios",
        "iwv-length-mismatch",
    ),
    case(
        lambda: iwv(LOSSES > 0.5, RATIOS),
        "source_val_losses",
        "iwv-losses-bool",
    ),
    case(lambda: iwv(LOSSES[:0], RATIOS[:0]), "source_val_losses", "iwv-empty"),
    case(
        lambda: iwv(1e30 * LOSSES, 1e30 * RATIOS),
        "source_val_losses",
        "iwv-product-overflows",
    ),
    case(
        lambda: dev(LOSSES[:, None], RATIOS),
        "source_val_losses",
        "dev-losses-2d",
    ),
    case(
        lambda: dev(LOSSES, 0 * RATIOS), "density_ratios", "dev-ratios-all-zero"
    ),
    case(
        lambda: dev(LOSSES + 1j, RATIOS),
        "source_val_losses",
        "dev-losses-complex",
    ),
    case(lambda: dev(RAGGED, RATIOS), "source_val_losses", "dev-losses-ragged"),
    case(
        lambda: dev(1e30 * LOSSES, 1e30 * RATIOS),
        "source_val_losses",
        "dev-product-overflows",
    ),
    # domain_density_ratios
    case(lambda: ddr(NAN_F, F), "source_features", "ddr-source-nan"),
    case(lambda: ddr(F, F[:, 0]), "target_features", "ddr-target-1d"),
    case(
        lambda: ddr(F, F, evaluation_features=INF_F),
        "evaluation_features",
        "ddr-evaluation-inf",
    ),
    case(
        lambda: ddr(F, F, evaluation_features=F[:0]),
        "evaluation_features",
        "ddr-evaluation-empty",
    ),
    case(
        lambda: ddr(F, F, l2_regularization=np.nan),
        "l2_regularization",
        "ddr-l2-nan",
    ),
    case(
        lambda: ddr(F, F, max_iterations=True),
        "max_iterations",
        "ddr-max-iterations-bool",
    ),
    case(
        lambda: ddr(F, F + 3, evaluation_features=1e30 * F),
        "l2_regularization",
        "ddr-ratios-overflow",
    ),
    # negative_transfer_gap and TransferGap
    case(lambda: gap([[0.1, 0.2]], [[0.1, 0.2]]), "transfer_errors", "gap-2d"),
    case(lambda: gap(["a", "b"], [0.1, 0.2]), "transfer_errors", "gap-strings"),
    case(lambda: gap([0.1, 0.2], RAGGED), "target_only_errors", "gap-ragged"),
    case(lambda: gap([True, False], [0.1, 0.2]), "transfer_errors", "gap-bool"),
    case(
        lambda: gap([0.1, 0.2], [-0.1, 0.2]),
        "target_only_errors",
        "gap-negative-error",
    ),
    case(
        lambda: gap([0.1], [0.1], confidence=0.0),
        "confidence",
        "gap-confidence-zero",
    ),
    case(
        lambda: gap([0.1], [0.1], confidence="95%"),
        "confidence",
        "gap-confidence-string",
    ),
    case(
        lambda: gap([0.1], [0.1], confidence=np.nan),
        "confidence",
        "gap-confidence-nan",
    ),
    case(
        lambda: gap([0.1], [0.1], confidence=True),
        "confidence",
        "gap-confidence-bool",
    ),
    case(
        lambda: select.TransferGap(1.5, 1.0, 2.0, 3),
        "gap",
        "transfer-gap-gap-above-1",
    ),
    case(
        lambda: select.TransferGap(0.1, 0.2, 0.3, 3),
        "low",
        "transfer-gap-low-above-gap",
    ),
    case(
        lambda: select.TransferGap(0.1, 0.0, np.nan, 3),
        "high",
        "transfer-gap-high-nan",
    ),
    case(
        lambda: select.TransferGap(0.1, 0.0, 0.2, 0),
        "num_seeds",
        "transfer-gap-num-seeds-zero",
    ),
    case(
        lambda: select.TransferGap(0.1, 0.0, 0.2, 2.0),
        "num_seeds",
        "transfer-gap-num-seeds-float",
    ),
    # lookahead_affinity
    case(
        lambda: lookahead(shared_params={"kernel": np.ones((3, 2), int)}),
        "shared_params",
        "lookahead-shared-int",
    ),
    case(
        lambda: lookahead(shared_params={}),
        "shared_params",
        "lookahead-shared-empty",
    ),
    case(
        lambda: lookahead(learning_rate=0.0),
        "learning_rate",
        "lookahead-lr-zero",
    ),
    case(
        lambda: lookahead(learning_rate=np.nan),
        "learning_rate",
        "lookahead-lr-nan",
    ),
    case(
        lambda: lookahead(learning_rate=1e30),
        "learning_rate",
        "lookahead-lr-diverges",
    ),
    case(
        lambda: lookahead(
            task_losses=lambda s, h, b: squared_task_losses(s, h, b)[None]
        ),
        "task_losses",
        "lookahead-losses-2d",
    ),
    case(
        lambda: lookahead(
            task_losses=lambda s, h, b: -squared_task_losses(s, h, b)
        ),
        "task_losses",
        "lookahead-losses-negative",
    ),
    # train_with_affinities
    case(lambda: train(inputs=TRAIN_INPUTS[:, 0]), "inputs", "train-inputs-1d"),
    case(
        lambda: train(inputs=np.full((8, 2), "x")),
        "inputs",
        "train-inputs-strings",
    ),
    case(
        lambda: train(inputs=np.full((8, 2), 1e300)),
        "inputs",
        "train-inputs-overflow",
    ),
    case(
        lambda: train(inputs=TRAIN_INPUTS[:0], labels=TRAIN_LABELS[:0]),
        "inputs",
        "train-inputs-empty",
    ),
    case(
        lambda: train(labels=TRAIN_LABELS - 1),
        "labels",
        "train-labels-negative",
    ),
    case(
        lambda: train(labels=TRAIN_LABELS, num_classes=(1,)),
        "num_classes",
        "train-num-classes-one",
    ),
    case(
        lambda: train(labels=TRAIN_LABELS + 1, num_classes=(2,)),
        "labels",
        "train-labels-out-of-range",
    ),
    case(lambda: train(num_classes=2), "num_classes", "train-num-classes-int"),
    case(lambda: train(hidden_dims=8), "hidden_dims", "train-hidden-dims-int"),
    case(
        lambda: train(hidden_dims=(0,)), "hidden_dims", "train-hidden-dims-zero"
    ),
    case(lambda: train(steps=0), "steps", "train-steps-zero"),
    case(lambda: train(batch_size=0), "batch_size", "train-batch-size-zero"),
    case(lambda: train(seed=-1), "seed", "train-seed-negative"),
    case(lambda: train(optimizer="sgd"), "optimizer", "train-optimizer-string"),
    case(lambda: train(learning_rate=np.inf), "learning_rate", "train-lr-inf"),
    # group_tasks and score_grouping
    case(
        lambda: group([["a", "b"], ["c", "d"]], 1),
        "affinity",
        "group-affinity-strings",
    ),
    case(
        lambda: group(np.zeros((0, 0)), 1), "affinity", "group-affinity-empty"
    ),
    case(
        lambda: group(np.array([[0.0, np.inf], [0.0, 0.0]]), 1),
        "affinity",
        "group-affinity-inf",
    ),
    case(lambda: group(AFFINITY, None), "num_groups", "group-num-groups-none"),
    case(lambda: group(AFFINITY, 1, overlap=1), "overlap", "group-overlap-int"),
    case(
        lambda: score(AFFINITY, [0, 1, 2]), "groups", "score-groups-not-nested"
    ),
    case(
        lambda: score(AFFINITY, [(0, 1), ("2",)]),
        "groups",
        "score-groups-string-task",
    ),
    case(
        lambda: score(AFFINITY, [(0, 1), (-1, 2)]),
        "groups",
        "score-groups-negative-task",
    ),
    case(
        lambda: score(AFFINITY, [(0, 1), (2.0,)]),
        "groups",
        "score-groups-float-task",
    ),
    case(lambda: score(AFFINITY, 3), "groups", "score-groups-int"),
    case(
        lambda: score(AFFINITY[:2], [(0, 1)]),
        "affinity",
        "score-affinity-not-square",
    ),
    case(
        lambda: score(np.full((2, 2), np.nan), [(0, 1)]),
        "affinity",
        "score-affinity-nan",
    ),
]


@pytest.mark.parametrize("call, argument", BAD_INPUTS)
def test_bad_input_raises_value_error_naming_the_argument(call, argument):
  with pytest.raises(ValueError, match=argument):
    call()


def test_bad_input_table_covers_every_public_function():
  ids = [param.id for param in BAD_INPUTS]
  prefixes = {
      "logme": "logme-",
      "leep": "leep-",
      "nce": "nce-",
      "h_score": "h-",
      "shrinkage_h_score": "shrinkage-",
      "gbc": "gbc-",
      "transrate": "transrate-",
      "proxy_a_distance": "pad-",
      "prediction_entropy": "entropy-",
      "information_maximization": "im-",
      "soft_neighborhood_density": "snd-",
      "importance_weighted_validation": "iwv-",
      "deep_embedded_validation": "dev-",
      "domain_density_ratios": "ddr-",
      "negative_transfer_gap": "gap-",
      "TransferGap": "transfer-gap-",
      "lookahead_affinity": "lookahead-",
      "train_with_affinities": "train-",
      "group_tasks": "group-",
      "score_grouping": "score-",
  }
  assert set(prefixes) == set(select.__all__)
  for name, prefix in prefixes.items():
    assert sum(i.startswith(prefix) for i in ids) >= 2, name
  assert len(set(ids)) == len(ids)


def test_jitted_paths_check_shapes_but_not_values():
  """Under jax.jit the shape checks still run; value checks (which would need
  the concrete arrays) do not, and add no work to the compiled program."""
  with pytest.raises(ValueError, match="features"):
    jax.jit(functools.partial(select.h_score, num_classes=3))(F[:, 0], Y)
  jitted = jax.jit(functools.partial(select.h_score, num_classes=3))
  assert np.isfinite(float(jitted(F, Y)))
  jaxpr = str(
      jax.make_jaxpr(functools.partial(select.h_score, num_classes=3))(F, Y)
  )
  assert "is_finite" not in jaxpr
