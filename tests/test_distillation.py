"""The ``distill`` recipe: a student trained with a base recipe plus distillation from a teacher."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import moons
from tljax import methods as methods_lib
from tljax import relational
from tljax.train.experiment import check_experiment_config
from tljax.params import read_checkpoint
from tljax.train.experiment import run_experiment
from tljax.train.loop import build_model, load_domains, train_and_evaluate

TEACHER_MODEL = {"name": "mlp", "hidden_dims": (64, 64), "bottleneck_dim": 32}


def small_config(**distill):
  config = moons.get_config("method=distill,seeds=1")
  config.baselines = ()
  config.progress_bar = False
  config.steps = 20
  config.batch_size = 32
  config.model.hidden_dims = (16,)  # the student: another architecture
  config.model.bottleneck_dim = 8
  config.method_kwargs.teacher_model = dict(TEACHER_MODEL)
  for key, value in distill.items():
    config.method_kwargs[key] = value
  return config


def numpy_kd(student_logits, teacher_logits, temperature):
  def log_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))

  log_p = log_softmax(teacher_logits / temperature)
  log_q = log_softmax(student_logits / temperature)
  return temperature**2 * np.mean(
      np.sum(np.exp(log_p) * (log_p - log_q), axis=1)
  )


def test_loss_is_base_loss_plus_weighted_terms():
  config = small_config(
      losses=("kd", "rkd", "sp"),
      temperature=3.0,
      kd_weight=0.7,
      rkd_distance_weight=2.0,
      rkd_angle_weight=5.0,
      sp_weight=11.0,
  )
  domains = load_domains(config)
  model = build_model(config, domains)
  method = methods_lib.build_method("distill", config, model)
  base = methods_lib.build_method("source_only", config, model)
  from tljax.methods.distillation import teacher_network

  teacher = teacher_network(config.method_kwargs.teacher_model, model)
  params, state = model.init(jax.random.key(0))
  teacher_params, teacher_state = teacher.init(jax.random.key(1))
  extras = {
      "teacher": {"params": teacher_params, "model_state": teacher_state},
      "base": None,
  }
  rng = np.random.default_rng(0)
  batch = {
      "step": jnp.int32(0),
      "source": {
          "input": jnp.asarray(rng.normal(size=(8, 2)), jnp.float32),
          "label": jnp.asarray(rng.integers(0, 2, 8), jnp.int32),
      },
      "target": {"input": jnp.asarray(rng.normal(size=(8, 2)), jnp.float32)},
  }
  key = jax.random.key(3)
  loss, (_, metrics) = method.loss_fn(params, state, batch, key, extras)
  base_loss, _ = base.loss_fn(
      params, state, batch, jax.random.split(key)[0], None
  )
  student, _ = model.apply(params, state, batch["target"]["input"], train=True)
  teach, _ = teacher.apply(
      teacher_params, teacher_state, batch["target"]["input"], train=False
  )
  kd = numpy_kd(
      np.asarray(student.logits, np.float64),
      np.asarray(teach.logits, np.float64),
      3.0,
  )
  distance = relational.rkd_distance(student.features, teach.features)
  angle = relational.rkd_angle(student.features, teach.features)
  sp = relational.similarity_preserving(student.features, teach.features)
  expected = (
      float(base_loss)
      + 0.7 * kd
      + 2.0 * float(distance)
      + 5.0 * float(angle)
      + 11.0 * float(sp)
  )
  np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
  np.testing.assert_allclose(float(metrics["kd"]), kd, rtol=1e-5)
  assert float(metrics["rkd_angle"]) > 0 and float(metrics["sp"]) > 0
  # The teacher gets no gradient; the student does, from the distillation.
  grads = jax.grad(
      lambda p, e: method.loss_fn(p, state, batch, key, e)[0], argnums=(0, 1)
  )(params, extras)
  assert all(
      float(jnp.abs(leaf).max()) == 0 for leaf in jax.tree.leaves(grads[1])
  )
  assert any(
      float(jnp.abs(leaf).max()) > 0 for leaf in jax.tree.leaves(grads[0])
  )


def _predictions(model, run):
  params, state = read_checkpoint(run)
  keys = set(jax.eval_shape(model.init, jax.random.key(0))[0])
  params = {k: v for k, v in params.items() if k in keys}
  return params, state


def test_kd_student_follows_teacher_on_target(tmp_path):
  """KD on unlabeled target inputs makes the student agree with the teacher there."""
  config = small_config(teacher_method="dann", losses=("kd",))
  config.steps = 300
  config.batch_size = 128
  config.baselines = ("source_only",)
  results = run_experiment(config, str(tmp_path))
  teacher_run = tmp_path / "teacher" / "dann" / "seed_0"
  assert (teacher_run / "summary.json").exists()
  domains = load_domains(config)
  student = build_model(config, domains)
  from tljax.methods.distillation import teacher_network

  teacher = teacher_network(config.method_kwargs.teacher_model, student)
  inputs = jnp.asarray(domains["target"]["test"].inputs)
  t_params, t_state = _predictions(teacher, str(teacher_run))
  teacher_labels = np.argmax(
      teacher.apply(t_params, t_state, inputs, train=False)[0].logits, -1
  )
  agreement = {}
  for name in ("distill", "source_only"):
    params, state = _predictions(student, str(tmp_path / name / "seed_0"))
    labels = np.argmax(
        student.apply(params, state, inputs, train=False)[0].logits, -1
    )
    agreement[name] = float(np.mean(labels == teacher_labels))
  assert agreement["distill"] > agreement["source_only"] + 0.02, agreement
  assert agreement["distill"] > 0.9, agreement
  rows = {row["method"]: row for row in results["table"]}
  assert set(rows) == {"distill", "source_only"}


def test_bad_settings_name_the_key(tmp_path):
  for distill, key in [
      ({"losses": ("kd", "fitnet")}, "method_kwargs.losses"),
      ({"domains": ("test",)}, "method_kwargs.domains"),
      ({"temperature": 0.0}, "method_kwargs.temperature"),
      ({"kd_weight": -1.0}, "method_kwargs.kd_weight"),
      ({"base": "mcd"}, "method_kwargs.base"),
  ]:
    config = small_config(**distill)
    domains = load_domains(config)
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
      methods_lib.build_method("distill", config, build_model(config, domains))
  config = small_config()
  config.method_kwargs.teacher_model = {"name": "no_such_model"}
  with pytest.raises(ValueError, match=r"method_kwargs\.teacher_model\.name"):
    check_experiment_config(config)
  config = small_config(base="nope")
  with pytest.raises(ValueError, match=r"method_kwargs\.base"):
    check_experiment_config(config)
  config = small_config(teacher_method="nope")
  with pytest.raises(
      ValueError,
      match=r"method_kwargs\.teacher_method': " r"method 'nope' is unknown",
  ):
    check_experiment_config(config)
  config = small_config(base="dann", base_kwargs={"trade_of": 0.3})
  with pytest.raises(
      ValueError,
      match=r"method_kwargs\.base_kwargs.*"
      r"'method_kwargs\.trade_of' is unknown for method 'dann'",
  ):
    check_experiment_config(config)


def test_missing_or_mismatched_teacher(tmp_path):
  config = small_config()
  with pytest.raises(ValueError, match=r"method_kwargs\.teacher_workdir"):
    train_and_evaluate(config, str(tmp_path / "student"), seed=0)
  # A finished run of another architecture is refused, naming the key.
  other = small_config()
  other.method, other.method_kwargs = "source_only", {}
  other.model = {"name": "mlp", "hidden_dims": (5,), "bottleneck_dim": 3}
  train_and_evaluate(other, str(tmp_path / "other"), seed=0)
  config.method_kwargs.teacher_workdir = str(tmp_path / "other")
  with pytest.raises(ValueError, match=r"method_kwargs\.teacher_workdir.*fit"):
    train_and_evaluate(config, str(tmp_path / "student2"), seed=0)
  assert not os.path.exists(tmp_path / "student2" / "summary.json")
