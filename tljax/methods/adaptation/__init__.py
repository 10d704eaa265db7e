"""Domain adaptation recipes (transductive): labeled source, unlabeled target.

Each recipe is the source cross-entropy plus an alignment term of
:mod:`tljax.align` on the bottleneck features of both domains, computed in one
forward pass over the concatenated source and target batch (so BatchNorm sees
both domains, as in the Transfer-Learning-Library). Target labels never reach
these losses: the loop strips them.

* ``dan`` (Long et al., ICML 2015): + λ · MK-MMD²(f_s, f_t).
* ``deep_coral`` (Sun & Saenko, ECCV-W 2016): + λ · CORAL(f_s, f_t).
* ``dann`` (Ganin et al., JMLR 2016): + λ · the domain classifier's loss behind
  a gradient reversal whose strength warms up as 2/(1 + exp(−10 p)) − 1 with
  the training progress p.
* ``cdan`` / ``cdan_e`` (Long et al., NeurIPS 2018): the discriminator reads
  the multilinear map of features and predictions (randomized above 4,096
  dimensions), with entropy conditioning for ``cdan_e``.

* ``jan`` (Long et al., ICML 2017): + λ · JMMD²((f_s, ŷ_s), (f_t, ŷ_t)) over the
  features and the softmax predictions (the predictions with one fixed kernel
  σ = 0.92, as the Transfer-Learning-Library).
* ``mcd`` (Saito et al., CVPR 2018): two classifier heads and a generator
  updated in the paper's three steps per batch (see :func:`build_mcd`).
* ``mdd`` (Zhang et al., ICML 2019): + λ · the margin disparity discrepancy
  with an adversarial head behind a warm-started gradient reversal.
* ``afn`` (Xu et al., ICCV 2019): + λ · stepwise adaptive feature norm of
  both domains (λ = 0.05 by default, the paper's).
* ``mcc`` (Jin et al., ECCV 2020): + λ · minimum class confusion of the
  target predictions.

Each recipe declares its hyper-parameters where it is registered, with the
paper's values as defaults (``config.method_kwargs`` sets them):
``trade_off`` (λ; 0.05 for ``afn``, 1 otherwise) is a *traced*
hyper-parameter (:attr:`tljax.methods.Method.hparams`): it lives in the train
state, so a vmapped sweep gives each member its own. ``bsp_weight > 0`` adds
batch spectral penalization (Chen et al., ICML 2019; the paper's weight is
1e-4) to the adversarial recipes (``dann``, ``cdan``, ``cdan_e``, ``mdd``).

The domain discriminator is a small MLP (``hidden_dim`` units, two hidden
ReLU layers, as the Transfer-Learning-Library's ``DomainDiscriminator`` but
without its BatchNorm layers) whose parameters are added next to the model's
as ``discriminator/...`` and trained by the same step: the reversal makes one
minimisation train the discriminator and fool it. Hyper-parameters are fixed
before training (no target labels choose them).

Modules: :mod:`~tljax.methods.adaptation.discrepancy` (``dan``,
``deep_coral``, ``jan``, ``afn``, ``mcc``: a term of the batch, no extra
player), :mod:`~tljax.methods.adaptation.adversarial` (``dann``, ``cdan``,
``cdan_e``, ``mdd``: a player behind a gradient reversal),
:mod:`~tljax.methods.adaptation.mcd` (``mcd``: two heads, three updates per
step), and ``_base.py`` (the joint forward pass and the small MLPs they
share). Importing this package registers every recipe.
"""

from tljax.methods.adaptation._base import apply_mlp, init_mlp
from tljax.methods.adaptation.adversarial import (
    ADVERSARIAL,
    ADVERSARIAL_HEAD,
    CDAN,
    DISCRIMINATOR,
    RANDOMIZED_ABOVE,
    apply_discriminator,
    build_cdan,
    build_cdan_e,
    build_dann,
    build_mdd,
    init_discriminator,
)
from tljax.methods.adaptation.deepjdot import build_deepjdot
from tljax.methods.adaptation.discrepancy import (
    JAN_PREDICTION_SIGMA,
    build_afn,
    build_dan,
    build_deep_coral,
    build_jan,
    build_mcc,
)
from tljax.methods.adaptation.mcd import SECOND_HEAD, apply_head, build_mcd

__all__ = [
    "ADVERSARIAL",
    "ADVERSARIAL_HEAD",
    "CDAN",
    "DISCRIMINATOR",
    "JAN_PREDICTION_SIGMA",
    "RANDOMIZED_ABOVE",
    "SECOND_HEAD",
    "apply_discriminator",
    "apply_head",
    "apply_mlp",
    "build_afn",
    "build_cdan",
    "build_cdan_e",
    "build_dan",
    "build_dann",
    "build_deep_coral",
    "build_deepjdot",
    "build_jan",
    "build_mcc",
    "build_mcd",
    "build_mdd",
    "init_discriminator",
    "init_mlp",
]
