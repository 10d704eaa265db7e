"""Property and bad-input tests for every public function of tljax.align.

Properties (hypothesis, the derandomized profile of conftest.py): on random
and degenerate inputs (one example, constant or zero features, entries of
order 1e30 and 1e-30) each function returns a finite result with its
defining property, or raises a ``ValueError`` exactly where the input is
invalid for it (too few examples) or the true result is not representable
in float32 (computed in float64 here). No other exception type, and never a
silent NaN or infinity.

Sizes come from small sets (n in {1, 2, 7}, d in {1, 5}), and the tests of
functions that compile slowly (eigendecompositions, kernels) run fewer
examples, so that few shapes compile.

Bad inputs: one ``pytest.param`` per case, each raising a ``ValueError``
naming the argument; then checks that the functions trace under
``jax.jit``/``jax.vmap`` (shape checks fire at trace time, value checks are
skipped on tracers).
"""

import math

import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special

from tljax import align

F32_MAX = float(np.finfo(np.float32).max)
F32_TINY = float(np.finfo(np.float32).tiny)
ROWS = (1, 2, 7)
COLUMNS = (1, 5)
SCALES = (0.0, 1e-30, 1.0, 1e30)
FEWER = hypothesis.settings(max_examples=8)  # for slow compiles; never more
FEWEST = hypothesis.settings(max_examples=6)
PATTERNS = ("normal", "constant", "one_hot")


# --- Generators and the property ---------------------------------------------


def make(seed, shape, scale, pattern):
  """A float32 array: random normal, constant (equal rows), or one-hot rows."""
  rng = np.random.default_rng(seed)
  if pattern == "normal":
    values = rng.normal(size=shape)
  elif pattern == "constant":
    values = np.broadcast_to(rng.normal(size=shape[1:]), shape)
  else:
    values = np.zeros(shape)
    flat = values.reshape(shape[0], -1)
    flat[np.arange(shape[0]), rng.integers(0, flat.shape[1], shape[0])] = 1.0
  return np.asarray(values * scale, np.float32)


@st.composite
def matrix(draw, rows=ROWS, columns=COLUMNS, scales=SCALES):
  shape = (draw(st.sampled_from(rows)), draw(st.sampled_from(columns)))
  return make(
      draw(st.integers(0, 2**16)),
      shape,
      draw(st.sampled_from(scales)),
      draw(st.sampled_from(PATTERNS)),
  )


def softmax_rows(seed, shape, spread=3.0):
  logits = np.random.default_rng(seed).normal(size=shape) * spread
  return np.asarray(scipy.special.softmax(logits, axis=1), np.float32)


def finite_or_value_error(call):
  """``(result, None)`` with every leaf finite, or ``(None, error)``.

  Any exception other than ``ValueError`` propagates (a test failure), and a
  result holding NaN or infinity fails here.
  """
  try:
    result = call()
  except ValueError as error:
    return None, str(error)
  for leaf in jax.tree.leaves(result):
    assert np.all(np.isfinite(np.asarray(leaf))), result
  return result, None


def assert_finite(call):
  result, error = finite_or_value_error(call)
  assert error is None, error
  return result


def f64(array):
  return np.asarray(array, np.float64)


def magnitude(*arrays):
  return max(float(np.max(np.abs(f64(a)))) for a in arrays)


# --- Kernel discrepancies ----------------------------------------------------


def like(data, source, rows=ROWS):
  """A drawn matrix with the columns of ``source``."""
  return data.draw(matrix(rows=rows, columns=(source.shape[1],)))


@hypothesis.given(
    source=matrix(),
    data=st.data(),
    estimator=st.sampled_from(["unbiased", "biased", "linear"]),
    fixed=st.sampled_from([None, [1e-30, 1.0, 1e30]]),
)
@FEWER
def test_mmd_finite_scale_invariant_or_too_few_examples(
    source, data, estimator, fixed
):
  target = like(data, source, (len(source),) if estimator == "linear" else ROWS)
  value, error = finite_or_value_error(
      lambda: align.mmd(
          source, target, estimator=estimator, kernel_bandwidths=fixed
      )
  )
  too_few = estimator != "biased" and min(len(source), len(target)) < 2
  assert (error is not None) == too_few, error
  if too_few:
    assert "at least 2 rows" in error
    return
  if estimator == "biased":
    assert float(value) >= -1e-5
    assert (
        abs(
            float(
                align.mmd(
                    source, source, estimator="biased", kernel_bandwidths=fixed
                )
            )
        )
        < 1e-5
    )
  if fixed is None and magnitude(source, target) <= 10:
    # The heuristic kernel is scale-invariant, at any scale where the
    # scaled data are still the data: a nonzero entry that the factor
    # pushes below float32's normal range (1.2e-31 × 1e-30 underflows to
    # 0) changes the samples, not only their scale.
    for factor in (1e-30, 1e30):
      if not all(
          np.all(np.abs(f64(a)[a != 0]) * factor >= np.finfo(np.float32).tiny)
          for a in (source, target)
      ):
        continue
      np.testing.assert_allclose(
          align.mmd(
              source * np.float32(factor),
              target * np.float32(factor),
              estimator=estimator,
          ),
          value,
          atol=1e-4,
      )


@hypothesis.given(
    features=matrix(rows=(2, 7), columns=(2,)),
    seed=st.integers(0, 99),
    spread=st.sampled_from([0.0, 1.0, 1e30]),
)
@FEWEST
def test_jmmd_finite_and_symmetric(features, seed, spread):
  n, d = features.shape
  target = make(seed, (n, d), 1.0, "normal")
  source_predictions = softmax_rows(seed, (n, 2), spread)
  target_predictions = softmax_rows(seed + 1, (n, 2))

  def value(first, second):
    return assert_finite(
        lambda: align.jmmd(first, second, kernel_bandwidths=[None, [0.92**2]])
    )

  forward = value([features, source_predictions], [target, target_predictions])
  assert forward.shape == ()
  # MMD² is symmetric in the two domains (the same compiled shapes).
  np.testing.assert_allclose(
      value([target, target_predictions], [features, source_predictions]),
      forward,
      rtol=1e-4,
      atol=1e-6,
  )


# --- CORAL, SA, TCA ----------------------------------------------------------


