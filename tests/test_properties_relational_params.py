"""Property and bad-input tests for tljax.relational and tljax.params.

Properties (hypothesis, the conftest profile): on random and degenerate
inputs (one example, constant or identical rows, zeros, scales from 1e-30 to
1e30, rows of mixed scales) every loss and penalty either returns a finite
value with finite gradients or raises a ``ValueError`` — and which of the two
is decided by the inputs: a non-finite input or too small a batch must
raise, a finite valid input must succeed (the scale-invariant relational
losses for every finite scale; the scale-dependent penalties unless the true
value is beyond float32, where they raise naming the overflow). The tree
utilities round-trip (flatten/unflatten, split/merge) and agree with
references written here with ``re.fullmatch``.

Bad inputs: one table, one ``pytest.param`` per case, each raising a
``ValueError`` whose message names the argument.

Cost: sizes come from small fixed sets, so few distinct shapes compile.
"""

import os
import re

import hypothesis
import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tljax import params as params_lib
from tljax import relational
from tljax.params import regularizers

# --- strategies --------------------------------------------------------------

SCALES = (0.0, 1e-30, 1e-3, 1.0, 1e3, 1e30)
# Base values k/4, |k| <= 8: never subnormal, so a scale is exact enough.
BASE = st.integers(-8, 8).map(lambda k: k / 4.0)
KINDS = ("random", "constant", "identical_rows", "one_hot", "mixed_scales")


@st.composite
def matrices(draw, shape, *, poison=True):
  """``(array, scale, finite)``: a float32 array of ``shape``, often degenerate.

  ``scale`` is the largest scale used; ``finite`` is False when a NaN or an
  infinity was planted.
  """
  kind = draw(st.sampled_from(KINDS))
  scale = draw(st.sampled_from(SCALES))
  if kind == "random":
    base = draw(hnp.arrays(np.float64, shape, elements=BASE))
  elif kind == "constant":
    base = np.full(shape, draw(BASE))
  elif kind == "identical_rows":
    row = draw(hnp.arrays(np.float64, shape[1:], elements=BASE))
    base = np.broadcast_to(row, shape).copy()
  elif kind == "one_hot":
    base = np.zeros(shape)
    base.reshape(shape[0], -1)[:, 0] = 1.0
  else:  # every row at its own scale
    base = draw(hnp.arrays(np.float64, shape, elements=BASE))
    row_scales = draw(
        st.lists(st.sampled_from(SCALES), min_size=shape[0], max_size=shape[0])
    )
    base *= np.reshape(row_scales, (-1,) + (1,) * (len(shape) - 1))
    return _maybe_poison(draw, base.astype(np.float32), max(row_scales), poison)
  return _maybe_poison(draw, (base * scale).astype(np.float32), scale, poison)


def _maybe_poison(draw, array, scale, poison):
  bad = (
      draw(st.sampled_from((None,) * 5 + (np.nan, np.inf, -np.inf)))
      if poison
      else None
  )
  if bad is None:
    return array, scale, True
  index = draw(st.integers(0, array.size - 1))
  array = array.copy()
  array.reshape(-1)[index] = bad
  return array, scale, False


def assert_finite_tree(tree, what):
  for leaf in jax.tree.leaves(tree):
    assert np.all(np.isfinite(np.asarray(leaf))), what


def check_loss(
    loss,
    args,
    *,
    argnums=0,
    error=None,
    may_overflow=False,
    static=(),
    **kwargs,
):
  """The property: the expected ``ValueError``, or a finite value and gradient.

  Args:
    error: a regex the ``ValueError`` must match when the inputs are invalid
      (None: they are valid and the call must succeed).
    may_overflow: the true value may be beyond float32; then an error naming
      the overflow is accepted instead of a value.
    static: the keyword arguments that must stay Python values under jit.
  """
  if error is not None:
    with pytest.raises(ValueError, match=error):
      loss(*args, **kwargs)
    return
  try:
    value = loss(*args, **kwargs)
  except ValueError as caught:
    if may_overflow and "overflows" in str(caught):
      return
    raise
  assert np.isfinite(float(value)) and float(value) >= 0, float(value)
  gradient = _gradient(loss, argnums, static)(*args, **kwargs)
  assert_finite_tree(gradient, f"gradient of {loss.__name__}")


_GRADIENTS = {}


def _gradient(loss, argnums, static):
  """``jax.jit(jax.grad(loss))``, built once per loss so it compiles once per
  shape (the argument checks already ran on the concrete call)."""
  key = (loss, argnums, static)
  if key not in _GRADIENTS:
    _GRADIENTS[key] = jax.jit(
        jax.grad(loss, argnums=argnums), static_argnames=static
    )
  return _GRADIENTS[key]


# --- relational: properties ----------------------------------------------------

# One example (too few for RKD's pairs and triplets) or four; RKD-D also two,
# its smallest batch (one pair). Few sizes: each compiles.
BATCHES = st.sampled_from((1, 4))


@st.composite
def feature_pairs(draw, teacher_dim=2, batches=BATCHES):
  batch = draw(batches)
  student, _, student_finite = draw(matrices((batch, 3)))
  teacher, _, teacher_finite = draw(matrices((batch, teacher_dim)))
  return student, teacher, student_finite, teacher_finite


def relational_error(student_finite, teacher_finite, batch, min_batch):
  if batch < min_batch:
    return "student must have at least"
  if not student_finite:
    return "student must be finite"
  if not teacher_finite:
    return "teacher must be finite"
  return None


