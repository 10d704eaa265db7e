"""Tests for tljax.relational against independent references.

References: each loss re-written here in NumPy (float64) with explicit loops
from its paper's formula — Hinton et al.'s tempered softmax and KL times T²,
RKD's distance and angle potentials with the Huber loss over all pairs and
triplets (means over b² and b³, as in the authors' released code), SP's
row-normalised Gram matrices; the high-temperature limit of the KD gradient;
and invariants (RKD under scaling, rotation and translation, SP under
scaling).
"""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from tljax import relational

RNG = np.random.default_rng(0)
STUDENT = RNG.normal(size=(6, 3))
TEACHER = RNG.normal(size=(6, 5))
STUDENT_LOGITS = RNG.normal(size=(5, 4)) * 3.0
TEACHER_LOGITS = RNG.normal(size=(5, 4)) * 3.0


# --- NumPy references --------------------------------------------------------


def numpy_softmax(row):
  shifted = np.exp(row - row.max())
  return shifted / shifted.sum()


def numpy_knowledge_distillation(student_logits, teacher_logits, temperature):
  total = 0.0
  for student_row, teacher_row in zip(student_logits, teacher_logits):
    p_student = numpy_softmax(np.asarray(student_row, np.float64) / temperature)
    p_teacher = numpy_softmax(np.asarray(teacher_row, np.float64) / temperature)
    total += sum(
        p_t * (np.log(p_t) - np.log(p_s))
        for p_t, p_s in zip(p_teacher, p_student)
    )
  return temperature**2 * total / len(student_logits)


def numpy_huber(residual):
  return 0.5 * residual**2 if abs(residual) < 1 else abs(residual) - 0.5


def numpy_distance_potentials(features):
  features = np.asarray(features, np.float64)
  size = len(features)
  distances = np.zeros((size, size))
  for i in range(size):
    for j in range(size):
      distances[i, j] = np.sqrt(np.sum((features[i] - features[j]) ** 2))
  mean = sum(
      distances[i, j] for i in range(size) for j in range(size) if i != j
  )
  mean /= size * (size - 1)
  return distances / mean


def numpy_rkd_distance(student, teacher):
  psi_student = numpy_distance_potentials(student)
  psi_teacher = numpy_distance_potentials(teacher)
  size = len(student)
  return (
      sum(
          numpy_huber(psi_teacher[i, j] - psi_student[i, j])
          for i in range(size)
          for j in range(size)
      )
      / size**2
  )


def numpy_unit(vector):
  norm = np.sqrt(np.sum(vector**2))
  return vector / norm if norm > 0 else np.zeros_like(vector)


def numpy_angle_potential(features, i, j, k):
  """cos of the angle at x_j between x_i and x_k."""
  e_ij = numpy_unit(features[i] - features[j])
  e_kj = numpy_unit(features[k] - features[j])
  return float(np.dot(e_ij, e_kj))


def numpy_rkd_angle(student, teacher):
  student = np.asarray(student, np.float64)
  teacher = np.asarray(teacher, np.float64)
  size = len(student)
  total = 0.0
  for i in range(size):
    for j in range(size):
      for k in range(size):
        total += numpy_huber(
            numpy_angle_potential(teacher, i, j, k)
            - numpy_angle_potential(student, i, j, k)
        )
  return total / size**3


def numpy_normalized_gram(activations):
  matrix = np.asarray(activations, np.float64).reshape(len(activations), -1)
  size = len(matrix)
  gram = np.zeros((size, size))
  for i in range(size):
    for j in range(size):
      gram[i, j] = np.dot(matrix[i], matrix[j])
  for i in range(size):
    gram[i] /= np.sqrt(np.sum(gram[i] ** 2))
  return gram


def numpy_similarity_preserving(student, teacher):
  difference = numpy_normalized_gram(teacher) - numpy_normalized_gram(student)
  return np.sum(difference**2) / len(student) ** 2


def random_isometry(rng, rows, columns):
  """A ``(rows, columns)`` matrix with orthonormal rows (``rows <= columns``)."""
  q, _ = np.linalg.qr(rng.normal(size=(columns, columns)))
  return q[:rows]


# --- values against the references -------------------------------------------