@hypothesis.given(source=matrix(), data=st.data(), same=st.booleans())
@FEWER
def test_coral_matches_float64_or_reports_overflow(source, data, same):
  target = source if same else like(data, source)
  value, error = finite_or_value_error(lambda: align.coral(source, target))
  if min(len(source), len(target)) < 2:
    assert "at least 2 rows" in error
    return
  d = source.shape[1]
  expected = np.sum(
      (
          np.cov(f64(source).T, ddof=1).reshape(d, d)
          - np.cov(f64(target).T, ddof=1).reshape(d, d)
      )
      ** 2
  ) / (4 * d * d)
  # float32 rounding of covariances of order scale², squared.
  slack = (1e-5 * magnitude(source, target) ** 2) ** 2
  if expected > F32_MAX / 2:
    assert error is not None and "coral is not finite" in error
    return
  if error is not None:
    assert slack > F32_MAX / 2 and "coral is not finite" in error
    return
  np.testing.assert_allclose(value, expected, rtol=1e-3, atol=slack + 1e-37)
  if same:
    assert float(value) == 0.0


@hypothesis.given(
    source=matrix(rows=(2, 7)),
    data=st.data(),
    eps=st.sampled_from([0.0, 1e-30, 1.0, 1e30]),
)
@FEWER
def test_coral_recolor_finite_at_every_scale(source, data, eps):
  target = like(data, source, (7,))
  recoloured = assert_finite(
      lambda: align.coral_recolor(source, target, eps=eps)
  )
  assert recoloured.shape == source.shape
  if not np.any(source):
    np.testing.assert_array_equal(recoloured, 0.0)  # a linear map of zeros


@hypothesis.given(
    source=matrix(rows=(1, 2, 7)), data=st.data(), dim=st.sampled_from([1, 2])
)
@FEWER
def test_subspace_alignment_finite_and_contracting(source, data, dim):
  target = like(data, source, (2, 7))
  dim = min(dim, source.shape[1])
  result, error = finite_or_value_error(
      lambda: align.subspace_alignment(source, target, dim=dim)
  )
  if len(source) < 2:
    assert "source must have at least 2 rows" in error
    return
  aligned, projected = result
  assert error is None and aligned.shape == (len(source), dim)
  # Orthonormal bases and M = P_Sᵀ P_T (norm <= 1) never lengthen a row.
  for output, features in ((aligned, source), (projected, target)):
    centred = f64(features) - f64(features).mean(0)
    limit = np.linalg.norm(centred, axis=1) * (1 + 1e-4) + 1e-6 * magnitude(
        features
    )
    assert np.all(np.linalg.norm(f64(output), axis=1) <= limit)


@hypothesis.given(
    source=matrix(rows=(1, 7), columns=(2,)),
    data=st.data(),
    kernel=st.sampled_from(["linear", "rbf", "rbf-fixed"]),
    mu=st.sampled_from([1e-3, 1.0, 1e30]),
)
@FEWEST
def test_tca_finite_or_reports_an_unrepresentable_embedding(
    source, data, kernel, mu
):
  target = like(data, source, (2,))
  gamma = 0.5 if kernel == "rbf-fixed" else None
  result, error = finite_or_value_error(
      lambda: align.tca(
          source,
          target,
          dim=2,
          mu=mu,
          kernel="linear" if kernel == "linear" else "rbf",
          gamma=gamma,
      )
  )
  if error is not None:
    # Only the linear kernel's embedding grows with the data (as scale² / √μ).
    assert kernel == "linear" and "tca is not finite" in error
    assert magnitude(source, target) ** 2 / math.sqrt(mu) > 1e30
    return
  source_embedding, target_embedding = result
  assert source_embedding.shape == (len(source), 2)
  assert target_embedding.shape == (len(target), 2)


def test_closed_forms_on_degenerate_inputs():
  """Cases that overflowed, underflowed or divided 0 by 0 before."""
  x = make(5, (7, 5), 1.0, "normal")
  big, tiny = x * np.float32(1e30), x * np.float32(1e-30)
  # Constant batches: covariances exactly 0, not a rounding error to the 4th.
  constant = np.full((7, 5), 1.2573022e29, np.float32)
  assert float(align.coral(constant, np.zeros((7, 5), np.float32))) == 0.0
  # Re-colouring with the source's own covariance is the identity map.
  np.testing.assert_allclose(
      align.coral_recolor(tiny, tiny, eps=0.0), tiny, rtol=1e-3
  )
  np.testing.assert_allclose(
      align.coral_recolor(big, big, eps=1.0), big, rtol=1e-3
  )
  np.testing.assert_allclose(
      align.coral_recolor(tiny, tiny, eps=1.0), tiny, rtol=1e-5
  )
  # One domain in its own principal basis: the alignment is the identity.
  aligned, projected = align.subspace_alignment(big, big, dim=2)
  np.testing.assert_allclose(aligned, projected, rtol=1e-3, atol=1e-3 * 1e30)
  # TCA: the RBF heuristic is scale-invariant; the linear kernel with μ s⁴.
  source, target = x[:, :2], make(6, (2, 2), 1.0, "normal")

  def gram(*arguments, **options):
    embedding = np.concatenate(align.tca(*arguments, dim=2, **options))
    return f64(embedding) @ f64(embedding).T

  reference = gram(source, target, kernel="rbf")
  np.testing.assert_allclose(
      gram(source * np.float32(1e30), target * np.float32(1e30), kernel="rbf"),
      reference,
      atol=1e-3 * np.abs(reference).max(),
  )
  reference = gram(source, target, mu=1.0)
  s = np.float32(2.0**30)  # the features of order 1e9: K H K of order 1e37
  np.testing.assert_allclose(
      gram(source * s, target * s, mu=float(s) ** 4),
      reference,
      atol=1e-3 * np.abs(reference).max(),
  )


# --- Adversarial -------------------------------------------------------------


@hypothesis.given(
    x=matrix(),
    coeff=st.sampled_from([0.0, 1e-30, 0.5, 1e30]),
)
def test_gradient_reversal_identity_and_reversed_gradient(x, coeff):
  np.testing.assert_array_equal(
      assert_finite(lambda: align.gradient_reversal(x, coeff)), x
  )
  gradient = jax.grad(lambda x: jnp.sum(align.gradient_reversal(x, coeff)))(x)
  np.testing.assert_allclose(gradient, np.full(x.shape, -np.float32(coeff)))