@hypothesis.given(feature_pairs(batches=st.sampled_from((1, 2, 4))))
def test_rkd_distance_property(pair):
  student, teacher, student_finite, teacher_finite = pair
  check_loss(
      relational.rkd_distance,
      (student, teacher),
      error=relational_error(student_finite, teacher_finite, len(student), 2),
  )


@hypothesis.given(feature_pairs())
def test_rkd_angle_property(pair):
  student, teacher, student_finite, teacher_finite = pair
  check_loss(
      relational.rkd_angle,
      (student, teacher),
      error=relational_error(student_finite, teacher_finite, len(student), 3),
  )


@hypothesis.given(feature_pairs(), st.sampled_from((0.0, 1.0, 25.0)))
def test_rkd_property(pair, weight):
  student, teacher, student_finite, teacher_finite = pair
  check_loss(
      relational.rkd,
      (student, teacher),
      distance_weight=weight,
      angle_weight=2 * weight,
      error=relational_error(student_finite, teacher_finite, len(student), 3),
  )


@st.composite
def feature_map_pairs(draw):
  batch = draw(BATCHES)
  student, _, student_finite = draw(matrices((batch, 3)))
  teacher, _, teacher_finite = draw(matrices((batch, 2, 2)))
  return student, teacher, student_finite, teacher_finite


@hypothesis.given(feature_map_pairs())
def test_similarity_preserving_property(pair):
  student, teacher, student_finite, teacher_finite = pair
  check_loss(
      relational.similarity_preserving,
      (student, teacher),
      error=relational_error(student_finite, teacher_finite, len(student), 1),
  )


@hypothesis.given(
    feature_pairs(teacher_dim=3), st.sampled_from((0.1, 1.0, 4.0, 100.0))
)
def test_knowledge_distillation_property(pair, temperature):
  student, teacher, student_finite, teacher_finite = pair
  error = relational_error(student_finite, teacher_finite, len(student), 1)
  if error:
    error = error.replace("student", "student_logits").replace(
        "teacher", "teacher_logits"
    )
  check_loss(
      relational.knowledge_distillation,
      (student, teacher),
      temperature=temperature,
      error=error,
  )


def test_scale_invariant_losses_are_exact_at_extreme_scales():
  # Before the rescaling, 1e30 overflowed (NaN) and 1e-30 underflowed (0).
  rng = np.random.default_rng(0)
  student = rng.normal(size=(4, 3))
  for loss, teacher_shape in (
      (relational.rkd_distance, (4, 2)),
      (relational.rkd_angle, (4, 2)),
      (relational.similarity_preserving, (4, 2, 2)),
  ):
    teacher = rng.normal(size=teacher_shape)
    reference = float(
        loss(student.astype(np.float32), teacher.astype(np.float32))
    )
    assert reference > 1e-3, loss.__name__
    for scale in (1e30, 1e-30):
      scaled = loss(
          (student * scale).astype(np.float32),
          (teacher / scale).astype(np.float32),
      )
      np.testing.assert_allclose(
          scaled, reference, rtol=1e-4, err_msg=f"{loss.__name__} at {scale}"
      )


def test_knowledge_distillation_small_temperature_and_underflow():
  logits = np.array([[1e30, -1e30, 0.0]], np.float32)
  # z / T overflowed float32 (NaN) before the logits were shifted first; the
  # shifted ones give log-probabilities of -inf on both sides, where a
  # teacher probability of 0 must add 0, not 0 · (-inf - -inf) = NaN.
  value = relational.knowledge_distillation(logits, logits, temperature=1e-9)
  assert float(value) == 0.0
  gradient = jax.grad(relational.knowledge_distillation)(
      logits, logits, temperature=1e-9
  )
  np.testing.assert_array_equal(gradient, 0.0)


# --- params.regularizers: properties --------------------------------------------


@st.composite
def param_trees(draw):
  """``(params, start_params, scale, finite)`` with a few leaf shapes."""
  shapes = {
      "backbone/conv/kernel": (2, 3),
      "backbone/conv/bias": (3,),
      "head/kernel": (3, 2),
  }
  params, start, finite, scale = {}, {}, True, 0.0
  start_factor = np.float32(draw(st.sampled_from((0.0, 0.5, 1.0))))
  for name, shape in shapes.items():
    leaf, leaf_scale, leaf_finite = draw(
        matrices(shape if len(shape) == 2 else (1,) + shape)
    )
    leaf = leaf.reshape(shape)
    params[name] = leaf
    finite &= leaf_finite
    scale = max(scale, leaf_scale)
    if not name.startswith("head"):  # the head is new
      with np.errstate(invalid="ignore"):  # a planted inf times 0
        start[name] = leaf * start_factor
  return (
      params_lib.unflatten(params),
      params_lib.unflatten(start),
      scale,
      finite,
  )


@hypothesis.given(
    param_trees(), st.sampled_from((0.0, 0.1)), st.sampled_from((0.0, 0.01))
)
def test_l2_sp_property(trees, alpha, beta):
  params, start, scale, finite = trees
  check_loss(
      regularizers.l2_sp,
      (params, start),
      alpha=alpha,
      beta=beta,
      error=None if finite else "params path .* must be finite",
      may_overflow=scale >= 1e19,
  )


@hypothesis.given(st.data(), st.sampled_from((None, "matrix")))
def test_delta_property(data, weights_kind):
  shape = (2, 2, 2, 3)
  maps, scale, finite = data.draw(matrices(shape))
  start, start_scale, start_finite = data.draw(matrices(shape, poison=False))
  weights = None
  if weights_kind is not None:
    weights = data.draw(
        hnp.arrays(
            np.float32, (2, 3), elements=st.sampled_from((0.0, 0.25, 1.0))
        )
    )
  check_loss(
      regularizers.delta,
      (maps, start),
      channel_weights=weights,
      error=None if finite and start_finite else "feature_maps must be finite",
      may_overflow=max(scale, start_scale) >= 1e19,
  )


