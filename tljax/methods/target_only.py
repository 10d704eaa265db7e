"""Target only: train on labeled target data (the oracle reference).

It uses target training labels, which a transductive method never sees, so it
is reported as the upper reference next to adaptation results; the gap between
it and ``source_only`` is what adaptation tries to close, and a transfer method
doing worse than it on a labeled target is negative transfer.
"""

from tljax.methods.base import Method, supervised_on
from tljax.methods.registry import register_method


@register_method("target_only")
def build(config, model) -> Method:
  return Method(
      name="target_only",
      loss_fn=supervised_on("target")(config, model),
      domains=("target",),
      labeled=("target",),
      setting="inductive",
  )