@hypothesis.given(
    progress=st.sampled_from([0.0, 1e-30, 0.3, 1.0]),
    gamma=st.sampled_from([0.0, 1e-30, 10.0, 1e30]),
    high=st.sampled_from([0.0, 1.0, 1e30]),
    low=st.sampled_from([0.0, 1e-30, 0.5]),
)
def test_dann_coefficient_between_low_and_high(progress, gamma, high, low):
  value = float(
      assert_finite(
          lambda: align.dann_coefficient(
              progress, gamma=gamma, high=high, low=low
          )
      )
  )
  tolerance = 1e-6 * max(high, low, 1.0)
  assert min(low, high) - tolerance <= value <= max(low, high) + tolerance


@hypothesis.given(
    source=matrix(columns=(1,)),
    target=matrix(rows=(2,), columns=(1,)),
    flat=st.booleans(),
    weighted=st.booleans(),
)
def test_domain_adversarial_loss_matches_float64(
    source, target, flat, weighted
):
  source_weights = (
      np.linspace(0, 2, len(source)).astype(np.float32) if weighted else None
  )
  value = assert_finite(
      lambda: align.domain_adversarial_loss(
          source[:, 0] if flat else source,
          target,
          source_weights=source_weights,
      )
  )
  source_terms = np.logaddexp(0, -f64(source[:, 0]))
  if weighted:
    source_terms = source_terms * source_weights
  expected = 0.5 * (
      source_terms.mean() + np.logaddexp(0, f64(target[:, 0])).mean()
  )
  np.testing.assert_allclose(value, expected, rtol=1e-5)


@hypothesis.given(features=matrix(rows=(1, 7)), seed=st.integers(0, 99))
@FEWER
def test_multilinear_maps_finite_and_exact(features, seed):
  classes, output_dim = 2, 4
  predictions = softmax_rows(seed, (len(features), classes))
  mapped = assert_finite(lambda: align.multilinear_map(features, predictions))
  np.testing.assert_allclose(
      mapped,
      np.einsum("nc,nd->ncd", f64(predictions), f64(features)).reshape(
          len(features), -1
      ),
      rtol=1e-6,
      atol=1e-36,
  )
  matrices = assert_finite(
      lambda: align.random_multilinear_matrices(
          jax.random.key(seed),
          features.shape[1],
          classes,
          output_dim=output_dim,
      )
  )
  assert matrices[0].shape == (features.shape[1], output_dim)
  assert matrices[1].shape == (classes, output_dim)
  randomized = assert_finite(
      lambda: align.randomized_multilinear_map(features, predictions, matrices)
  )
  expected = (
      (f64(features) @ f64(matrices[0]))
      * (f64(predictions) @ f64(matrices[1]))
      / math.sqrt(output_dim)
  )
  np.testing.assert_allclose(
      randomized, expected, rtol=1e-4, atol=1e-5 * magnitude(features) * classes
  )


@hypothesis.given(
    source=matrix(rows=(1, 7), columns=(2,)),
    target=matrix(rows=(2,), columns=(2,)),
    seed=st.integers(0, 99),
    entropy_conditioning=st.booleans(),
    randomized=st.booleans(),
    coeff=st.sampled_from([0.0, 1.0]),
)
@FEWEST
def test_conditional_adversarial_loss_finite(
    source, target, seed, entropy_conditioning, randomized, coeff
):
  source_logits = make(
      seed, (len(source), 3), 1e30 if seed % 3 == 0 else 3.0, "normal"
  )
  target_logits = make(seed + 1, (len(target), 3), 3.0, "normal")
  matrices = (
      align.random_multilinear_matrices(jax.random.key(0), 2, 3, output_dim=4)
      if randomized
      else None
  )
  value = assert_finite(
      lambda: align.conditional_adversarial_loss(
          lambda h: jnp.mean(h, axis=1),
          source,
          source_logits,
          target,
          target_logits,
          coeff=coeff,
          entropy_conditioning=entropy_conditioning,
          random_matrices=matrices,
      )
  )
  assert float(value) >= 0.0  # a (weighted) binary cross-entropy


@hypothesis.given(
    source=matrix(columns=(2, 5)),
    data=st.data(),
    seed=st.integers(0, 99),
    margin=st.sampled_from([0.0, 1.0, 4.0]),
    weighted=st.booleans(),
)
@FEWER
def test_margin_disparity_discrepancy_finite_and_non_positive(
    source, data, seed, margin, weighted
):
  target = like(data, source, (2,))
  source_adversarial = make(seed, source.shape, 3.0, "normal")
  target_adversarial = make(
      seed + 1, target.shape, 1e30 if seed % 2 else 3.0, "normal"
  )
  target_weights = np.ones(len(target), np.float32) * 0.5 if weighted else None
  value = assert_finite(
      lambda: align.margin_disparity_discrepancy(
          source,
          source_adversarial,
          target,
          target_adversarial,
          margin=margin,
          target_weights=target_weights,
      )
  )
  assert float(value) <= 1e-6  # sums of log-probabilities


# --- Feature and prediction regularisers -------------------------------------


@hypothesis.given(
    features=matrix(), delta_r=st.sampled_from([0.0, 1e-30, 0.7, 1e20])
)
def test_stepwise_adaptive_feature_norm_is_delta_r_squared(features, delta_r):
  value, error = finite_or_value_error(
      lambda: align.stepwise_adaptive_feature_norm(features, delta_r=delta_r)
  )
  if delta_r**2 > F32_MAX:
    assert "delta_r squared overflows" in error
    return
  assert error is None, error
  np.testing.assert_allclose(value, np.float32(delta_r) ** 2, rtol=1e-6)


@hypothesis.given(features=matrix(), radius=st.sampled_from([0.0, 1.0, 1e30]))
def test_adaptive_feature_norm_matches_float64_or_reports_overflow(
    features, radius
):
  value, error = finite_or_value_error(
      lambda: align.adaptive_feature_norm(features, radius=radius)
  )
  mean_norm = np.linalg.norm(f64(features), axis=1).mean()
  radius = float(np.float32(radius))
  expected = (mean_norm - radius) ** 2
  # float32 rounding of the mean norm, squared: near 1e30, even a true 0 can
  # come out as an overflow.
  slack = (1e-6 * (mean_norm + radius)) ** 2
  if expected > F32_MAX / 2:
    assert "adaptive_feature_norm is not finite" in error
    return
  if error is not None:
    assert (
        slack > F32_MAX / 2 and "adaptive_feature_norm is not finite" in error
    )
    return
  np.testing.assert_allclose(value, expected, rtol=1e-4, atol=slack + 1e-37)