@hypothesis.given(st.data(), st.sampled_from((1, 3, 4)))
def test_batch_spectral_shrinkage_property(data, k):
  shape = (4, 3)  # k = 3 takes every singular value, 4 is one too many
  features, scale, finite = data.draw(matrices(shape))
  error = None
  if not finite:
    error = "features must be finite"
  elif k > min(shape):
    error = "k must be at most"
  check_loss(
      regularizers.batch_spectral_shrinkage,
      (features,),
      k=k,
      error=error,
      may_overflow=scale >= 1e19,
      static=("k",),
  )


@hypothesis.given(st.data(), st.sampled_from((1.0, 5.0)), st.booleans())
def test_delta_channel_attention_property(data, temperature, standardize):
  drops, _, finite = data.draw(matrices((1, 3)))
  drops = drops[0]

  def loss_fn(mask):
    return 1.0 + jnp.dot(1.0 - mask, drops)

  if not finite:
    with pytest.raises(ValueError, match="loss_fn"):
      regularizers.delta_channel_attention(loss_fn, 3, temperature=temperature)
    return
  weights = regularizers.delta_channel_attention(
      loss_fn, 3, temperature=temperature, standardize=standardize
  )
  weights = np.asarray(weights)
  assert weights.shape == (3,) and np.all(np.isfinite(weights))
  assert np.all(weights >= 0)
  np.testing.assert_allclose(weights.sum(), 1.0, rtol=1e-5)
  # The channel whose removal costs most gets the most weight.
  assert weights[np.argmax(drops)] == weights.max()


@st.composite
def probability_rows(draw, rows, columns):
  kind = draw(st.sampled_from(("softmax", "one_hot", "uniform")))
  if kind == "softmax":
    logits, _, _ = draw(matrices((rows, columns), poison=False))
    return np.asarray(jax.nn.softmax(logits, axis=1))
  if kind == "one_hot":
    hot = draw(
        hnp.arrays(np.int64, (rows,), elements=st.integers(0, columns - 1))
    )
    return np.eye(columns, dtype=np.float32)[hot]
  return np.full((rows, columns), 1.0 / columns, np.float32)


@hypothesis.given(probability_rows(6, 4), st.permutations([0, 1, 2, 0, 1, 2]))
def test_cotuning_relationship_property(probabilities, labels):
  labels = np.asarray(labels)
  relationship = np.asarray(
      regularizers.cotuning_relationship(
          probabilities, labels, num_target_classes=3
      )
  )
  assert relationship.shape == (3, 4)
  assert np.all(np.isfinite(relationship)) and np.all(relationship >= 0)
  np.testing.assert_allclose(relationship.sum(axis=1), 1.0, rtol=1e-5)
  for target_class in range(3):
    np.testing.assert_allclose(
        relationship[target_class],
        probabilities[labels == target_class].mean(axis=0),
        rtol=1e-5,
        atol=1e-7,
    )


@hypothesis.given(
    st.data(), probability_rows(3, 4), st.sampled_from((0.0, 2.3))
)
def test_cotuning_loss_property(data, relationship, trade_off):
  logits, scale, finite = data.draw(matrices((4, 4)))
  labels = np.array([0, 1, 2, 1])
  check_loss(
      regularizers.cotuning_loss,
      (logits, labels, relationship),
      trade_off=trade_off,
      error=None if finite else "source_logits must be finite",
      may_overflow=scale >= 1e19,
  )


def test_regularizers_report_overflow_instead_of_infinity():
  huge = np.full((2, 2), 3e30, np.float32)
  with pytest.raises(ValueError, match="l2_sp overflows.*params"):
    regularizers.l2_sp({"w": huge}, {})
  with pytest.raises(ValueError, match="batch_spectral_shrinkage overflows"):
    regularizers.batch_spectral_shrinkage(
        huge * np.eye(2, dtype=np.float32), k=2
    )
  # Under jit there is no check: the value is what float32 gives.
  assert np.isinf(jax.jit(lambda w: regularizers.l2_sp({"w": w}, {}))(huge))


def test_cotuning_loss_with_underflowing_probabilities_is_finite():
  # Logits spread by 1e38: log-probabilities of -inf where the soft label is
  # 0 added 0 · inf = NaN before; now they add 0.
  logits = np.array([[3e38, -3e38]], np.float32)
  value = regularizers.cotuning_loss(
      logits, np.array([0]), np.array([[1.0, 0.0]], np.float32)
  )
  assert float(value) == 0.0


# --- params tree utilities: properties -----------------------------------------

KEYS = st.sampled_from(("a", "b", "conv", "head", "kernel", "0"))
LEAVES = st.integers(0, 99).map(lambda v: np.full((2,), v, np.float32))
TREES = st.dictionaries(
    KEYS,
    st.recursive(
        LEAVES,
        lambda children: st.dictionaries(
            KEYS, children, min_size=1, max_size=3
        ),
        max_leaves=6,
    ),
    min_size=1,
    max_size=3,
)
PATTERNS = ("a/.*", ".*/kernel", "head/.*", "conv", ".*b.*", "0/.*", "[ab]")
RULE_VALUES = (None, "frozen", 1.0, 0.5, 2.0)
RULES = st.lists(
    st.tuples(st.sampled_from(PATTERNS), st.sampled_from(RULE_VALUES)),
    max_size=4,
).flatmap(
    lambda rules: st.sampled_from(RULE_VALUES).map(
        lambda last: rules + [(".*", last)]
    )
)