@pytest.mark.parametrize("temperature", [1.0, 4.0, 10.0])
def test_knowledge_distillation_matches_reference(temperature):
  with jax.enable_x64(True):
    value = relational.knowledge_distillation(
        STUDENT_LOGITS, TEACHER_LOGITS, temperature=temperature
    )
    assert value.dtype == jnp.float64
    np.testing.assert_allclose(
        value,
        numpy_knowledge_distillation(
            STUDENT_LOGITS, TEACHER_LOGITS, temperature
        ),
        rtol=1e-12,
    )
  value32 = relational.knowledge_distillation(
      STUDENT_LOGITS.astype(np.float32),
      TEACHER_LOGITS.astype(np.float32),
      temperature=temperature,
  )
  np.testing.assert_allclose(
      value32,
      numpy_knowledge_distillation(STUDENT_LOGITS, TEACHER_LOGITS, temperature),
      rtol=1e-4,
  )


def test_knowledge_distillation_t_squared_keeps_the_gradient_scale():
  # Hinton et al., Section 2.1: for zero-mean logits and large T the
  # gradient of KL·T² per example is (z_S − z_T)/C, whatever T is.
  with jax.enable_x64(True):
    student = STUDENT_LOGITS - STUDENT_LOGITS.mean(axis=1, keepdims=True)
    teacher = TEACHER_LOGITS - TEACHER_LOGITS.mean(axis=1, keepdims=True)
    batch, classes = student.shape
    limit = (student - teacher) / (classes * batch)
    errors = {}
    for temperature in (100.0, 1000.0):
      gradient = jax.grad(relational.knowledge_distillation)(
          student, teacher, temperature=temperature
      )
      errors[temperature] = np.abs(gradient - limit).max()
    # The approach is O(1/T): the same order of magnitude at every T.
    assert errors[1000.0] < 5e-3 * np.abs(limit).max()
    assert errors[1000.0] < 0.2 * errors[100.0]


def test_rkd_distance_matches_reference():
  with jax.enable_x64(True):
    np.testing.assert_allclose(
        relational.rkd_distance(STUDENT, TEACHER),
        numpy_rkd_distance(STUDENT, TEACHER),
        rtol=1e-12,
    )
  np.testing.assert_allclose(
      relational.rkd_distance(
          STUDENT.astype(np.float32), TEACHER.astype(np.float32)
      ),
      numpy_rkd_distance(STUDENT, TEACHER),
      rtol=1e-5,
  )


def test_rkd_distance_uses_both_huber_branches():
  # Spread-out student distances against clustered teacher ones: some
  # normalised-distance residuals exceed 1 (the linear branch).
  student = np.array(
      [[0.0, 0.0], [0.1, 0.0], [0.0, 0.1], [10.0, 0.0], [0.0, 10.0]]
  )
  teacher = np.array(
      [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.5, 0.5]]
  )
  assert (
      np.abs(
          numpy_distance_potentials(student)
          - numpy_distance_potentials(teacher)
      ).max()
      > 1
  )
  with jax.enable_x64(True):
    np.testing.assert_allclose(
        relational.rkd_distance(student, teacher),
        numpy_rkd_distance(student, teacher),
        rtol=1e-12,
    )


def test_rkd_angle_matches_reference():
  with jax.enable_x64(True):
    np.testing.assert_allclose(
        relational.rkd_angle(STUDENT, TEACHER),
        numpy_rkd_angle(STUDENT, TEACHER),
        rtol=1e-12,
    )
  np.testing.assert_allclose(
      relational.rkd_angle(
          STUDENT.astype(np.float32), TEACHER.astype(np.float32)
      ),
      numpy_rkd_angle(STUDENT, TEACHER),
      rtol=1e-5,
  )


def test_rkd_is_the_weighted_sum_with_the_papers_default_weights():
  parameters = inspect.signature(relational.rkd).parameters
  assert parameters["distance_weight"].default == 25.0
  assert parameters["angle_weight"].default == 50.0
  assert (
      inspect.signature(relational.knowledge_distillation)
      .parameters["temperature"]
      .default
      == 4.0
  )
  with jax.enable_x64(True):
    expected = 25.0 * numpy_rkd_distance(
        STUDENT, TEACHER
    ) + 50.0 * numpy_rkd_angle(STUDENT, TEACHER)
    np.testing.assert_allclose(
        relational.rkd(STUDENT, TEACHER), expected, rtol=1e-12
    )
    np.testing.assert_allclose(
        relational.rkd(STUDENT, TEACHER, distance_weight=1.0, angle_weight=2.0),
        numpy_rkd_distance(STUDENT, TEACHER)
        + 2.0 * numpy_rkd_angle(STUDENT, TEACHER),
        rtol=1e-12,
    )


