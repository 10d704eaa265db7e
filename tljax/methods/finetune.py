"""Fine-tuning: start from source-trained parameters, train on target labels.

The basic form of parameter transfer (inductive setting; e.g. Yosinski et al.,
"How transferable are features in deep neural networks?", NeurIPS 2014). The
initial parameters come from ``config.init_from`` (a source run's work dir,
restored by :func:`tljax.params.load_pretrained` with its ``dont_load`` rules
for the parts that are re-initialised, such as a new head); without it, the
experiment first trains ``source_only`` with the same seed and starts from its
final checkpoint. Which parameters move is set by ``config.trainable_rules``
(e.g. freeze the backbone for linear probing).
"""

from tljax.methods.base import Method, pretrain_run, supervised_on
from tljax.methods.registry import register_method


@register_method("finetune")
def build(config, model) -> Method:
  return Method(
      name="finetune",
      loss_fn=supervised_on("target")(config, model),
      domains=("target",),
      labeled=("target",),
      setting="inductive",
      needs=(pretrain_run(config),),
  )