def tree_paths(tree, prefix=()):
  """``{path tuple: leaf}``, written independently of tljax."""
  paths = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      paths.update(tree_paths(value, prefix + (key,)))
    else:
      paths[prefix + (key,)] = value
  return paths


def assert_same_tree(first, second):
  assert jax.tree.structure(first) == jax.tree.structure(second)
  for a, b in zip(jax.tree.leaves(first), jax.tree.leaves(second)):
    np.testing.assert_array_equal(a, b)


def first_match(name, rules):
  return next(value for pattern, value in rules if re.fullmatch(pattern, name))


@hypothesis.given(TREES)
def test_flatten_unflatten_round_trip(tree):
  flat = params_lib.flatten(tree)
  expected = {"/".join(path): leaf for path, leaf in tree_paths(tree).items()}
  assert flat.keys() == expected.keys()
  for name, leaf in flat.items():
    assert leaf is expected[name]
  assert_same_tree(params_lib.unflatten(flat), tree)
  assert params_lib.flatten(params_lib.unflatten(flat)).keys() == flat.keys()
  # path_name of jax's own key paths gives the same names.
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  assert [params_lib.path_name(path) for path, _ in leaves] == list(flat)


@hypothesis.given(TREES, RULES)
def test_split_merge_round_trip_and_first_rule_wins(tree, rules):
  values = params_lib.match_rules(tree, rules)
  flat = params_lib.flatten(tree)
  assert values == {name: first_match(name, rules) for name in flat}
  trainable, frozen = params_lib.split(tree, rules)
  flat_trainable = params_lib.flatten(trainable)
  flat_frozen = params_lib.flatten(frozen)
  assert not set(flat_trainable) & set(flat_frozen)
  assert set(flat_frozen) == {
      name for name in flat if first_match(name, rules) in (None, "frozen")
  }
  assert_same_tree(params_lib.merge(trainable, frozen), tree)
  assert_same_tree(params_lib.merge(frozen, trainable), tree)
  # The split's trainable part gets its rules' multipliers, times LLRD.
  depth_rules = [("head/.*", 2), ("a/.*", 0), (".*", 1)]
  multipliers = params_lib.flatten(
      params_lib.learning_rate_multipliers(
          trainable, rules, layer_decay=0.5, depth_rules=depth_rules
      )
  )
  if flat_trainable:
    top = max(first_match(name, depth_rules) for name in flat_trainable)
    for name, multiplier in multipliers.items():
      assert multiplier == pytest.approx(
          first_match(name, rules)
          * 0.5 ** (top - first_match(name, depth_rules))
      )
  assert multipliers.keys() == flat_trainable.keys()


@hypothesis.given(TREES, st.lists(st.sampled_from(PATTERNS), max_size=3))
def test_transferred_names_and_merge_pretrained(tree, dont_load):
  names = set(params_lib.flatten(tree))
  kept = {
      name
      for name in names
      if any(re.fullmatch(pattern, name) for pattern in dont_load)
  }
  assert params_lib.transferred_names(tree, dont_load) == names - kept
  loaded = jax.tree.map(lambda leaf: leaf + 1, tree)
  used = [
      pattern
      for pattern in dont_load
      if any(re.fullmatch(pattern, name) for name in names)
  ]
  merged = params_lib.flatten(
      params_lib.merge_pretrained(tree, loaded, dont_load=used)
  )
  flat, flat_loaded = params_lib.flatten(tree), params_lib.flatten(loaded)
  for name, leaf in merged.items():
    np.testing.assert_array_equal(
        leaf, flat[name] if name in kept else flat_loaded[name]
    )
  if len(used) < len(dont_load):  # a pattern matching nothing is a typo
    with pytest.raises(ValueError, match="dont_load"):
      params_lib.merge_pretrained(tree, loaded, dont_load=dont_load)


@hypothesis.given(
    st.one_of(
        st.none(),
        st.text(max_size=8),
        st.integers(),
        st.floats(allow_nan=False),
        st.sampled_from(
            ("frozen", "Frozen", " frozen", "freeze", "None", "null")
        ),
    )
)
def test_is_frozen_property(value):
  near_miss = (
      isinstance(value, str)
      and value != "frozen"
      and value.strip().lower() in ("frozen", "freeze", "none", "null")
  )
  if near_miss:
    with pytest.raises(ValueError, match="value"):
      params_lib.is_frozen(value)
  else:
    assert params_lib.is_frozen(value) is (value is None or value == "frozen")


@hypothesis.given(
    st.dictionaries(KEYS, st.sampled_from((1.0, 0.5, 0.25)), min_size=1)
)
def test_scale_by_multipliers_scales_each_leaf(multipliers):
  updates = {name: jnp.ones(2) for name in multipliers}
  transform = params_lib.scale_by_multipliers(multipliers)
  scaled, _ = transform.update(updates, transform.init(updates))
  for name, multiplier in multipliers.items():
    np.testing.assert_allclose(scaled[name], multiplier)


# --- bad inputs ------------------------------------------------------------------

RNG = np.random.default_rng(0)
FEATURES = RNG.normal(size=(4, 3)).astype(np.float32)
LOGITS = RNG.normal(size=(4, 5)).astype(np.float32)
PARAMS = {
    "backbone": {"kernel": np.ones((2, 3), np.float32)},
    "head": {"kernel": np.zeros((3, 2), np.float32)},
}
MAPS = np.ones((2, 3, 3, 4), np.float32)
PROBABILITIES = np.full((6, 4), 0.25, np.float32)
LABELS = np.array([0, 1, 2, 0, 1, 2])
RELATIONSHIP = np.full((3, 4), 0.25, np.float32)
MISSING_DIR = os.path.join(os.sep, "nonexistent-tljax-run", "work")


