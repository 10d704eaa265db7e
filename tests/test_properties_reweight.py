"""Reliability of tljax.reweight: property-based and bad-input tests (issue 9).

1. Hypothesis properties. Every public estimator, learner and loss, on small
   random data that include degenerate cases — one example, constant
   features, duplicated points, values at ``1e30`` and ``1e-30`` — either
   returns finite, well-formed results (weights of the right shape, in their
   documented range) or raises ``ValueError``; NaN or infinity in the results
   and any other exception type fail. Sizes come from small fixed sets (each
   new shape compiles) and iterative solvers run few iterations.
2. Scale invariance: the kernel estimators on data scaled by ``2**±100``
   (whose squares overflow or underflow float32) give the weights of the
   unscaled data.
3. A table of malformed arguments, one ``pytest.param`` per case, each
   raising a ``ValueError`` that names the argument.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tljax import reweight

# Data kinds: "random" as drawn, "constant" (every row the first one),
# "duplicated" (every row but the last equal to the first), "constant_feature"
# (the first column constant) and "offset" (random values around 1000, whose
# float32 spacing is 6e-5).
KINDS = ("random", "constant", "duplicated", "constant_feature", "offset")
SCALES = (1.0, 1e-30, 1e30)


def _shape_data(values, kind):
  values = np.array(values, np.float32)
  if kind == "constant":
    values[:] = values[0]
  elif kind == "duplicated" and len(values) > 1:
    values[:-1] = values[0]
  elif kind == "constant_feature":
    values[:, 0] = values[0, 0]
  elif kind == "offset":
    values = values + np.float32(1000.0)
  return values


@st.composite
def domains(draw, shapes):
  """``(source, target)`` float32 matrices of a shape drawn from ``shapes``."""
  num_source, num_target, dim = draw(st.sampled_from(shapes))
  values = draw(
      hnp.arrays(
          np.float32,
          (num_source + num_target, dim),
          elements=st.floats(-3, 3, width=32),
      )
  )
  values = _shape_data(values, draw(st.sampled_from(KINDS)))
  values = (values * np.float32(draw(st.sampled_from(SCALES)))).astype(
      np.float32
  )
  return values[:num_source], values[num_source:]


def assert_weights(weights, length):
  weights = np.asarray(weights)
  assert weights.shape == (length,)
  assert np.all(np.isfinite(weights)), weights
  assert np.all(weights >= 0), weights


def finite_or_value_error(function, *args, **kwargs):
  """``function(...)``, or ``None`` if it raised a ValueError (others propagate)."""
  try:
    return function(*args, **kwargs)
  except ValueError:
    return None


# --- Density-ratio estimators --------------------------------------------------------


# Shapes (n_source, n_target, dim): few, and shared between the tests, since
# each new shape compiles. MAIN is every test's ordinary case; ONE has a
# single source example.
MAIN = (5, 4, 2)
ONE = (1, 2, 1)
KMM_ARGUMENTS = dict(B=10.0, rank=2, max_iterations=20, power_iterations=5)
KLIEP_ARGUMENTS = dict(num_centers=3, num_folds=2, max_iterations=3)


@given(
    data=domains([ONE, MAIN]),
    mode=st.sampled_from(["exact", "nystroem"]),
    gamma=st.sampled_from([None, 1e-3, 1.0, 1e3]),
    eps=st.sampled_from([None, 0.0, 0.5]),
)
@settings(max_examples=12)
def test_kmm_weights_are_feasible(data, mode, gamma, eps):
  source, target = data
  # Valid arguments: KMM must not reject any of these data.
  result = reweight.kmm(
      source,
      target,
      gamma=gamma,
      eps=eps,
      kernel_approximation=mode,
      **KMM_ARGUMENTS,
  )
  n = len(source)
  assert_weights(result.weights, n)
  weights = np.asarray(result.weights, np.float64)
  assert np.all(weights <= 10.0 * (1 + 1e-6))
  eps = float(result.eps)
  assert (
      n * (1 - eps) * (1 - 1e-5) <= weights.sum() <= n * (1 + eps) * (1 + 1e-5)
  )
  for value in (result.gamma, result.objective):
    assert np.isfinite(float(value))
  assert float(result.gamma) >= 0


@given(data=domains([ONE, MAIN]), sigmas=st.sampled_from([None, 1.0, 1e-3]))
@settings(max_examples=8)
def test_kliep_weights_have_mean_one_or_are_rejected(data, sigmas):
  source, target = data
  fit = finite_or_value_error(
      reweight.kliep, source, target, sigmas=sigmas, **KLIEP_ARGUMENTS
  )
  if fit is None:
    # Only a fixed width can leave every basis function 0 at the source.
    assert sigmas is not None
    return
  assert_weights(fit.weights, len(source))
  # The KLIEP constraint: the fitted ratio averages 1 over the source.
  assert float(np.mean(fit.weights)) == pytest.approx(1.0, rel=1e-3)
  assert_weights(fit.alpha, fit.centers.shape[0])
  assert np.isfinite(float(fit.sigma)) and float(fit.sigma) >= 0
  assert_weights(fit.ratio(target), len(target))


@given(
    data=domains([ONE, (2, 2, 1), MAIN]),
    grid=st.sampled_from([(None, None), (1.0, 0.1), (1e-3, 1e-3)]),
    alpha=st.sampled_from([0.0, 0.5]),
)
@settings(max_examples=12)
def test_least_squares_weights_are_finite_or_rejected(data, grid, alpha):
  source, target = data
  sigmas, lambdas = grid
  fit = finite_or_value_error(
      reweight.rulsif,
      source,
      target,
      alpha=alpha,
      sigmas=sigmas,
      lambdas=lambdas,
      num_centers=3,
  )
  if fit is None:
    assert len(source) < 2 or len(target) < 2 or sigmas is not None
    return
  assert_weights(fit.weights, len(source))
  assert_weights(fit.alpha, fit.centers.shape[0])
  if alpha > 0:  # the relative ratio is bounded by 1/α; allow for the estimate
    assert np.all(np.asarray(fit.weights) <= 1e4 / alpha)
  assert_weights(fit.ratio(source), len(source))


@given(data=domains([ONE, (2, 2, 1), MAIN]))
@settings(max_examples=6)
def test_ulsif_weights_are_finite_or_rejected(data):
  source, target = data
  fit = finite_or_value_error(
      reweight.ulsif, source, target, sigmas=1.0, lambdas=0.1, num_centers=3
  )
  if fit is None:
    assert len(source) < 2
    return
  assert_weights(fit.weights, len(source))


@given(data=domains([ONE, MAIN]), l2=st.sampled_from([1e-3, 1.0]))
@settings(max_examples=8)
def test_classifier_density_ratio_is_finite_or_rejected(data, l2):
  source, target = data
  ratios = finite_or_value_error(
      reweight.classifier_density_ratio,
      source,
      target,
      evaluation=target,
      l2_regularization=l2,
      max_iterations=10,
  )
  if ratios is None:
    # Two examples per domain are needed; overflow needs a weak penalty.
    assert min(len(source), len(target)) < 2 or l2 < 1
    return
  assert_weights(ratios, len(target))


@given(
    data=domains([(1, 1, 1), MAIN]),
    smoothing=st.sampled_from([0.0, 1.0, 1e300]),
)
@settings(max_examples=12)
def test_nearest_neighbors_weighting_has_mean_one(data, smoothing):
  source, target = data
  weights = reweight.nearest_neighbors_weighting(
      source, target, smoothing=smoothing, block_size=2
  )
  assert_weights(weights, len(source))
  assert float(np.mean(weights)) == pytest.approx(1.0, rel=1e-5)
  counts = np.asarray(
      reweight.nearest_neighbor_counts(source, target, block_size=2)
  )
  assert counts.sum() == len(target)
  assert np.all(counts == np.round(counts))


@pytest.mark.parametrize("exponent", [100, -100])
@pytest.mark.parametrize(
    "estimator",
    [
        lambda s, t: reweight.kmm(s, t, **KMM_ARGUMENTS).weights,
        lambda s, t: reweight.kliep(s, t, **KLIEP_ARGUMENTS).weights,
        lambda s, t: reweight.ulsif(s, t, num_centers=3).weights,
        lambda s, t: reweight.classifier_density_ratio(
            s, t, evaluation=t, max_iterations=10
        ),
        lambda s, t: reweight.nearest_neighbors_weighting(s, t, block_size=2),
    ],
    ids=["kmm", "kliep", "ulsif", "classifier", "nearest_neighbors"],
)
def test_estimators_are_invariant_to_a_power_of_two_scale(estimator, exponent):
  # 2**100 ≈ 1.3e30: the squared distances overflow float32 (and 2**-100
  # ones underflow) unless the estimator rescales; scaling by a power of
  # two is exact, so the weights must be those of the unscaled data.
  rng = np.random.default_rng(3)
  source = rng.normal(size=MAIN[::2]).astype(np.float32)
  target = (0.5 + rng.normal(size=MAIN[1:])).astype(np.float32)
  expected = np.asarray(estimator(source, target))
  scale = np.float32(2.0**exponent)
  scaled = np.asarray(estimator(source * scale, target * scale))
  assert np.all(np.isfinite(expected)) and np.ptp(expected) > 0
  np.testing.assert_allclose(scaled, expected, rtol=1e-4, atol=1e-6)


def test_default_widths_of_constant_data_are_positive():
  # All points coincide: the median distance is 0, the fallback width 1 in
  # the rescaled units (the data's own scale), never σ = 0.
  constant = np.full((5, 2), 7.0, np.float32)
  fit = reweight.kliep(constant, constant[:4], **KLIEP_ARGUMENTS)
  assert 0 < float(fit.sigma) < np.inf
  np.testing.assert_allclose(fit.weights, 1.0, rtol=1e-5)
  result = reweight.kmm(constant, constant[:4], **KMM_ARGUMENTS)
  assert 0 < float(result.gamma) < np.inf
  np.testing.assert_allclose(result.weights, 1.0, rtol=1e-5)


@given(
    size=st.sampled_from([1, 5]),
    scale=st.sampled_from([1.0, 1e-30, 1e30]),
    upper=st.sampled_from([1e-3, 1.0, 1e3]),
    sums=st.sampled_from([(0.0, 0.0), (0.2, 0.5), (1.0, 1.0), (0.0, 2.0)]),
    data=st.data(),
)
def test_project_box_slab_lands_in_the_set(size, scale, upper, sums, data):
  values = data.draw(
      hnp.arrays(np.float32, (size,), elements=st.floats(-3, 3, width=32))
  )
  values = (values * np.float32(scale)).astype(np.float32)
  lower_sum, upper_sum = sums[0] * size * upper, sums[1] * size * upper
  projection = np.asarray(
      reweight.project_box_slab(values, upper, lower_sum, upper_sum), np.float64
  )
  assert projection.shape == (size,)
  assert np.all(np.isfinite(projection))
  assert np.all(projection >= 0) and np.all(projection <= upper * (1 + 1e-6))
  # The shift τ is a float32 number of the values' scale, so the projected
  # entries (v − τ) carry its rounding, 2⁻²⁴ max|v| each, however small the
  # box (v = 1 projected onto a box of 1e-3 lands within 6e-8, not 1e-8).
  slack = 1e-5 * size * upper + size * 2.0**-23 * float(np.max(np.abs(values)))
  assert lower_sum - slack <= projection.sum() <= upper_sum + slack


# --- Losses -----------------------------------------------------------------------------


@given(
    shape=st.sampled_from([(1, 1), (3, 2)]),
    scale=st.sampled_from([1.0, 1e-30, 1e30]),
    weight_scale=st.sampled_from([0.0, 1.0, 1e30]),
    data=st.data(),
)
def test_weighted_losses_are_finite_or_rejected_and_jit_agrees(
    shape, scale, weight_scale, data
):
  num_examples, num_classes = shape
  logits = data.draw(
      hnp.arrays(np.float32, shape, elements=st.floats(-3, 3, width=32))
  )
  logits = (logits * np.float32(scale)).astype(np.float32)
  labels = np.asarray(
      data.draw(
          st.lists(
              st.integers(0, num_classes - 1),
              min_size=num_examples,
              max_size=num_examples,
          )
      )
  )
  weights = np.float32(weight_scale) * data.draw(
      hnp.arrays(
          np.float32, (num_examples,), elements=st.floats(0, 2, width=32)
      )
  )
  for loss, arguments in (
      (reweight.weighted_cross_entropy, (logits, labels, weights)),
      (
          reweight.weighted_squared_error,
          (logits, logits[::-1] * np.float32(0.5), weights),
      ),
  ):
    value = finite_or_value_error(loss, *arguments)
    traced = jax.jit(loss)(*arguments)  # value checks skipped under jit
    if value is None:
      assert not np.isfinite(float(traced))  # rejected only for an overflow
      continue
    assert np.isfinite(float(value)) and float(value) >= 0
    np.testing.assert_allclose(float(traced), float(value), rtol=1e-5)


# --- Boosting ---------------------------------------------------------------------------


@st.composite
def labelled_domains(draw, integer):
  # 8 examples in all: the JAX learners pad to 8 rows, so one compilation.
  source, target = draw(domains([(4, 4, 2)]))
  labels = draw(
      hnp.arrays(
          np.float64,
          (len(source) + len(target),),
          elements=st.sampled_from([0.0, 1.0]) if integer else st.floats(-3, 3),
      )
  )
  if not integer:
    labels = labels * draw(st.sampled_from([1.0, 1e30, 1e-30]))
  return source, labels[: len(source)], target, labels[len(source) :]


@given(data=labelled_domains(integer=True))
@settings(max_examples=6)
def test_tradaboost_predicts_known_classes_or_rejects(data):
  source, source_labels, target, target_labels = data
  result = finite_or_value_error(
      reweight.tradaboost,
      source,
      source_labels.astype(int),
      target,
      target_labels.astype(int),
      num_rounds=2,
      learner=reweight.WeightedLogisticRegression(max_iterations=10),
  )
  if result is None:
    return
  assert np.all(np.isfinite(result.weights)) and np.all(result.weights >= 0)
  assert np.all(np.isfinite(result.betas)) and np.all(result.betas > 0)
  predictions = result.predict(np.concatenate([source, target]))
  assert set(predictions.tolist()) <= set(result.classes.tolist())


@given(data=labelled_domains(integer=False))
@settings(max_examples=6)
def test_regression_boosting_predictions_are_finite(data):
  source, source_labels, target, target_labels = data
  inputs = np.concatenate([source, target])
  labels = np.concatenate([source_labels, target_labels])
  model = reweight.adaboost_r2(inputs, labels, num_rounds=2)
  predictions = model.predict(inputs)
  assert predictions.shape == (len(inputs),) and np.all(
      np.isfinite(predictions)
  )
  assert np.all(
      np.isfinite(model.weights)
  ) and model.weights.sum() == pytest.approx(1.0)
  result = reweight.tradaboost_r2(
      source,
      source_labels,
      target,
      target_labels,
      num_steps=2,
      num_rounds=2,
      num_folds=2,
  )
  assert np.all(np.isfinite(result.predict(target)))
  assert np.all(np.isfinite(result.cv_errors)) and np.all(result.cv_errors >= 0)
  np.testing.assert_allclose(result.weight_history.sum(axis=1), 1.0)


@given(data=labelled_domains(integer=False))
@settings(max_examples=8)
def test_jax_learners_fit_finite_models(data):
  source, source_labels, target, _ = data
  ridge = reweight.WeightedRidge().fit(source, source_labels)
  assert np.all(np.isfinite(ridge.coef_)) and np.isfinite(ridge.intercept_)
  assert np.all(np.isfinite(ridge.predict(target)))
  classes = (source_labels > np.median(source_labels)).astype(int)
  logistic = finite_or_value_error(
      reweight.WeightedLogisticRegression(max_iterations=10).fit,
      source,
      classes,
  )
  if logistic is None:
    return
  probabilities = logistic.predict_proba(target)
  assert np.all(np.isfinite(probabilities))
  np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)


def test_weighted_ridge_is_invariant_to_the_scale_of_its_data():
  rng = np.random.default_rng(0)
  inputs = rng.normal(size=(12, 2))
  labels = inputs @ np.array([2.0, -1.0]) + 0.5 + 0.1 * rng.normal(size=12)
  # λ scales with the squared input scale for the same solution.
  reference = reweight.WeightedRidge(1e-3).fit(inputs, labels)
  for scale in (2.0**100, 2.0**-100):
    scaled = reweight.WeightedRidge(1e-3 * scale**2).fit(
        inputs * scale, labels * scale
    )
    np.testing.assert_allclose(scaled.coef_, reference.coef_, rtol=1e-4)
    assert scaled.intercept_ / scale == pytest.approx(
        reference.intercept_, rel=1e-4
    )


@given(
    data=domains([MAIN]),
    name=st.sampled_from(["nearest_neighbors_weighting", "uniform", "kmm"]),
)
@settings(max_examples=6)
def test_facade_predictions_are_finite_or_rejected(data, name):
  source, target = data
  labels = np.linspace(-1.0, 1.0, len(source))
  kwargs = {
      "kmm": KMM_ARGUMENTS,
      "nearest_neighbors_weighting": {"block_size": 2},
      "uniform": {},
  }[name]
  model = finite_or_value_error(
      reweight.ImportanceWeightedRegressor(name, **kwargs).fit,
      source,
      labels,
      target,
  )
  if model is None:
    return
  assert_weights(model.weights_, len(source))
  assert np.all(np.isfinite(model.predict(target)))
  assert np.isfinite(model.score(target, np.zeros(len(target))))


# --- Bad input: one case per row ------------------------------------------------------

_RNG = np.random.default_rng(11)
S = _RNG.normal(size=(6, 2)).astype(np.float32)
T = (0.5 + _RNG.normal(size=(5, 2))).astype(np.float32)
Y = np.array([0, 1, 0, 1, 1, 0])
YT = np.array([1, 0, 1, 0, 1])
R = S[:, 0] * 2.0 + 0.5
RT = T[:, 0] * 2.0


def _with(array, index, value):
  array = np.array(array)
  array[index] = value
  return array


def _fit():
  return reweight.DensityRatioFit(
      weights=jnp.ones(6),
      alpha=jnp.ones(3),
      centers=jnp.asarray(T[:3]),
      sigma=jnp.asarray(1.0),
      regularization=jnp.asarray(0.0),
      cv_scores=jnp.full(1, jnp.nan),
  )


class _NoPredict:

  def get_params(self, deep=True):
    return {}

  def fit(self, X, y, sample_weight=None):  # noqa: N803
    return self


def _fitted_regressor():
  return reweight.ImportanceWeightedRegressor("uniform").fit(S, R, T)


def _case(function, argument, case_id):
  return pytest.param(function, argument, id=case_id)


BAD_INPUTS = [
    # kmm
    _case(lambda: reweight.kmm(S[:, 0], T), "source", "kmm-source-1d"),
    _case(
        lambda: reweight.kmm(S, T[:, :1]), "target", "kmm-feature-dims-differ"
    ),
    _case(
        lambda: reweight.kmm(np.zeros((0, 2)), T), "source", "kmm-source-empty"
    ),
    _case(
        lambda: reweight.kmm(S, _with(T, (1, 1), np.nan)),
        "target",
        "kmm-target-nan",
    ),
    _case(
        lambda: reweight.kmm(S.astype(np.complex64), T),
        "source",
        "kmm-source-complex",
    ),
    _case(
        lambda: reweight.kmm(np.array([["a", "b"]]), T),
        "source",
        "kmm-source-strings",
    ),
    _case(
        lambda: reweight.kmm(S, T, gamma=-1.0), "gamma", "kmm-gamma-negative"
    ),
    _case(lambda: reweight.kmm(S, T, gamma=np.inf), "gamma", "kmm-gamma-inf"),
    _case(lambda: reweight.kmm(S, T, gamma=True), "gamma", "kmm-gamma-bool"),
    _case(
        lambda: reweight.kmm(S, T, gamma=1e39),
        "gamma",
        "kmm-gamma-beyond-float32",
    ),
    _case(lambda: reweight.kmm(S, T, B=0.0), "B", "kmm-B-zero"),
    _case(lambda: reweight.kmm(S, T, B=1e38), "B", "kmm-B-sum-overflows"),
    _case(lambda: reweight.kmm(S, T, eps=1.0), "eps", "kmm-eps-one"),
    _case(
        lambda: reweight.kmm(S, T, max_iterations=0),
        "max_iterations",
        "kmm-max-iterations-0",
    ),
    _case(
        lambda: reweight.kmm(S, T, tolerance=0.0),
        "tolerance",
        "kmm-tolerance-zero",
    ),
    _case(
        lambda: reweight.kmm(S, T, power_iterations=0),
        "power_iterations",
        "kmm-power-iterations-0",
    ),
    _case(
        lambda: reweight.kmm(S, T, block_size=0),
        "block_size",
        "kmm-block-size-0",
    ),
    _case(lambda: reweight.kmm(S, T, rank=0), "rank", "kmm-rank-0"),
    _case(
        lambda: reweight.kmm(S, T, materialize_kernel="yes"),
        "materialize_kernel",
        "kmm-materialize-kernel-str",
    ),
    _case(
        lambda: reweight.kmm(S, T, key=np.zeros(3, np.uint32)),
        "key",
        "kmm-key-shape",
    ),
    # kliep
    _case(
        lambda: reweight.kliep(S, T[:, :1]),
        "target",
        "kliep-feature-dims-differ",
    ),
    _case(
        lambda: reweight.kliep(_with(S, (0, 0), np.inf), T),
        "source",
        "kliep-source-inf",
    ),
    _case(
        lambda: reweight.kliep(S, T, sigmas=[]), "sigmas", "kliep-sigmas-empty"
    ),
    _case(
        lambda: reweight.kliep(S, T, sigmas="wide"),
        "sigmas",
        "kliep-sigmas-str",
    ),
    _case(
        lambda: reweight.kliep(S, T, sigmas=1e39),
        "sigmas",
        "kliep-sigmas-beyond-float32",
    ),
    _case(
        lambda: reweight.kliep(S, T, num_centers=0),
        "num_centers",
        "kliep-num-centers-0",
    ),
    _case(
        lambda: reweight.kliep(S, T, max_iterations=0),
        "max_iterations",
        "kliep-max-iterations-0",
    ),
    _case(
        lambda: reweight.kliep(S, T[:1]),
        "num_folds",
        "kliep-fewer-targets-than-folds",
    ),
    _case(
        lambda: reweight.kliep(
            S[:5],
            T[:4],
            sigmas=1e-6,
            num_centers=3,
            num_folds=2,
            max_iterations=3,
        ),
        "sigmas",
        "kliep-sigma-vanishes",
    ),
    # ulsif
    _case(lambda: reweight.ulsif(S[:1], T), "source", "ulsif-one-source-row"),
    _case(lambda: reweight.ulsif(S, T[:, None]), "target", "ulsif-target-3d"),
    _case(
        lambda: reweight.ulsif(S, T, lambdas=0.0),
        "lambdas",
        "ulsif-lambda-zero",
    ),
    _case(
        lambda: reweight.ulsif(S, T, lambdas=1e39),
        "lambdas",
        "ulsif-lambda-beyond-float32",
    ),
    _case(
        lambda: reweight.ulsif(S, T, lambdas=[[0.1]]),
        "lambdas",
        "ulsif-lambdas-2d",
    ),
    _case(
        lambda: reweight.ulsif(S, T, sigmas=np.nan), "sigmas", "ulsif-sigma-nan"
    ),
    _case(
        lambda: reweight.ulsif(S, T, num_centers=1.5),
        "num_centers",
        "ulsif-num-centers-float",
    ),
    # rulsif
    _case(
        lambda: reweight.rulsif(S, T, alpha=1.0), "alpha", "rulsif-alpha-one"
    ),
    _case(
        lambda: reweight.rulsif(S, T, alpha=-0.1),
        "alpha",
        "rulsif-alpha-negative",
    ),
    _case(
        lambda: reweight.rulsif(S, T, alpha="0.1"), "alpha", "rulsif-alpha-str"
    ),
    _case(lambda: reweight.rulsif(S, T[:1]), "target", "rulsif-one-target-row"),
    # classifier_density_ratio
    _case(
        lambda: reweight.classifier_density_ratio(S[:1], T),
        "source",
        "classifier-one-source-row",
    ),
    _case(
        lambda: reweight.classifier_density_ratio(S, T, l2_regularization=0.0),
        "l2_regularization",
        "classifier-l2-zero",
    ),
    _case(
        lambda: reweight.classifier_density_ratio(S, T, max_iterations=0),
        "max_iterations",
        "classifier-max-iterations-0",
    ),
    _case(
        lambda: reweight.classifier_density_ratio(S, T, evaluation=T[:, :1]),
        "evaluation",
        "classifier-evaluation-dims",
    ),
    _case(
        lambda: reweight.classifier_density_ratio(
            S, T, evaluation=_with(T, 0, np.nan)
        ),
        "evaluation",
        "classifier-evaluation-nan",
    ),
    _case(
        lambda: reweight.classifier_density_ratio(S, T, evaluation=T[0]),
        "evaluation",
        "classifier-evaluation-1d",
    ),
    # nearest_neighbors_weighting / nearest_neighbor_counts
    _case(
        lambda: reweight.nearest_neighbors_weighting(S, T, smoothing=-1.0),
        "smoothing",
        "nnew-smoothing-negative",
    ),
    _case(
        lambda: reweight.nearest_neighbors_weighting(S, T, smoothing=np.nan),
        "smoothing",
        "nnew-smoothing-nan",
    ),
    _case(
        lambda: reweight.nearest_neighbors_weighting(S > 0, T),
        "source",
        "nnew-source-bool",
    ),
    _case(
        lambda: reweight.nearest_neighbors_weighting(S, np.zeros((0, 2))),
        "target",
        "nnew-target-empty",
    ),
    _case(
        lambda: reweight.nearest_neighbor_counts(S, T, block_size=0),
        "block_size",
        "counts-block-size-0",
    ),
    _case(
        lambda: reweight.nearest_neighbor_counts(S, T, block_size=2.0),
        "block_size",
        "counts-block-size-float",
    ),
    _case(
        lambda: reweight.nearest_neighbor_counts(S, _with(T, (0, 1), -np.inf)),
        "target",
        "counts-target-inf",
    ),
    # project_box_slab
    _case(
        lambda: reweight.project_box_slab(np.ones((2, 2)), 1.0, 0.0, 4.0),
        "values",
        "project-values-2d",
    ),
    _case(
        lambda: reweight.project_box_slab(np.ones(0), 1.0, 0.0, 1.0),
        "values",
        "project-values-empty",
    ),
    _case(
        lambda: reweight.project_box_slab(
            np.array([1.0, np.nan]), 1.0, 0.0, 2.0
        ),
        "values",
        "project-values-nan",
    ),
    _case(
        lambda: reweight.project_box_slab(["a", "b"], 1.0, 0.0, 2.0),
        "values",
        "project-values-strings",
    ),
    _case(
        lambda: reweight.project_box_slab(
            np.array([3e38, 0.0]), 1e38, 0.0, 1.0
        ),
        "values",
        "project-values-beyond-float32",
    ),
    _case(
        lambda: reweight.project_box_slab(np.ones(3), -1.0, 0.0, 2.0),
        "upper",
        "project-upper-negative",
    ),
    _case(
        lambda: reweight.project_box_slab(np.ones(5), 1e38, 0.0, 1.0),
        "upper",
        "project-upper-sum-overflows",
    ),
    _case(
        lambda: reweight.project_box_slab(np.ones(3), 1.0, -1.0, 2.0),
        "lower_sum",
        "project-lower-sum-negative",
    ),
    _case(
        lambda: reweight.project_box_slab(np.ones(3), 1.0, 4.0, 5.0),
        "lower_sum",
        "project-lower-sum-infeasible",
    ),
    _case(
        lambda: reweight.project_box_slab(np.ones(3), 1.0, 2.0, 1.0),
        "upper_sum",
        "project-upper-sum-below-lower",
    ),
    # DensityRatioFit.ratio
    _case(lambda: _fit().ratio(np.ones((2, 3))), "points", "ratio-points-dims"),
    _case(lambda: _fit().ratio(np.ones(2)), "points", "ratio-points-1d"),
    _case(
        lambda: _fit().ratio(np.full((2, 2), np.inf)),
        "points",
        "ratio-points-inf",
    ),
    # weighted_cross_entropy
    _case(
        lambda: reweight.weighted_cross_entropy(np.zeros(4), Y[:4], np.ones(4)),
        "logits",
        "wce-logits-1d",
    ),
    _case(
        lambda: reweight.weighted_cross_entropy(
            np.full((4, 2), np.nan), Y[:4], np.ones(4)
        ),
        "logits",
        "wce-logits-nan",
    ),
    _case(
        lambda: reweight.weighted_cross_entropy(
            np.zeros((4, 2)), Y[:4] * 1.0, np.ones(4)
        ),
        "labels",
        "wce-labels-float",
    ),
    _case(
        lambda: reweight.weighted_cross_entropy(
            np.zeros((4, 2)), Y[:4] + 1, np.ones(4)
        ),
        "labels",
        "wce-labels-out-of-range",
    ),
    _case(
        lambda: reweight.weighted_cross_entropy(
            np.zeros((4, 2)), Y[:3], np.ones(4)
        ),
        "labels",
        "wce-labels-length",
    ),
    _case(
        lambda: reweight.weighted_cross_entropy(
            np.zeros((4, 2)), Y[:4], -np.ones(4)
        ),
        "weights",
        "wce-weights-negative",
    ),
    _case(
        lambda: reweight.weighted_cross_entropy(
            np.zeros((4, 2)), Y[:4], np.ones(4) > 0
        ),
        "weights",
        "wce-weights-bool",
    ),
    _case(
        lambda: reweight.weighted_cross_entropy(
            np.array([[3e30, -3e30]] * 4, np.float32),
            np.array([1, 1, 1, 1]),
            np.full(4, 1e30, np.float32),
        ),
        "weights",
        "wce-loss-overflows",
    ),
    # weighted_squared_error
    _case(
        lambda: reweight.weighted_squared_error(
            np.zeros((4, 1, 1)), np.zeros((4, 1, 1)), np.ones(4)
        ),
        "predictions",
        "wse-predictions-3d",
    ),
    _case(
        lambda: reweight.weighted_squared_error(
            np.zeros(4), np.zeros(3), np.ones(4)
        ),
        "targets",
        "wse-targets-length",
    ),
    _case(
        lambda: reweight.weighted_squared_error(
            np.zeros(4), _with(np.zeros(4), 2, np.nan), np.ones(4)
        ),
        "targets",
        "wse-targets-nan",
    ),
    _case(
        lambda: reweight.weighted_squared_error(
            np.zeros(4), np.zeros(4), np.ones((4, 1))
        ),
        "weights",
        "wse-weights-2d",
    ),
    _case(
        lambda: reweight.weighted_squared_error(
            np.full(4, 1e30, np.float32), np.zeros(4), np.ones(4)
        ),
        "predictions",
        "wse-loss-overflows",
    ),
    # tradaboost (more cases in tests/test_boosting.py)
    _case(
        lambda: reweight.tradaboost(S.astype(np.complex64), Y, T, YT),
        "source_inputs",
        "tradaboost-source-complex",
    ),
    _case(
        lambda: reweight.tradaboost(S, Y, T, YT[:, None]),
        "target_labels",
        "tradaboost-target-labels-2d",
    ),
    _case(
        lambda: reweight.tradaboost(S, Y, T, YT, learner=_NoPredict()),
        "learner",
        "tradaboost-learner-without-predict",
    ),
    _case(
        lambda: reweight.tradaboost(S, Y, T, YT, initial_weights=np.ones(3)),
        "initial_weights",
        "tradaboost-initial-weights-length",
    ),
    _case(
        lambda: reweight.tradaboost(S, Y, T, YT, num_rounds=True),
        "num_rounds",
        "tradaboost-num-rounds-bool",
    ),
    # tradaboost_r2 (more cases in tests/test_boosting.py)
    _case(
        lambda: reweight.tradaboost_r2(S, _with(R, 0, np.nan), T, RT),
        "source_labels",
        "tradaboost-r2-source-labels-nan",
    ),
    _case(
        lambda: reweight.tradaboost_r2(S, R, T[:, :1], RT),
        "target_inputs",
        "tradaboost-r2-feature-dims-differ",
    ),
    _case(
        lambda: reweight.tradaboost_r2(S, R, T, RT, learner=object()),
        "learner",
        "tradaboost-r2-learner-object",
    ),
    # adaboost_r2
    _case(
        lambda: reweight.adaboost_r2(S[:, 0], R), "inputs", "adaboost-inputs-1d"
    ),
    _case(
        lambda: reweight.adaboost_r2(S, R[:5]),
        "labels",
        "adaboost-labels-length",
    ),
    _case(
        lambda: reweight.adaboost_r2(S, _with(R, 1, np.inf)),
        "labels",
        "adaboost-labels-inf",
    ),
    _case(
        lambda: reweight.adaboost_r2(S, R, num_rounds=0),
        "num_rounds",
        "adaboost-rounds-0",
    ),
    _case(
        lambda: reweight.adaboost_r2(S, R, loss="huber"),
        "loss",
        "adaboost-loss-unknown",
    ),
    _case(
        lambda: reweight.adaboost_r2(
            S, R, sample_weight=_with(np.ones(6), 0, np.nan)
        ),
        "sample_weight",
        "adaboost-sample-weight-nan",
    ),
    _case(
        lambda: reweight.adaboost_r2(S, R, frozen=np.ones(6, int)),
        "frozen",
        "adaboost-frozen-int",
    ),
    _case(
        lambda: reweight.adaboost_r2(S, R, learner=3),
        "learner",
        "adaboost-learner-int",
    ),
    # WeightedLogisticRegression
    _case(
        lambda: reweight.WeightedLogisticRegression(l2_regularization=-1.0),
        "l2_regularization",
        "logistic-l2-negative",
    ),
    _case(
        lambda: reweight.WeightedLogisticRegression(tolerance=0.0),
        "tolerance",
        "logistic-tolerance-zero",
    ),
    _case(
        lambda: reweight.WeightedLogisticRegression(max_iterations=1.5),
        "max_iterations",
        "logistic-max-iterations-float",
    ),
    _case(
        lambda: reweight.WeightedLogisticRegression().set_params(
            learning_rate=1.0
        ),
        "learning_rate",
        "logistic-set-unknown-param",
    ),
    _case(
        lambda: reweight.WeightedLogisticRegression().fit(
            _with(S, (2, 0), np.nan), Y
        ),
        "X",
        "logistic-fit-x-nan",
    ),
    _case(
        lambda: reweight.WeightedLogisticRegression().fit(S, Y[:5]),
        "y",
        "logistic-fit-y-length",
    ),
    _case(
        lambda: reweight.WeightedLogisticRegression().fit(
            S, Y, sample_weight=np.zeros(6)
        ),
        "sample_weight",
        "logistic-fit-weights-zero-sum",
    ),
    _case(
        lambda: reweight.WeightedLogisticRegression().predict(S),
        "X",
        "logistic-predict-before-fit",
    ),
    # WeightedRidge
    _case(
        lambda: reweight.WeightedRidge(l2_regularization=np.nan),
        "l2_regularization",
        "ridge-l2-nan",
    ),
    _case(
        lambda: reweight.WeightedRidge().set_params(l2_regularization=0.0),
        "l2_regularization",
        "ridge-set-l2-zero",
    ),
    _case(
        lambda: reweight.WeightedRidge().fit(S, _with(R, 0, np.nan)),
        "y",
        "ridge-fit-y-nan",
    ),
    _case(
        lambda: reweight.WeightedRidge().fit(S[:, 0], R), "X", "ridge-fit-x-1d"
    ),
    _case(
        lambda: reweight.WeightedRidge().fit(S, R, sample_weight=-np.ones(6)),
        "sample_weight",
        "ridge-fit-weights-negative",
    ),
    _case(
        lambda: reweight.WeightedRidge().predict(S),
        "X",
        "ridge-predict-before-fit",
    ),
    # ImportanceWeightedClassifier
    _case(
        lambda: reweight.ImportanceWeightedClassifier("kmn"),
        "estimator",
        "classifier-facade-estimator-unknown",
    ),
    _case(
        lambda: reweight.ImportanceWeightedClassifier("kmm", bandwidth=1.0),
        "bandwidth",
        "classifier-facade-unknown-kwarg",
    ),
    _case(
        lambda: reweight.ImportanceWeightedClassifier("kmm", learner="tree"),
        "learner",
        "classifier-facade-learner-str",
    ),
    _case(
        lambda: reweight.ImportanceWeightedClassifier("uniform").fit(
            S, Y[:5], T
        ),
        "source_labels",
        "classifier-facade-labels-length",
    ),
    _case(
        lambda: reweight.ImportanceWeightedClassifier("uniform").fit(
            S, _with(Y * 1.0, 0, np.nan), T
        ),
        "source_labels",
        "classifier-facade-labels-nan",
    ),
    _case(
        lambda: reweight.ImportanceWeightedClassifier("uniform").predict(S),
        "fit",
        "classifier-facade-predict-before-fit",
    ),
    # ImportanceWeightedRegressor
    _case(
        lambda: reweight.ImportanceWeightedRegressor(3),
        "estimator",
        "regressor-facade-estimator-int",
    ),
    _case(
        lambda: reweight.ImportanceWeightedRegressor("uniform").fit(
            S, R, T[:, :1]
        ),
        "target",
        "regressor-facade-uniform-target-dims",
    ),
    _case(
        lambda: reweight.ImportanceWeightedRegressor("kmm", B=-1.0).fit(
            S, R, T
        ),
        "B",
        "regressor-facade-kmm-B-negative",
    ),
    _case(
        lambda: _fitted_regressor().score(T, RT[:3]),
        "targets",
        "regressor-facade-score-targets-length",
    ),
]


@pytest.mark.parametrize("call, argument", BAD_INPUTS)
def test_bad_input_raises_a_value_error_naming_the_argument(call, argument):
  with pytest.raises(ValueError, match=rf"\b{argument}\b"):
    call()