@hypothesis.given(source=matrix(), data=st.data(), k=st.sampled_from([1, 2]))
@FEWER
def test_batch_spectral_penalization_matches_float64_or_reports_overflow(
    source, data, k
):
  target = like(data, source, (2,))
  k = min(k, *source.shape, *target.shape)
  value, error = finite_or_value_error(
      lambda: align.batch_spectral_penalization(source, target, k=k)
  )
  expected = sum(
      np.sum(np.linalg.svd(f64(m), compute_uv=False)[:k] ** 2)
      for m in (source, target)
  )
  if expected > F32_MAX / 2:
    assert "batch_spectral_penalization is not finite" in error
    return
  assert error is None, error
  np.testing.assert_allclose(value, expected, rtol=1e-4, atol=1e-37)


@pytest.mark.parametrize("scale", [1e-30, 1e20, 1e30])
def test_feature_norms_at_extreme_scales(scale):
  """Norms whose squares leave float32 are exact; so is SAFN's gradient."""
  features = make(3, (7, 5), scale, "normal")
  features[2] = 0.0  # a zero row: norm 0, gradient 0
  norms = np.linalg.norm(f64(features), axis=1)
  if scale < 1e30:  # at 1e30, a gap of one float32 rounding squared overflows
    np.testing.assert_allclose(
        align.adaptive_feature_norm(features, radius=float(norms.mean())),
        0.0,
        atol=(1e-6 * norms.mean()) ** 2,
    )
  gradient = jax.grad(
      lambda f: align.stepwise_adaptive_feature_norm(f, delta_r=0.7)
  )(features)
  expected = (
      -2
      * 0.7
      / 7
      * np.divide(
          f64(features),
          norms[:, None],
          out=np.zeros(features.shape),
          where=norms[:, None] > 0,
      )
  )
  np.testing.assert_allclose(gradient, expected, rtol=1e-5, atol=1e-7)


@hypothesis.given(
    logits=matrix(), temperature=st.sampled_from([1e-30, 0.1, 2.5, 1e30])
)
@FEWER
def test_minimum_class_confusion_finite_and_bounded(logits, temperature):
  value = float(
      assert_finite(
          lambda: align.minimum_class_confusion(logits, temperature=temperature)
      )
  )
  classes = logits.shape[1]
  assert -1e-6 <= value <= (classes - 1) / classes + 1e-5


@hypothesis.given(logits=matrix(scales=SCALES + (1e37,)))
def test_entropy_finite_and_bounded(logits):
  value = float(assert_finite(lambda: align.entropy(logits)))
  assert -1e-6 <= value <= math.log(logits.shape[1]) + 1e-5
  expected = -np.mean(
      np.sum(
          scipy.special.xlogy(
              p := scipy.special.softmax(f64(logits), axis=1), p
          ),
          axis=1,
      )
  )
  np.testing.assert_allclose(value, expected, rtol=1e-4, atol=1e-5)


@hypothesis.given(
    seed=st.integers(0, 99),
    rows=st.sampled_from(ROWS),
    columns=st.sampled_from(COLUMNS),
    spread=st.sampled_from([0.0, 1.0, 1e30]),
)
def test_entropy_weights_finite_mean_one(seed, rows, columns, spread):
  predictions = softmax_rows(seed, (rows, columns), spread)
  weights = assert_finite(lambda: align.entropy_weights(predictions))
  np.testing.assert_allclose(np.mean(weights), 1.0, rtol=1e-5)
  # 1 + exp(−H) lies in [1, 2]: weights differ by at most a factor of 2.
  assert np.max(weights) <= 2 * np.min(weights) * (1 + 1e-5)


@hypothesis.given(
    seed=st.integers(0, 99),
    rows=st.sampled_from(ROWS),
    columns=st.sampled_from(COLUMNS),
    spread=st.sampled_from([0.0, 1.0, 1e30]),
)
def test_classifier_discrepancy_matches_float64(seed, rows, columns, spread):
  first = softmax_rows(seed, (rows, columns), spread)
  second = softmax_rows(seed + 1, (rows, columns), 1.0)
  value = float(
      assert_finite(lambda: align.classifier_discrepancy(first, second))
  )
  np.testing.assert_allclose(
      value, np.mean(np.abs(f64(first) - f64(second))), rtol=1e-5, atol=1e-7
  )
  assert 0.0 <= value <= 2.0 / columns + 1e-6


def test_logit_gaps_beyond_the_float_range():
  """log p = x − max overflows to −∞ for logits ±3e38: still 0 log 0 = 0."""
  logits = np.array([[3e38, -3e38, 0.0]], np.float32)
  assert float(align.entropy(logits)) == 0.0
  # A class nobody predicts: a zero row of the confusion matrix counts 0.
  assert float(align.minimum_class_confusion(logits, temperature=1e-30)) == 0.0
  assert np.isfinite(float(align.minimum_class_confusion(logits)))


def test_every_public_function_has_a_property_test():
  tested = {
      "adaptive_feature_norm",
      "batch_spectral_penalization",
      "classifier_discrepancy",
      "conditional_adversarial_loss",
      "coral",
      "coral_recolor",
      "dann_coefficient",
      "domain_adversarial_loss",
      "entropy",
      "entropy_weights",
      "gradient_reversal",
      "jmmd",
      "margin_disparity_discrepancy",
      "minimum_class_confusion",
      "mmd",
      "multilinear_map",
      "random_multilinear_matrices",
      "randomized_multilinear_map",
      "stepwise_adaptive_feature_norm",
      "subspace_alignment",
      "tca",
  }
  functions = {name for name in align.__all__ if callable(getattr(align, name))}
  assert tested == functions
  assert tested == {case.id.split("-")[0] for case in BAD_INPUTS}


# --- Bad inputs --------------------------------------------------------------


X = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
P = np.full((4, 3), 1 / 3, np.float32)
D = np.zeros(4, np.float32)
NAN = X.copy()
NAN[1, 2] = np.nan
INF = X.copy()
INF[0, 0] = np.inf
HUGE64 = X.astype(np.float64) * 1e300  # finite in float64, infinite in float32
COMPLEX = X.astype(np.complex64)
STRINGS = np.array([["a", "b", "c"]] * 4)
EMPTY = np.zeros((0, 3), np.float32)
KEY = jax.random.key(0)
MATRICES = (np.ones((3, 2), np.float32), np.ones((3, 2), np.float32))


def disc(h):
  return jnp.sum(h, axis=1)


def cdan(**overrides):
  arguments = dict(
      discriminator=disc,
      source_features=X,
      source_logits=X,
      target_features=X,
      target_logits=X,
  )
  arguments.update(overrides)
  return lambda: align.conditional_adversarial_loss(**arguments)


