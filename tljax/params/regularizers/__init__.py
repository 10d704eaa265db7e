"""Fine-tuning regularizers: L2-SP, DELTA, BSS and Co-Tuning.

When a model pretrained on a source task is fine-tuned on a small target
task, these terms keep what the source model learned from being overwritten,
each by a different handle:

* :func:`l2_sp` — the *weights* stay near their pretrained values (Li,
  Grandvalet & Davoine, ICML 2018);
* :func:`delta` — the *feature maps* stay near the pretrained model's, channel
  by channel, weighted by :func:`delta_channel_attention` (Li et al.,
  ICLR 2019);
* :func:`batch_spectral_shrinkage` — the smallest singular values of a batch
  of features are shrunk, suppressing the spectral components that transfer
  badly (Chen et al., NeurIPS 2019);
* :func:`cotuning_loss` — the *source head* is kept and trained on source
  labels translated from target labels through a category relationship
  (:func:`cotuning_relationship`, :func:`cotuning_reverse_relationship`; You
  et al., NeurIPS 2020).

Conventions shared by every penalty here:

* Each returns the *weighted* term, ready to add to the task loss
  (``loss = cross_entropy + batch_spectral_shrinkage(features)``); its
  trade-off weight is a keyword-only argument defaulting to the value of the
  authors' released code, and passing 1 gives the bare term.
* They are pure functions of arrays: jit-, vmap- and grad-safe. Shapes are
  checked when traced; hyper-parameters when they are Python numbers (a
  traced hyper-parameter, as in a ``jax.vmap`` sweep, is taken as given); data
  values (label ranges, empty classes, probability rows) when the arrays are
  concrete, i.e. outside ``jax.jit``.
* Reductions run in at least float32, so bfloat16 activations are fine.
* The pretrained side (``start_params``, ``start_feature_maps``) is a
  constant: its gradient is stopped.
"""

from tljax.params.regularizers.cotuning import (
    cotuning_loss,
    cotuning_relationship,
    cotuning_reverse_relationship,
)
from tljax.params.regularizers.feature_maps import (
    delta,
    delta_channel_attention,
)
from tljax.params.regularizers.spectral_shrinkage import (
    batch_spectral_shrinkage,
)
from tljax.params.regularizers.starting_point import l2_sp

__all__ = [
    "batch_spectral_shrinkage",
    "cotuning_loss",
    "cotuning_relationship",
    "cotuning_reverse_relationship",
    "delta",
    "delta_channel_attention",
    "l2_sp",
]