def lr_multipliers(**kwargs):
  arguments = dict(trainable=PARAMS, rules=[(".*", 1.0)])
  arguments.update(kwargs)
  return params_lib.learning_rate_multipliers(
      arguments.pop("trainable"), arguments.pop("rules"), **arguments
  )


def merge_pretrained(**kwargs):
  arguments = dict(init_params=PARAMS, loaded_params=PARAMS, dont_load=())
  arguments.update(kwargs)
  return params_lib.merge_pretrained(
      arguments.pop("init_params"), arguments.pop("loaded_params"), **arguments
  )


def reverse_relationship(**kwargs):
  arguments = dict(
      source_probabilities=PROBABILITIES,
      target_labels=LABELS,
      validation_probabilities=PROBABILITIES,
      validation_labels=LABELS,
      num_target_classes=3,
  )
  arguments.update(kwargs)
  return regularizers.cotuning_reverse_relationship(
      arguments.pop("source_probabilities"),
      arguments.pop("target_labels"),
      arguments.pop("validation_probabilities"),
      arguments.pop("validation_labels"),
      **arguments,
  )


RELATIONAL_BAD = [
    pytest.param(
        lambda: relational.rkd_distance(FEATURES > 0, FEATURES),
        "student",
        id="rkd_distance-bool-features",
    ),
    pytest.param(
        lambda: relational.rkd_distance(FEATURES, None),
        "teacher",
        id="rkd_distance-none-teacher",
    ),
    pytest.param(
        lambda: relational.rkd_angle(np.zeros((4, 0)), FEATURES),
        "student",
        id="rkd_angle-empty-dim",
    ),
    pytest.param(
        lambda: relational.rkd_angle(FEATURES, "features"),
        "teacher",
        id="rkd_angle-string-teacher",
    ),
    pytest.param(
        lambda: relational.rkd(FEATURES, FEATURES, distance_weight=True),
        "distance_weight",
        id="rkd-bool-weight",
    ),
    pytest.param(
        lambda: relational.rkd(FEATURES, FEATURES, angle_weight=np.ones(2)),
        "angle_weight",
        id="rkd-array-weight",
    ),
    pytest.param(
        lambda: relational.rkd(
            FEATURES, FEATURES, distance_weight=float("inf")
        ),
        "distance_weight",
        id="rkd-inf-weight",
    ),
    pytest.param(
        lambda: relational.similarity_preserving(FEATURES, np.zeros((0, 3))),
        "teacher",
        id="similarity_preserving-empty-batch",
    ),
    pytest.param(
        lambda: relational.similarity_preserving(
            FEATURES.astype(np.complex64), FEATURES
        ),
        "student",
        id="similarity_preserving-complex",
    ),
    pytest.param(
        lambda: relational.knowledge_distillation(
            LOGITS, LOGITS, temperature=float("nan")
        ),
        "temperature",
        id="knowledge_distillation-nan-temperature",
    ),
    pytest.param(
        lambda: relational.knowledge_distillation(
            LOGITS, LOGITS, temperature=1e30
        ),
        "temperature",
        id="knowledge_distillation-overflowing-temperature",
    ),
    pytest.param(
        lambda: relational.knowledge_distillation(
            np.array([[3e38, -3e38]], np.float32),
            np.array([[-3e38, 3e38]], np.float32),
        ),
        "student_logits",
        id="knowledge_distillation-overflowing-logits",
    ),
    pytest.param(
        lambda: relational.knowledge_distillation(LOGITS[:, :, None], LOGITS),
        "student_logits",
        id="knowledge_distillation-3d-logits",
    ),
]