def test_similarity_preserving_matches_reference_for_feature_maps():
  student_maps = RNG.normal(
      size=(5, 3, 2, 4)
  )  # (batch, height, width, channels)
  teacher_features = RNG.normal(size=(5, 7))
  with jax.enable_x64(True):
    np.testing.assert_allclose(
        relational.similarity_preserving(student_maps, teacher_features),
        numpy_similarity_preserving(student_maps, teacher_features),
        rtol=1e-12,
    )
  np.testing.assert_allclose(
      relational.similarity_preserving(
          student_maps.astype(np.float32), teacher_features.astype(np.float32)
      ),
      numpy_similarity_preserving(student_maps, teacher_features),
      rtol=1e-5,
  )


# --- invariances and sensitivity ---------------------------------------------


def test_rkd_is_zero_for_a_scaled_rotated_translated_student():
  rng = np.random.default_rng(1)
  teacher = rng.normal(size=(6, 5))
  scaled_copy = 3.7 * teacher
  # A scaled isometric embedding of the student's 3 dimensions into the
  # teacher's 5, translated: different feature sizes, same geometry.
  student = rng.normal(size=(6, 3))
  embedded = 3.7 * student @ random_isometry(rng, 3, 5) + rng.normal(size=5)
  with jax.enable_x64(True):
    assert abs(float(relational.rkd_distance(scaled_copy, teacher))) < 1e-20
    assert abs(float(relational.rkd_distance(student, embedded))) < 1e-20
    assert abs(float(relational.rkd_angle(student, embedded))) < 1e-20
    assert abs(float(relational.rkd(student, embedded))) < 1e-18
  assert (
      float(
          relational.rkd(
              student.astype(np.float32), embedded.astype(np.float32)
          )
      )
      < 1e-8
  )


def test_similarity_preserving_is_zero_for_a_scaled_student():
  teacher = RNG.normal(size=(6, 2, 3))
  with jax.enable_x64(True):
    assert (
        float(relational.similarity_preserving(2.5 * teacher, teacher)) < 1e-25
    )
    assert (
        float(
            relational.similarity_preserving(
                -0.3 * teacher.reshape(6, -1), teacher
            )
        )
        < 1e-25
    )


def test_knowledge_distillation_is_zero_for_the_teachers_logits():
  with jax.enable_x64(True):
    assert (
        abs(
            float(
                relational.knowledge_distillation(
                    TEACHER_LOGITS, TEACHER_LOGITS
                )
            )
        )
        < 1e-14
    )
    # A constant shift per example leaves the softmax unchanged.
    assert (
        abs(
            float(
                relational.knowledge_distillation(
                    TEACHER_LOGITS + np.arange(5.0)[:, None], TEACHER_LOGITS
                )
            )
        )
        < 1e-14
    )


def test_losses_are_positive_for_unrelated_inputs():
  assert (
      float(relational.knowledge_distillation(STUDENT_LOGITS, TEACHER_LOGITS))
      > 0.1
  )
  assert float(relational.rkd_distance(STUDENT, TEACHER)) > 1e-2
  assert float(relational.rkd_angle(STUDENT, TEACHER)) > 1e-2
  assert float(relational.rkd(STUDENT, TEACHER)) > 1.0
  assert float(relational.similarity_preserving(STUDENT, TEACHER)) > 1e-2


# --- gradients, transformations ----------------------------------------------


def test_gradients_are_finite_and_correct_when_two_examples_coincide():
  student = STUDENT.copy()
  student[1] = student[0]
  teacher = TEACHER.copy()
  teacher[3] = teacher[2]
  # Every example at one point: no distance to normalise by.
  collapsed_student = np.ones_like(STUDENT)
  collapsed_teacher = np.ones_like(TEACHER)
  with jax.enable_x64(True):
    for loss, reference in [
        (relational.rkd_distance, numpy_rkd_distance),
        (relational.rkd_angle, numpy_rkd_angle),
    ]:
      np.testing.assert_allclose(
          loss(student, teacher), reference(student, teacher), rtol=1e-12
      )
      np.testing.assert_allclose(
          loss(STUDENT, teacher), reference(STUDENT, teacher), rtol=1e-12
      )
      for pair in [
          (student, teacher),
          (STUDENT, teacher),
          (collapsed_student, TEACHER),
          (STUDENT, collapsed_teacher),
      ]:
        assert np.isfinite(float(loss(*pair))), loss.__name__
        assert np.all(np.isfinite(jax.grad(loss)(*pair))), loss.__name__
    for pair in [(student, teacher), (collapsed_student, TEACHER)]:
      assert np.all(np.isfinite(jax.grad(relational.rkd)(*pair)))
    # An all-zero activation makes a zero row of the Gram matrix.
    zero_row = STUDENT.copy()
    zero_row[2] = 0.0
    assert np.all(
        np.isfinite(
            jax.grad(relational.similarity_preserving)(zero_row, TEACHER)
        )
    )


