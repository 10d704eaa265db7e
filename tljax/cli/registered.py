"""The recipes and models tljax registers, written out to check names without JAX.

``tljax train --set method=jann`` or ``--set method_kwargs.trade_of=1`` is a
typo the registries (:mod:`tljax.methods`, :mod:`tljax.models`) would name,
but only after the seconds it takes to import them and JAX.
:func:`check_registered_names` makes the same checks, with the same
messages, from the lists below (a test keeps them equal to the registries),
before anything is imported. A recipe or model a plugin registers can only
exist once the registry's module is imported (by the config file, say);
then the registry itself decides, when the run starts.
"""

from __future__ import annotations

import sys

from ml_collections import ConfigDict

from tljax.cli.config_file import CommandError

# tljax.methods: every recipe and the keys of its method_kwargs.
METHODS = {
    "afn": ("delta_r", "trade_off"),
    "bss": ("eta", "k"),
    "cdan": ("bsp_weight", "hidden_dim", "random_map_dim", "trade_off"),
    "cdan_e": ("bsp_weight", "hidden_dim", "random_map_dim", "trade_off"),
    "co_tuning": ("trade_off",),
    "dae": (
        "corruption",
        "corruption_level",
        "hidden_dim",
        "reconstruction_loss",
    ),
    "dan": ("trade_off",),
    "dann": ("bsp_weight", "hidden_dim", "trade_off"),
    "deep_coral": ("coral_convention", "trade_off"),
    "deepjdot": ("alpha", "target_weight", "trade_off"),
    "delta": ("alpha", "attention", "beta", "layer"),
    "distill": (
        "base",
        "base_kwargs",
        "domains",
        "kd_weight",
        "losses",
        "rkd_angle_weight",
        "rkd_distance_weight",
        "sp_weight",
        "teacher_method",
        "teacher_model",
        "teacher_workdir",
        "temperature",
    ),
    "finetune": (),
    "importance_weighting": ("estimator", "estimator_kwargs"),
    "jan": ("trade_off",),
    "l2_sp": ("alpha", "beta"),
    "linear_probe": (),
    "lp_ft": (),
    "mcc": ("temperature", "trade_off"),
    "mcd": ("num_k",),
    "mdd": (
        "bsp_weight",
        "hidden_dim",
        "margin",
        "max_coefficient",
        "trade_off",
        "warmup_iters",
    ),
    "simclr": (
        "hidden_dim",
        "max_rotation_degrees",
        "min_area",
        "noise_std",
        "projection_dim",
        "temperature",
    ),
    "sinkhorn": ("epsilon", "normalize", "trade_off"),
    "source_only": (),
    "surgical": ("blocks",),
    "target_only": (),
}

# tljax.models: every architecture.
MODELS = (
    "lenet",
    "mlp",
    "resnet",
    "resnet101",
    "resnet18",
    "resnet34",
    "resnet50",
    "vit",
    "vit_b16",
    "vit_b32",
    "vit_l16",
    "vit_l32",
    "vit_s16",
    "vit_s32",
    "vit_ti16",
    "vit_ti32",
)


def check_registered_names(config: ConfigDict) -> None:
  """Refuses an unknown recipe, ``method_kwargs`` key or model, as the registries would.

  ``config.method`` and ``config.baselines`` must be recipes, the keys of
  ``config.method_kwargs`` the method's, ``config.model.name`` a model:
  :func:`tljax.train.experiment.check_experiment_config`'s checks, with its
  messages, made here only while its registries are not imported (so that
  none holds a plugin's entry these lists do not have).
  """
  if "tljax.methods" not in sys.modules:
    methods = sorted(METHODS)
    named = [
        ("method", config.method),
        *((f"baselines[{i}]", name) for i, name in enumerate(config.baselines)),
    ]
    for key, name in named:
      if name not in METHODS:
        raise CommandError(
            f"config key {key!r}: method {name!r} is unknown; "
            f"registered methods: {methods}"
        )
    given = config.get("method_kwargs") or {}
    unknown = sorted(set(given) - set(METHODS[config.method]))
    if unknown:
      raise CommandError(
          f"config key 'method_kwargs.{unknown[0]}' is unknown for method "
          f"{config.method!r}; allowed keys: "
          f"{sorted(METHODS[config.method])}"
      )
  if "tljax.models" not in sys.modules and config.model.name not in MODELS:
    raise CommandError(
        f"config key 'model.name': model {config.model.name!r} is "
        f"unknown; registered models: {list(MODELS)}"
    )