PARAMS_BAD = [
    # tree utilities
    pytest.param(
        lambda: params_lib.path_name("a/b"), "path", id="path_name-string"
    ),
    pytest.param(
        lambda: params_lib.path_name(None), "path", id="path_name-none"
    ),
    pytest.param(
        lambda: params_lib.flatten([np.ones(2)]), "tree", id="flatten-list"
    ),
    pytest.param(
        lambda: params_lib.flatten(np.ones(2)), "tree", id="flatten-bare-leaf"
    ),
    pytest.param(
        lambda: params_lib.flatten({"a/b": 1.0, "a": {"b": 2.0}}),
        "tree",
        id="flatten-slash-key",
    ),
    pytest.param(
        lambda: params_lib.flatten({1: 1.0, "1": 2.0}),
        "tree",
        id="flatten-mixed-keys",
    ),
    pytest.param(
        lambda: params_lib.unflatten({"a": 1.0, "a/b": 2.0}),
        "flat",
        id="unflatten-leaf-and-parent",
    ),
    pytest.param(
        lambda: params_lib.unflatten({"a/b": 1.0, "a": 2.0}),
        "flat",
        id="unflatten-parent-then-leaf",
    ),
    pytest.param(
        lambda: params_lib.unflatten({("a", "b"): 1.0}),
        "flat",
        id="unflatten-tuple-key",
    ),
    pytest.param(
        lambda: params_lib.unflatten([("a", 1.0)]), "flat", id="unflatten-list"
    ),
    pytest.param(
        lambda: params_lib.match_rules(PARAMS, [("(", 1.0)]),
        r"rules\[0\].*invalid regex",
        id="match_rules-bad-regex",
    ),
    pytest.param(
        lambda: params_lib.match_rules(PARAMS, []),
        "rules",
        id="match_rules-empty-rules",
    ),
    pytest.param(
        lambda: params_lib.match_rules(PARAMS, [".*"]),
        r"rules\[0\]",
        id="match_rules-bare-string-rule",
    ),
    pytest.param(
        lambda: params_lib.match_rules(PARAMS, [(1, None)]),
        r"rules\[0\]",
        id="match_rules-non-string-regex",
    ),
    pytest.param(
        lambda: params_lib.match_rules(None, [(".*", None)]),
        "tree",
        id="match_rules-none-tree",
    ),
    pytest.param(
        lambda: params_lib.is_frozen("Frozen"),
        "value",
        id="is_frozen-capitalised",
    ),
    pytest.param(
        lambda: params_lib.is_frozen("None"),
        "value",
        id="is_frozen-string-none",
    ),
    pytest.param(
        lambda: params_lib.split(PARAMS, [(".*", "freeze")]),
        "rules",
        id="split-near-frozen-value",
    ),
    pytest.param(
        lambda: params_lib.split([np.ones(2)], [(".*", None)]),
        "params",
        id="split-list-params",
    ),
    pytest.param(
        lambda: params_lib.split(PARAMS, [("head/.*", None)]),
        "rules",
        id="split-unmatched",
    ),
    pytest.param(
        lambda: params_lib.merge(PARAMS, {"head": {"kernel": 1.0}}),
        "trainable and frozen share",
        id="merge-overlap",
    ),
    pytest.param(
        lambda: params_lib.merge({"head": 1.0}, {"head": {"bias": 1.0}}),
        "trainable and frozen",
        id="merge-leaf-and-subtree",
    ),
    pytest.param(
        lambda: params_lib.merge(PARAMS, None), "frozen", id="merge-none-frozen"
    ),
    # learning-rate rules
    pytest.param(
        lambda: params_lib.depths(PARAMS, "backbone"),
        "depth_rules",
        id="depths-string-rules",
    ),
    pytest.param(
        lambda: params_lib.depths(PARAMS, [("[", 0)]),
        "depth_rules",
        id="depths-bad-regex",
    ),
    pytest.param(
        lambda: params_lib.depths(PARAMS, lambda name: 1.5),
        "depth_rules",
        id="depths-float-depth",
    ),
    pytest.param(
        lambda: params_lib.depths(PARAMS, [(".*", True)]),
        "depth_rules",
        id="depths-bool-depth",
    ),
    pytest.param(
        lambda: params_lib.depths(None, [(".*", 0)]),
        "params",
        id="depths-none-params",
    ),
    pytest.param(
        lambda: lr_multipliers(layer_decay="0.5", depth_rules=[(".*", 0)]),
        "layer_decay",
        id="learning_rate_multipliers-string-decay",
    ),
    pytest.param(
        lambda: lr_multipliers(layer_decay=True, depth_rules=[(".*", 0)]),
        "layer_decay",
        id="learning_rate_multipliers-bool-decay",
    ),
    pytest.param(
        lambda: lr_multipliers(
            layer_decay=float("nan"), depth_rules=[(".*", 0)]
        ),
        "layer_decay",
        id="learning_rate_multipliers-nan-decay",
    ),
    pytest.param(
        lambda: lr_multipliers(rules=[(".*", float("inf"))]),
        "rules",
        id="learning_rate_multipliers-inf-multiplier",
    ),
    pytest.param(
        lambda: lr_multipliers(rules=[(".*", None)]),
        "rules freeze",
        id="learning_rate_multipliers-frozen",
    ),
    pytest.param(
        lambda: lr_multipliers(rules=[("*", 1.0)]),
        "rules",
        id="learning_rate_multipliers-bad-regex",
    ),
    pytest.param(
        lambda: lr_multipliers(trainable=np.ones(3)),
        "trainable",
        id="learning_rate_multipliers-array-trainable",
    ),
    pytest.param(
        lambda: lr_multipliers(layer_decay=0.5, depth_rules="a"),
        "depth_rules",
        id="learning_rate_multipliers-string-depth-rules",
    ),
    pytest.param(
        lambda: params_lib.scale_by_multipliers({"w": -1.0}),
        "multipliers",
        id="scale_by_multipliers-negative",
    ),
    pytest.param(
        lambda: params_lib.scale_by_multipliers({"w": "fast"}),
        "multipliers",
        id="scale_by_multipliers-string",
    ),
    pytest.param(
        lambda: params_lib.scale_by_multipliers([1.0]),
        "multipliers",
        id="scale_by_multipliers-list",
    ),
    pytest.param(
        lambda: params_lib.with_learning_rate_multipliers(
            optax.sgd, PARAMS, [(".*", 1.0)]
        ),
        "optimizer",
        id="with_learning_rate_multipliers-factory",
    ),
    pytest.param(
        lambda: params_lib.with_learning_rate_multipliers(
            optax.sgd(0.1), PARAMS, [(".*", 0.0)]
        ),
        "rules",
        id="with_learning_rate_multipliers-zero-multiplier",
    ),
    pytest.param(
        lambda: params_lib.with_learning_rate_multipliers(
            optax.sgd(0.1),
            PARAMS,
            [(".*", 1.0)],
            layer_decay=0.0,
            depth_rules=[(".*", 0)],
        ),
        "layer_decay",
        id="with_learning_rate_multipliers-zero-decay",
    ),
    # restore
    pytest.param(
        lambda: params_lib.transferred_names(PARAMS, ["head/("]),
        "dont_load",
        id="transferred_names-bad-regex",
    ),
    pytest.param(
        lambda: params_lib.transferred_names(PARAMS, 3),
        "dont_load",
        id="transferred_names-int-patterns",
    ),
    pytest.param(
        lambda: params_lib.transferred_names(PARAMS, [b"head"]),
        "dont_load",
        id="transferred_names-bytes-pattern",
    ),
    pytest.param(
        lambda: params_lib.transferred_names("params", ()),
        "params",
        id="transferred_names-string-params",
    ),
    pytest.param(
        lambda: params_lib.resolve_checkpoint_dir(None),
        "path",
        id="resolve_checkpoint_dir-none",
    ),
    pytest.param(
        lambda: params_lib.resolve_checkpoint_dir(""),
        "path",
        id="resolve_checkpoint_dir-empty",
    ),
    pytest.param(
        lambda: params_lib.resolve_checkpoint_dir(b"/tmp"),
        "path",
        id="resolve_checkpoint_dir-bytes",
    ),
    pytest.param(
        lambda: params_lib.read_checkpoint(MISSING_DIR),
        "checkpoint_dir",
        id="read_checkpoint-missing-dir",
    ),
    pytest.param(
        lambda: params_lib.read_checkpoint(__file__),
        "checkpoint_dir",
        id="read_checkpoint-a-file",
    ),
    pytest.param(
        lambda: params_lib.read_checkpoint(3),
        "checkpoint_dir",
        id="read_checkpoint-int-dir",
    ),
    pytest.param(
        lambda: params_lib.read_checkpoint(MISSING_DIR, step=-1),
        "step",
        id="read_checkpoint-negative-step",
    ),
    pytest.param(
        lambda: params_lib.read_checkpoint(MISSING_DIR, step="5"),
        "step",
        id="read_checkpoint-string-step",
    ),
    pytest.param(
        lambda: params_lib.load_pretrained(PARAMS, MISSING_DIR),
        "checkpoint_dir",
        id="load_pretrained-missing-dir",
    ),
    pytest.param(
        lambda: params_lib.load_pretrained([1.0], MISSING_DIR),
        "init_params",
        id="load_pretrained-list-params",
    ),
    pytest.param(
        lambda: params_lib.load_pretrained(
            PARAMS, MISSING_DIR, zero_init=["head/["]
        ),
        "zero_init",
        id="load_pretrained-bad-zero-init",
    ),
    pytest.param(
        lambda: params_lib.load_pretrained(
            PARAMS, MISSING_DIR, init_model_state=[1.0]
        ),
        "init_model_state",
        id="load_pretrained-list-model-state",
    ),
    pytest.param(
        lambda: params_lib.load_pretrained(PARAMS, MISSING_DIR, step=1.5),
        "step",
        id="load_pretrained-float-step",
    ),
    pytest.param(
        lambda: merge_pretrained(loaded_params=None),
        "loaded_params",
        id="merge_pretrained-none-loaded",
    ),
    pytest.param(
        lambda: merge_pretrained(init_params="init"),
        "init_params",
        id="merge_pretrained-string-init",
    ),
    pytest.param(
        lambda: merge_pretrained(zero_init=["haed/.*"]),
        "zero_init",
        id="merge_pretrained-unused-zero-init",
    ),
    pytest.param(
        lambda: merge_pretrained(dont_load=["("]),
        "dont_load",
        id="merge_pretrained-bad-dont-load",
    ),
    pytest.param(
        lambda: merge_pretrained(loaded_model_state=(1,)),
        "loaded_model_state",
        id="merge_pretrained-tuple-model-state",
    ),
    pytest.param(
        lambda: merge_pretrained(
            loaded_params={
                "backbone": {"kernel": np.ones((2, 3), np.float32)},
                "head": {"kernel": np.zeros((3, 2), np.float64)},
            }
        ),
        "head/kernel",
        id="merge_pretrained-dtype-mismatch",
    ),
    # regularizers
    pytest.param(
        lambda: regularizers.l2_sp({"w": np.array([1.0, np.nan])}, {}),
        "params path 'w' must be finite",
        id="l2_sp-nan-param",
    ),
    pytest.param(
        lambda: regularizers.l2_sp(
            {"w": np.ones(2)}, {"w": np.array([np.inf, 1.0])}
        ),
        "start_params path 'w' must be finite",
        id="l2_sp-inf-start",
    ),
    pytest.param(
        lambda: regularizers.l2_sp({"w": np.array(["a"])}, {}),
        "params path 'w' must be an array of numbers",
        id="l2_sp-string-leaf",
    ),
    pytest.param(
        lambda: regularizers.l2_sp({"w/x": np.ones(2)}, {}),
        "params",
        id="l2_sp-slash-key",
    ),
    pytest.param(
        lambda: regularizers.l2_sp(PARAMS, PARAMS, alpha=True),
        "alpha",
        id="l2_sp-bool-alpha",
    ),
    pytest.param(
        lambda: regularizers.delta(
            np.ones((2, 0, 3, 4)), np.ones((2, 0, 3, 4))
        ),
        "feature_maps",
        id="delta-empty-axis",
    ),
    pytest.param(
        lambda: regularizers.delta(MAPS * np.nan, MAPS),
        "feature_maps must be finite",
        id="delta-nan-maps",
    ),
    pytest.param(
        lambda: regularizers.delta(MAPS, MAPS * np.inf),
        "start_feature_maps must be finite",
        id="delta-inf-start",
    ),
    pytest.param(
        lambda: regularizers.delta(MAPS, MAPS, channel_weights=-np.ones(4)),
        "channel_weights",
        id="delta-negative-weights",
    ),
    pytest.param(
        lambda: regularizers.delta(
            MAPS, MAPS, channel_weights=np.full(4, np.nan)
        ),
        "channel_weights",
        id="delta-nan-weights",
    ),
    pytest.param(
        lambda: regularizers.delta(MAPS > 0, MAPS),
        "feature_maps",
        id="delta-bool-maps",
    ),
    pytest.param(
        lambda: regularizers.delta(MAPS * 1e30, -MAPS * 1e30),
        "feature_maps",
        id="delta-overflow",
    ),
    pytest.param(
        lambda: regularizers.delta_channel_attention(
            lambda mask: jnp.sum(mask) * jnp.nan, 3
        ),
        "loss_fn",
        id="delta_channel_attention-nan-loss",
    ),
    pytest.param(
        lambda: regularizers.delta_channel_attention(
            lambda mask: jnp.sum(mask), 3, standardize="yes"
        ),
        "standardize",
        id="delta_channel_attention-string-standardize",
    ),
    pytest.param(
        lambda: regularizers.delta_channel_attention(
            lambda mask: jnp.sum(mask), 3, temperature=0.0
        ),
        "temperature",
        id="delta_channel_attention-zero-temperature",
    ),
    pytest.param(
        lambda: regularizers.delta_channel_attention(
            lambda mask: jnp.sum(mask), 0
        ),
        "num_channels",
        id="delta_channel_attention-no-channels",
    ),
    pytest.param(
        lambda: regularizers.batch_spectral_shrinkage(
            np.where(FEATURES > 0, np.inf, FEATURES)
        ),
        "features must be finite",
        id="batch_spectral_shrinkage-inf",
    ),
    pytest.param(
        lambda: regularizers.batch_spectral_shrinkage(
            FEATURES.astype(np.complex64)
        ),
        "features",
        id="batch_spectral_shrinkage-complex",
    ),
    pytest.param(
        lambda: regularizers.batch_spectral_shrinkage(FEATURES, k=1.0),
        "k must be an int",
        id="batch_spectral_shrinkage-float-k",
    ),
    pytest.param(
        lambda: regularizers.batch_spectral_shrinkage(
            FEATURES, eta=float("nan")
        ),
        "eta",
        id="batch_spectral_shrinkage-nan-eta",
    ),
    pytest.param(
        lambda: regularizers.cotuning_relationship(
            PROBABILITIES * 2, LABELS, num_target_classes=3
        ),
        "source_probabilities",
        id="cotuning_relationship-not-distributions",
    ),
    pytest.param(
        lambda: regularizers.cotuning_relationship(
            PROBABILITIES, LABELS.astype(np.float32), num_target_classes=3
        ),
        "target_labels",
        id="cotuning_relationship-float-labels",
    ),
    pytest.param(
        lambda: regularizers.cotuning_relationship(
            PROBABILITIES, LABELS, num_target_classes=4
        ),
        "target_labels has no example",
        id="cotuning_relationship-empty-class",
    ),
    pytest.param(
        lambda: regularizers.cotuning_relationship(
            "probabilities", LABELS, num_target_classes=3
        ),
        "source_probabilities",
        id="cotuning_relationship-string",
    ),
    pytest.param(
        lambda: reverse_relationship(inverse_regularizations=()),
        "inverse_regularizations",
        id="cotuning_reverse_relationship-no-strengths",
    ),
    pytest.param(
        lambda: reverse_relationship(max_iterations=0),
        "max_iterations",
        id="cotuning_reverse_relationship-zero-iterations",
    ),
    pytest.param(
        lambda: reverse_relationship(validation_labels=LABELS[:5]),
        "validation_labels",
        id="cotuning_reverse_relationship-short-labels",
    ),
    pytest.param(
        lambda: reverse_relationship(
            validation_probabilities=PROBABILITIES * np.nan
        ),
        "validation_probabilities",
        id="cotuning_reverse_relationship-nan-validation",
    ),
    pytest.param(
        lambda: regularizers.cotuning_loss(
            LOGITS[:3, :4] * np.inf, LABELS[:3], RELATIONSHIP
        ),
        "source_logits must be finite",
        id="cotuning_loss-inf-logits",
    ),
    pytest.param(
        lambda: regularizers.cotuning_loss(
            LOGITS[:3, :4], LABELS[:3], RELATIONSHIP * 2
        ),
        "relationship rows must sum to 1",
        id="cotuning_loss-bad-relationship",
    ),
    pytest.param(
        lambda: regularizers.cotuning_loss(
            LOGITS[:3, :4], LABELS[:3], np.zeros((0, 4))
        ),
        "relationship",
        id="cotuning_loss-empty-relationship",
    ),
    pytest.param(
        lambda: regularizers.cotuning_loss(
            LOGITS[:3, :4], LABELS[:3], RELATIONSHIP, trade_off=float("inf")
        ),
        "trade_off",
        id="cotuning_loss-inf-trade-off",
    ),
]


@pytest.mark.parametrize("call, argument", RELATIONAL_BAD + PARAMS_BAD)
def test_bad_input_raises_value_error_naming_the_argument(call, argument):
  with pytest.raises(ValueError, match=argument):
    call()


def test_a_missing_checkpoint_dir_is_also_a_file_not_found_error():
  with pytest.raises(FileNotFoundError, match="checkpoint_dir"):
    params_lib.read_checkpoint(MISSING_DIR)


def test_hyper_parameter_checks_let_tracers_through():
  # A vmapped sweep over the weights stays possible (tracers are unchecked;
  # tests/test_relational.py sweeps the relational ones).
  start = {"backbone": {"kernel": np.zeros((2, 3), np.float32)}}
  swept = jax.vmap(
      lambda alpha: regularizers.l2_sp(PARAMS, start, alpha=alpha)
  )(jnp.array([0.0, 1.0]))
  np.testing.assert_allclose(swept, [0.0, 3.0])  # ½ α ‖1 − 0‖² over 6 entries