@pytest.mark.parametrize(
    "loss, student, teacher",
    [
        (relational.rkd_distance, STUDENT, TEACHER),
        (relational.rkd_angle, STUDENT, TEACHER),
        (relational.similarity_preserving, STUDENT, TEACHER),
        (relational.knowledge_distillation, STUDENT_LOGITS, TEACHER_LOGITS),
    ],
    ids=[
        "rkd_distance",
        "rkd_angle",
        "similarity_preserving",
        "knowledge_distillation",
    ],
)
def test_gradients_match_finite_differences_and_stop_at_the_teacher(
    loss, student, teacher
):
  with jax.enable_x64(True):
    check_grads(lambda s: loss(s, teacher), (student,), order=1, modes=["rev"])
    teacher_gradient = jax.grad(loss, argnums=1)(student, teacher)
    np.testing.assert_array_equal(teacher_gradient, 0.0)


def test_losses_work_under_jit_and_vmap():
  for loss, student, teacher in [
      (relational.rkd, STUDENT, TEACHER),
      (relational.similarity_preserving, STUDENT, TEACHER),
      (relational.knowledge_distillation, STUDENT_LOGITS, TEACHER_LOGITS),
  ]:
    np.testing.assert_allclose(
        jax.jit(loss)(student, teacher), loss(student, teacher), rtol=1e-5
    )
  # A vmapped sweep over the hyper-parameters (traced, so unchecked).
  temperatures = jnp.array([1.0, 2.0, 4.0])
  swept = jax.vmap(
      lambda t: relational.knowledge_distillation(
          STUDENT_LOGITS, TEACHER_LOGITS, temperature=t
      )
  )(temperatures)
  np.testing.assert_allclose(
      swept,
      [
          numpy_knowledge_distillation(STUDENT_LOGITS, TEACHER_LOGITS, t)
          for t in (1.0, 2.0, 4.0)
      ],
      rtol=1e-4,
  )
  weights = jnp.array([[25.0, 50.0], [1.0, 2.0]])
  swept = jax.vmap(
      lambda w: relational.rkd(
          STUDENT, TEACHER, distance_weight=w[0], angle_weight=w[1]
      )
  )(weights)
  distance = numpy_rkd_distance(STUDENT, TEACHER)
  angle = numpy_rkd_angle(STUDENT, TEACHER)
  np.testing.assert_allclose(
      swept, [25 * distance + 50 * angle, distance + 2 * angle], rtol=1e-5
  )
  # A vmapped batch of (student, teacher) pairs.
  students = np.stack([STUDENT, 2.0 * TEACHER[:, :3]])
  teachers = np.stack([TEACHER, TEACHER])
  batched = jax.vmap(relational.rkd_angle)(students, teachers)
  np.testing.assert_allclose(
      batched,
      [numpy_rkd_angle(s, t) for s, t in zip(students, teachers)],
      rtol=1e-5,
  )


# --- argument checks -----------------------------------------------------------


NAN_FEATURES = STUDENT.copy()
NAN_FEATURES[0, 0] = np.nan
INF_LOGITS = TEACHER_LOGITS.copy()
INF_LOGITS[1, 2] = np.inf