def mdd(*logits, **options):
  logits = logits + (X,) * (4 - len(logits))
  return lambda: align.margin_disparity_discrepancy(*logits, **options)


def case(name, call, match):
  return pytest.param(call, match, id=name)


BAD_INPUTS = [
    # mmd
    case(
        "mmd-ndim",
        lambda: align.mmd(X[0], X),
        "source_features must have shape",
    ),
    case(
        "mmd-empty",
        lambda: align.mmd(X, EMPTY),
        "target_features must have shape",
    ),
    case(
        "mmd-nan", lambda: align.mmd(NAN, X), "source_features must be finite"
    ),
    case(
        "mmd-inf", lambda: align.mmd(X, INF), "target_features must be finite"
    ),
    case(
        "mmd-float32-overflow",
        lambda: align.mmd(HUGE64, X),
        "source_features must be finite",
    ),
    case(
        "mmd-complex",
        lambda: align.mmd(COMPLEX, X),
        "source_features must hold real numbers",
    ),
    case(
        "mmd-strings",
        lambda: align.mmd(X, STRINGS),
        "target_features must be an array of numbers",
    ),
    case(
        "mmd-ragged",
        lambda: align.mmd([[1.0, 2.0], [3.0]], X),
        "source_features must be an array of numbers",
    ),
    case(
        "mmd-one-example-unbiased",
        lambda: align.mmd(X[:1], X),
        "source_features must have at least 2 rows",
    ),
    case(
        "mmd-bandwidth-zero",
        lambda: align.mmd(X, X, kernel_bandwidths=[0.0]),
        "kernel_bandwidths must be finite and > 0",
    ),
    case(
        "mmd-bandwidth-nan",
        lambda: align.mmd(X, X, kernel_bandwidths=[np.nan]),
        "kernel_bandwidths must be finite and > 0",
    ),
    case(
        "mmd-bandwidth-underflow",
        lambda: align.mmd(X, X, kernel_bandwidths=[1e-45]),
        "kernel_bandwidths must lie in",
    ),
    case(
        "mmd-bandwidth-empty",
        lambda: align.mmd(X, X, kernel_bandwidths=[]),
        "kernel_bandwidths must be a non-empty 1-D sequence",
    ),
    case(
        "mmd-bandwidth-string",
        lambda: align.mmd(X, X, kernel_bandwidths="1.0"),
        "kernel_bandwidths must be a sequence of positive numbers",
    ),
    case(
        "mmd-multiplier-negative",
        lambda: align.mmd(X, X, bandwidth_multipliers=[1.0, -2.0]),
        "bandwidth_multipliers must be finite and > 0",
    ),
    case(
        "mmd-multiplier-underflow",
        lambda: align.mmd(X, X, bandwidth_multipliers=[1e-40]),
        "bandwidth_multipliers must lie in",
    ),
    case(
        "mmd-multiplier-overflow",
        lambda: align.mmd(X, X, bandwidth_multipliers=[1e39]),
        "bandwidth_multipliers must lie in",
    ),
    case(
        "mmd-estimator-type",
        lambda: align.mmd(X, X, estimator=None),
        "estimator must be one of",
    ),
    # jmmd
    case(
        "jmmd-empty-list",
        lambda: align.jmmd([], []),
        "source_list must be a non-empty",
    ),
    case(
        "jmmd-not-a-list",
        lambda: align.jmmd([X], X),
        "target_list must be a non-empty",
    ),
    case(
        "jmmd-nan-layer",
        lambda: align.jmmd([X, NAN], [X, X]),
        r"source_list\[1\] must be finite",
    ),
    case(
        "jmmd-ndim-layer",
        lambda: align.jmmd([X], [X[None]]),
        r"target_list\[0\] must have shape",
    ),
    case(
        "jmmd-batch-mismatch",
        lambda: align.jmmd([X, P[:3]], [X, P]),
        r"source_list\[1\] must have the batch size of source_list\[0\]",
    ),
    case(
        "jmmd-bandwidth-negative",
        lambda: align.jmmd([X], [X], kernel_bandwidths=[[-1.0]]),
        r"kernel_bandwidths\[0\] must be finite and > 0",
    ),
    case(
        "jmmd-linear-batch-mismatch",
        lambda: align.jmmd([X], [X[:3]], estimator="linear"),
        r"target_list\[0\] must have the batch size of source_list\[0\]",
    ),
    # coral
    case(
        "coral-ndim",
        lambda: align.coral(X[None], X),
        "source_features must have shape",
    ),
    case(
        "coral-one-example",
        lambda: align.coral(X, X[:1]),
        "target_features must have at least 2 rows",
    ),
    case(
        "coral-nan",
        lambda: align.coral(X, NAN),
        "target_features must be finite",
    ),
    case(
        "coral-complex",
        lambda: align.coral(X, COMPLEX),
        "target_features must hold real numbers",
    ),
    # coral_recolor
    case(
        "coral_recolor-inf",
        lambda: align.coral_recolor(X, INF),
        "target must be finite",
    ),
    case(
        "coral_recolor-empty",
        lambda: align.coral_recolor(EMPTY, X),
        "source must have shape",
    ),
    case(
        "coral_recolor-dim-mismatch",
        lambda: align.coral_recolor(X, X[:, :2]),
        "target must have the same feature dimension as source",
    ),
    case(
        "coral_recolor-eps-nan",
        lambda: align.coral_recolor(X, X, eps=np.nan),
        "eps must be a finite number >= 0",
    ),
    case(
        "coral_recolor-eps-float32-overflow",
        lambda: align.coral_recolor(X, X, eps=1e39),
        "eps must be at most",
    ),
    case(
        "coral_recolor-eps-string",
        lambda: align.coral_recolor(X, X, eps="1"),
        "eps must be a non-negative number",
    ),
    case(
        "coral_recolor-eps-array",
        lambda: align.coral_recolor(X, X, eps=np.ones(2)),
        "eps must be a non-negative number",
    ),
    # subspace_alignment
    case(
        "subspace_alignment-one-example",
        lambda: align.subspace_alignment(X[:1], X, dim=1),
        "source must have at least 2 rows",
    ),
    case(
        "subspace_alignment-nan",
        lambda: align.subspace_alignment(X, NAN, dim=1),
        "target must be finite",
    ),
    case(
        "subspace_alignment-dim-zero",
        lambda: align.subspace_alignment(X, X, dim=0),
        "dim must be an int >= 1",
    ),
    case(
        "subspace_alignment-dim-float",
        lambda: align.subspace_alignment(X, X, dim=1.0),
        "dim must be an int >= 1",
    ),
    case(
        "subspace_alignment-dim-bool",
        lambda: align.subspace_alignment(X, X, dim=True),
        "dim must be an int >= 1",
    ),
    # tca
    case("tca-nan", lambda: align.tca(NAN, X, dim=1), "source must be finite"),
    case(
        "tca-ndim", lambda: align.tca(X, X[0], dim=1), "target must have shape"
    ),
    case(
        "tca-mu-negative",
        lambda: align.tca(X, X, dim=1, mu=-1.0),
        "mu must be a finite number > 0",
    ),
    case(
        "tca-mu-underflow",
        lambda: align.tca(X, X, dim=1, mu=1e-45),
        "mu must be at least",
    ),
    case(
        "tca-gamma-inf",
        lambda: align.tca(X, X, dim=1, kernel="rbf", gamma=np.inf),
        "gamma must be a finite number > 0",
    ),
    case(
        "tca-kernel-type",
        lambda: align.tca(X, X, dim=1, kernel=1),
        "kernel must be one of",
    ),
    # gradient_reversal
    case(
        "gradient_reversal-coeff-negative",
        lambda: align.gradient_reversal(X, -0.1),
        "coeff must be a finite number >= 0",
    ),
    case(
        "gradient_reversal-coeff-vector",
        lambda: align.gradient_reversal(X, np.ones(2)),
        "coeff must be a non-negative number",
    ),
    case(
        "gradient_reversal-coeff-bool",
        lambda: align.gradient_reversal(X, True),
        "coeff must be a non-negative number",
    ),
    case(
        "gradient_reversal-x-string",
        lambda: align.gradient_reversal("abc"),
        "x must be an array",
    ),
    case(
        "gradient_reversal-x-complex",
        lambda: align.gradient_reversal(COMPLEX),
        "x must hold real numbers",
    ),
    case(
        "gradient_reversal-x-nan",
        lambda: align.gradient_reversal({"a": X, "b": NAN}),
        r"x \(leaf 1\) must be finite",
    ),
    # dann_coefficient
    case(
        "dann_coefficient-progress-nan",
        lambda: align.dann_coefficient(np.nan),
        "progress must be a finite number >= 0",
    ),
    case(
        "dann_coefficient-progress-vector",
        lambda: align.dann_coefficient(np.array([0.1, 0.2])),
        "progress must be a non-negative number",
    ),
    case(
        "dann_coefficient-low-negative",
        lambda: align.dann_coefficient(0.5, low=-1.0),
        "low must be a finite number >= 0",
    ),
    case(
        "dann_coefficient-gamma-float32-overflow",
        lambda: align.dann_coefficient(0.5, gamma=1e40),
        "gamma must be at most",
    ),
    case(
        "dann_coefficient-high-string",
        lambda: align.dann_coefficient(0.5, high="1"),
        "high must be a non-negative number",
    ),
    # domain_adversarial_loss
    case(
        "domain_adversarial_loss-nan",
        lambda: align.domain_adversarial_loss(D + np.nan, D),
        "source_domain_logits must be finite",
    ),
    case(
        "domain_adversarial_loss-two-columns",
        lambda: align.domain_adversarial_loss(D, X),
        "target_domain_logits must have shape",
    ),
    case(
        "domain_adversarial_loss-complex",
        lambda: align.domain_adversarial_loss(D.astype(np.complex64), D),
        "source_domain_logits must hold real numbers",
    ),
    case(
        "domain_adversarial_loss-weights-inf",
        lambda: align.domain_adversarial_loss(D, D, target_weights=D + np.inf),
        "target_weights must be finite and non-negative",
    ),
    case(
        "domain_adversarial_loss-weights-2d",
        lambda: align.domain_adversarial_loss(D, D, source_weights=X),
        r"source_weights must have shape \(4,\)",
    ),
    # multilinear_map
    case(
        "multilinear_map-nan",
        lambda: align.multilinear_map(NAN, P),
        "features must be finite",
    ),
    case(
        "multilinear_map-ndim",
        lambda: align.multilinear_map(X, P[0]),
        "predictions must have shape",
    ),
    case(
        "multilinear_map-empty",
        lambda: align.multilinear_map(EMPTY, P[:0]),
        "features must have shape",
    ),
    case(
        "multilinear_map-overflow",
        lambda: align.multilinear_map(
            X * np.float32(1e30), P * np.float32(1e30)
        ),
        "multilinear_map is not finite: features times predictions",
    ),
    # randomized_multilinear_map
    case(
        "randomized_multilinear_map-not-a-pair",
        lambda: align.randomized_multilinear_map(X, P, MATRICES[0]),
        "random_matrices must be a pair",
    ),
    case(
        "randomized_multilinear_map-matrix-nan",
        lambda: align.randomized_multilinear_map(
            X, P, (MATRICES[0] * np.nan, MATRICES[1])
        ),
        r"random_matrices\[0\] must be finite",
    ),
    case(
        "randomized_multilinear_map-classes",
        lambda: align.randomized_multilinear_map(X, P[:, :2], MATRICES),
        r"random_matrices\[1\] must have one row per class",
    ),
    case(
        "randomized_multilinear_map-batch",
        lambda: align.randomized_multilinear_map(X, P[:2], MATRICES),
        "predictions must have one row per row of features",
    ),
    # random_multilinear_matrices
    case(
        "random_multilinear_matrices-key-int",
        lambda: align.random_multilinear_matrices(0, 3, 3),
        "key must be a single",
    ),
    case(
        "random_multilinear_matrices-key-batch",
        lambda: align.random_multilinear_matrices(jax.random.split(KEY), 3, 3),
        "key must be a single",
    ),
    case(
        "random_multilinear_matrices-classes-zero",
        lambda: align.random_multilinear_matrices(KEY, 3, 0),
        "num_classes must be an int >= 1",
    ),
    case(
        "random_multilinear_matrices-output-float",
        lambda: align.random_multilinear_matrices(KEY, 3, 3, output_dim=2.5),
        "output_dim must be an int >= 1",
    ),
    # conditional_adversarial_loss
    case(
        "conditional_adversarial_loss-not-callable",
        cdan(discriminator="D"),
        "discriminator must be callable",
    ),
    case(
        "conditional_adversarial_loss-nan",
        cdan(target_features=NAN),
        "target_features must be finite",
    ),
    case(
        "conditional_adversarial_loss-dim-mismatch",
        cdan(target_features=X[:, :2]),
        "target_features must have the same feature dimension as source_features",
    ),
    case(
        "conditional_adversarial_loss-output-nan",
        cdan(discriminator=lambda h: jnp.sum(h, axis=1) * jnp.nan),
        "discriminator output must be finite",
    ),
    case(
        "conditional_adversarial_loss-coeff-inf",
        cdan(coeff=np.inf),
        "coeff must be a finite number >= 0",
    ),
    case(
        "conditional_adversarial_loss-matrices-shape",
        cdan(random_matrices=(np.ones((2, 4)), np.ones((3, 4)))),
        r"random_matrices\[0\] must have one row per feature",
    ),
    # classifier_discrepancy
    case(
        "classifier_discrepancy-nan",
        lambda: align.classifier_discrepancy(P * np.nan, P),
        "probabilities_1 must be finite",
    ),
    case(
        "classifier_discrepancy-negative",
        lambda: align.classifier_discrepancy(
            P, np.tile([[-0.5, 1.0, 0.5]], (4, 1))
        ),
        "probabilities_2 must be finite and non-negative",
    ),
    case(
        "classifier_discrepancy-ndim",
        lambda: align.classifier_discrepancy(P[0], P[0]),
        "probabilities_1 must have shape",
    ),
    case(
        "classifier_discrepancy-string",
        lambda: align.classifier_discrepancy(P, STRINGS),
        "probabilities_2 must be an array of numbers",
    ),
    # margin_disparity_discrepancy
    case(
        "margin_disparity_discrepancy-nan",
        mdd(X, X, NAN),
        "target_logits must be finite",
    ),
    case(
        "margin_disparity_discrepancy-target-shape",
        mdd(X, X, X, X[:3]),
        "target_adversarial_logits must have the same shape as target_logits",
    ),
    case(
        "margin_disparity_discrepancy-classes",
        mdd(X, X, X[:, :2], X[:, :2]),
        "target_logits must have the same number of classes as source_logits",
    ),
    case(
        "margin_disparity_discrepancy-margin-string",
        mdd(margin="4"),
        "margin must be a non-negative number",
    ),
    case(
        "margin_disparity_discrepancy-weights-negative",
        mdd(source_weights=-np.ones(4)),
        "source_weights must be finite and non-negative",
    ),
    # stepwise_adaptive_feature_norm
    case(
        "stepwise_adaptive_feature_norm-nan",
        lambda: align.stepwise_adaptive_feature_norm(NAN),
        "features must be finite",
    ),
    case(
        "stepwise_adaptive_feature_norm-ndim",
        lambda: align.stepwise_adaptive_feature_norm(X[0]),
        "features must have shape",
    ),
    case(
        "stepwise_adaptive_feature_norm-delta-inf",
        lambda: align.stepwise_adaptive_feature_norm(X, delta_r=np.inf),
        "delta_r must be a finite number >= 0",
    ),
    case(
        "stepwise_adaptive_feature_norm-delta-squared-overflow",
        lambda: align.stepwise_adaptive_feature_norm(X, delta_r=1e20),
        "delta_r squared overflows",
    ),
    # adaptive_feature_norm
    case(
        "adaptive_feature_norm-inf",
        lambda: align.adaptive_feature_norm(INF, radius=1.0),
        "features must be finite",
    ),
    case(
        "adaptive_feature_norm-radius-vector",
        lambda: align.adaptive_feature_norm(X, radius=np.ones(3)),
        "radius must be a non-negative number",
    ),
    case(
        "adaptive_feature_norm-overflow",
        lambda: align.adaptive_feature_norm(X * np.float32(1e30), radius=0.0),
        "adaptive_feature_norm is not finite",
    ),
    # batch_spectral_penalization
    case(
        "batch_spectral_penalization-nan",
        lambda: align.batch_spectral_penalization(X, NAN),
        "target_features must be finite",
    ),
    case(
        "batch_spectral_penalization-empty",
        lambda: align.batch_spectral_penalization(EMPTY, X),
        "source_features must have shape",
    ),
    case(
        "batch_spectral_penalization-k-float",
        lambda: align.batch_spectral_penalization(X, X, k=1.5),
        "k must be an int >= 1",
    ),
    case(
        "batch_spectral_penalization-overflow",
        lambda: align.batch_spectral_penalization(X * np.float32(1e30), X),
        "batch_spectral_penalization is not finite",
    ),
    # minimum_class_confusion
    case(
        "minimum_class_confusion-nan",
        lambda: align.minimum_class_confusion(NAN),
        "target_logits must be finite",
    ),
    case(
        "minimum_class_confusion-empty",
        lambda: align.minimum_class_confusion(EMPTY),
        "target_logits must have shape",
    ),
    case(
        "minimum_class_confusion-temperature-negative",
        lambda: align.minimum_class_confusion(X, temperature=-2.5),
        "temperature must be a finite number > 0",
    ),
    case(
        "minimum_class_confusion-temperature-underflow",
        lambda: align.minimum_class_confusion(X, temperature=1e-45),
        "temperature must be at least",
    ),
    # entropy
    case("entropy-nan", lambda: align.entropy(NAN), "logits must be finite"),
    case(
        "entropy-empty", lambda: align.entropy(EMPTY), "logits must have shape"
    ),
    case(
        "entropy-complex",
        lambda: align.entropy(COMPLEX),
        "logits must hold real numbers",
    ),
    case(
        "entropy-bool",
        lambda: align.entropy(X > 0),
        "logits must hold real numbers",
    ),
    # entropy_weights
    case(
        "entropy_weights-nan",
        lambda: align.entropy_weights(P * np.nan),
        "predictions must be finite",
    ),
    case(
        "entropy_weights-logits",
        lambda: align.entropy_weights(X),
        "predictions (must be finite and non-negative|rows must sum to 1)",
    ),
    case(
        "entropy_weights-ndim",
        lambda: align.entropy_weights(P[0]),
        "predictions must have shape",
    ),
]


