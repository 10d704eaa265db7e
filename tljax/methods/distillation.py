"""Relational-knowledge transfer: a student learns from a trained teacher.

``distill`` trains a *student* (``config.model``) with another recipe's loss
(its setting ``base``: ``source_only``, ``target_only`` or any
domain-adaptation recipe such as ``dann`` or ``jan``, with that recipe's
settings in ``base_kwargs``) plus distillation terms that make the student
reproduce what a frozen *teacher* network does on the inputs of ``domains``
(the target by default) in each batch. Those are the domain's unlabeled
inputs (its whole training split) when the base recipe may not label it; with
a base that labels it (``target_only`` on the target) the domain's stream is
its labeled examples, so distillation then sees only those (the loop keeps
one stream per domain):

* ``"kd"`` — Hinton et al.'s soft targets at temperature ``T``
  (:func:`tljax.relational.knowledge_distillation`, ``T²`` included),
  weighted by ``kd_weight``;
* ``"rkd"`` — relational knowledge distillation (Park et al., CVPR 2019):
  the distance-wise and angle-wise losses on the features, weighted by
  ``rkd_distance_weight`` and ``rkd_angle_weight`` (25 and 50, the paper's);
* ``"sp"`` — similarity-preserving distillation (Tung and Mori, ICCV 2019)
  on the features, weighted by ``sp_weight`` (3,000, the paper's CIFAR-10
  value, chosen for its feature maps: retune for others).

The settings (:data:`DEFAULTS`) are set in ``config.method_kwargs``. The
teacher may have another architecture (``teacher_model``; empty: the
student's); only its number of classes must match for ``kd``. It is the
recipe's ``"teacher"`` :class:`tljax.methods.PriorRun`: a finished tljax run
read from ``teacher_workdir`` (``{seed}`` is replaced by the seed) or, left
empty, one that :func:`tljax.train.experiment.run_experiment` first trains
per seed with ``teacher_method`` (``source_only``: a teacher of the source;
``target_only`` with ``target.labels_per_class``: one of the target's few
labels) into ``workdir/teacher/<method>/seed_<seed>``.

Features are the models' ``features`` outputs (the bottleneck when there is
one, else the backbone's), in training mode for the student and inference
mode for the teacher. Deviation from a fused implementation: the student's
outputs on the distilled inputs come from a second forward pass, after the
base recipe's own; its BatchNorm statistics updates are dropped, so the base
recipe's are the ones kept.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from tljax import relational
from tljax.methods.base import DOMAINS, Method, PriorRun
from tljax.methods.registry import (
    available_methods,
    build_method,
    method_settings,
    register_method,
)
from tljax.models import available_models, create_model
from tljax.params import read_checkpoint

LOSSES = ("kd", "rkd", "sp")
TEACHER = "teacher"
BASE = "base"


DEFAULTS = dict(
    base="source_only",
    base_kwargs={},
    losses=("kd",),
    domains=("target",),
    teacher_workdir="",
    teacher_method="source_only",
    teacher_model={},
    temperature=4.0,
    kd_weight=1.0,
    rkd_distance_weight=25.0,
    rkd_angle_weight=50.0,
    sp_weight=3000.0,
)
WEIGHTS = (
    "kd_weight",
    "rkd_distance_weight",
    "rkd_angle_weight",
    "sp_weight",
    "temperature",
)


def teacher_network(teacher_config, model):
  """The teacher's :class:`tljax.models.Model` for the student ``model``'s task.

  ``teacher_config``: the ``teacher_model`` setting (``name`` plus keyword
  arguments; empty: the student's architecture).
  """
  teacher_config = dict(teacher_config)
  if not teacher_config:
    return model
  name = teacher_config.pop("name", None)
  if not isinstance(name, str) or not name:
    raise ValueError(
        "config key 'method_kwargs.teacher_model' must name a "
        "model ('name') or be empty (the student's model)"
    )
  return create_model(
      name,
      num_classes=model.num_classes,
      input_shape=tuple(model.input_shape),
      **teacher_config,
  )


def check_settings(settings) -> None:
  """Raises ``ValueError`` naming the ``method_kwargs`` key of a bad setting."""
  losses, domains = settings["losses"], settings["domains"]
  if not losses or set(losses) - set(LOSSES):
    raise ValueError(
        f"config key 'method_kwargs.losses' must be a non-empty "
        f"sequence of {list(LOSSES)}, got {losses!r}"
    )
  if not domains or set(domains) - set(DOMAINS):
    raise ValueError(
        f"config key 'method_kwargs.domains' must be a non-empty "
        f"sequence of {list(DOMAINS)}, got {domains!r}"
    )
  for name in WEIGHTS:
    value = settings[name]
    if not value >= 0 or (name == "temperature" and not value > 0):
      bound = "> 0" if name == "temperature" else ">= 0"
      raise ValueError(
          f"config key 'method_kwargs.{name}' must be {bound}, "
          f"got {value!r}"
      )
  if settings["base"] == "distill":
    raise ValueError("config key 'method_kwargs.base' cannot be 'distill'")
  methods = available_methods()
  for key in ("base", "teacher_method"):
    if settings[key] not in methods:
      raise ValueError(
          f"config key 'method_kwargs.{key}': method "
          f"{settings[key]!r} is unknown; registered methods: "
          f"{methods}"
      )
  teacher = settings["teacher_model"].get("name")
  if settings["teacher_model"] and teacher not in available_models():
    raise ValueError(
        f"config key 'method_kwargs.teacher_model.name': model "
        f"{teacher!r} is unknown; registered models: "
        f"{available_models()}"
    )
  try:
    method_settings(settings["base"], settings["base_kwargs"])
  except ValueError as error:
    raise ValueError(
        f"config key 'method_kwargs.base_kwargs' (of "
        f"{settings['base']!r}): {error}"
    ) from None


def distillation_terms(losses, weights, student, teacher):
  """The weighted distillation terms and their metrics.

  Args:
    losses: names from :data:`LOSSES`.
    weights: the ``distill`` weights and temperature.
    student: the student's model outputs (``logits``, ``features``).
    teacher: the teacher's.
  """
  total, metrics = 0.0, {}
  student_features = student.features.astype(jnp.float32)
  teacher_features = teacher.features.astype(jnp.float32)
  if "kd" in losses:
    term = relational.knowledge_distillation(
        student.logits.astype(jnp.float32),
        teacher.logits.astype(jnp.float32),
        temperature=weights["temperature"],
    )
    total += weights["kd_weight"] * term
    metrics["kd"] = term
  if "rkd" in losses:
    distance = relational.rkd_distance(student_features, teacher_features)
    angle = relational.rkd_angle(student_features, teacher_features)
    total += (
        weights["rkd_distance_weight"] * distance
        + weights["rkd_angle_weight"] * angle
    )
    metrics.update(rkd_distance=distance, rkd_angle=angle)
  if "sp" in losses:
    term = relational.similarity_preserving(student_features, teacher_features)
    total += weights["sp_weight"] * term
    metrics["sp"] = term
  return total, metrics


@register_method("distill", defaults=DEFAULTS, check=check_settings)
def build_distill(
    config,
    model,
    *,
    base,
    base_kwargs,
    losses,
    domains,
    teacher_workdir,
    teacher_method,
    teacher_model: dict,
    **weights,
) -> Method:
  """The student's recipe (see the module docstring)."""
  distill_domains = domains
  base_name = base
  base = build_method(base_name, config, model, kwargs=base_kwargs)
  if base.stages:
    raise ValueError(
        f"config key 'method_kwargs.base': {base_name!r} updates "
        "in stages and cannot be combined with distillation"
    )
  teacher = teacher_network(teacher_model, model)
  if "rkd" in losses and config.batch_size * len(distill_domains) < 3:
    raise ValueError(
        "config key 'batch_size' must give at least 3 distilled "
        "examples per step for the RKD angle loss"
    )
  model_keys = frozenset(jax.eval_shape(model.init, jax.random.key(0))[0])
  teacher_run = PriorRun(
      TEACHER,
      teacher_method,
      workdir=teacher_workdir or None,
      model=dict(teacher_model) or None,
  )

  def init_extras(context):
    directory = context.prior_runs.get(TEACHER)
    if not directory:
      raise ValueError(
          "method 'distill' needs its teacher run: set "
          "config key 'method_kwargs.teacher_workdir', or run "
          "through run_experiment, which trains one with "
          "method_kwargs.teacher_method"
      )
    teacher_params, teacher_state = read_checkpoint(directory)
    teacher_keys = frozenset(jax.eval_shape(teacher.init, jax.random.key(0))[0])
    teacher_params = {
        key: value
        for key, value in teacher_params.items()
        if key in teacher_keys
    }
    # The checkpoint must fit the teacher model (names and shapes).
    probe = jnp.zeros((1, *teacher.input_shape), jnp.float32)
    try:
      jax.eval_shape(
          lambda p, s: teacher.apply(p, s, probe, train=False),
          teacher_params,
          teacher_state,
      )
    except Exception as error:  # noqa: BLE001 (re-raised with the argument)
      raise ValueError(
          f"config key 'method_kwargs.teacher_workdir': the checkpoint in "
          f"{directory!r} does not fit the teacher model {teacher.name!r}: "
          f"{error}"
      ) from None
    base_extras = base.init_extras(context) if base.init_extras else None
    return {
        TEACHER: {"params": teacher_params, "model_state": teacher_state},
        BASE: base_extras,
    }

  def loss_fn(params, model_state, batch, key, extras, **traced):
    # traced: the base recipe's hparams, passed on as the step passes them.
    base_key, student_key = jax.random.split(key)
    loss, (model_state_out, metrics) = base.loss_fn(
        params, model_state, batch, base_key, extras[BASE], **traced
    )
    inputs = jnp.concatenate(
        [batch[domain]["input"] for domain in distill_domains]
    )
    student_params = {
        name: value for name, value in params.items() if name in model_keys
    }
    student, _ = model.apply(
        student_params, model_state, inputs, train=True, key=student_key
    )
    frozen = jax.lax.stop_gradient(extras[TEACHER])
    teacher_outputs, _ = teacher.apply(
        frozen["params"], frozen["model_state"], inputs, train=False
    )
    term, distill_metrics = distillation_terms(
        losses, weights, student, teacher_outputs
    )
    return loss + term, (
        model_state_out,
        {**metrics, **distill_metrics, "distillation": term},
    )

  return Method(
      name="distill",
      loss_fn=loss_fn,
      domains=tuple(dict.fromkeys(base.domains + distill_domains)),
      labeled=base.labeled,
      setting=base.setting,
      init_extras=init_extras,
      init_params=base.init_params,
      needs=(*base.needs, teacher_run),
      hparams=base.hparams,
      trainable_rules=base.trainable_rules,
      replaces_weight_decay=base.replaces_weight_decay,
      example_indices=base.example_indices,
  )