BAD_CALLS = [
    # knowledge_distillation
    (
        lambda: relational.knowledge_distillation(
            np.where(np.isinf(INF_LOGITS), np.nan, INF_LOGITS), TEACHER_LOGITS
        ),
        "student_logits must be finite",
    ),
    (
        lambda: relational.knowledge_distillation(STUDENT_LOGITS, INF_LOGITS),
        "teacher_logits must be finite",
    ),
    (
        lambda: relational.knowledge_distillation(
            STUDENT_LOGITS, TEACHER_LOGITS[:, :3]
        ),
        "teacher_logits must have the same number of classes as student_logits",
    ),
    (
        lambda: relational.knowledge_distillation(
            STUDENT_LOGITS, TEACHER_LOGITS[:4]
        ),
        "teacher_logits must have the same batch size as student_logits",
    ),
    (
        lambda: relational.knowledge_distillation(
            STUDENT_LOGITS[0], TEACHER_LOGITS
        ),
        r"student_logits must have shape \(batch, num_classes\)",
    ),
    (
        lambda: relational.knowledge_distillation(
            STUDENT_LOGITS, TEACHER_LOGITS, temperature=0.0
        ),
        "temperature must be a finite number > 0",
    ),
    (
        lambda: relational.knowledge_distillation(
            STUDENT_LOGITS, TEACHER_LOGITS, temperature=-2.0
        ),
        "temperature must be a finite number > 0",
    ),
    (
        lambda: relational.knowledge_distillation(
            STUDENT_LOGITS, TEACHER_LOGITS, temperature="4"
        ),
        "temperature must be a positive number",
    ),
    # rkd_distance
    (
        lambda: relational.rkd_distance(STUDENT[:1], TEACHER[:1]),
        r"student must have at least 2 rows \(a distance needs two examples\)",
    ),
    (
        lambda: relational.rkd_distance(STUDENT, TEACHER[:5]),
        "teacher must have the same batch size as student",
    ),
    (
        lambda: relational.rkd_distance(NAN_FEATURES, TEACHER),
        "student must be finite",
    ),
    (
        lambda: relational.rkd_distance(STUDENT, np.full_like(TEACHER, np.inf)),
        "teacher must be finite",
    ),
    (
        lambda: relational.rkd_distance(STUDENT[:, 0], TEACHER),
        r"student must have shape \(batch, dim\)",
    ),
    (
        lambda: relational.rkd_distance(STUDENT, TEACHER.astype(np.complex64)),
        "teacher must hold real numbers",
    ),
    # rkd_angle
    (
        lambda: relational.rkd_angle(STUDENT[:2], TEACHER[:2]),
        r"student must have at least 3 rows \(an angle needs three examples\)",
    ),
    (
        lambda: relational.rkd_angle(STUDENT[:3], TEACHER[:2]),
        "teacher must have at least 3 rows",
    ),
    (
        lambda: relational.rkd_angle(STUDENT[:4], TEACHER),
        "teacher must have the same batch size as student",
    ),
    (
        lambda: relational.rkd_angle(
            STUDENT, np.where(TEACHER > 1, np.nan, TEACHER)
        ),
        "teacher must be finite",
    ),
    # rkd
    (
        lambda: relational.rkd(STUDENT[:2], TEACHER[:2]),
        "student must have at least 3 rows",
    ),
    (
        lambda: relational.rkd(STUDENT, TEACHER[:3]),
        "teacher must have the same batch size as student",
    ),
    (lambda: relational.rkd(NAN_FEATURES, TEACHER), "student must be finite"),
    (
        lambda: relational.rkd(STUDENT, TEACHER, distance_weight=-1.0),
        "distance_weight must be a finite number >= 0",
    ),
    (
        lambda: relational.rkd(STUDENT, TEACHER, angle_weight=-0.5),
        "angle_weight must be a finite number >= 0",
    ),
    (
        lambda: relational.rkd(STUDENT, TEACHER, angle_weight=float("nan")),
        "angle_weight must be a finite number >= 0",
    ),
    (
        lambda: relational.rkd(STUDENT, TEACHER, distance_weight=None),
        "distance_weight must be a non-negative number",
    ),
    # similarity_preserving
    (
        lambda: relational.similarity_preserving(STUDENT[:, 0], TEACHER),
        r"student must have shape \(batch, \.\.\.\)",
    ),
    (
        lambda: relational.similarity_preserving(STUDENT, np.zeros((6, 0, 3))),
        r"teacher must have shape \(batch, \.\.\.\)",
    ),
    (
        lambda: relational.similarity_preserving(STUDENT, TEACHER[:2]),
        "teacher must have the same batch size as student",
    ),
    (
        lambda: relational.similarity_preserving(
            NAN_FEATURES.reshape(6, 3, 1), TEACHER
        ),
        "student must be finite",
    ),
    (
        lambda: relational.similarity_preserving(STUDENT, object()),
        "teacher must be an array of numbers",
    ),
]


@pytest.mark.parametrize(
    "call, message", BAD_CALLS, ids=[f"bad{i}" for i in range(len(BAD_CALLS))]
)
def test_bad_inputs_raise_value_error_naming_the_argument(call, message):
  with pytest.raises(ValueError, match=message):
    call()