@pytest.mark.parametrize("call, match", BAD_INPUTS)
def test_bad_input_raises_value_error_naming_the_argument(call, match):
  with pytest.raises(ValueError, match=match):
    call()


# --- Under jit and vmap ------------------------------------------------------


JITTED_CALLS = {  # name: (function of arrays, its arguments, the output shapes)
    "mmd": (lambda s, t: align.mmd(s, t), (X, X + 1), ()),
    "jmmd": (
        lambda s, t: align.jmmd([s], [t], estimator="linear"),
        (X, X + 1),
        (),
    ),
    "coral": (align.coral, (X, X * 2), ()),
    "coral_recolor": (align.coral_recolor, (X, X * 2), (4, 3)),
    "subspace_alignment": (
        lambda s, t: align.subspace_alignment(s, t, dim=2),
        (X, X * 2),
        ((4, 2), (4, 2)),
    ),
    "tca": (
        lambda s, t: align.tca(s, t, dim=2, kernel="rbf"),
        (X, X * 2),
        ((4, 2), (4, 2)),
    ),
    "batch_spectral_penalization": (
        align.batch_spectral_penalization,
        (X, X),
        (),
    ),
    "minimum_class_confusion": (align.minimum_class_confusion, (X,), ()),
    "entropy": (align.entropy, (X,), ()),
    "entropy_weights": (align.entropy_weights, (P,), (4,)),
    "classifier_discrepancy": (align.classifier_discrepancy, (P, P), ()),
    "domain_adversarial_loss": (align.domain_adversarial_loss, (D, D + 1), ()),
    "margin_disparity_discrepancy": (
        align.margin_disparity_discrepancy,
        (X, X, X, X),
        (),
    ),
    "stepwise_adaptive_feature_norm": (
        align.stepwise_adaptive_feature_norm,
        (X,),
        (),
    ),
    "adaptive_feature_norm": (
        lambda f: align.adaptive_feature_norm(f, radius=1.0),
        (X,),
        (),
    ),
    "multilinear_map": (align.multilinear_map, (X, P), (4, 9)),
    "randomized_multilinear_map": (
        lambda f, p, a, b: align.randomized_multilinear_map(f, p, (a, b)),
        (X, P, *MATRICES),
        (4, 2),
    ),
    "random_multilinear_matrices": (
        lambda key: align.random_multilinear_matrices(key, 3, 3, output_dim=2),
        (KEY,),
        ((3, 2), (3, 2)),
    ),
    "conditional_adversarial_loss": (
        lambda s, t: align.conditional_adversarial_loss(disc, s, P, t, P),
        (X, X),
        (),
    ),
    "gradient_reversal": (
        lambda x: align.gradient_reversal(x, 0.5),
        (X,),
        (4, 3),
    ),
    "dann_coefficient": (align.dann_coefficient, (0.25,), ()),
}


