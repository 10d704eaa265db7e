"""Source only: train on labeled source data, apply to the target as is.

The lower reference of every domain-adaptation table: no transfer mechanism
beyond sharing the model, so any adaptation method must beat it.
"""

from tljax.methods.base import Method, supervised_on
from tljax.methods.registry import register_method


@register_method("source_only")
def build(config, model) -> Method:
  return Method(
      name="source_only",
      loss_fn=supervised_on("source")(config, model),
      domains=("source",),
      labeled=("source",),
      setting="transductive",
  )
