"""Linear probing, LP-FT and surgical fine-tuning: which parameters move.

* ``linear_probe``: the transferred network is a fixed feature extractor; only
  the head is trained, on features computed in inference mode (BatchNorm
  running statistics, no dropout), so the features really are fixed. The
  classic baseline of representation transfer (e.g. Kornblith et al., CVPR
  2019, "Do better ImageNet models transfer better?").
* ``lp_ft``: LP-FT (Kumar et al., ICLR 2022, "Fine-tuning can distort
  pretrained features and underperform out-of-distribution"): first a linear
  probe, then full fine-tuning that starts from the probe *with its head*, so
  the early, large gradients of a random head do not distort the features.
* ``surgical``: surgical fine-tuning (Lee et al., ICLR 2023, "Surgical
  fine-tuning improves adaptation to distribution shifts"): fine-tune only a
  chosen block — the first block for input-level shifts such as a change of
  rendering or preprocessing, later blocks for output-level shifts — with the
  rest frozen. The blocks are its setting ``blocks`` (regexes over ``a/b/c``
  names; ``config.method_kwargs.blocks``, default the first conv block); the
  re-initialised head trains as well, since a new random head cannot stay
  frozen.

All three start from the same seed's ``source_only`` run unless
``config.init_from.workdir`` is set.
"""

import re

import jax

from tljax.methods.base import Method, pretrain_run, supervised_on
from tljax.params import flatten
from tljax.methods.registry import register_method

HEAD_ONLY = (("head/.*", 1.0), (".*", None))


@register_method("linear_probe")
def build_linear_probe(config, model) -> Method:
  return Method(
      name="linear_probe",
      loss_fn=supervised_on("target", train=False)(config, model),
      domains=("target",),
      labeled=("target",),
      setting="inductive",
      needs=(pretrain_run(config),),
      trainable_rules=HEAD_ONLY,
  )


@register_method("lp_ft")
def build_lp_ft(config, model) -> Method:
  return Method(
      name="lp_ft",
      loss_fn=supervised_on("target")(config, model),
      domains=("target",),
      labeled=("target",),
      setting="inductive",
      needs=(pretrain_run(config, "linear_probe", dont_load=()),),
  )


def _check_surgical(settings):
  if not settings["blocks"]:
    raise ValueError(
        "config key 'method_kwargs.blocks' must name at least "
        "one block (regexes over a/b/c parameter names)"
    )


@register_method(
    "surgical",
    defaults=dict(blocks=("backbone/conv1/.*",)),
    check=_check_surgical,
)
def build_surgical(config, model, *, blocks) -> Method:
  rules = tuple((pattern, 1.0) for pattern in blocks) + HEAD_ONLY
  # A block pattern with a typo would silently turn this into a linear probe.
  names = list(flatten(jax.eval_shape(model.init, jax.random.key(0))[0]))
  unused = [
      pattern
      for pattern in blocks
      if not any(re.fullmatch(pattern, name) for name in names)
  ]
  if unused:
    raise ValueError(
        f"config key 'method_kwargs.blocks': {unused} match no "
        f"parameter; parameters look like {names[:6]}"
    )
  return Method(
      name="surgical",
      loss_fn=supervised_on("target")(config, model),
      domains=("target",),
      labeled=("target",),
      setting="inductive",
      needs=(pretrain_run(config),),
      trainable_rules=rules,
  )