@pytest.mark.parametrize("name", sorted(JITTED_CALLS))
def test_traces_under_jit(name):
  """Every check passes on tracers (NaN checks, hyper-parameter ranges are
  skipped, shapes are static): the function traces to its output shapes."""
  function, arguments, shapes = JITTED_CALLS[name]
  traced = jax.eval_shape(function, *arguments)
  got = (
      tuple(leaf.shape for leaf in traced)
      if isinstance(traced, tuple)
      else traced.shape
  )
  assert got == shapes
  assert all(
      jnp.issubdtype(leaf.dtype, jnp.floating)
      for leaf in jax.tree.leaves(traced)
  )


def test_compiled_results_match_eager():
  """A few cheap functions compiled whole: the same numbers as called eagerly."""

  def losses(features, logits, domain_logits, progress):
    return jnp.stack(
        [
            align.entropy(logits),
            align.domain_adversarial_loss(domain_logits, -domain_logits),
            align.dann_coefficient(progress),
            jnp.sum(align.gradient_reversal(features, progress)),
            align.classifier_discrepancy(
                jax.nn.softmax(logits), jax.nn.softmax(-logits)
            ),
        ]
    )

  arguments = (X, X * 3, D + np.arange(4, dtype=np.float32), 0.25)
  np.testing.assert_allclose(
      jax.jit(losses)(*arguments), losses(*arguments), rtol=1e-5, atol=1e-6
  )


SHAPE_ERRORS_UNDER_JIT = [
    pytest.param(
        lambda s: align.mmd(s, X), np.zeros((4, 2)), "target_features", id="mmd"
    ),
    pytest.param(
        lambda s: align.coral(s, X), X[:1], "source_features", id="coral"
    ),
    pytest.param(lambda s: align.entropy(s), X[0], "logits", id="entropy"),
    pytest.param(
        lambda s: align.multilinear_map(s, P),
        X[:2],
        "predictions",
        id="multilinear_map",
    ),
    pytest.param(lambda s: align.tca(s, X, dim=9), X, "dim", id="tca"),
    pytest.param(
        lambda s: align.domain_adversarial_loss(s, D),
        X,
        "source_domain_logits",
        id="domain_adversarial_loss",
    ),
    pytest.param(
        lambda s: align.gradient_reversal(X, s),
        np.ones(2, np.float32),
        "coeff",
        id="gradient_reversal",
    ),
    pytest.param(
        lambda s: align.dann_coefficient(s),
        np.ones(2, np.float32),
        "progress",
        id="dann_coefficient",
    ),
    pytest.param(
        lambda s: align.minimum_class_confusion(X, temperature=s),
        np.ones(2, np.float32),
        "temperature",
        id="minimum_class_confusion",
    ),
]


@pytest.mark.parametrize("function, argument, name", SHAPE_ERRORS_UNDER_JIT)
def test_shape_errors_fire_at_trace_time(function, argument, name):
  with pytest.raises(ValueError, match=name):
    jax.eval_shape(function, argument)


def test_value_checks_are_skipped_on_tracers():
  """NaN inputs and traced hyper-parameters trace fine; sweeps still vmap."""
  assert np.isnan(
      jax.jit(align.entropy)(NAN)
  )  # unchecked inside jit, by design
  temperatures = jnp.asarray([0.5, 2.5, 10.0])
  swept = jax.vmap(lambda t: align.minimum_class_confusion(X, temperature=t))(
      temperatures
  )
  for temperature, value in zip(temperatures.tolist(), np.asarray(swept)):
    np.testing.assert_allclose(
        value,
        align.minimum_class_confusion(X, temperature=temperature),
        rtol=1e-5,
    )
  coefficients = jax.vmap(lambda p: align.dann_coefficient(p, high=2.0))(
      jnp.asarray([0.0, 0.5, 1.0])
  )
  assert np.all(np.diff(np.asarray(coefficients)) > 0)
  # A hyper-parameter traced by jit is not range-checked (here: negative).
  assert (
      jax.eval_shape(
          lambda r: align.adaptive_feature_norm(X, radius=r), -1.0
      ).shape
      == ()
  )
